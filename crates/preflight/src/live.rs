//! Preflight of a `NodePoolNetwork` against the live cluster (issue 16, item 3): the spec
//! judged with facts read from ARM (the managed cluster, its agent pools, the VNet of the
//! pool's subnet, the subscription's feature registrations). Pure: the webhook, the
//! controller and `kubectl poolnet plan` read the facts and call [`check`].
//!
//! | check | field | severity |
//! |---|---|---|
//! | `routes.kubenet-only`: a route table to merge into exists only on kubenet clusters | `spec.routeTable` | error |
//! | `pool.windows-cni`: Windows pools need Azure CNI (kubenet is Linux-only) | `spec.nodePool.agentPoolId` | error |
//! | `routes.cluster-range`: a route destination inside the pod or the service CIDR | `spec.routeTable.routes[i].addressPrefix` | error |
//! | `routes.cluster-range`: inside the VNet, to `None`, `Internet` or a gateway | the same | error |
//! | `routes.cluster-range`: inside the VNet, to a virtual appliance | the same | warning |
//! | `routes.limit`: nodes (autoscaler max count, else count) + surge + other pools' nodes + custom routes | `spec.routeTable.routes` | error |
//! | `routes.reserved-prefix`, `routes.default-route`, `nsg.reserved-source` | as [`node_pool_network`] | as there |
//! | `aks.version`: IP tags and allowed host ports need AKS >= 1.24 (seed 000) | `spec.nodePublicIP.ipTags`, `spec.allowedHostPorts` | error |
//! | `hostports.auto-assign`: AKS's own host-port assignment registered next to poolnet's | `spec.hostPortPolicies` | warning |
//!
//! Facts that are not known (`None`, empty) skip the checks that need them; a pool that does
//! not exist yet (`pool: None`) skips the pool's checks and counts no nodes of its own.
//!
//! [`node_pool_network`]: crate::node_pool_network

use std::fmt::Write as _;

use ipnet::{IpNet, Ipv4Net};
use poolnet_api::cidr::parse_address_prefix;
use poolnet_api::v1alpha1::{NextHopType, NodePoolNetworkSpec};

use crate::finding::{CheckId, Finding};
use crate::node_pool_network::{self, ExistingRoute, NodePoolContext};

/// The first AKS version with node public IP tags, allowed host ports and host-port
/// auto-assignment (seed 000: "需要 AKS 版本 1.24 或更高版本").
pub const MIN_AKS_VERSION: (u32, u32) = (1, 24);

/// AKS's `maxSurge` when a pool sets none (the default of current API versions).
pub const DEFAULT_MAX_SURGE: &str = "10%";

/// The AKS preview feature that makes AKS itself assign host ports to annotated pods.
pub const HOST_PORT_FEATURE: &str = "PodHostPortAutoAssignPreview";

/// What the managed cluster says about its network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The cluster's name, for messages.
    pub name: String,
    /// `kubenet`, `azure` or `none`; `None` when not known.
    pub network_plugin: Option<String>,
    pub pod_cidr: Option<String>,
    pub service_cidr: Option<String>,
    pub kubernetes_version: Option<String>,
}

impl ClusterFacts {
    pub fn kubenet(&self) -> Option<bool> {
        self.network_plugin
            .as_deref()
            .map(|p| p.eq_ignore_ascii_case("kubenet"))
    }
}

/// One agent pool as AKS reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolFacts {
    pub name: String,
    /// `Linux` or `Windows`.
    pub os_type: Option<String>,
    pub count: u32,
    pub enable_auto_scaling: bool,
    pub max_count: Option<u32>,
    /// `upgradeSettings.maxSurge`: a node count (`"3"`) or a percentage (`"33%"`).
    pub max_surge: Option<String>,
    pub orchestrator_version: Option<String>,
}

impl PoolFacts {
    /// The most nodes the pool can have: the autoscaler's maximum when it scales, else its
    /// count (never fewer than it has now).
    pub fn max_nodes(&self) -> u32 {
        match (self.enable_auto_scaling, self.max_count) {
            (true, Some(max)) => max.max(self.count),
            _ => self.count,
        }
    }

