//! Reading objects and armsim state the way assertions need them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use poolnet_api::v1alpha1::NodePoolNetwork;
use serde_json::Value;

/// The condition `type_` of `npn`'s status.
pub fn condition<'a>(npn: &'a NodePoolNetwork, type_: &str) -> Option<&'a Condition> {
    npn.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Status written for the current generation.
pub fn current(npn: &NodePoolNetwork) -> bool {
    npn.status.as_ref().is_some_and(|s| {
        s.observed_generation.is_some() && s.observed_generation == npn.metadata.generation
    })
}

/// kstatus readiness: `Ready=True` at the current generation.
pub fn is_ready(npn: &NodePoolNetwork) -> bool {
    current(npn) && condition(npn, "Ready").is_some_and(|c| c.status == "True")
}

/// What kstatus (the library Flux, kpt and cli-utils use to decide whether an applied object
/// is done) computes for a custom resource, as in its generic rules: Terminating while being
/// deleted; InProgress until `status.observedGeneration` reaches `metadata.generation`, or
/// while `Reconciling` is True; Failed while `Stalled` is True; then the `Ready` condition
/// (True: Current, otherwise InProgress); Current when there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// [`KStatus`] of any object, from its JSON.
pub fn kstatus(object: &Value) -> KStatus {
    if object["metadata"]["deletionTimestamp"].is_string() {
        return KStatus::Terminating;
    }
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"]
        .as_i64()
        .or(generation);
    if observed != generation {
        return KStatus::InProgress;
    }
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_true = |type_: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    };
    if is_true("Reconciling") {
        return KStatus::InProgress;
    }
    if is_true("Stalled") {
        return KStatus::Failed;
    }
    match conditions.iter().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => KStatus::Current,
        Some(_) => KStatus::InProgress,
        None => KStatus::Current,
    }
}

/// [`kstatus`] of a typed object.
pub fn kstatus_of(object: &impl serde::Serialize) -> KStatus {
    kstatus(&serde_json::to_value(object).unwrap_or_default())
}

/// `state` (armsim's whole state, as [`RunningSim::snapshot`] gives it) without what changes
/// on every write whatever was written: ETags, the record of operations, the operation in
/// flight. What is left is what a GET of each resource shows, read the way ARM and AKS read it:
/// - `provisioningState: Succeeded` equals no provisioning state (armsim's fixture loader
///   sets none; the first write adds it);
/// - an agent pool's empty `allowedHostPorts` / `applicationSecurityGroups` equal absent ones
///   (AKS reads both as "none", and a PUT can only clear them with `[]`).
pub fn comparable_state(state: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["subscriptions", "resources", "pool", "nodes"] {
        let mut v = state.get(key).cloned().unwrap_or(Value::Null);
        if key == "resources" {
            if let Some(resources) = v.as_object_mut() {
                for r in resources.values_mut() {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("op");
                    }
                    if let Some(props) = r["body"]["properties"].as_object_mut() {
                        if props.get("provisioningState") == Some(&Value::from("Succeeded")) {
                            props.remove("provisioningState");
                        }
                        if let Some(net) = props
                            .get_mut("networkProfile")
                            .and_then(Value::as_object_mut)
                        {
                            for field in ["allowedHostPorts", "applicationSecurityGroups"] {
                                if net
                                    .get(field)
                                    .and_then(Value::as_array)
                                    .is_some_and(Vec::is_empty)
                                {
                                    net.remove(field);
                                }
                            }
                            if net.is_empty() {
                                props.remove("networkProfile");
                            }
                        }
                    }
                }
            }
            strip_etags(&mut v);
        }
        out.insert(key.into(), v);
    }
    Value::Object(out)
}

/// Removes every `etag` field (children carry their parent's).
pub fn strip_etags(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("etag");
            map.values_mut().for_each(strip_etags);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_etags),
        _ => {}
    }
}

/// Paths where two JSON values differ, for readable assertion messages.
pub fn json_diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    let p = format!("{path}/{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => walk(&p, va, vb, out),
                        (va, vb) => out.push(format!("{p}: {va:?} != {vb:?}")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}/{i}"), va, vb, out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}
