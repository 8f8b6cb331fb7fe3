//! kubenet route tables (seed 001): the cloud provider adds one route per node to the
//! cluster's route table, next to the custom routes, and Azure caps a route table at 400
//! routes; a table may serve only one cluster (pod CIDRs of different clusters may overlap);
//! and `0.0.0.0/0` must stay, pointing at an egress hop.

use ipnet::Ipv4Net;
use serde::Serialize;

use super::finding::{CheckId, Finding};
use super::ranges::{reserved_containing, reserved_list};

/// Next hop types that can carry a default route out of the VNet.
pub const EGRESS_NEXT_HOPS: [&str; 3] = ["Internet", "VirtualAppliance", "VirtualNetworkGateway"];

/// Routes one kubenet cluster needs in its route table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubenetRouteBudget {
    pub route_table: String,
    pub cluster: String,
    pub nodes: u64,
    pub surge: u64,
    pub custom_routes: u64,
    pub limit: u32,
}

impl KubenetRouteBudget {
    pub fn used(&self) -> u64 {
        self.nodes + self.surge + self.custom_routes
    }

    /// Nodes the cluster can have while surge nodes and custom routes still fit.
    pub fn max_nodes(&self) -> u64 {
        u64::from(self.limit).saturating_sub(self.surge + self.custom_routes)
    }
}

/// Nodes (surge nodes included, they get routes too) + custom routes must fit the limit.
/// `field` and `value` name what the user should change (a node count or a route list).
pub fn check_route_limit(field: &str, value: &str, budget: &KubenetRouteBudget) -> Vec<Finding> {
    if budget.used() <= u64::from(budget.limit) {
        return Vec::new();
    }
    vec![
        Finding::error(CheckId::RoutesLimit, field, value)
            .problem(format!(
                "route table {} needs {} routes ({} nodes + {} surge + {} custom) for cluster {}, over the limit of {}",
                budget.route_table,
                budget.used(),
                budget.nodes,
                budget.surge,
                budget.custom_routes,
                budget.cluster,
                budget.limit
            ))
            .expected(format!(
                "at most {} nodes, fewer custom routes, or Azure CNI",
                budget.max_nodes()
            )),
    ]
}

/// One place a route table is attached for a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTableUse {
    pub cluster: String,
    /// The field that attaches the table, e.g. `vnets[0].subnets[1].routeTable`.
    pub field: String,
}

/// A route table serving more than one cluster: reported on every use after the first.
pub fn check_shared_route_table(table: &str, uses: &[RouteTableUse]) -> Vec<Finding> {
    let Some(first) = uses.first() else {
        return Vec::new();
    };
    uses.iter()
        .skip(1)
        .filter(|u| u.cluster != first.cluster)
        .map(|u| {
            Finding::error(CheckId::RoutesSharedTable, &u.field, table)
                .problem(format!(
                    "route table {table} serves cluster {} and also cluster {} ({}); their pod routes can collide",
                    u.cluster, first.cluster, first.field
                ))
                .expected(format!("a route table of cluster {} alone", u.cluster))
        })
        .collect()
}

/// A route as the default-route check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    /// Field of the route, e.g. `routeTables[0].routes[2]`.
    pub field: String,
    pub prefix: Ipv4Net,
    pub next_hop_type: String,
    pub has_next_hop_ip: bool,
}

pub fn check_default_route(table: &str, routes_field: &str, routes: &[RouteView]) -> Vec<Finding> {
    let hops = EGRESS_NEXT_HOPS.join(", ");
    let Some(default) = routes.iter().find(|r| r.prefix.prefix_len() == 0) else {
        return vec![
            Finding::error(
                CheckId::RoutesDefaultRoute,
                routes_field,
                "no 0.0.0.0/0 route",
            )
            .problem(format!(
                "route table {table} has no 0.0.0.0/0 route; kubenet nodes lose egress"
            ))
            .expected(format!("a 0.0.0.0/0 route with nextHopType one of {hops}")),
        ];
    };
    let hop = default.next_hop_type.as_str();
    let field = format!("{}.nextHopType", default.field);
    if !EGRESS_NEXT_HOPS.iter().any(|h| h.eq_ignore_ascii_case(hop)) {
        return vec![
            Finding::error(CheckId::RoutesDefaultRoute, field, hop)
                .problem(format!(
                    "the 0.0.0.0/0 route of {table} does not lead to an egress gateway"
                ))
                .expected(format!("one of {hops}")),
        ];
    }
    if hop.eq_ignore_ascii_case("VirtualAppliance") && !default.has_next_hop_ip {
        return vec![
            Finding::error(
                CheckId::RoutesDefaultRoute,
                format!("{}.nextHopIpAddress", default.field),
                "",
            )
            .problem("a VirtualAppliance next hop needs the appliance's IP address")
            .expected("the private IP of the NVA or egress gateway"),
        ];
    }
    Vec::new()
}

