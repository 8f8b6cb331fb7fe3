//! (a) Foreign rules, routes and agent-pool fields are byte for byte (as JSON values, without
//! ARM's read-only fields) what their writer left: a [`Baseline`] records them before a run,
//! [`check`] compares after it.

use std::collections::BTreeMap;

use poolnet_api::armid::ResourceKind;
use poolnet_api::ownership::CLUSTER_TAG;
use poolnet_plan::desired::writes_for;
use poolnet_plan::scope::Scope;
use serde_json::Value;

use crate::attribution::{
    self, clusters, kind_of, nsg_ids, pool_cluster, route_table_ids, same_id,
};
use crate::json::{diff, entries, find_entry, remove_key_pruning, remove_pointer, strip_read_only};
use crate::model::{
    BASELINE_VERSION, Baseline, BaselineResource, Invariant, Kind, Report, ResourceClass, Snapshot,
    Violation,
};

/// The agent-pool fields poolnet writes for a writing object (`plan::agent_pool`).
pub const POOL_FIELDS: [&str; 2] = [
    "/properties/networkProfile/allowedHostPorts",
    "/properties/networkProfile/applicationSecurityGroups",
];

/// The scopes (this installation's, every cluster's) that own entries of resource `id`.
fn scopes(snap: &Snapshot, id: &str, class: ResourceClass) -> Vec<Scope> {
    let mut out = Vec::new();
    for cluster in clusters(snap) {
        match class {
            ResourceClass::NetworkSecurityGroup => {
                if nsg_ids(snap, &cluster).iter().any(|n| same_id(n, id)) {
                    out.push(attribution::nsg_attribution(snap, &cluster, id).full.scope);
                }
            }
            ResourceClass::RouteTable => {
                if route_table_ids(snap, &cluster)
                    .iter()
                    .any(|n| same_id(n, id))
                {
                    out.push(
                        attribution::route_attribution(snap, &cluster, id)
                            .full
                            .scope,
                    );
                }
            }
            ResourceClass::AgentPool => {}
        }
    }
    out
}

/// Whether a live object that lets poolnet write names agent pool `id`.
fn pool_written(snap: &Snapshot, id: &str) -> bool {
    snap.pools.iter().any(|p| {
        same_id(&p.spec.node_pool.agent_pool_id, id) && writes_for(p) && pool_cluster(p).is_some()
    })
}

fn class_of(id: &str) -> Option<ResourceClass> {
    match kind_of(id)? {
        ResourceKind::NetworkSecurityGroup => Some(ResourceClass::NetworkSecurityGroup),
        ResourceKind::RouteTable => Some(ResourceClass::RouteTable),
        ResourceKind::AgentPool => Some(ResourceClass::AgentPool),
        _ => None,
    }
}

fn entries_pointer(class: ResourceClass) -> Option<&'static str> {
    match class {
        ResourceClass::NetworkSecurityGroup => Some("/properties/securityRules"),
        ResourceClass::RouteTable => Some("/properties/routes"),
        ResourceClass::AgentPool => None,
    }
}

/// The parts of `resource` that are not poolnet's: its own fields without the entries list,
/// poolnet's cluster tag and `excluded`; and the entries no scope owns.
fn project(
    class: ResourceClass,
    resource: &Value,
    scopes: &[Scope],
    excluded: &[String],
) -> (Value, BTreeMap<String, Value>) {
    let mut fields = strip_read_only(resource);
    let mut foreign = BTreeMap::new();
    if let Some(ptr) = entries_pointer(class) {
        for (name, e) in entries(resource, ptr) {
            if !scopes.iter().any(|s| s.owns(name)) {
                foreign.insert(name.to_string(), strip_read_only(e));
            }
        }
        remove_pointer(&mut fields, ptr);
    }
    for p in excluded {
        exclude(&mut fields, p);
    }
    if class == ResourceClass::AgentPool {
        // AKS reads an empty allowedHostPorts / applicationSecurityGroups as none, and a PUT
        // can clear them only by sending `[]`: restoring "none" may leave `[]` behind.
        for p in POOL_FIELDS {
            if fields
                .pointer(p)
                .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
            {
                remove_pointer(&mut fields, p);
            }
        }
    }
    (fields, foreign)
}

/// Removes `pointer`; a tag (`/tags/<key>`, key compared case-insensitively) takes an
/// emptied tag map with it (ARM shows no tags and empty tags alike).
fn exclude(value: &mut Value, pointer: &str) {
    match pointer.strip_prefix("/tags/") {
        Some(key) => remove_key_pruning(value, "/tags", &key.replace("~1", "/").replace("~0", "~")),
        None => remove_pointer(value, pointer),
    }
}

/// poolnet's cluster tag on a route table, as a JSON pointer.
fn cluster_tag_pointer() -> String {
    format!(
        "/tags/{}",
        CLUSTER_TAG.replace('~', "~0").replace('/', "~1")
    )
}

/// Whether a live object that lets poolnet write names or records route table `id` (then
/// poolnet's cluster tag on it is poolnet's).
fn table_written(snap: &Snapshot, id: &str) -> bool {
    snap.pools.iter().any(|p| {
        writes_for(p)
            && (p
                .spec
                .route_table
                .as_ref()
                .is_some_and(|rt| same_id(&rt.id, id))
                || p.status
                    .as_ref()
                    .and_then(|s| s.owned.as_ref())
                    .is_some_and(|o| {
                        !poolnet_api::v1alpha1::Owned::names_in(&o.routes, id).is_empty()
                    }))
    })
}

