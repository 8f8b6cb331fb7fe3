//! Preflight checks a `NodePoolNetwork` spec allows: custom routes + the pool's nodes against
//! the route table's limit, the default route, and AKS-reserved ranges in route destinations
//! and NSG sources. Field paths are those of the object (`spec.routeTable.routes[1].addressPrefix`).
//!
//! What the spec cannot tell (how many nodes will get routes, which routes already sit in the
//! table) comes in `NodePoolContext`; with the default context only the spec is judged.
//! [`crate::live::check`] builds that context from the live cluster's ARM facts and adds the
//! checks that need them; the validating webhook, the controller and `kubectl poolnet plan`
//! call it.

use ipnet::{IpNet, Ipv4Net};
use poolnet_api::cidr::parse_address_prefix;
use poolnet_api::route::NextHopKind;
use poolnet_api::v1alpha1::NodePoolNetworkSpec;

use super::finding::{CheckId, Finding, Severity};
use super::ranges::{reserved_containing, reserved_list};
use super::routes::{
    KubenetRouteBudget, RouteView, check_default_route, check_route_limit, check_route_reserved,
};

/// A route already in the table that the spec does not own (a node route of the cloud
/// provider, a hand-made default route, ...), as read from Azure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingRoute {
    pub name: String,
    pub address_prefix: String,
    pub next_hop_type: String,
    pub has_next_hop_ip: bool,
}

/// Facts about the cluster that a `NodePoolNetwork` does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePoolContext {
    /// The cluster uses kubenet, so every node of the cluster has a route in the table.
    pub kubenet: bool,
    /// Nodes the pool may reach (its autoscaler maximum, else its node count).
    pub expected_nodes: u32,
    /// Upgrade surge nodes of the pool; they get routes too.
    pub surge_nodes: u32,
    /// Nodes of the cluster's other pools, whose routes share the table under kubenet.
    pub other_nodes: u32,
    /// Routes in the table that are neither node routes nor in this spec (other custom
    /// routes); `None` when the table has not been read.
    pub existing_routes: Option<Vec<ExistingRoute>>,
    /// How the cluster's node count was reached, for the route-limit message (e.g.
    /// `aks: pool game autoscaler maxCount 10, maxSurge 33% = 4 nodes; other pools 3 nodes`).
    pub nodes_from: Option<String>,
}

/// Run every check the spec allows; an empty result means the spec passed.
pub fn check(spec: &NodePoolNetworkSpec, context: &NodePoolContext) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.extend(check_routes(spec, context));
    findings.extend(check_nsg_sources(spec));
    findings
}

