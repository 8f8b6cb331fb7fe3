//! What the HostPortClaims say about one policy: the ports its pods hold and how full its
//! range is (every claim counts: a range is shared by every policy and pod that uses it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::{
    AllocatedPort, HostPortClaim, HostPortPolicy, PodAllocation, RangeUtilization,
};

/// Host-port range utilisation for the metrics, from the HostPortPolicy cache: the status
/// the leader last wrote (every replica exports the same figures; dashboards take the max).
#[derive(Clone)]
pub struct CachedRanges(pub kube::runtime::reflector::Store<HostPortPolicy>);

impl std::fmt::Debug for CachedRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRanges")
            .field("policies", &self.0.len())
            .finish()
    }
}

impl crate::runtime::HostPortRanges for CachedRanges {
    fn ranges(&self) -> Vec<crate::runtime::RangeSample> {
        range_samples(self.0.state().iter().map(|p| p.as_ref()))
    }
}

/// One sample per policy and protocol of its status' utilisation.
pub fn range_samples<'a>(
    policies: impl Iterator<Item = &'a HostPortPolicy>,
) -> Vec<crate::runtime::RangeSample> {
    let mut out = Vec::new();
    for p in policies {
        let Some(status) = &p.status else { continue };
        for u in &status.utilization {
            out.push(crate::runtime::RangeSample {
                namespace: p.namespace().unwrap_or_default(),
                policy: p.name_any(),
                node_pool_network: p.spec.node_pool_network.clone(),
                // As Kubernetes spells it (`TCP`, `UDP`), like the CRD.
                protocol: format!("{:?}", u.protocol),
                used: u.used,
                size: u.total,
            });
        }
    }
    out.sort_by(|a, b| {
        (&a.namespace, &a.policy, &a.protocol).cmp(&(&b.namespace, &b.policy, &b.protocol))
    });
    out
}

/// What the claims say about one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub allocations: Vec<PodAllocation>,
    pub pod_count: i32,
    /// Ports held for this policy's pods.
    pub held: usize,
    /// Per protocol of its automatic ports: held in the range by anyone / range size.
    pub utilization: Vec<RangeUtilization>,
    /// `<held for this policy>/<size of its range(s)>`, e.g. `6/20000`.
    pub ports_in_use: String,
    /// Ranges with no free port, e.g. `40000-40001/tcp`.
    pub exhausted: Vec<String>,
}