    /// Extra nodes an upgrade adds at once, for `nodes` nodes.
    pub fn surge_nodes(&self, nodes: u32) -> u32 {
        surge_nodes(self.max_surge.as_deref(), nodes)
    }

    fn is_windows(&self) -> bool {
        self.os_type
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("windows"))
    }
}

/// Surge nodes for a `maxSurge` of `value` over `nodes` nodes, as AKS computes them: a
/// percentage of the node count rounded up, or an absolute count. Unset: [`DEFAULT_MAX_SURGE`].
/// A value AKS would not accept counts as one node (AKS's own minimum).
pub fn surge_nodes(value: Option<&str>, nodes: u32) -> u32 {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_MAX_SURGE);
    if let Some(percent) = value.strip_suffix('%') {
        return match percent.trim().parse::<u64>() {
            Ok(p) => (u64::from(nodes) * p)
                .div_ceil(100)
                .min(u64::from(u32::MAX)) as u32,
            Err(_) => 1,
        };
    }
    value.parse::<u32>().unwrap_or(1)
}

/// Everything ARM told about the cluster a `NodePoolNetwork` targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveFacts {
    pub cluster: ClusterFacts,
    /// The pool the spec names; `None` when it does not exist (yet).
    pub pool: Option<PoolFacts>,
    /// The cluster's other pools (their nodes share a kubenet route table).
    pub other_pools: Vec<PoolFacts>,
    /// Address space of the VNet the pool's subnet is in; empty when not known.
    pub vnet_address_space: Vec<String>,
    /// Routes already in the table that are not node routes; `None` when not read.
    pub existing_routes: Option<Vec<ExistingRoute>>,
    /// Whether [`HOST_PORT_FEATURE`] is registered in the subscription; `None` when not read.
    pub host_port_feature_registered: Option<bool>,
}

/// Every check the facts allow; an empty result means the spec passed.
pub fn check(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(check_plugin(spec, facts));
    findings.extend(check_route_ranges(spec, facts));
    findings.extend(node_pool_network::check(spec, &route_context(spec, facts)));
    findings.extend(check_versions(spec, facts));
    findings.extend(check_host_port_feature(spec, facts));
    findings
}

/// Findings that must stop poolnet from writing the route table: errors about
/// `spec.routeTable`. A route into a reserved range, the pod or service CIDR, or a table on a
/// cluster without node routes would take traffic away from the cluster the moment it is
/// written. Not the route budget: it counts the pool at its autoscaler maximum plus surge,
/// what may come; the route writer refuses a table that does not fit now, counting the routes
/// really in it (`RoutesReady` `RouteLimitExceeded`).
pub fn blocks_routes(finding: &Finding) -> bool {
    finding.is_error()
        && finding.field.starts_with("spec.routeTable")
        && finding.check != CheckId::RoutesLimit
}

