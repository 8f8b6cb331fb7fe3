//! (b) What ARM holds that is attributable to poolnet equals exactly what the live objects
//! record and want: nothing stranded, nothing missing, nothing different.

use std::collections::BTreeSet;

use poolnet_api::armid::ResourceKind;
use poolnet_api::cidr::parse_address_prefix;
use poolnet_api::one_per_pool;
use poolnet_api::ownership::{CLUSTER_TAG, OWNER_TAG, OWNER_UID_TAG};
use poolnet_api::v1alpha1::{NodePoolNetwork, Owned};
use poolnet_api::validation::managed_asg_enabled;
use poolnet_arm::AgentPool;
use poolnet_arm::models::{
    ApplicationSecurityGroup, NetworkSecurityGroup, PublicIpPrefix, RouteTable,
};
use poolnet_operator::arm_models::{observed_pool, ours, pool_ours};
use poolnet_operator::writers::convert::{existing_rules, route_table_view};
use poolnet_plan::agent_pool::plan_agent_pool;
use poolnet_plan::desired::{cluster_of, managed_asg_id, pool_asgs};
use poolnet_plan::nsg::{DesiredRule, plan_nsg};
use poolnet_plan::prefix::managed_prefix_id;
use poolnet_plan::routes::Route;
use serde_json::{Value, json};

use crate::attribution::{
    self, clusters, contributes, nsg_ids, pool_cluster, route_table_ids, same_id, writing_records,
};
use crate::json::{entries, find_entry, strip_read_only, tag};
use crate::model::{Baseline, Invariant, Kind, Options, Report, Snapshot, Violation};

const RULES: &str = "/properties/securityRules";
const ROUTES: &str = "/properties/routes";

fn v(kind: Kind, subject: &str) -> Violation {
    Violation::new(Invariant::Owned, kind, subject)
}

/// The JSON form of a rule poolnet wants, for reports.
pub fn desired_rule_json(r: &DesiredRule) -> Value {
    json!({
        "owner": r.owner.to_string(),
        "protocol": r.content.protocol.to_string(),
        "sourceAddressPrefixes": r.content.sources,
        "destinationApplicationSecurityGroups": r.content.destination_asgs,
        "destinationPortRanges": r.content.port_strings(),
        "priorityBand": format!("{}-{}", r.band.0, r.band.1),
        "description": r.description,
    })
}

fn route_json(r: &Route) -> Value {
    json!({
        "name": r.name,
        "addressPrefix": r.address_prefix,
        "nextHopType": format!("{:?}", r.next_hop_type),
        "nextHopIpAddress": r.next_hop_ip,
    })
}

fn canonical_prefix(p: &str) -> String {
    parse_address_prefix(p)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| p.to_string())
}

fn same_route(a: &Route, b: &Route) -> bool {
    a.name.eq_ignore_ascii_case(&b.name)
        && canonical_prefix(&a.address_prefix) == canonical_prefix(&b.address_prefix)
        && a.next_hop_type == b.next_hop_type
        && a.next_hop_ip == b.next_hop_ip
}

/// Whether `name` in resource `id` is a foreign entry of the baseline (then (a) judges it).
fn in_baseline(baseline: Option<&Baseline>, id: &str, name: &str) -> bool {
    baseline.is_some_and(|b| {
        b.resources
            .iter()
            .any(|r| same_id(&r.id, id) && r.entries.keys().any(|n| n.eq_ignore_ascii_case(name)))
    })
}

