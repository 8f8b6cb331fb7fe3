//! Which container ports of a pod need host ports, and from where: the AKS annotation
//! (`kubernetes.azure.com/assign-hostports-for-containerports: 8080/tcp,8443/tcp`), the
//! HostPortPolicies selecting the pod, and host ports the pod's author wrote inside a range
//! poolnet manages (reserved as they are, so nobody else is given them).

use std::collections::BTreeMap;

use poolnet_api::portspec::{self, PortRange, Protocol};

use super::reservation::{PortRequest, Source};

/// The AKS annotation listing the container ports to give host ports.
pub const AKS_ANNOTATION: &str = "kubernetes.azure.com/assign-hostports-for-containerports";

/// AKS assigns from 40000-59999; so do annotated pods here and policies by default.
pub const DEFAULT_RANGE: (u16, u16) = (40000, 59999);

pub fn default_range() -> PortRange {
    PortRange::new(DEFAULT_RANGE.0, DEFAULT_RANGE.1).unwrap_or_else(|| unreachable!())
}

/// A `ports[]` entry of one of the pod's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeclaredPort {
    pub container_port: u16,
    pub protocol: Protocol,
    /// Set by the pod's author (0 counts as unset).
    pub host_port: Option<u16>,
}

/// One port of a HostPortPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub static_host_port: Option<u16>,
}

/// A HostPortPolicy that selects the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectingPolicy {
    /// `namespace/name`.
    pub name: String,
    pub range: PortRange,
    pub ports: Vec<PolicyPort>,
}

/// The requests to reserve, plus warnings for the admission response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestPlan {
    pub requests: Vec<PortRequest>,
    /// The policy each request came from (`namespace/name`), if any, in request order.
    pub policies: Vec<Option<String>>,
    pub warnings: Vec<String>,
}

/// A pod whose host-port request cannot be honoured as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "annotation {AKS_ANNOTATION}: invalid value {value:?}: {problem}; expected entries like 8080/tcp,8443/tcp naming containerPorts of the pod"
    )]
    Annotation { value: String, problem: String },
    #[error(
        "annotation {AKS_ANNOTATION} lists {entry}, but no container of the pod declares containerPort {port} with protocol {protocol}; declared: {declared}"
    )]
    NotDeclared {
        entry: String,
        port: u16,
        protocol: &'static str,
        declared: String,
    },
    #[error(
        "HostPortPolicies {first} and {second} both select this pod and both give a host port to containerPort {port}/{protocol}; make their podSelectors disjoint"
    )]
    PolicyOverlap {
        first: String,
        second: String,
        port: u16,
        protocol: &'static str,
    },
    #[error(
        "containerPort {port}/{protocol} has hostPort {written} in the pod spec, but HostPortPolicy {policy} reserves static host port {wanted} for it; remove the hostPort from the pod spec"
    )]
    StaticMismatch {
        policy: String,
        port: u16,
        protocol: &'static str,
        written: u16,
        wanted: u16,
    },
}

fn declared_list(declared: &[DeclaredPort]) -> String {
    if declared.is_empty() {
        return "none".into();
    }
    declared
        .iter()
        .map(|d| format!("{}/{}", d.container_port, d.protocol))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the annotation value: single ports only (`8080/tcp`), no ranges.
pub fn parse_annotation(value: &str) -> Result<Vec<(u16, Protocol)>, RequestError> {
    let specs = portspec::parse_list(value).map_err(|e| RequestError::Annotation {
        value: value.to_string(),
        problem: e.problem,
    })?;
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        if s.range.len() != 1 {
            return Err(RequestError::Annotation {
                value: value.to_string(),
                problem: format!("{s} is a range; the annotation names single container ports"),
            });
        }
        if !out.contains(&(s.range.start(), s.protocol)) {
            out.push((s.range.start(), s.protocol));
        }
    }
    Ok(out)
}

