//! Which host ports a pod writes, and which of them the webhook must reserve (DESIGN §5, S2:
//! "every pod that writes a hostPort inside a reserved range is checked too"). Pure.
//!
//! [`poolnet_plan::hostports::plan_requests`] reserves a written host port when it lies in the
//! default range or in the range of a policy that *selects the pod*. That leaves out ports
//! inside another namespace's policy (its range or a static port) and host ports that were
//! copied from another pod. [`cover_written_ports`] adds those, so that every written port
//! inside any reserved range becomes a static request (a claim the API server serialises),
//! and returns the remaining ones, which the webhook checks against existing claims.

use k8s_openapi::api::core::v1::{Container, Pod};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::HostPortPolicy;
use poolnet_plan::hostports::request::default_range;
use poolnet_plan::hostports::{Assignment, Key, PortRequest, RequestPlan, Source};

/// A host port the pod's spec sets on one of its container ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WrittenPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
}

impl WrittenPort {
    pub fn key(&self) -> Key {
        Key::new(self.protocol, self.host_port)
    }
}

/// Per protocol, the host ports poolnet reserves: the AKS default range for both protocols,
/// and every HostPortPolicy's range and static ports, whichever namespace it is in.
pub fn reserved_ranges<'a>(
    policies: impl IntoIterator<Item = &'a HostPortPolicy>,
) -> Vec<(Protocol, PortRange)> {
    let mut ranges = vec![
        (Protocol::Tcp, default_range()),
        (Protocol::Udp, default_range()),
    ];
    for policy in policies {
        let spec = &policy.spec;
        let range = PortRange::new(spec.host_port_range.start, spec.host_port_range.end);
        for p in &spec.ports {
            let proto = Protocol::from(p.protocol);
            match p.host_port {
                Some(hp) => ranges.extend(PortRange::single(hp).map(|r| (proto, r))),
                // The range serves the policy's automatic ports, per their protocol.
                None => ranges.extend(range.map(|r| (proto, r))),
            }
        }
    }
    ranges.sort();
    ranges.dedup();
    ranges
}

pub fn is_reserved(ranges: &[(Protocol, PortRange)], key: Key) -> bool {
    ranges
        .iter()
        .any(|(p, r)| *p == key.protocol && r.contains(key.port))
}

fn container_written<'a>(containers: impl IntoIterator<Item = &'a Container>) -> Vec<WrittenPort> {
    let mut out = Vec::new();
    for c in containers {
        for p in c.ports.iter().flatten() {
            let (Ok(container_port), Some(host_port)) = (
                u16::try_from(p.container_port),
                p.host_port.and_then(|h| u16::try_from(h).ok()),
            ) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(_) => continue,
            };
            if host_port != 0 {
                out.push(WrittenPort {
                    container_port,
                    protocol,
                    host_port,
                });
            }
        }
    }
    out
}

/// Host ports written in the pod's containers and init containers (a restartable init
/// container, a sidecar, holds its ports like any container). Ephemeral containers cannot
/// declare ports (the API server refuses them), so they have none.
pub fn written_ports(pod: &Pod) -> Vec<WrittenPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    container_written(
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten()),
    )
}