/// A custom route aimed inside an AKS-reserved range redirects traffic AKS keeps on the node
/// (e.g. 169.254.0.0/16, which carries instance metadata). Broad routes such as 0.0.0.0/0
/// merely contain those ranges and are fine: more specific system routes still win.
pub fn check_route_reserved(field: &str, value: &str, prefix: Ipv4Net) -> Vec<Finding> {
    let Some((reserved, why)) = reserved_containing(prefix) else {
        return Vec::new();
    };
    vec![
        Finding::warning(CheckId::RoutesReservedPrefix, field, value)
            .problem(format!(
                "route destination {prefix} lies in {reserved} ({why}); traffic AKS keeps on the node would be redirected"
            ))
            .expected(format!("a destination outside {}", reserved_list())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(nodes: u64, custom: u64) -> KubenetRouteBudget {
        KubenetRouteBudget {
            route_table: "rt".into(),
            cluster: "c".into(),
            nodes,
            surge: 1,
            custom_routes: custom,
            limit: 400,
        }
    }

    #[test]
    fn route_limit_counts_nodes_surge_and_custom_routes() {
        assert!(check_route_limit("f", "397", &budget(397, 2)).is_empty());
        let over = check_route_limit("clusters[0].nodeCount", "398", &budget(398, 2));
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].value, "398");
        assert!(over[0].problem.contains("401 routes"), "{}", over[0]);
        assert!(
            over[0].expected.contains("at most 397 nodes"),
            "{}",
            over[0]
        );
    }

    #[test]
    fn route_limit_is_configurable() {
        let mut b = budget(500, 0);
        assert_eq!(check_route_limit("f", "v", &b).len(), 1);
        b.limit = 1000;
        assert!(check_route_limit("f", "v", &b).is_empty());
    }

    fn uses(clusters: &[&str]) -> Vec<RouteTableUse> {
        clusters
            .iter()
            .enumerate()
            .map(|(i, c)| RouteTableUse {
                cluster: (*c).into(),
                field: format!("vnets[0].subnets[{i}].routeTable"),
            })
            .collect()
    }

    #[test]
    fn a_route_table_serves_one_cluster() {
        assert!(check_shared_route_table("rt", &uses(&["a"])).is_empty());
        // One cluster with two subnets on the same table is the documented setup.
        assert!(check_shared_route_table("rt", &uses(&["a", "a"])).is_empty());
        let shared = check_shared_route_table("rt", &uses(&["a", "b"]));
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].field, "vnets[0].subnets[1].routeTable");
        assert_eq!(shared[0].value, "rt");
    }

    fn route(prefix: &str, hop: &str, ip: bool) -> RouteView {
        RouteView {
            field: "routeTables[0].routes[0]".into(),
            prefix: prefix.parse().expect("test prefix"),
            next_hop_type: hop.into(),
            has_next_hop_ip: ip,
        }
    }

    #[test]
    fn default_route_must_exist_and_egress() {
        assert!(
            check_default_route("rt", "r", &[route("0.0.0.0/0", "Internet", false)]).is_empty()
        );
        assert!(
            check_default_route("rt", "r", &[route("0.0.0.0/0", "VirtualAppliance", true)])
                .is_empty()
        );
        let missing = check_default_route(
            "rt",
            "routeTables[0].routes",
            &[route("10.0.0.0/8", "VirtualAppliance", true)],
        );
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].field, "routeTables[0].routes");
        let blackhole = check_default_route("rt", "r", &[route("0.0.0.0/0", "None", false)]);
        assert_eq!(blackhole[0].field, "routeTables[0].routes[0].nextHopType");
        assert_eq!(blackhole[0].value, "None");
        let no_ip =
            check_default_route("rt", "r", &[route("0.0.0.0/0", "VirtualAppliance", false)]);
        assert_eq!(no_ip[0].field, "routeTables[0].routes[0].nextHopIpAddress");
    }

    #[test]
    fn routes_to_reserved_ranges_warn() {
        let p: Ipv4Net = "169.254.169.254/32".parse().expect("test prefix");
        let f = check_route_reserved(
            "routeTables[0].routes[1].addressPrefix",
            "169.254.169.254/32",
            p,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, crate::Severity::Warning);
        for ok in ["10.0.0.0/8", "0.0.0.0/0", "172.16.0.0/12"] {
            let p: Ipv4Net = ok.parse().expect("test prefix");
            assert!(check_route_reserved("f", ok, p).is_empty(), "{ok}");
        }
    }
}