/// What to reserve for a pod with `declared` container ports, the AKS `annotation` (if
/// present) and the `policies` selecting it. Policies win over the annotation for the ports
/// they list (they carry a range or a static port); host ports written by the pod's author
/// are kept and reserved when they fall in a range poolnet manages.
pub fn plan_requests(
    declared: &[DeclaredPort],
    annotation: Option<&str>,
    policies: &[SelectingPolicy],
) -> Result<RequestPlan, RequestError> {
    // (containerPort, protocol) → (source, origin, policy)
    let mut wanted: BTreeMap<(u16, Protocol), (Source, String, Option<String>)> = BTreeMap::new();
    let mut warnings = Vec::new();
    let is_declared = |port: u16, proto: Protocol| {
        declared
            .iter()
            .any(|d| d.container_port == port && d.protocol == proto)
    };

    let mut by_policy: BTreeMap<(u16, Protocol), &str> = BTreeMap::new();
    for policy in policies {
        for p in &policy.ports {
            let k = (p.container_port, p.protocol);
            if let Some(first) = by_policy.insert(k, &policy.name) {
                let (first, second) = if first <= policy.name.as_str() {
                    (first, policy.name.as_str())
                } else {
                    (policy.name.as_str(), first)
                };
                return Err(RequestError::PolicyOverlap {
                    first: first.to_string(),
                    second: second.to_string(),
                    port: p.container_port,
                    protocol: p.protocol.as_kubernetes(),
                });
            }
            if !is_declared(p.container_port, p.protocol) {
                warnings.push(format!(
                    "HostPortPolicy {} lists containerPort {}/{}, which no container of this pod declares: no host port for it",
                    policy.name,
                    p.container_port,
                    p.protocol.as_kubernetes()
                ));
                continue;
            }
            let source = match p.static_host_port {
                Some(hp) => Source::Static(hp),
                None => Source::Auto(policy.range),
            };
            wanted.insert(
                k,
                (
                    source,
                    format!("HostPortPolicy {}", policy.name),
                    Some(policy.name.clone()),
                ),
            );
        }
    }

    if let Some(value) = annotation {
        for (port, proto) in parse_annotation(value)? {
            if !is_declared(port, proto) {
                return Err(RequestError::NotDeclared {
                    entry: format!("{port}/{proto}"),
                    port,
                    protocol: proto.as_kubernetes(),
                    declared: declared_list(declared),
                });
            }
            wanted.entry((port, proto)).or_insert_with(|| {
                (
                    Source::Auto(default_range()),
                    format!("annotation {AKS_ANNOTATION}"),
                    None,
                )
            });
        }
    }

    let mut plan = RequestPlan {
        warnings,
        ..RequestPlan::default()
    };
    let managed = |port: u16| {
        default_range().contains(port) || policies.iter().any(|p| p.range.contains(port))
    };
    let mut seen = Vec::new();
    for d in declared {
        let k = (d.container_port, d.protocol);
        // A container port declared twice gets one host port (on its first declaration).
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        let written = d.host_port.filter(|&hp| hp != 0);
        let (source, origin, policy) = match (wanted.remove(&k), written) {
            (Some((Source::Static(want), _, Some(policy))), Some(hp)) if want != hp => {
                return Err(RequestError::StaticMismatch {
                    policy,
                    port: d.container_port,
                    protocol: d.protocol.as_kubernetes(),
                    written: hp,
                    wanted: want,
                });
            }
            (Some((_, _, policy)), Some(hp)) => (
                Source::Static(hp),
                "hostPort written in the pod spec".to_string(),
                policy,
            ),
            (Some(w), None) => w,
            (None, Some(hp)) if managed(hp) => (
                Source::Static(hp),
                "hostPort written in the pod spec".to_string(),
                None,
            ),
            (None, _) => continue,
        };
        plan.requests.push(PortRequest {
            container_port: d.container_port,
            protocol: d.protocol,
            source,
            origin,
        });
        plan.policies.push(policy);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(container_port: u16) -> DeclaredPort {
        DeclaredPort {
            container_port,
            protocol: Protocol::Tcp,
            host_port: None,
        }
    }

    fn policy(name: &str, range: (u16, u16), ports: &[(u16, Option<u16>)]) -> SelectingPolicy {
        SelectingPolicy {
            name: name.into(),
            range: PortRange::new(range.0, range.1).unwrap(),
            ports: ports
                .iter()
                .map(|&(container_port, static_host_port)| PolicyPort {
                    container_port,
                    protocol: Protocol::Tcp,
                    static_host_port,
                })
                .collect(),
        }
    }

    #[test]
    fn annotation_requests_auto_ports_from_the_aks_range() {
        let plan = plan_requests(&[tcp(8080), tcp(8443)], Some("8080/tcp,8443/tcp"), &[]).unwrap();
        assert_eq!(plan.requests.len(), 2);
        assert!(
            plan.requests
                .iter()
                .all(|r| r.source == Source::Auto(default_range()))
        );
        assert_eq!(plan.policies, [None, None]);
    }

    #[test]
    fn annotation_must_name_declared_single_ports() {
        let e = plan_requests(&[tcp(8080)], Some("8080/tcp,9090/udp"), &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("declares containerPort 9090 with protocol UDP; declared: 8080/tcp"),
            "{e}"
        );
        let e = plan_requests(&[tcp(8080)], Some("8080-8081/tcp"), &[]).unwrap_err();
        assert!(e.to_string().contains("is a range"), "{e}");
        let e = plan_requests(&[tcp(8080)], Some("http"), &[]).unwrap_err();
        assert!(
            e.to_string().contains("expected entries like 8080/tcp"),
            "{e}"
        );
    }

    #[test]
    fn policy_wins_over_annotation_and_static_ports_are_static() {
        let p = policy(
            "team/echo",
            (45000, 45999),
            &[(8080, None), (8443, Some(443))],
        );
        let plan = plan_requests(&[tcp(8080), tcp(8443)], Some("8080/tcp"), &[p]).unwrap();
        assert_eq!(
            plan.requests[0].source,
            Source::Auto(PortRange::new(45000, 45999).unwrap())
        );
        assert_eq!(plan.requests[1].source, Source::Static(443));
        assert_eq!(plan.requests[0].origin, "HostPortPolicy team/echo");
        assert_eq!(
            plan.policies,
            [Some("team/echo".to_string()), Some("team/echo".to_string())]
        );
    }

    #[test]
    fn overlapping_policies_are_refused_and_undeclared_ports_warned() {
        let a = policy("team/a", (45000, 45999), &[(8080, None)]);
        let b = policy("team/b", (46000, 46999), &[(8080, None)]);
        let e = plan_requests(&[tcp(8080)], None, &[b, a.clone()]).unwrap_err();
        assert!(e.to_string().contains("team/a and team/b"), "{e}");
        let c = policy("team/c", (46000, 46999), &[(9999, None)]);
        let plan = plan_requests(&[tcp(8080)], None, &[a, c]).unwrap();
        assert_eq!(plan.requests.len(), 1);
        assert!(plan.warnings[0].contains("9999/TCP"));
    }

    #[test]
    fn author_host_ports_are_kept_and_reserved_when_managed() {
        let mut written = tcp(8080);
        written.host_port = Some(41000);
        let mut outside = tcp(9000);
        outside.host_port = Some(9000);
        let plan = plan_requests(&[written, outside], None, &[]).unwrap();
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.requests[0].source, Source::Static(41000));
        // Annotated and written: the written port stands.
        let plan = plan_requests(&[written], Some("8080/tcp"), &[]).unwrap();
        assert_eq!(plan.requests[0].source, Source::Static(41000));
        let p = policy("team/echo", (45000, 45999), &[(8080, Some(45001))]);
        let e = plan_requests(&[written], None, &[p]).unwrap_err();
        assert!(matches!(
            e,
            RequestError::StaticMismatch {
                written: 41000,
                wanted: 45001,
                ..
            }
        ));
    }
}
