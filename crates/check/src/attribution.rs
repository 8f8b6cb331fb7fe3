//! Which entries of a shared resource are poolnet's, computed with the operator's own
//! functions (`poolnet_plan::desired::{nsg_union, route_union}`, whose scope is the names
//! recorded by objects that let poolnet write): see docs/checker.md, "Attribution".
//!
//! Two unions per resource and cluster:
//! - `recorded`: the union exactly as the operator computes it from the objects as they
//!   are (its scope is what poolnet may touch now);
//! - `full`: the same with each contributing object's record completed by what it wants in
//!   the resource, so an entry a live object wants but never recorded is still expected
//!   (and reported as [`crate::Kind::NotRecorded`]).

use std::collections::{BTreeMap, BTreeSet};

use poolnet_api::armid::{ResourceId as ArmId, ResourceKind};
use poolnet_api::one_per_pool;
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork, Owned, PolicyNamespaces};
use poolnet_api::validation::fits_pool;
use poolnet_plan::desired::{
    NsgUnion, RouteUnion, cluster_of, managed_asg_id, nsg_union, policy_rules, pool_asgs,
    pool_routes, pool_rules, route_union, writes_for,
};
use poolnet_plan::prefix::wanted_prefix_id;

use crate::model::Snapshot;

pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn push_unique(out: &mut Vec<String>, id: &str) {
    if !out.iter().any(|o| same_id(o, id)) {
        out.push(id.to_string());
    }
}

/// Whether `pool` admits policies from `policy`'s namespace, on the namespace's labels (as
/// the operator's `Stores::admits` judges it on its cache).
pub fn admits(
    policy: &HostPortPolicy,
    pool: &NodePoolNetwork,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    use kube::core::{Selector, SelectorExt};
    let Some(admission) = &pool.spec.host_port_policies else {
        return false;
    };
    match admission.from {
        PolicyNamespaces::None => false,
        PolicyNamespaces::All => true,
        PolicyNamespaces::Selector => {
            let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
            let labels = namespaces.get(ns).cloned().unwrap_or_default();
            admission
                .selector
                .clone()
                .and_then(|s| Selector::try_from(s).ok())
                .is_some_and(|s| s.matches(&labels))
        }
    }
}

/// What the operator passes as `admitted` to `nsg_union`.
pub fn admitted(snap: &Snapshot) -> impl Fn(&HostPortPolicy, &NodePoolNetwork) -> bool + '_ {
    |h, p| admits(h, p, &snap.namespaces) && fits_pool(h, p)
}

/// The pool a policy names.
pub fn pool_of<'a>(snap: &'a Snapshot, hpp: &HostPortPolicy) -> Option<&'a NodePoolNetwork> {
    snap.pools
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(hpp.spec.node_pool_network.as_str()))
}

/// Lower-cased cluster ID of a pool.
pub fn pool_cluster(npn: &NodePoolNetwork) -> Option<String> {
    cluster_of(&npn.spec.node_pool.agent_pool_id)
}

/// Lower-cased cluster of a policy: its pool's, else the one its record names.
pub fn policy_cluster(snap: &Snapshot, hpp: &HostPortPolicy) -> Option<String> {
    pool_of(snap, hpp).and_then(pool_cluster).or_else(|| {
        hpp.status
            .as_ref()
            .and_then(|s| s.owned.as_ref())
            .and_then(|o| o.cluster.as_deref())
            .map(str::to_ascii_lowercase)
    })
}

/// Every AKS cluster this installation's objects belong to (lower-cased IDs).
pub fn clusters(snap: &Snapshot) -> BTreeSet<String> {
    snap.pools
        .iter()
        .filter_map(pool_cluster)
        .chain(snap.policies.iter().filter_map(|h| policy_cluster(snap, h)))
        .collect()
}

fn owned_of_pool(npn: &NodePoolNetwork) -> Option<&Owned> {
    npn.status.as_ref().and_then(|s| s.owned.as_ref())
}

fn owned_of_policy(hpp: &HostPortPolicy) -> Option<&Owned> {
    hpp.status.as_ref().and_then(|s| s.owned.as_ref())
}

/// NSGs the objects of `cluster` name in their spec or record.
pub fn nsg_ids(snap: &Snapshot, cluster: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in snap
        .pools
        .iter()
        .filter(|p| pool_cluster(p).as_deref() == Some(cluster))
    {
        for t in &p.spec.network_security_groups {
            push_unique(&mut out, &t.id);
        }
        for id in owned_of_pool(p).map_or(Vec::new(), |o| {
            Owned::ids(&o.security_rules).map(String::from).collect()
        }) {
            push_unique(&mut out, &id);
        }
    }
    for h in snap
        .policies
        .iter()
        .filter(|h| policy_cluster(snap, h).as_deref() == Some(cluster))
    {
        for id in owned_of_policy(h).map_or(Vec::new(), |o| {
            Owned::ids(&o.security_rules).map(String::from).collect()
        }) {
            push_unique(&mut out, &id);
        }
    }
    out
}

