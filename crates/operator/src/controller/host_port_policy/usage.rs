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
/// range is shared by every policy and pod that uses it) and, for ports given from
/// host-port blocks (no claim), from the pods poolnet admitted in the policy's namespace
/// that it selects (`admitted`, each recording its ports) and the keys held cluster-wide
/// (`held`: claims and every pod's host ports).
pub fn usage(
    policy: &HostPortPolicy,
    claims: &[Arc<HostPortClaim>],
    admitted: &[crate::hostports::index::PodEntry],
    held: Option<&poolnet_plan::hostports::KeySet>,
) -> Usage {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let claimed: BTreeSet<(Protocol, u16)> = claims
        .iter()
        .map(|c| (Protocol::from(c.spec.protocol), c.spec.port))
        .collect();
    let selector = kube::core::Selector::try_from(policy.spec.pod_selector.clone()).ok();
    let auto_ports: Vec<(u16, Protocol)> = policy
        .spec
        .ports
        .iter()
        .filter(|p| p.host_port.is_none())
        .map(|p| (p.container_port, p.protocol.into()))
        .collect();
    let policy_range = PortRange::new(
        policy.spec.host_port_range.start,
        policy.spec.host_port_range.end,
    );
    // Ports from blocks: the pod's own record, for the container ports this policy gives.
    let mut from_blocks: BTreeMap<String, Vec<AllocatedPort>> = BTreeMap::new();
    for pod in admitted {
        use kube::core::SelectorExt;
        if pod.namespace != ns || !selector.as_ref().is_some_and(|s| s.matches(&pod.labels)) {
            continue;
        }
        for a in &pod.assigned {
            let ours = auto_ports.contains(&(a.container_port, a.protocol))
                && policy_range.is_some_and(|r| r.contains(a.host_port))
                && !claimed.contains(&(a.protocol, a.host_port));
            if ours {
                from_blocks
                    .entry(pod.name.clone())
                    .or_default()
                    .push(AllocatedPort {
                        container_port: a.container_port,
                        protocol: a.protocol.into(),
                        host_port: a.host_port,
                    });
            }
        }
    }
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
    let block_ports: usize = from_blocks.values().map(Vec::len).sum();
    let block_pods = from_blocks.len();
    for (pod, ports) in from_blocks {
        by_pod.entry(pod).or_default().extend(ports);
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
            let used = match held {
                Some(held) => i64::from(held.count_in(proto, range)),
                None => claims
                    .iter()
                    .filter(|c| {
                        Protocol::from(c.spec.protocol) == proto && range.contains(c.spec.port)
                    })
                    .count() as i64,
            };
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
    let held_ports = mine.len() + block_ports;
    Usage {
        allocations,
        pod_count: (bound.len() + block_pods) as i32,
        held: held_ports,
        utilization,
        ports_in_use: format!("{held_ports}/{total}"),
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
        let u = usage(&policy((40000, 40003)), &claims, &[], None);
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
        let roomy = usage(&policy((40000, 49999)), &claims, &[], None);
        assert!(roomy.exhausted.is_empty());
    }

    fn admitted(
        name: &str,
        app: &str,
        assigned: &[(u16, u16)],
    ) -> crate::hostports::index::PodEntry {
        crate::hostports::index::PodEntry {
            namespace: "team".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            token: Some(format!("t-{name}")),
            keys: assigned
                .iter()
                .map(|(_, h)| poolnet_plan::hostports::Key::tcp(*h))
                .collect(),
            daemon_set: None,
            node: None,
            labels: [("app".to_string(), app.to_string())].into(),
            assigned: assigned
                .iter()
                .map(|&(c, h)| poolnet_plan::hostports::Assignment {
                    container_port: c,
                    protocol: Protocol::Tcp,
                    host_port: h,
                })
                .collect(),
        }
    }

    /// Ports given from host-port blocks have no claim: the policy's pods (selected by its
    /// podSelector, recording their ports) count, others' do not; the range's use counts
    /// every held key.
    #[test]
    fn ports_from_blocks_count_for_the_pods_the_policy_selects() {
        let claims = vec![claim(40000, 8080, Some("echo"), Some(("echo-a", "ua")))];
        let pods = vec![
            admitted("echo-b", "echo", &[(8080, 40010), (8443, 40011)]),
            // Not selected by the policy (another app), or a port it does not give.
            admitted("other", "other", &[(8080, 40020)]),
            admitted("echo-c", "echo", &[(9999, 40030)]),
        ];
        let held: poolnet_plan::hostports::KeySet = [40000u16, 40010, 40011, 40020, 40030]
            .into_iter()
            .map(poolnet_plan::hostports::Key::tcp)
            .collect();
        let u = usage(&policy((40000, 40031)), &claims, &pods, Some(&held));
        assert_eq!(u.held, 3);
        assert_eq!(u.pod_count, 2);
        let b = u.allocations.iter().find(|a| a.pod == "echo-b").unwrap();
        assert_eq!(b.ports.len(), 2);
        assert!(
            u.allocations
                .iter()
                .all(|a| a.pod != "other" && a.pod != "echo-c")
        );
        assert_eq!((u.utilization[0].used, u.utilization[0].total), (5, 32));
    }
}