fn ipv4(net: IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

fn check_routes(spec: &NodePoolNetworkSpec, context: &NodePoolContext) -> Vec<Finding> {
    let Some(table) = &spec.route_table else {
        return Vec::new();
    };
    let mut findings = Vec::new();

    let existing = context.existing_routes.as_deref().unwrap_or(&[]);
    let nodes = if context.kubenet {
        u64::from(context.expected_nodes) + u64::from(context.other_nodes)
    } else {
        0
    };
    let surge = if context.kubenet {
        u64::from(context.surge_nodes)
    } else {
        0
    };
    let budget = KubenetRouteBudget {
        route_table: table.id.clone(),
        cluster: context
            .nodes_from
            .clone()
            .unwrap_or_else(|| "this node pool's cluster".to_owned()),
        nodes,
        surge,
        custom_routes: (table.routes.len() + existing.len()) as u64,
        limit: table.route_limit,
    };
    findings.extend(check_route_limit(
        "spec.routeTable.routes",
        &format!("{} routes", table.routes.len()),
        &budget,
    ));

    let mut views = Vec::new();
    for (i, route) in table.routes.iter().enumerate() {
        let Some(net) = parse_address_prefix(&route.address_prefix)
            .ok()
            .and_then(|p| p.as_net())
            .and_then(ipv4)
        else {
            // Service tags have no range to check; unparseable prefixes are the API
            // validator's to report.
            continue;
        };
        // An error here, where a plan file only warns: this route goes into the live table of
        // a running cluster and would take traffic AKS keeps on the node at once.
        findings.extend(
            check_route_reserved(
                &format!("spec.routeTable.routes[{i}].addressPrefix"),
                &route.address_prefix,
                net,
            )
            .into_iter()
            .map(|f| Finding {
                severity: Severity::Error,
                ..f
            }),
        );
        views.push(RouteView {
            field: format!("spec.routeTable.routes[{i}]"),
            prefix: net,
            next_hop_type: NextHopKind::from(route.next_hop_type).as_str().to_owned(),
            has_next_hop_ip: route.next_hop_ip_address.is_some(),
        });
    }
    let spec_has_default = views.iter().any(|v| v.prefix.prefix_len() == 0);
    match &context.existing_routes {
        // Judge the table as it will be: existing routes plus the spec's.
        Some(existing) => {
            views.extend(existing.iter().filter_map(|r| {
                let net = parse_address_prefix(&r.address_prefix)
                    .ok()?
                    .as_net()
                    .and_then(ipv4)?;
                Some(RouteView {
                    field: format!("route {} in {}", r.name, table.id),
                    prefix: net,
                    next_hop_type: r.next_hop_type.clone(),
                    has_next_hop_ip: r.has_next_hop_ip,
                })
            }));
            findings.extend(check_default_route(
                &table.id,
                "spec.routeTable.routes",
                &views,
            ));
        }
        // Without the table, only a default route the spec brings can be judged.
        None if spec_has_default => {
            findings.extend(check_default_route(
                &table.id,
                "spec.routeTable.routes",
                &views,
            ));
        }
        None => {}
    }
    findings
}

fn check_nsg_sources(spec: &NodePoolNetworkSpec) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (n, nsg) in spec.network_security_groups.iter().enumerate() {
        for (s, source) in nsg.source_address_prefixes.iter().enumerate() {
            let Some(net) = parse_address_prefix(source)
                .ok()
                .and_then(|p| p.as_net())
                .and_then(ipv4)
            else {
                continue;
            };
            if let Some((reserved, why)) = reserved_containing(net) {
                findings.push(
                    Finding::warning(
                        CheckId::NsgReservedSource,
                        format!("spec.networkSecurityGroups[{n}].sourceAddressPrefixes[{s}]"),
                        source,
                    )
                    .problem(format!(
                        "source {net} lies in {reserved} ({why}); no client outside the cluster's hosts has such an address, so the rule is most likely a typo"
                    ))
                    .expected(format!("a source outside {}", reserved_list())),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const RT: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt";
    const NSG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg";

    fn spec(yaml: &str) -> NodePoolNetworkSpec {
        serde_yaml::from_str(yaml).expect("test spec")
    }

    fn with_routes(routes: &str, limit: u32) -> NodePoolNetworkSpec {
        spec(&format!(
            "
nodePool:
  agentPoolId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p
routeTable:
  id: {RT}
  routeLimit: {limit}
  routes: {routes}
"
        ))
    }

    const DEFAULT_VIA_NVA: &str = "[{name: default, addressPrefix: 0.0.0.0/0, nextHopType: VirtualAppliance, nextHopIpAddress: 10.0.2.4}, {name: hub, addressPrefix: 10.100.0.0/16, nextHopType: VirtualNetworkGateway}]";

    fn kubenet(nodes: u32) -> NodePoolContext {
        NodePoolContext {
            kubenet: true,
            expected_nodes: nodes,
            surge_nodes: 1,
            ..NodePoolContext::default()
        }
    }

    #[test]
    fn a_sound_spec_passes() {
        assert!(check(&with_routes(DEFAULT_VIA_NVA, 400), &kubenet(397)).is_empty());
        let no_table = spec(
            "nodePool: {agentPoolId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p}",
        );
        assert!(check(&no_table, &kubenet(10)).is_empty());
    }

    #[test]
    fn routes_and_nodes_must_fit_the_limit() {
        let f = check(&with_routes(DEFAULT_VIA_NVA, 400), &kubenet(398));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check, CheckId::RoutesLimit);
        assert_eq!(f[0].field, "spec.routeTable.routes");
        assert_eq!(f[0].value, "2 routes");
        // Other pools' nodes count under kubenet, not under Azure CNI.
        let mut ctx = kubenet(300);
        ctx.other_nodes = 100;
        assert_eq!(check(&with_routes(DEFAULT_VIA_NVA, 400), &ctx).len(), 1);
        ctx.kubenet = false;
        assert!(check(&with_routes(DEFAULT_VIA_NVA, 400), &ctx).is_empty());
        // The limit is the spec's.
        assert!(check(&with_routes(DEFAULT_VIA_NVA, 1000), &kubenet(398)).is_empty());
    }

    #[test]
    fn default_route_presence_uses_the_table_when_known() {
        let hub_only =
            "[{name: hub, addressPrefix: 10.100.0.0/16, nextHopType: VirtualNetworkGateway}]";
        // Unknown table: nothing to say about a default route the spec does not bring.
        assert!(check(&with_routes(hub_only, 400), &kubenet(3)).is_empty());
        let mut ctx = kubenet(3);
        ctx.existing_routes = Some(Vec::new());
        let f = check(&with_routes(hub_only, 400), &ctx);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check, CheckId::RoutesDefaultRoute);
        assert_eq!(f[0].field, "spec.routeTable.routes");
        ctx.existing_routes = Some(vec![ExistingRoute {
            name: "default".into(),
            address_prefix: "0.0.0.0/0".into(),
            next_hop_type: "Internet".into(),
            has_next_hop_ip: false,
        }]);
        assert!(check(&with_routes(hub_only, 400), &ctx).is_empty());
    }

    #[test]
    fn a_default_route_to_nowhere_fails() {
        let blackhole = "[{name: default, addressPrefix: 0.0.0.0/0, nextHopType: None}]";
        let f = check(&with_routes(blackhole, 400), &kubenet(3));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field, "spec.routeTable.routes[0].nextHopType");
        assert_eq!(f[0].value, "None");
    }

    #[test]
    fn reserved_route_destinations_are_errors() {
        let imds = "[{name: default, addressPrefix: 0.0.0.0/0, nextHopType: Internet}, {name: meta, addressPrefix: 169.254.169.254/32, nextHopType: VirtualAppliance, nextHopIpAddress: 10.0.2.4}]";
        let f = check(&with_routes(imds, 400), &kubenet(3));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check, CheckId::RoutesReservedPrefix);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].field, "spec.routeTable.routes[1].addressPrefix");
    }

    fn with_sources(sources: &str) -> NodePoolNetworkSpec {
        spec(&format!(
            "
nodePool:
  agentPoolId: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p
networkSecurityGroups:
  - id: {NSG}
    sourceAddressPrefixes: {sources}
"
        ))
    }

    #[test]
    fn reserved_nsg_sources_warn() {
        assert!(
            check(
                &with_sources("[Internet, 203.0.113.0/24, '*', 172.16.0.0/12]"),
                &NodePoolContext::default()
            )
            .is_empty()
        );
        let f = check(
            &with_sources("[Internet, 172.31.4.0/24]"),
            &NodePoolContext::default(),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].check, CheckId::NsgReservedSource);
        assert_eq!(
            f[0].field,
            "spec.networkSecurityGroups[0].sourceAddressPrefixes[1]"
        );
        assert_eq!(f[0].value, "172.31.4.0/24");
    }
}