/// Route tables the pools of `cluster` name in their spec or record.
pub fn route_table_ids(snap: &Snapshot, cluster: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in snap
        .pools
        .iter()
        .filter(|p| pool_cluster(p).as_deref() == Some(cluster))
    {
        if let Some(rt) = &p.spec.route_table {
            push_unique(&mut out, &rt.id);
        }
        for id in owned_of_pool(p).map_or(Vec::new(), |o| {
            Owned::ids(&o.routes).map(String::from).collect()
        }) {
            push_unique(&mut out, &id);
        }
    }
    out
}

/// Whether `npn` contributes to shared resources (what `desired::contributes` requires,
/// except that its ASGs exist: a pool still waiting for them is not Ready, which (d) reports).
pub fn contributes(npn: &NodePoolNetwork, cluster: &str, refused: &BTreeSet<&str>) -> bool {
    npn.metadata.deletion_timestamp.is_none()
        && writes_for(npn)
        && pool_cluster(npn).as_deref() == Some(cluster)
        && npn
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| !refused.contains(n))
}

/// The recorded and the completed union of one NSG for one cluster.
pub struct NsgAttribution {
    pub recorded: NsgUnion,
    pub full: NsgUnion,
}

pub fn nsg_attribution(snap: &Snapshot, cluster: &str, nsg_id: &str) -> NsgAttribution {
    let admitted = admitted(snap);
    let recorded = nsg_union(cluster, nsg_id, &snap.pools, &snap.policies, &admitted);
    let refused = one_per_pool::refused(&snap.pools);
    let pools: Vec<NodePoolNetwork> = snap
        .pools
        .iter()
        .map(|p| {
            let mut p = p.clone();
            if contributes(&p, cluster, &refused) {
                let mut owned = owned_of_pool(&p).cloned().unwrap_or_default();
                for t in p
                    .spec
                    .network_security_groups
                    .iter()
                    .filter(|t| same_id(&t.id, nsg_id))
                {
                    Owned::record(
                        &mut owned.security_rules,
                        nsg_id,
                        pool_rules(cluster, &p, t).into_iter().map(|r| r.name),
                    );
                }
                p.status.get_or_insert_with(Default::default).owned = Some(owned);
            }
            p
        })
        .collect();
    let policies: Vec<HostPortPolicy> = snap
        .policies
        .iter()
        .map(|h| {
            let mut h = h.clone();
            let pool = pool_of(snap, &h);
            if let Some(pool) = pool
                && h.metadata.deletion_timestamp.is_none()
                && contributes(pool, cluster, &refused)
                && admitted(&h, pool)
            {
                let mut owned = owned_of_policy(&h).cloned().unwrap_or_default();
                for t in pool
                    .spec
                    .network_security_groups
                    .iter()
                    .filter(|t| same_id(&t.id, nsg_id))
                {
                    Owned::record(
                        &mut owned.security_rules,
                        nsg_id,
                        policy_rules(cluster, pool, t, &h)
                            .into_iter()
                            .map(|r| r.name),
                    );
                }
                h.status.get_or_insert_with(Default::default).owned = Some(owned);
            }
            h
        })
        .collect();
    let full = nsg_union(cluster, nsg_id, &pools, &policies, &admitted);
    NsgAttribution { recorded, full }
}

/// The recorded and the completed union of one route table for one cluster.
pub struct RouteAttribution {
    pub recorded: RouteUnion,
    pub full: RouteUnion,
}

pub fn route_attribution(snap: &Snapshot, cluster: &str, table_id: &str) -> RouteAttribution {
    let recorded = route_union(cluster, table_id, &snap.pools);
    let refused = one_per_pool::refused(&snap.pools);
    let pools: Vec<NodePoolNetwork> = snap
        .pools
        .iter()
        .map(|p| {
            let mut p = p.clone();
            let names_table = p
                .spec
                .route_table
                .as_ref()
                .is_some_and(|rt| same_id(&rt.id, table_id));
            if names_table && contributes(&p, cluster, &refused) {
                let mut owned = owned_of_pool(&p).cloned().unwrap_or_default();
                Owned::record(
                    &mut owned.routes,
                    table_id,
                    pool_routes(&p).into_iter().map(|r| r.route.name),
                );
                p.status.get_or_insert_with(Default::default).owned = Some(owned);
            }
            p
        })
        .collect();
    let full = route_union(cluster, table_id, &pools);
    RouteAttribution { recorded, full }
}

