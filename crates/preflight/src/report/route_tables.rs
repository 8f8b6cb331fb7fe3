//! Checks on route tables: the kubenet route budget, sharing, the default route.

use std::collections::{BTreeMap, BTreeSet};

use crate::finding::{CheckId, Finding};
use crate::model::{NetworkPlan, NetworkPlugin};
use crate::routes::{self, KubenetRouteBudget, RouteTableUse, RouteView};

use super::{Collector, find_subnet};

/// kubenet route tables: limit, one cluster per table, default route; reserved destinations
/// in any described table.
pub(super) fn check_routes(plan: &NetworkPlan, c: &mut Collector) -> Vec<KubenetRouteBudget> {
    for (t, table) in plan.route_tables.iter().enumerate() {
        for (r, route) in table.routes.iter().enumerate() {
            if let Some(net) = route.address_prefix.net() {
                c.ran(
                    &[CheckId::RoutesReservedPrefix],
                    routes::check_route_reserved(
                        &format!("routeTables[{t}].routes[{r}].addressPrefix"),
                        route.address_prefix.raw(),
                        net,
                    ),
                );
            }
        }
    }

    let mut budgets = Vec::new();
    let mut uses: BTreeMap<&str, Vec<RouteTableUse>> = BTreeMap::new();
    let mut kubenet_tables: BTreeSet<&str> = BTreeSet::new();
    for (i, cluster) in plan.clusters.iter().enumerate() {
        let Some(at) = find_subnet(plan, &cluster.subnet) else {
            continue;
        };
        let kubenet = cluster.network_plugin == NetworkPlugin::Kubenet;
        let table_name = at.subnet.route_table.as_deref();
        if let Some(name) = table_name {
            let field = format!("{}.routeTable", at.field());
            uses.entry(name).or_default().push(RouteTableUse {
                cluster: cluster.name.clone(),
                field: field.clone(),
            });
            if kubenet {
                kubenet_tables.insert(name);
            }
            if !plan.route_tables.iter().any(|t| t.name == name) {
                let known: Vec<&str> = plan.route_tables.iter().map(|t| t.name.as_str()).collect();
                c.ran(
                    &[CheckId::PlanReference],
                    [Finding::error(CheckId::PlanReference, field, name)
                        .problem(format!(
                            "route table {name} is not described under routeTables"
                        ))
                        .expected(if known.is_empty() {
                            "a route table described under routeTables (with its custom routes)"
                                .to_owned()
                        } else {
                            format!("one of {}", known.join(", "))
                        })],
                );
            }
        }
        if !kubenet {
            continue;
        }
        let custom = table_name
            .and_then(|n| plan.route_tables.iter().find(|t| t.name == n))
            .map(|t| t.routes.len() as u64)
            .unwrap_or(0);
        let budget = KubenetRouteBudget {
            route_table: table_name
                .map(str::to_owned)
                .unwrap_or_else(|| "(created by AKS)".to_owned()),
            cluster: cluster.name.clone(),
            nodes: u64::from(cluster.node_count),
            surge: u64::from(cluster.surge(&plan.settings)),
            custom_routes: custom,
            limit: plan.settings.route_limit,
        };
        c.ran(
            &[CheckId::RoutesLimit],
            routes::check_route_limit(
                &format!("clusters[{i}].nodeCount"),
                &cluster.node_count.to_string(),
                &budget,
            ),
        );
        budgets.push(budget);
    }

    for name in &kubenet_tables {
        c.ran(
            &[CheckId::RoutesSharedTable],
            routes::check_shared_route_table(
                name,
                uses.get(name).map(Vec::as_slice).unwrap_or(&[]),
            ),
        );
        let Some((t, table)) = plan
            .route_tables
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == *name)
        else {
            continue;
        };
        let views: Vec<RouteView> = table
            .routes
            .iter()
            .enumerate()
            .filter_map(|(r, route)| {
                Some(RouteView {
                    field: format!("routeTables[{t}].routes[{r}]"),
                    prefix: route.address_prefix.net()?,
                    next_hop_type: route.next_hop_type.clone(),
                    has_next_hop_ip: route
                        .next_hop_ip_address
                        .as_ref()
                        .is_some_and(|a| a.ip().is_some()),
                })
            })
            .collect();
        c.ran(
            &[CheckId::RoutesDefaultRoute],
            routes::check_default_route(name, &format!("routeTables[{t}].routes"), &views),
        );
    }
    budgets
}