/// The policy's allocations and its range's utilisation, from the claims (all of them: a
/// range is shared by every policy and pod that uses it).
pub fn usage(policy: &HostPortPolicy, claims: &[Arc<HostPortClaim>]) -> Usage {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let mine: Vec<&HostPortClaim> = claims
        .iter()
        .map(Arc::as_ref)
        .filter(|c| c.spec.pod_namespace == ns && c.spec.policy.as_deref() == Some(name.as_str()))
        .collect();
    let mut by_pod: BTreeMap<String, Vec<AllocatedPort>> = BTreeMap::new();
    let mut bound = BTreeSet::new();
    for c in &mine {
        let pod = match c.status.as_ref().and_then(|s| s.pod.as_ref()) {
            Some(p) => {
                bound.insert(p.uid.clone());
                p.name.clone()
            }
            // Reserved at admission; the pod is being created.
            None => format!(
                "(admitting {})",
                c.spec
                    .pod_name
                    .as_deref()
                    .or(c.spec.pod_generate_name.as_deref())
                    .unwrap_or("pod")
            ),
        };
        by_pod.entry(pod).or_default().push(AllocatedPort {
            container_port: c.spec.container_port.unwrap_or(0),
            protocol: c.spec.protocol,
            host_port: c.spec.port,
        });
    }
    let allocations = by_pod
        .into_iter()
        .map(|(pod, mut ports)| {
            ports.sort_by_key(|p| (p.container_port, p.host_port));
            PodAllocation { pod, ports }
        })
        .collect();
    let protocols: BTreeSet<Protocol> = policy
        .spec
        .ports
        .iter()
        .filter(|p| p.host_port.is_none())
        .map(|p| p.protocol.into())
        .collect();
    let range = PortRange::new(
        policy.spec.host_port_range.start,
        policy.spec.host_port_range.end,
    );
    let mut utilization = Vec::new();
    let mut exhausted = Vec::new();
    let mut total = 0i64;
    if let Some(range) = range {
        for proto in protocols {
            let used = claims
                .iter()
                .filter(|c| Protocol::from(c.spec.protocol) == proto && range.contains(c.spec.port))
                .count() as i64;
            let size = i64::from(range.len());
            total += size;
            if used >= size {
                exhausted.push(format!("{range}/{proto}"));
            }
            utilization.push(RangeUtilization {
                protocol: proto.into(),
                range: range.to_string(),
                used,
                total: size,
            });
        }
    }
    Usage {
        allocations,
        pod_count: bound.len() as i32,
        held: mine.len(),
        utilization,
        ports_in_use: format!("{}/{total}", mine.len()),
        exhausted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use poolnet_api::v1alpha1::{
        BoundPod, HostPortClaimSpec, HostPortClaimStatus, HostPortPolicySpec, HostPortSource,
        PortProtocol,
    };
    use serde_json::json;

    fn policy(range: (u16, u16)) -> HostPortPolicy {
        let spec: HostPortPolicySpec = serde_json::from_value(json!({
            "nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "echo"}},
            "ports": [{"containerPort": 8080}, {"containerPort": 8443}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
            "hostPortRange": {"start": range.0, "end": range.1},
        }))
        .unwrap();
        let mut p = HostPortPolicy::new("echo", spec);
        p.metadata.namespace = Some("team".into());
        p
    }

    fn claim(
        port: u16,
        container_port: u16,
        policy: Option<&str>,
        pod: Option<(&str, &str)>,
    ) -> Arc<HostPortClaim> {
        let mut c = HostPortClaim::new(
            &format!("tcp-{port}"),
            HostPortClaimSpec {
                protocol: PortProtocol::TCP,
                port,
                container_port: Some(container_port),
                source: HostPortSource::Automatic,
                pod_namespace: "team".into(),
                pod_name: None,
                pod_generate_name: Some("echo-".into()),
                policy: policy.map(String::from),
                request_uid: "t".into(),
                daemon_set: None,
                created_at: Time(Timestamp::UNIX_EPOCH),
            },
        );
        c.status = pod.map(|(name, uid)| HostPortClaimStatus {
            pod: Some(BoundPod {
                name: name.into(),
                uid: uid.into(),
            }),
            ..HostPortClaimStatus::default()
        });
        Arc::new(c)
    }

    #[test]
    fn allocations_per_pod_and_shared_range_utilisation() {
        let claims = vec![
            claim(40000, 8080, Some("echo"), Some(("echo-a", "ua"))),
            claim(40001, 8443, Some("echo"), Some(("echo-a", "ua"))),
            claim(40002, 8080, Some("echo"), None),
            // Another policy's pod in the same range counts against the range.
            claim(40003, 8080, Some("other"), Some(("x", "ux"))),
        ];
        let u = usage(&policy((40000, 40003)), &claims);
        assert_eq!(u.pod_count, 1);
        assert_eq!(u.held, 3);
        assert_eq!(u.allocations.len(), 2);
        assert_eq!(u.allocations[1].pod, "echo-a");
        assert_eq!(u.allocations[1].ports.len(), 2);
        assert!(u.allocations[0].pod.starts_with("(admitting"));
        assert_eq!(u.ports_in_use, "3/4");
        assert_eq!(u.utilization.len(), 1, "only TCP has automatic ports");
        assert_eq!((u.utilization[0].used, u.utilization[0].total), (4, 4));
        assert_eq!(u.exhausted, ["40000-40003/tcp"]);
        let roomy = usage(&policy((40000, 49999)), &claims);
        assert!(roomy.exhausted.is_empty());
    }
}