/// What poolnet writes of the resource itself now: an agent pool's two fields, a route
/// table's cluster tag, while a writing object uses them.
fn excluded_now(snap: &Snapshot, class: ResourceClass, id: &str) -> Vec<String> {
    match class {
        ResourceClass::AgentPool if pool_written(snap, id) => {
            POOL_FIELDS.iter().map(|s| s.to_string()).collect()
        }
        ResourceClass::RouteTable if table_written(snap, id) => vec![cluster_tag_pointer()],
        _ => Vec::new(),
    }
}

/// The IDs of the shared resources whose foreign parts a baseline records: those the
/// objects name or record, and any other NSG, route table or agent pool the snapshot holds.
pub fn shared_ids(snap: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        if !out.iter().any(|o| same_id(o, id)) {
            out.push(id.to_string());
        }
    };
    for cluster in clusters(snap) {
        for id in nsg_ids(snap, &cluster) {
            push(&id);
        }
        for id in route_table_ids(snap, &cluster) {
            push(&id);
        }
    }
    for p in &snap.pools {
        push(&p.spec.node_pool.agent_pool_id);
    }
    // And every other NSG, route table or agent pool read (`--resource`): a baseline taken
    // before any object exists covers what poolnet is about to share.
    for (id, r) in &snap.arm.resources {
        if class_of(id).is_some() {
            push(r.get("id").and_then(Value::as_str).unwrap_or(id));
        }
    }
    out
}

/// Records the foreign parts of every shared resource, every resource's state and the write
/// counters (`writes`), for a later [`check`] and (e).
pub fn baseline(snap: &Snapshot, writes: Option<BTreeMap<String, u64>>) -> Baseline {
    let mut resources = Vec::new();
    for id in shared_ids(snap) {
        let (Some(class), Some(resource)) = (class_of(&id), snap.arm.get(&id)) else {
            continue;
        };
        let excluded = excluded_now(snap, class, &id);
        let (fields, entries) = project(class, resource, &scopes(snap, &id, class), &excluded);
        resources.push(BaselineResource {
            id,
            kind: class,
            fields,
            entries,
            excluded,
        });
    }
    Baseline {
        version: BASELINE_VERSION,
        taken_at: snap.now.to_string(),
        resources,
        state: crate::amplification::state(snap),
        writes,
    }
}

fn v(kind: Kind, subject: &str) -> Violation {
    Violation::new(Invariant::Foreign, kind, subject)
}

/// Compares the foreign parts recorded in `baseline` with the snapshot.
pub fn check(snap: &Snapshot, baseline: &Baseline, report: &mut Report) {
    if baseline.version != BASELINE_VERSION {
        report.errors.push(format!(
            "baseline format version {} is not {BASELINE_VERSION}",
            baseline.version
        ));
        return;
    }
    for b in &baseline.resources {
        let id = b.id.as_str();
        let Some(resource) = snap.arm.get(id) else {
            if snap.arm.is_absent(id) {
                report.violations.push(
                    v(Kind::ResourceGone, id)
                        .message("the resource the baseline recorded no longer exists"),
                );
            } else {
                report
                    .errors
                    .push(format!("baseline resource {id} was not read"));
            }
            continue;
        };
        let mut excluded = b.excluded.clone();
        for e in excluded_now(snap, b.kind, id) {
            if !excluded.contains(&e) {
                excluded.push(e);
            }
        }
        let scopes = scopes(snap, id, b.kind);
        let (fields, _) = project(b.kind, resource, &scopes, &excluded);
        let mut expected = b.fields.clone();
        for p in &excluded {
            exclude(&mut expected, p);
        }
        for d in diff(&expected, &fields) {
            report.violations.push(
                v(Kind::ForeignFieldChanged, id)
                    .entry(if d.path.is_empty() {
                        "/".into()
                    } else {
                        d.path.clone()
                    })
                    .expected(d.expected.unwrap_or(Value::Null))
                    .found(d.found.unwrap_or(Value::Null))
                    .message(format!("field {} differs from the baseline", d.path)),
            );
        }
        let Some(ptr) = entries_pointer(b.kind) else {
            continue;
        };
        let now = entries(resource, ptr);
        for (name, want) in &b.entries {
            if scopes.iter().any(|s| s.owns(name)) {
                report.notes.push(format!(
                    "{id}: {name} was foreign in the baseline and is recorded by a writing object now; not compared"
                ));
                continue;
            }
            match find_entry(&now, name) {
                None => report.violations.push(
                    v(Kind::ForeignEntryRemoved, id)
                        .entry(name.clone())
                        .expected(want.clone())
                        .message(format!("foreign entry {name} is gone")),
                ),
                Some(have) => {
                    let have = strip_read_only(have);
                    let diffs = diff(want, &have);
                    if !diffs.is_empty() {
                        let paths: Vec<&str> = diffs.iter().map(|d| d.path.as_str()).collect();
                        report.violations.push(
                            v(Kind::ForeignEntryChanged, id)
                                .entry(name.clone())
                                .expected(want.clone())
                                .found(have.clone())
                                .message(format!(
                                    "foreign entry {name} changed at {}",
                                    paths.join(", ")
                                )),
                        );
                    }
                }
            }
        }
    }
}