/// Adds to `plan` a static request for each port of `written` it does not request yet and
/// that either lies in `reserved` or was `copied` from another pod by its manifest (poolnet
/// gave it to that pod: it must be reserved again, and is refused while that pod holds it).
/// Returns the written ports left unreserved (outside every reserved range, not copied).
pub fn cover_written_ports(
    plan: &mut RequestPlan,
    written: &[WrittenPort],
    copied: &[Assignment],
    reserved: &[(Protocol, PortRange)],
) -> Vec<WrittenPort> {
    let mut unreserved = Vec::new();
    for w in written {
        let requested = plan
            .requests
            .iter()
            .any(|r| r.container_port == w.container_port && r.protocol == w.protocol);
        if requested {
            continue;
        }
        let was_copied = copied.iter().any(|a| {
            a.container_port == w.container_port
                && a.protocol == w.protocol
                && a.host_port == w.host_port
        });
        let origin = if was_copied {
            format!(
                "hostPort copied with annotation {} from the pod poolnet gave it to; remove the \
                 hostPort and that annotation, or ask for a port of its own with the annotation \
                 {}",
                super::ASSIGNED_ANNOTATION,
                poolnet_plan::hostports::AKS_ANNOTATION
            )
        } else if is_reserved(reserved, w.key()) {
            "hostPort written in the pod spec, inside a range poolnet reserves".to_string()
        } else {
            unreserved.push(*w);
            continue;
        };
        plan.requests.push(PortRequest {
            container_port: w.container_port,
            protocol: w.protocol,
            source: Source::Static(w.host_port),
            origin,
        });
        plan.policies.push(None);
    }
    unreserved
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec};
    use poolnet_plan::hostports::DeclaredPort;

    fn policy(range: (u16, u16), statics: &[u16]) -> HostPortPolicy {
        let ports: Vec<serde_json::Value> = statics
            .iter()
            .map(|hp| serde_json::json!({"containerPort": 1, "protocol": "TCP", "hostPort": hp}))
            .chain(std::iter::once(
                serde_json::json!({"containerPort": 2, "protocol": "UDP"}),
            ))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
            "metadata": {"name": "p", "namespace": "games"},
            "spec": {"nodePoolNetwork": "game", "podSelector": {},
                     "ports": ports, "hostPortRange": {"start": range.0, "end": range.1}}
        }))
        .unwrap()
    }

    fn pod(ports: &[(i32, Option<i32>)], init: &[(i32, i32)]) -> Pod {
        let container = |name: &str, ports: Vec<ContainerPort>| Container {
            name: name.into(),
            ports: Some(ports),
            ..Container::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![container(
                    "a",
                    ports
                        .iter()
                        .map(|&(container_port, host_port)| ContainerPort {
                            container_port,
                            host_port,
                            ..ContainerPort::default()
                        })
                        .collect(),
                )],
                init_containers: Some(vec![container(
                    "sidecar",
                    init.iter()
                        .map(|&(container_port, host_port)| ContainerPort {
                            container_port,
                            host_port: Some(host_port),
                            protocol: Some("UDP".into()),
                            ..ContainerPort::default()
                        })
                        .collect(),
                )]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn reserved_ranges_are_the_default_and_every_policys_range_and_static_ports() {
        let ranges = reserved_ranges([&policy((30000, 30009), &[8443])]);
        assert!(is_reserved(&ranges, Key::tcp(8443)));
        assert!(!is_reserved(&ranges, Key::udp(8443)));
        assert!(
            is_reserved(&ranges, Key::udp(30005)),
            "the range serves UDP port 2"
        );
        assert!(
            !is_reserved(&ranges, Key::tcp(30005)),
            "no automatic TCP port"
        );
        assert!(is_reserved(&ranges, Key::tcp(41000)));
        assert!(!is_reserved(&ranges, Key::tcp(9100)));
    }

    #[test]
    fn written_ports_include_init_containers_and_skip_zero() {
        let p = pod(
            &[(80, Some(8080)), (81, Some(0)), (82, None)],
            &[(53, 5353)],
        );
        assert_eq!(
            written_ports(&p),
            [
                WrittenPort {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_port: 8080
                },
                WrittenPort {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_port: 5353
                },
            ]
        );
    }

    #[test]
    fn written_ports_in_reserved_ranges_or_copied_become_static_requests() {
        let reserved = reserved_ranges([&policy((30000, 30009), &[8443])]);
        let written = [
            WrittenPort {
                container_port: 1,
                protocol: Protocol::Tcp,
                host_port: 8443,
            },
            WrittenPort {
                container_port: 2,
                protocol: Protocol::Udp,
                host_port: 30001,
            },
            WrittenPort {
                container_port: 3,
                protocol: Protocol::Tcp,
                host_port: 9100,
            },
            WrittenPort {
                container_port: 4,
                protocol: Protocol::Tcp,
                host_port: 7000,
            },
        ];
        let copied = [Assignment {
            container_port: 4,
            protocol: Protocol::Tcp,
            host_port: 7000,
        }];
        // plan_requests saw none of them as reserved (no policy selects the pod).
        let declared: Vec<DeclaredPort> = written
            .iter()
            .map(|w| DeclaredPort {
                container_port: w.container_port,
                protocol: w.protocol,
                host_port: Some(w.host_port),
            })
            .collect();
        let mut plan = poolnet_plan::hostports::plan_requests(&declared, None, &[]).unwrap();
        assert!(plan.requests.is_empty());
        let left = cover_written_ports(&mut plan, &written, &copied, &reserved);
        assert_eq!(left, [written[2]]);
        let sources: Vec<(u16, Source)> = plan
            .requests
            .iter()
            .map(|r| (r.container_port, r.source))
            .collect();
        assert_eq!(
            sources,
            [
                (1, Source::Static(8443)),
                (2, Source::Static(30001)),
                (4, Source::Static(7000))
            ]
        );
        assert!(plan.requests[2].origin.contains("copied"));
        assert_eq!(plan.policies, [None, None, None]);
        // Already requested (e.g. by the annotation): left as planned.
        let before = plan.clone();
        assert!(cover_written_ports(&mut plan, &written[..2], &[], &reserved).is_empty());
        assert_eq!(plan, before);
    }
}