/// The route budget's view of the cluster: under kubenet every node of every pool has a
/// route; this pool counts at its autoscaler maximum plus its upgrade surge.
pub fn route_context(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> NodePoolContext {
    let kubenet = facts.cluster.kubenet() == Some(true);
    let (expected, surge) = facts
        .pool
        .as_ref()
        .map(|p| (p.max_nodes(), p.surge_nodes(p.max_nodes())))
        .unwrap_or((0, 0));
    let other: u32 = facts
        .other_pools
        .iter()
        .map(PoolFacts::max_nodes)
        .fold(0u32, u32::saturating_add);
    let mut from = format!("{} (", facts.cluster.name);
    match &facts.pool {
        Some(p) => {
            let nodes = if p.enable_auto_scaling && p.max_count.is_some() {
                format!("autoscaler maxCount {}", p.max_nodes())
            } else {
                format!("count {}", p.count)
            };
            let _ = write!(
                from,
                "pool {}: {nodes}, maxSurge {} = {surge} nodes",
                p.name,
                p.max_surge.as_deref().unwrap_or(DEFAULT_MAX_SURGE)
            );
        }
        None => from.push_str("pool not created yet"),
    }
    let _ = write!(
        from,
        "; {} other pools: {other} nodes at their maximum)",
        facts.other_pools.len()
    );
    NodePoolContext {
        kubenet,
        expected_nodes: expected,
        surge_nodes: surge,
        other_nodes: other,
        existing_routes: if spec.route_table.is_some() {
            facts.existing_routes.clone()
        } else {
            None
        },
        nodes_from: Some(from),
    }
}

fn check_plugin(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(plugin) = facts.cluster.network_plugin.as_deref() else {
        return findings;
    };
    let kubenet = plugin.eq_ignore_ascii_case("kubenet");
    if let Some(table) = &spec.route_table
        && !kubenet
    {
        findings.push(
            Finding::error(CheckId::RoutesNeedKubenet, "spec.routeTable", &table.id)
                .problem(format!(
                    "cluster {} uses network plugin {plugin}: it has no node route table to merge custom routes into (only kubenet clusters route pod traffic through a route table)",
                    facts.cluster.name
                ))
                .expected("no spec.routeTable on this cluster (manage the subnet's route table outside poolnet), or a kubenet cluster"),
        );
    }
    if kubenet && let Some(pool) = facts.pool.as_ref().filter(|p| p.is_windows()) {
        findings.push(
            Finding::error(
                CheckId::PoolWindowsNeedsCni,
                "spec.nodePool.agentPoolId",
                &pool.name,
            )
            .problem(format!(
                "pool {} runs Windows, but cluster {} uses kubenet, which supports Linux nodes only",
                pool.name, facts.cluster.name
            ))
            .expected("a Linux pool, or a cluster with Azure CNI (networkPlugin azure)"),
        );
    }
    findings
}

fn ipv4(raw: &str) -> Option<Ipv4Net> {
    match parse_address_prefix(raw).ok()?.as_net()? {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

/// A route destination inside the cluster's own ranges. Broader routes (`0.0.0.0/0`,
/// `10.0.0.0/8`) merely contain them and are fine: the more specific system and node routes
/// still win. A destination inside one of them overrides it.
fn check_route_ranges(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> Vec<Finding> {
    let Some(table) = &spec.route_table else {
        return Vec::new();
    };
    let cluster = &facts.cluster;
    let pod = cluster
        .pod_cidr
        .as_deref()
        .filter(|_| cluster.kubenet() == Some(true))
        .and_then(ipv4);
    let service = cluster.service_cidr.as_deref().and_then(ipv4);
    let vnet: Vec<Ipv4Net> = facts
        .vnet_address_space
        .iter()
        .filter_map(|a| ipv4(a))
        .collect();
    let mut findings = Vec::new();
    for (i, route) in table.routes.iter().enumerate() {
        let Some(dest) = ipv4(&route.address_prefix) else {
            continue;
        };
        let field = format!("spec.routeTable.routes[{i}].addressPrefix");
        if let Some(pod) = pod.filter(|p| p.contains(&dest)) {
            findings.push(
                Finding::error(CheckId::RoutesClusterRange, &field, &route.address_prefix)
                    .problem(format!(
                        "route destination {dest} lies in the pod CIDR {pod} of cluster {}: the cloud provider routes each node's pods there, and this route would take pod traffic wherever it has no node route",
                        cluster.name
                    ))
                    .expected(format!("a destination outside {pod}")),
            );
            continue;
        }
        if let Some(service) = service.filter(|s| s.contains(&dest)) {
            findings.push(
                Finding::error(CheckId::RoutesClusterRange, &field, &route.address_prefix)
                    .problem(format!(
                        "route destination {dest} lies in the service CIDR {service} of cluster {}: service addresses are virtual and must not be routed in the VNet",
                        cluster.name
                    ))
                    .expected(format!("a destination outside {service}")),
            );
            continue;
        }
        let Some(space) = vnet.iter().find(|v| v.contains(&dest)) else {
            continue;
        };
        let hop = route.next_hop_type;
        match hop {
            NextHopType::VnetLocal => {}
            NextHopType::VirtualAppliance => findings.push(
                Finding::warning(CheckId::RoutesClusterRange, &field, &route.address_prefix)
                    .problem(format!(
                        "route destination {dest} lies in the VNet's address space {space}: the nodes' traffic to it goes through the appliance, which must forward it back into the VNet"
                    ))
                    .expected("an appliance that forwards east-west traffic, or a destination outside the VNet"),
            ),
            _ => findings.push(
                Finding::error(CheckId::RoutesClusterRange, &field, &route.address_prefix)
                    .problem(format!(
                        "route destination {dest} lies in the VNet's address space {space}, and next hop {} takes the nodes' traffic to it out of the VNet or drops it",
                        poolnet_api::route::NextHopKind::from(hop).as_str()
                    ))
                    .expected(format!(
                        "a destination outside {space}, or next hop VnetLocal or VirtualAppliance"
                    )),
            ),
        }
    }
    findings
}

/// `major.minor` of an AKS version such as `1.29.4`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_versions(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> Vec<Finding> {
    // The pool's own version when it exists (pools may lag the control plane), else the
    // version a new pool gets: the cluster's.
    let (version, whose) = match facts
        .pool
        .as_ref()
        .and_then(|p| p.orchestrator_version.as_deref().map(|v| (v, &p.name)))
    {
        Some((v, pool)) => (v, format!("pool {pool}")),
        None => match facts.cluster.kubernetes_version.as_deref() {
            Some(v) => (v, format!("cluster {}", facts.cluster.name)),
            None => return Vec::new(),
        },
    };
    let Some(found) = major_minor(version) else {
        return Vec::new();
    };
    if found >= MIN_AKS_VERSION {
        return Vec::new();
    }
    let (major, minor) = MIN_AKS_VERSION;
    let mut wanted = Vec::new();
    if spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.ip_tags.as_ref())
        .is_some_and(|t| !t.is_empty())
    {
        wanted.push(("spec.nodePublicIP.ipTags", "node public IP tags"));
    }
    if !spec.allowed_host_ports.is_empty() {
        wanted.push(("spec.allowedHostPorts", "allowed host ports"));
    }
    wanted
        .into_iter()
        .map(|(field, what)| {
            Finding::error(CheckId::AksVersion, field, version)
                .problem(format!(
                    "{what} need AKS {major}.{minor} or later; {whose} runs {version}"
                ))
                .expected(format!(
                    "upgrade the {} to {major}.{minor} or later (az aks upgrade / az aks nodepool upgrade), or remove {field}",
                    if whose.starts_with("pool") { "pool" } else { "cluster" }
                ))
        })
        .collect()
}

/// poolnet assigns host ports itself (its pod webhook, HostPortPolicies) on the annotation
/// AKS's preview uses. With the preview registered, AKS assigns ports to the same pods from
/// its own view, which knows nothing of poolnet's reservations: two assigners, no cluster-wide
/// uniqueness. A warning: the registration is subscription-wide and not this object's to fix.
fn check_host_port_feature(spec: &NodePoolNetworkSpec, facts: &LiveFacts) -> Vec<Finding> {
    if spec.host_port_policies.is_none() || facts.host_port_feature_registered != Some(true) {
        return Vec::new();
    }
    vec![
        Finding::warning(CheckId::HostPortAutoAssign, "spec.hostPortPolicies", HOST_PORT_FEATURE)
            .problem(format!(
                "AKS's own host-port auto-assignment ({HOST_PORT_FEATURE}) is registered in this subscription; it acts on the same annotation kubernetes.azure.com/assign-hostports-for-containerports as poolnet and does not see poolnet's reservations"
            ))
            .expected(format!(
                "one assigner: unregister the preview (az feature unregister --namespace Microsoft.ContainerService --name {HOST_PORT_FEATURE}), or remove spec.hostPortPolicies and let AKS assign"
            )),
    ]
}

#[cfg(test)]
mod tests;
