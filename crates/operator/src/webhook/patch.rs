//! The JSON patch that gives a pod its host ports: `hostPort` on each assigned container
//! port, the environment variables in every container, and poolnet's label and annotation.
//! Pure: built from the pod as the webhook received it, so re-applying it to its own output
//! yields an empty patch.

use std::collections::BTreeSet;

use poolnet_api::portspec::Protocol;
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_plan::hostports::Assignment;
use serde_json::{Value, json};

use crate::hostports::ASSIGNED_ANNOTATION;

/// Escapes one JSON-pointer segment.
fn seg(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// `8080/TCP=41932,8443/TCP=49482`: the value of the `poolnet.dev/host-ports` annotation.
pub fn format_assigned(assignments: &[Assignment]) -> String {
    assignments
        .iter()
        .map(|a| {
            format!(
                "{}/{}={}",
                a.container_port,
                a.protocol.as_kubernetes(),
                a.host_port
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the annotation back; entries that do not parse are skipped.
pub fn parse_assigned(value: &str) -> Vec<Assignment> {
    value
        .split(',')
        .filter_map(|entry| {
            let (port, host) = entry.trim().split_once('=')?;
            let (cp, proto) = port.split_once('/')?;
            Some(Assignment {
                container_port: cp.parse().ok()?,
                protocol: proto.parse().ok()?,
                host_port: host.parse().ok()?,
            })
        })
        .collect()
}

fn protocol_of(port: &Value) -> Option<Protocol> {
    match port.get("protocol").and_then(Value::as_str) {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some(_) => None,
    }
}

/// What to write into the pod.
#[derive(Debug, Clone)]
pub struct PodMutation<'a> {
    pub assignments: &'a [Assignment],
    /// Variables for every container, in order.
    pub env: &'a [(String, String)],
    pub token: &'a str,
}

/// The operations turning `pod` (JSON as received) into the pod with `m` applied.
pub fn pod_patch(pod: &Value, m: &PodMutation<'_>) -> Vec<Value> {
    let mut ops = Vec::new();
    set_map_entry(&mut ops, pod, "labels", RESERVATION_LABEL, m.token);
    set_map_entry(
        &mut ops,
        pod,
        "annotations",
        ASSIGNED_ANNOTATION,
        &format_assigned(m.assignments),
    );

    let mut seen = BTreeSet::new();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, c) in containers.iter().enumerate() {
        let ports = c
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (j, p) in ports.iter().enumerate() {
            let Some(cp) = p.get("containerPort").and_then(Value::as_u64) else {
                continue;
            };
            let Some(proto) = protocol_of(p) else {
                continue;
            };
            // One host port per container port and protocol: the first declaration gets it
            // (two entries with the same hostPort would make the pod invalid).
            if !seen.insert((cp, proto)) {
                continue;
            }
            let Some(a) = m
                .assignments
                .iter()
                .find(|a| u64::from(a.container_port) == cp && a.protocol == proto)
            else {
                continue;
            };
            if p.get("hostPort").and_then(Value::as_u64) != Some(u64::from(a.host_port)) {
                ops.push(json!({
                    "op": "add",
                    "path": format!("/spec/containers/{i}/ports/{j}/hostPort"),
                    "value": a.host_port,
                }));
            }
        }
    }

    for list in ["containers", "initContainers"] {
        let items = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, c) in items.iter().enumerate() {
            env_ops(
                &mut ops,
                &format!("/spec/{list}/{i}/env"),
                c.get("env"),
                m.env,
            );
        }
    }
    ops
}

fn set_map_entry(ops: &mut Vec<Value>, pod: &Value, map: &str, key: &str, value: &str) {
    match pod
        .pointer(&format!("/metadata/{map}"))
        .and_then(Value::as_object)
    {
        None => ops.push(json!({
            "op": "add",
            "path": format!("/metadata/{map}"),
            "value": { key: value },
        })),
        Some(m) if m.get(key).and_then(Value::as_str) == Some(value) => {}
        Some(_) => ops.push(json!({
            "op": "add",
            "path": format!("/metadata/{map}/{}", seg(key)),
            "value": value,
        })),
    }
}

fn env_ops(ops: &mut Vec<Value>, path: &str, env: Option<&Value>, vars: &[(String, String)]) {
    let Some(existing) = env.and_then(Value::as_array) else {
        if !vars.is_empty() {
            let list: Vec<Value> = vars
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            ops.push(json!({"op": "add", "path": path, "value": list}));
        }
        return;
    };
    for (name, value) in vars {
        let wanted = json!({"name": name, "value": value});
        match existing
            .iter()
            .position(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            None => ops.push(json!({"op": "add", "path": format!("{path}/-"), "value": wanted})),
            Some(k) if existing[k] != wanted => {
                ops.push(json!({"op": "replace", "path": format!("{path}/{k}"), "value": wanted}));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echoserver() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": "echoserver-hostport-75dc8d8855-",
                "annotations": {"kubernetes.azure.com/assign-hostports-for-containerports": "8080/tcp,8443/tcp"},
            },
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox", "env": [{"name": "A", "value": "1"}]}],
                "containers": [
                    {"name": "echo", "image": "echoserver:1.10", "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "https", "containerPort": 8443, "protocol": "TCP"},
                    ]},
                    {"name": "sidecar", "image": "proxy", "ports": [{"containerPort": 8080}]},
                ]
            }
        })
    }

    fn assignments() -> Vec<Assignment> {
        vec![
            Assignment {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_port: 46645,
            },
            Assignment {
                container_port: 8443,
                protocol: Protocol::Tcp,
                host_port: 49482,
            },
        ]
    }

    fn apply(pod: &Value, ops: &[Value]) -> Value {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops.to_vec())).unwrap();
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    #[test]
    fn echoserver_gets_host_ports_env_label_and_annotation_and_reapplying_is_a_no_op() {
        let pod = echoserver();
        let a = assignments();
        let env = vec![
            (
                "echoserver-hostport_PORT_8080_TCP_HOSTPORT".to_string(),
                "46645".to_string(),
            ),
            (
                "echoserver_hostport_PORT_8080_TCP_HOSTPORT".to_string(),
                "46645".to_string(),
            ),
        ];
        let m = PodMutation {
            assignments: &a,
            env: &env,
            token: "req-1",
        };
        let ops = pod_patch(&pod, &m);
        let out = apply(&pod, &ops);
        assert_eq!(
            out.pointer("/spec/containers/0/ports/0/hostPort"),
            Some(&json!(46645))
        );
        assert_eq!(
            out.pointer("/spec/containers/0/ports/1/hostPort"),
            Some(&json!(49482))
        );
        // The sidecar re-declares 8080: it must not get a second hostPort.
        assert_eq!(out.pointer("/spec/containers/1/ports/0/hostPort"), None);
        for c in ["/spec/containers/0/env", "/spec/containers/1/env"] {
            assert_eq!(
                out.pointer(c).and_then(Value::as_array).map(Vec::len),
                Some(2),
                "{c}"
            );
        }
        assert_eq!(
            out.pointer("/spec/initContainers/0/env")
                .and_then(Value::as_array)
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(
            out.pointer("/metadata/labels/poolnet.dev~1reservation"),
            Some(&json!("req-1"))
        );
        assert_eq!(
            out.pointer("/metadata/annotations/poolnet.dev~1host-ports"),
            Some(&json!("8080/TCP=46645,8443/TCP=49482"))
        );
        assert!(pod_patch(&out, &m).is_empty(), "idempotent");
        assert_eq!(parse_assigned(&format_assigned(&a)), a);
    }

    #[test]
    fn conflicting_user_values_are_replaced() {
        let mut pod = echoserver();
        pod["spec"]["containers"][0]["env"] =
            json!([{"name": "X_PORT", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]);
        pod["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(1);
        let a = assignments();
        let env = vec![("X_PORT".to_string(), "46645".to_string())];
        let out = apply(
            &pod,
            &pod_patch(
                &pod,
                &PodMutation {
                    assignments: &a,
                    env: &env,
                    token: "t",
                },
            ),
        );
        assert_eq!(
            out.pointer("/spec/containers/0/env/0"),
            Some(&json!({"name": "X_PORT", "value": "46645"}))
        );
        assert_eq!(
            out.pointer("/spec/containers/0/ports/0/hostPort"),
            Some(&json!(46645))
        );
    }
}
