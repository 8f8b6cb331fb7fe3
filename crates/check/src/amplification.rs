//! (e) Write amplification: accepted ARM writes between the baseline and the check, divided
//! by the number of distinct resources whose state (without read-only fields, entries in
//! name order) differs between the two. A converged system that only writes on real drift
//! and coalesces shared writes stays close to 1.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::json::strip_read_only;
use crate::model::{Amplification, Baseline, ResourceWrites, Snapshot};

/// A resource's state for comparison: read-only fields stripped, named entries sorted (a
/// rewrite in another order is no change).
pub fn normalize(resource: &Value) -> Value {
    let mut v = strip_read_only(resource);
    for ptr in ["/properties/securityRules", "/properties/routes"] {
        if let Some(Value::Array(a)) = v.pointer_mut(ptr) {
            a.sort_by_key(|e| {
                e.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            });
        }
    }
    v
}

/// Every resource of the snapshot, normalized (`null` for one read and found absent).
pub fn state(snap: &Snapshot) -> BTreeMap<String, Value> {
    snap.arm
        .resources
        .iter()
        .map(|(id, r)| (id.clone(), normalize(r)))
        .chain(snap.arm.absent.iter().map(|id| (id.clone(), Value::Null)))
        .collect()
}

/// The resource a write addressed: the longest known ID that is it or its parent (a write
/// of a security rule counts for its NSG).
fn resource_of<'a>(written: &'a str, known: &'a BTreeSet<String>) -> &'a str {
    known
        .iter()
        .filter(|k| written == k.as_str() || written.starts_with(&format!("{k}/")))
        .max_by_key(|k| k.len())
        .map_or(written, String::as_str)
}

/// (e), when the baseline carries write counters and `end` is given.
pub fn compute(
    snap: &Snapshot,
    baseline: &Baseline,
    end: &BTreeMap<String, u64>,
) -> Option<Amplification> {
    let start_writes = baseline.writes.as_ref()?;
    let now = state(snap);
    let mut known: BTreeSet<String> = now.keys().cloned().collect();
    known.extend(baseline.state.keys().cloned());
    let mut changed = BTreeSet::new();
    for id in &known {
        let (before, after) = (baseline.state.get(id), now.get(id));
        let differs = match (before, after) {
            (Some(b), Some(a)) => b != a,
            // Not read at the end: nothing to compare.
            (Some(_), None) => false,
            // Not read at the baseline: counts as created unless absent now.
            (None, Some(a)) => !a.is_null(),
            (None, None) => false,
        };
        if differs {
            changed.insert(id.clone());
        }
    }
    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    for (id, n) in end {
        let id = id.to_ascii_lowercase();
        let delta = n.saturating_sub(start_writes.get(&id).copied().unwrap_or(0));
        if delta > 0 {
            *writes
                .entry(resource_of(&id, &known).to_string())
                .or_default() += delta;
        }
    }
    let ids: BTreeSet<&String> = writes.keys().chain(changed.iter()).collect();
    let resources: Vec<ResourceWrites> = ids
        .into_iter()
        .map(|id| ResourceWrites {
            id: id.clone(),
            writes: writes.get(id).copied().unwrap_or(0),
            changed: changed.contains(id),
        })
        .collect();
    let total: u64 = writes.values().sum();
    Some(Amplification {
        writes: total,
        changed: changed.len(),
        ratio: (!changed.is_empty()).then(|| total as f64 / changed.len() as f64),
        resources,
    })
}