/// Whether any live object (whatever its policy: an Observe object's recorded entries are
/// foreign to the writer but still recorded) records `name` in resource `id`.
fn recorded_by_any(snap: &Snapshot, id: &str, name: &str, routes: bool) -> bool {
    let owned = snap
        .pools
        .iter()
        .filter_map(|p| p.status.as_ref().and_then(|s| s.owned.as_ref()))
        .chain(
            snap.policies
                .iter()
                .filter_map(|h| h.status.as_ref().and_then(|s| s.owned.as_ref())),
        );
    owned.into_iter().any(|o| {
        let list = if routes { &o.routes } else { &o.security_rules };
        Owned::names_in(list, id)
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The UID a rule's description names (`… (uid <uid>); do not edit`).
fn described_uid(rule: &Value) -> Option<&str> {
    let d = rule.pointer("/properties/description")?.as_str()?;
    let rest = &d[d.find("(uid ")? + 5..];
    Some(&rest[..rest.find(')')?])
}

fn live_uids(snap: &Snapshot) -> BTreeSet<&str> {
    snap.pools
        .iter()
        .filter_map(|p| p.metadata.uid.as_deref())
        .chain(
            snap.policies
                .iter()
                .filter_map(|h| h.metadata.uid.as_deref()),
        )
        .collect()
}

/// An unrecorded entry: a violation, or a note when detached leftovers are allowed and its
/// owner (by UID) is gone.
fn unrecorded(
    report: &mut Report,
    options: &Options,
    owner_uid: Option<&str>,
    live: &BTreeSet<&str>,
    violation: Violation,
) {
    let detached = owner_uid.is_some_and(|u| !live.contains(u));
    if options.allow_detached && (detached || owner_uid.is_none()) {
        report.notes.push(format!(
            "detached leftover (owner {} is gone): {} {}",
            owner_uid.unwrap_or("unknown"),
            violation.subject,
            violation.entry.as_deref().unwrap_or("")
        ));
    } else {
        report.violations.push(violation);
    }
}

pub fn check(snap: &Snapshot, baseline: Option<&Baseline>, options: &Options, report: &mut Report) {
    let live = live_uids(snap);
    for cluster in clusters(snap) {
        for id in nsg_ids(snap, &cluster) {
            nsg(snap, &cluster, &id, baseline, options, &live, report);
        }
        for id in route_table_ids(snap, &cluster) {
            route_table(snap, &cluster, &id, baseline, options, true, report);
        }
    }
    unreferenced(snap, baseline, options, &live, report);
    agent_pools(snap, report);
    created_resources(snap, options, &live, report);
}

/// NSGs and route tables no object names or records any more (a baseline's, `--resource`):
/// whatever is named like this installation's there is stranded. The installation's
/// clusters are its objects' and those of the agent pools read (all objects may be gone).
fn unreferenced(
    snap: &Snapshot,
    baseline: Option<&Baseline>,
    options: &Options,
    live: &BTreeSet<&str>,
    report: &mut Report,
) {
    let mut known = clusters(snap);
    known.extend(snap.arm.resources.keys().filter_map(|id| cluster_of(id)));
    for (key, resource) in &snap.arm.resources {
        let id = resource.get("id").and_then(Value::as_str).unwrap_or(key);
        match attribution::kind_of(id) {
            Some(ResourceKind::NetworkSecurityGroup) => {
                for c in &known {
                    if !nsg_ids(snap, c).iter().any(|n| same_id(n, id)) {
                        nsg(snap, c, id, baseline, options, live, report);
                    }
                }
            }
            Some(ResourceKind::RouteTable) => {
                let referenced = known
                    .iter()
                    .any(|c| route_table_ids(snap, c).iter().any(|n| same_id(n, id)));
                let ours = tag(resource, CLUSTER_TAG)
                    .is_none_or(|t| known.contains(&t.to_ascii_lowercase()));
                if let Some(c) = known.iter().next()
                    && !referenced
                    && ours
                {
                    route_table(snap, c, id, baseline, options, false, report);
                }
            }
            _ => {}
        }
    }
}

fn recorded_absent(
    snap: &Snapshot,
    cluster: &str,
    id: &str,
    present: &[(&str, &Value)],
    wanted: &BTreeSet<String>,
    routes: bool,
    report: &mut Report,
) {
    for (owner, owned) in writing_records(snap, cluster, routes) {
        let list = if routes {
            &owned.routes
        } else {
            &owned.security_rules
        };
        for name in Owned::names_in(list, id) {
            if find_entry(present, name).is_none() && !wanted.contains(&name.to_ascii_lowercase()) {
                report.violations.push(
                    v(Kind::RecordedAbsent, &owner)
                        .entry(name.clone())
                        .message(format!(
                            "status.owned records {name} in {id}, which does not hold it"
                        )),
                );
            }
        }
    }
}

/// Resource `id` as read (`{}` when it is known to be absent) and typed; `None`, with an
/// error in the report naming it `what` (`a_what` with its article), when it was not read or
/// does not parse.
fn read<T: serde::de::DeserializeOwned>(
    snap: &Snapshot,
    id: &str,
    (what, a_what): (&str, &str),
    report: &mut Report,
) -> Option<(Value, T)> {
    let resource = match (snap.arm.get(id), snap.arm.is_absent(id)) {
        (Some(r), _) => r.clone(),
        (None, true) => json!({}),
        (None, false) => {
            report.errors.push(format!("{what} {id} was not read"));
            return None;
        }
    };
    match serde_json::from_value(resource.clone()) {
        Ok(typed) => Some((resource, typed)),
        Err(e) => {
            report
                .errors
                .push(format!("{what} {id} does not parse as {a_what}: {e}"));
            None
        }
    }
}

fn nsg(
    snap: &Snapshot,
    cluster: &str,
    id: &str,
    baseline: Option<&Baseline>,
    options: &Options,
    live: &BTreeSet<&str>,
    report: &mut Report,
) {
    let Some((resource, typed)) = read::<NetworkSecurityGroup>(snap, id, ("NSG", "an NSG"), report)
    else {
        return;
    };
    let resource = &resource;
    let attr = attribution::nsg_attribution(snap, cluster, id);
    let full = &attr.full;
    let existing = existing_rules(&typed, full.scope.prefix());
    let plan = plan_nsg(&existing, &full.wanted, &full.scope);
    let present = entries(resource, RULES);
    let found = |name: &str| find_entry(&present, name).map(strip_read_only);
    let wanted_names: BTreeSet<String> = full
        .wanted
        .iter()
        .map(|r| r.name.to_ascii_lowercase())
        .collect();
    let desired = |name: &str| {
        full.wanted
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    };

    for r in &full.wanted {
        if !attr.recorded.scope.owns(&r.name) {
            report.violations.push(
                v(Kind::NotRecorded, &r.owner.to_string())
                    .entry(r.name.clone())
                    .expected(json!({"nsgId": id, "name": r.name}))
                    .message(format!(
                        "wants rule {} in {id} but its status.owned does not record it",
                        r.name
                    )),
            );
        }
    }
    for name in &plan.added {
        let mut e = v(Kind::Missing, id).entry(name.clone()).message(format!(
            "rule {name} is wanted but the NSG does not hold it"
        ));
        if let Some(d) = desired(name) {
            e = e.expected(desired_rule_json(d));
        }
        report.violations.push(e);
    }
    for u in &plan.unplaced {
        report.violations.push(
            v(Kind::Missing, id)
                .entry(u.rule.name.clone())
                .expected(desired_rule_json(&u.rule))
                .message(format!(
                    "rule {} cannot be placed: {}",
                    u.rule.name, u.reason
                )),
        );
    }
    for name in &plan.changed {
        let mut e = v(Kind::Differs, id).entry(name.clone()).message(format!(
            "rule {name} differs from what its owner wants (content, priority band or shape)"
        ));
        if let Some(d) = desired(name) {
            e = e.expected(desired_rule_json(d));
        }
        if let Some(f) = found(name) {
            e = e.found(f);
        }
        report.violations.push(e);
    }
    for name in &plan.removed {
        let mut e = v(Kind::Stale, id).entry(name.clone()).message(format!(
            "rule {name} is recorded by a writing object but nothing wants it"
        ));
        if let Some(f) = found(name) {
            e = e.found(f);
        }
        report.violations.push(e);
    }
    // The description names the owner and its UID (`nsg::rule_description`): the only part
    // of a rule the drift check does not compare.
    for p in &plan.rules {
        if plan.changed.contains(&p.rule.name) || plan.added.contains(&p.rule.name) {
            continue;
        }
        let Some(rule) = find_entry(&present, &p.rule.name) else {
            continue;
        };
        let want: String = p.rule.description.chars().take(140).collect();
        let have = rule
            .pointer("/properties/description")
            .and_then(Value::as_str);
        if have != Some(want.as_str()) {
            report.violations.push(
                v(Kind::Differs, id)
                    .entry(p.rule.name.clone())
                    .expected(json!({"description": want}))
                    .found(json!({"description": have}))
                    .message(format!("rule {} has another description", p.rule.name)),
            );
        }
    }
    for name in &plan.unrecorded {
        if in_baseline(baseline, id, name) || recorded_by_any(snap, id, name, false) {
            continue;
        }
        let rule = find_entry(&present, name);
        let mut e = v(Kind::Unrecorded, id).entry(name.clone()).message(format!(
            "rule {name} carries this cluster's prefix but no live object records it (stranded)"
        ));
        if let Some(r) = rule {
            e = e.found(strip_read_only(r));
        }
        unrecorded(report, options, rule.and_then(described_uid), live, e);
    }
    recorded_absent(snap, cluster, id, &present, &wanted_names, false, report);
}

/// `referenced`: some object names or records the table (else only stranded routes are
/// looked for: its cluster tag is (a)'s business).
fn route_table(
    snap: &Snapshot,
    cluster: &str,
    id: &str,
    baseline: Option<&Baseline>,
    options: &Options,
    referenced: bool,
    report: &mut Report,
) {
    let Some((resource, typed)) =
        read::<RouteTable>(snap, id, ("route table", "a route table"), report)
    else {
        return;
    };
    let resource = &resource;
    let view = route_table_view(&typed);
    let attr = attribution::route_attribution(snap, cluster, id);
    let full = &attr.full;
    let present = entries(resource, ROUTES);
    let mut wanted: Vec<&poolnet_plan::routes::DesiredRoute> = Vec::new();
    for d in &full.wanted {
        if !wanted
            .iter()
            .any(|w| w.route.name.eq_ignore_ascii_case(&d.route.name))
        {
            wanted.push(d);
        }
    }
    let wanted_names: BTreeSet<String> = wanted
        .iter()
        .map(|d| d.route.name.to_ascii_lowercase())
        .collect();
    for d in &wanted {
        if !attr.recorded.scope.owns(&d.route.name) {
            report.violations.push(
                v(Kind::NotRecorded, &d.owner)
                    .entry(d.route.name.clone())
                    .expected(json!({"routeTableId": id, "name": d.route.name}))
                    .message(format!(
                        "wants route {} in {id} but its status.owned does not record it",
                        d.route.name
                    )),
            );
        }
        match view
            .routes
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(&d.route.name))
        {
            None => report.violations.push(
                v(Kind::Missing, id)
                    .entry(d.route.name.clone())
                    .expected(route_json(&d.route))
                    .message(format!(
                        "route {} of {} is not in the table",
                        d.route.name, d.owner
                    )),
            ),
            Some(r) if !same_route(r, &d.route) => report.violations.push(
                v(Kind::Differs, id)
                    .entry(d.route.name.clone())
                    .expected(route_json(&d.route))
                    .found(route_json(r))
                    .message(format!(
                        "route {} differs from what {} wants",
                        d.route.name, d.owner
                    )),
            ),
            Some(_) => {}
        }
    }
    for r in &view.routes {
        if full.scope.owns(&r.name) && !wanted_names.contains(&r.name.to_ascii_lowercase()) {
            report.violations.push(
                v(Kind::Stale, id)
                    .entry(r.name.clone())
                    .found(route_json(r))
                    .message(format!(
                        "route {} is recorded by a writing object but nothing wants it",
                        r.name
                    )),
            );
        }
        if full.scope.unrecorded(&r.name)
            && !in_baseline(baseline, id, &r.name)
            && !recorded_by_any(snap, id, &r.name, true)
        {
            // Routes carry no owner UID: only --allow-detached excuses them.
            let e = v(Kind::Unrecorded, id)
                .entry(r.name.clone())
                .found(route_json(r))
                .message(format!(
                    "route {} is named like poolnet's but no live object records it (stranded)",
                    r.name
                ));
            unrecorded(report, options, None, &BTreeSet::new(), e);
        }
    }
    if !referenced {
        return;
    }
    let tagged = view.cluster_tag.as_deref();
    if !wanted.is_empty() && !tagged.is_some_and(|t| t.eq_ignore_ascii_case(cluster)) {
        report.violations.push(
            v(Kind::Differs, id)
                .entry(format!("tags/{CLUSTER_TAG}"))
                .expected(json!(cluster))
                .found(json!(tagged))
                .message("the table holds poolnet's routes but is not tagged for this cluster"),
        );
    }
    // As the operator untags (`plan_routes`): only when no poolnet-named route is left.
    let any_unrecorded = view.routes.iter().any(|r| full.scope.unrecorded(&r.name));
    if wanted.is_empty()
        && !any_unrecorded
        && tagged.is_some_and(|t| t.eq_ignore_ascii_case(cluster))
    {
        report.violations.push(
            v(Kind::Stale, id)
                .entry(format!("tags/{CLUSTER_TAG}"))
                .found(json!(tagged))
                .message("poolnet keeps no route in the table but its cluster tag is still set"),
        );
    }
    recorded_absent(snap, cluster, id, &present, &wanted_names, true, report);
}

/// The agent pool fields poolnet writes (allowedHostPorts, applicationSecurityGroups) for
/// every object that contributes.
fn agent_pools(snap: &Snapshot, report: &mut Report) {
    let refused = one_per_pool::refused(&snap.pools);
    for npn in &snap.pools {
        let Some(cluster) = pool_cluster(npn) else {
            continue;
        };
        if !contributes(npn, &cluster, &refused) {
            continue;
        }
        let id = &npn.spec.node_pool.agent_pool_id;
        let subject = format!("NodePoolNetwork {}", name(npn));
        let Some(json) = snap.arm.get(id) else {
            if snap.arm.is_absent(id) {
                report.violations.push(
                    v(Kind::Missing, &subject)
                        .entry(id.clone())
                        .message("its agent pool does not exist"),
                );
            } else {
                report.errors.push(format!("agent pool {id} was not read"));
            }
            continue;
        };
        let pool: AgentPool = match serde_json::from_value(json.clone()) {
            Ok(p) => p,
            Err(e) => {
                report
                    .errors
                    .push(format!("agent pool {id} does not parse: {e}"));
                continue;
            }
        };
        let observed = observed_pool(&pool);
        let existing: Vec<String> = pool_asgs(npn)
            .into_iter()
            .filter(|a| snap.arm.get(a).is_some())
            .collect();
        let plan = plan_agent_pool(npn, &observed, &existing);
        if plan.drift {
            report.violations.push(
                v(Kind::Differs, id)
                    .entry("properties.networkProfile")
                    .expected(json!({
                        "allowedHostPorts": plan.want_ports,
                        "applicationSecurityGroups": plan.want_asgs,
                    }))
                    .found(json!({
                        "allowedHostPorts": observed.allowed_host_ports,
                        "applicationSecurityGroups": observed.application_security_groups,
                    }))
                    .message(format!(
                        "the pool's host ports or ASGs are not what {subject} wants"
                    )),
            );
        }
    }
}

/// A resource's tags: top-level `tags`, or an agent pool's `properties.tags`.
fn resource_tags(json: &Value) -> Option<&Value> {
    json.get("tags")
        .or_else(|| json.get("properties").and_then(|p| p.get("tags")))
}

fn name(npn: &NodePoolNetwork) -> &str {
    npn.metadata.name.as_deref().unwrap_or("")
}

/// The ASG and prefix poolnet created for each object: recorded ones exist and carry the
/// object's tags, wanted ones are recorded, and none tagged for this installation's clusters
/// is unrecorded.
fn created_resources(
    snap: &Snapshot,
    options: &Options,
    live: &BTreeSet<&str>,
    report: &mut Report,
) {
    let refused = one_per_pool::refused(&snap.pools);
    let mut recorded: Vec<String> = Vec::new();
    for npn in &snap.pools {
        let subject = format!("NodePoolNetwork {}", name(npn));
        let cluster = pool_cluster(npn).unwrap_or_default();
        let owned = npn.status.as_ref().and_then(|s| s.owned.as_ref());
        let asg = owned.and_then(|o| o.application_security_group.clone());
        let prefix = owned.and_then(|o| o.public_ip_prefix.clone());
        let agent_pool = owned.and_then(|o| o.agent_pool.clone());
        let writing = contributes(npn, &cluster, &refused);
        let wanted_asg = (writing && managed_asg_enabled(&npn.spec))
            .then(|| managed_asg_id(npn))
            .flatten();
        let wanted_prefix = if writing {
            managed_prefix_id(npn)
        } else {
            None
        };
        // Whether a pool was created by poolnet is known only from the record itself.
        for (what, rec, want) in [
            ("ASG", &asg, &wanted_asg),
            ("public IP prefix", &prefix, &wanted_prefix),
            ("agent pool", &agent_pool, &None),
        ] {
            if let Some(w) = want
                && !rec.as_deref().is_some_and(|r| same_id(r, w))
            {
                report.violations.push(
                    v(Kind::NotRecorded, &subject)
                        .entry(w.clone())
                        .expected(json!(w))
                        .found(json!(rec))
                        .message(format!(
                            "its managed {what} is not recorded in status.owned"
                        )),
                );
            }
            let Some(id) = rec else { continue };
            recorded.push(id.to_ascii_lowercase());
            let Some(json) = snap.arm.get(id) else {
                if snap.arm.is_absent(id) {
                    report.violations.push(
                        v(Kind::RecordedAbsent, &subject)
                            .entry(id.clone())
                            .message(format!(
                                "status.owned records {what} {id}, which does not exist"
                            )),
                    );
                } else {
                    report.errors.push(format!("{what} {id} was not read"));
                }
                continue;
            };
            let is_ours = match what {
                "ASG" => serde_json::from_value::<ApplicationSecurityGroup>(json.clone())
                    .map(|a| ours(&a.resource, npn, &cluster)),
                "agent pool" => serde_json::from_value::<AgentPool>(json.clone())
                    .map(|p| pool_ours(&p, npn, &cluster)),
                _ => serde_json::from_value::<PublicIpPrefix>(json.clone())
                    .map(|p| ours(&p.resource, npn, &cluster)),
            };
            match is_ours {
                Ok(true) => {}
                Ok(false) => report.violations.push(
                    v(Kind::Differs, id)
                        .entry("tags")
                        .expected(json!({OWNER_TAG: format!("NodePoolNetwork/{}", name(npn)), CLUSTER_TAG: cluster, OWNER_UID_TAG: npn.metadata.uid}))
                        .found(resource_tags(json).cloned().unwrap_or(Value::Null))
                        .message(format!("the {what} {subject} records is not tagged as its own")),
                ),
                Err(e) => report.errors.push(format!("{what} {id} does not parse: {e}")),
            }
        }
    }
    // The objects' clusters and those of the agent pools read (every object may be gone).
    let mut ours_clusters = clusters(snap);
    ours_clusters.extend(snap.arm.resources.keys().filter_map(|id| cluster_of(id)));
    for (id, json) in &snap.arm.resources {
        let kind = attribution::kind_of(id);
        if !matches!(
            kind,
            Some(
                ResourceKind::ApplicationSecurityGroup
                    | ResourceKind::PublicIpPrefix
                    | ResourceKind::AgentPool
            )
        ) {
            continue;
        }
        // An agent pool carries its tags in properties.tags.
        let tagged = if kind == Some(ResourceKind::AgentPool) {
            json.get("properties").cloned().unwrap_or(Value::Null)
        } else {
            json.clone()
        };
        let tagged_cluster = tag(&tagged, CLUSTER_TAG).map(str::to_ascii_lowercase);
        if tag(&tagged, OWNER_TAG).is_none()
            || !tagged_cluster.is_some_and(|c| ours_clusters.contains(&c))
            || recorded.contains(id)
        {
            continue;
        }
        let shown = json.get("id").and_then(Value::as_str).unwrap_or(id);
        let e = v(Kind::Unrecorded, shown)
            .entry("tags")
            .found(tagged.get("tags").cloned().unwrap_or(Value::Null))
            .message(format!(
                "created by poolnet for {} but no live object records it (stranded)",
                tag(&tagged, OWNER_TAG).unwrap_or("?")
            ));
        unrecorded(report, options, tag(&tagged, OWNER_UID_TAG), live, e);
    }
}