/// The objects whose records poolnet maintains in a resource of `cluster`: pools that let
/// poolnet write, and policies of such pools (or of pools that are gone).
pub fn writing_records<'a>(
    snap: &'a Snapshot,
    cluster: &str,
    routes: bool,
) -> Vec<(String, &'a Owned)> {
    let mut out = Vec::new();
    for p in &snap.pools {
        if pool_cluster(p).as_deref() != Some(cluster) || !writes_for(p) {
            continue;
        }
        if let Some(o) = owned_of_pool(p) {
            out.push((
                format!(
                    "NodePoolNetwork {}",
                    p.metadata.name.as_deref().unwrap_or("")
                ),
                o,
            ));
        }
    }
    if !routes {
        for h in &snap.policies {
            if policy_cluster(snap, h).as_deref() != Some(cluster)
                || !pool_of(snap, h).is_none_or(writes_for)
            {
                continue;
            }
            if let Some(o) = owned_of_policy(h) {
                out.push((
                    format!(
                        "HostPortPolicy {}/{}",
                        h.metadata.namespace.as_deref().unwrap_or(""),
                        h.metadata.name.as_deref().unwrap_or("")
                    ),
                    o,
                ));
            }
        }
    }
    out
}

/// What the shell must read for a check: resources by ID, and the resource groups whose
/// ASGs and public IP prefixes it lists (to find ones poolnet created and nobody records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    /// IDs as the objects spell them (deduplicated case-insensitively).
    pub ids: Vec<String>,
    /// `/subscriptions/<s>/resourceGroups/<rg>` (lower-cased, deduplicated).
    pub groups: BTreeSet<String>,
    /// Managed clusters (lower-cased) whose agent pools are listed: a pool poolnet created
    /// from a template and left behind is found there.
    pub clusters: BTreeSet<String>,
}

fn group_of(id: &str) -> Option<String> {
    let parsed = ArmId::parse_grammar(id).ok()?;
    Some(
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            parsed.subscription, parsed.resource_group
        )
        .to_ascii_lowercase(),
    )
}

/// Every resource the objects name or record, the ASGs their pools join, and the groups
/// where poolnet creates ASGs and prefixes.
pub fn needed(snap: &Snapshot, extra: impl IntoIterator<Item = String>) -> Needed {
    let mut ids = Vec::new();
    let mut groups = BTreeSet::new();
    let mut pool_clusters: BTreeSet<String> = clusters(snap);
    for cluster in clusters(snap) {
        for id in nsg_ids(snap, &cluster)
            .into_iter()
            .chain(route_table_ids(snap, &cluster))
        {
            push_unique(&mut ids, &id);
        }
    }
    for p in &snap.pools {
        push_unique(&mut ids, &p.spec.node_pool.agent_pool_id);
        groups.extend(group_of(&p.spec.node_pool.agent_pool_id));
        for id in pool_asgs(p)
            .into_iter()
            .chain(managed_asg_id(p))
            .chain(wanted_prefix_id(p))
        {
            groups.extend(group_of(&id));
            push_unique(&mut ids, &id);
        }
        if let Some(o) = owned_of_pool(p) {
            for id in o
                .application_security_group
                .iter()
                .chain(o.public_ip_prefix.iter())
                .chain(o.agent_pool.iter())
            {
                groups.extend(group_of(id));
                push_unique(&mut ids, id);
            }
        }
    }
    for id in extra {
        // An agent pool's group is where poolnet creates its ASG: listed even once every
        // object is gone, so a stranded one is found.
        if kind_of(&id) == Some(ResourceKind::AgentPool) {
            groups.extend(group_of(&id));
            pool_clusters.extend(cluster_of(&id).map(|c| c.to_ascii_lowercase()));
        }
        push_unique(&mut ids, &id);
    }
    // Only ASG and prefix groups are listed: a spec may name an NSG in any group.
    let groups = groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect::<BTreeSet<_>>();
    Needed {
        ids,
        groups,
        clusters: pool_clusters,
    }
}

/// The kind of a resource ID, if it is one poolnet reads.
pub fn kind_of(id: &str) -> Option<ResourceKind> {
    [
        ResourceKind::NetworkSecurityGroup,
        ResourceKind::RouteTable,
        ResourceKind::AgentPool,
        ResourceKind::ApplicationSecurityGroup,
        ResourceKind::PublicIpPrefix,
    ]
    .into_iter()
    .find(|k| ArmId::parse_kind(id, *k).is_ok())
}
