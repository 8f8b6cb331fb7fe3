//! Routes: merge the routes NodePoolNetworks ask for into a bring-your-own route table
//! (kubenet), never touching routes poolnet does not own, and refuse what Azure or kubenet
//! would break on: too many routes for the table, no default route, a table that belongs to
//! another cluster, a prefix another route already claims.

use std::collections::{BTreeMap, BTreeSet};

use poolnet_api::cidr::parse_address_prefix;
use poolnet_api::ownership::CLUSTER_TAG;
use poolnet_api::route::NextHopKind;

use crate::scope::Scope;

/// One route, as poolnet compares them (names case-insensitively, like ARM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub address_prefix: String,
    pub next_hop_type: NextHopKind,
    pub next_hop_ip: Option<String>,
}

impl Route {
    /// The prefix in canonical form, for comparing `10.0.0.0/8` with `10.0.0.0/08` and the like.
    fn prefix_key(&self) -> String {
        parse_address_prefix(&self.address_prefix)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| self.address_prefix.clone())
    }

    fn same_as(&self, other: &Route) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.prefix_key() == other.prefix_key()
            && self.next_hop_type == other.next_hop_type
            && self.next_hop_ip == other.next_hop_ip
    }
}

/// A route one NodePoolNetwork asks for, with its Azure name already prefixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoute {
    pub owner: String,
    pub route: Route,
}

/// Why a route table cannot take poolnet's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteProblem {
    /// The table is tagged for another cluster.
    OtherCluster { tagged: String },
    /// routes + node routes would exceed the limit.
    LimitExceeded {
        needed: usize,
        limit: usize,
        owned: usize,
        foreign: usize,
        nodes: usize,
    },
    /// No route for 0.0.0.0/0, neither ours nor foreign.
    NoDefaultRoute,
    /// Two owners want the same Azure route name.
    NameConflict { name: String, owners: Vec<String> },
    /// A foreign route already routes this prefix (Azure allows one route per prefix).
    PrefixConflict {
        prefix: String,
        route: String,
        owner: String,
    },
}

impl std::fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteProblem::OtherCluster { tagged } => write!(
                f,
                "the route table is tagged {CLUSTER_TAG}={tagged}: it belongs to another cluster, and a route table must not be shared between clusters"
            ),
            RouteProblem::LimitExceeded {
                needed,
                limit,
                owned,
                foreign,
                nodes,
            } => write!(
                f,
                "the table would need {needed} routes ({owned} from poolnet, {foreign} other routes, {nodes} node routes) but holds at most {limit}: remove routes, shrink the pool, or raise routeLimit if Azure raised the limit for you"
            ),
            RouteProblem::NoDefaultRoute => write!(
                f,
                "the route table has no route for 0.0.0.0/0: add one (e.g. to your firewall as VirtualAppliance) so nodes keep egress"
            ),
            RouteProblem::NameConflict { name, owners } => write!(
                f,
                "route name {name} is wanted by {}: give the routes different names",
                owners.join(" and ")
            ),
            RouteProblem::PrefixConflict {
                prefix,
                route,
                owner,
            } => write!(
                f,
                "{owner} wants a route for {prefix}, but route {route} (not poolnet's) already routes it; Azure allows one route per prefix"
            ),
        }
    }
}

/// Everything about the table needed to plan it.
#[derive(Debug, Clone, Default)]
pub struct RouteTableView {
    pub routes: Vec<Route>,
    /// Value of [`CLUSTER_TAG`], if set.
    pub cluster_tag: Option<String>,
}

/// What to do with one route table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutePlan {
    /// The full route list to write (foreign routes as read, then ours).
    pub routes: Vec<Route>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Whether the cluster tag must be set.
    pub tag: bool,
    /// Whether the cluster tag must be removed: poolnet keeps no route in the table any more.
    pub untag: bool,
    /// Routes named like poolnet's that no object records: left alone.
    pub unrecorded: Vec<String>,
    /// The routes this plan may change (what applying it replaces).
    pub scope: Scope,
    /// Problems. Room ([`RouteProblem::LimitExceeded`]) and egress
    /// ([`RouteProblem::NoDefaultRoute`]) refuse additions and changes but never removals
    /// (else deleting an object would strand its routes); any other problem refuses all.
    pub problems: Vec<RouteProblem>,
    /// Routes the table holds after the write (for status).
    pub total: usize,
}

impl RoutePlan {
    pub fn needs_write(&self) -> bool {
        self.tag
            || self.untag
            || !(self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty())
    }
}

/// Plan one route table for `cluster` (lower-cased ARM ID). `scope` is the routes poolnet may
/// change (recorded by a writing object, docs/ownership.md): every other route, even one
/// named `poolnet-…`, is foreign, kept as read, and never taken over; a desired route outside
/// `scope` is not written. `node_routes` is how many node routes kubenet needs in this table
/// (every node of the cluster, surge included), whether or not they exist yet; existing
/// routes named like node routes (`aks-…`) are not counted twice.
pub fn plan_routes(
    table: &RouteTableView,
    desired: &[DesiredRoute],
    scope: &Scope,
    cluster: &str,
    node_routes: usize,
    limit: usize,
) -> RoutePlan {
    let mut plan = RoutePlan {
        scope: scope.clone(),
        ..RoutePlan::default()
    };
    let cluster = cluster.to_ascii_lowercase();
    if let Some(tagged) = &table.cluster_tag
        && !tagged.eq_ignore_ascii_case(&cluster)
    {
        plan.problems.push(RouteProblem::OtherCluster {
            tagged: tagged.clone(),
        });
        return plan;
    }
    let desired: Vec<&DesiredRoute> = desired
        .iter()
        .filter(|d| scope.owns(&d.route.name))
        .collect();
    plan.unrecorded = table
        .routes
        .iter()
        .filter(|r| scope.unrecorded(&r.name))
        .map(|r| r.name.clone())
        .collect();
    plan.tag = table.cluster_tag.is_none() && !desired.is_empty();
    plan.untag = table.cluster_tag.is_some() && desired.is_empty() && plan.unrecorded.is_empty();

    let foreign: Vec<&Route> = table
        .routes
        .iter()
        .filter(|r| !scope.owns(&r.name))
        .collect();
    let owned: BTreeMap<String, &Route> = table
        .routes
        .iter()
        .filter(|r| scope.owns(&r.name))
        .map(|r| (r.name.to_ascii_lowercase(), r))
        .collect();

    // Name conflicts between owners.
    let mut by_name: BTreeMap<String, Vec<&DesiredRoute>> = BTreeMap::new();
    for d in desired.iter().copied() {
        by_name
            .entry(d.route.name.to_ascii_lowercase())
            .or_default()
            .push(d);
    }
    for (name, ds) in &by_name {
        let owners: BTreeSet<&str> = ds.iter().map(|d| d.owner.as_str()).collect();
        if owners.len() > 1 {
            plan.problems.push(RouteProblem::NameConflict {
                name: name.clone(),
                owners: owners.into_iter().map(String::from).collect(),
            });
        }
    }
    // Prefix conflicts with foreign routes.
    let foreign_prefixes: BTreeMap<String, &Route> =
        foreign.iter().map(|r| (r.prefix_key(), *r)).collect();
    for d in desired.iter().copied() {
        if let Some(f) = foreign_prefixes.get(&d.route.prefix_key()) {
            plan.problems.push(RouteProblem::PrefixConflict {
                prefix: d.route.address_prefix.clone(),
                route: f.name.clone(),
                owner: d.owner.clone(),
            });
        }
    }

    let node_like = foreign
        .iter()
        .filter(|r| r.name.to_ascii_lowercase().starts_with("aks-"))
        .count();
    let other_foreign = foreign.len() - node_like;
    let wanted = by_name.len();
    let nodes = node_routes.max(node_like);
    let needed = other_foreign + wanted + nodes;
    if needed > limit {
        plan.problems.push(RouteProblem::LimitExceeded {
            needed,
            limit,
            owned: wanted,
            foreign: other_foreign,
            nodes,
        });
    }
    let has_default = foreign
        .iter()
        .map(|r| r.prefix_key())
        .chain(desired.iter().map(|d| d.route.prefix_key()))
        .any(|p| p == "0.0.0.0/0");
    if !has_default {
        plan.problems.push(RouteProblem::NoDefaultRoute);
    }
    let unrecorded = plan.unrecorded.clone();
    let refused = |problems: Vec<RouteProblem>| RoutePlan {
        problems,
        scope: scope.clone(),
        unrecorded: unrecorded.clone(),
        ..RoutePlan::default()
    };
    if plan.problems.iter().any(|p| {
        !matches!(
            p,
            RouteProblem::LimitExceeded { .. } | RouteProblem::NoDefaultRoute
        )
    }) {
        return refused(plan.problems);
    }

    plan.routes = foreign.iter().map(|r| (*r).clone()).collect();
    for (name, ds) in &by_name {
        let d = &ds[0].route;
        match owned.get(name) {
            None => plan.added.push(d.name.clone()),
            Some(e) if !e.same_as(d) => plan.changed.push(d.name.clone()),
            Some(_) => {}
        }
        plan.routes.push(d.clone());
    }
    for (name, r) in &owned {
        if !by_name.contains_key(name) {
            plan.removed.push(r.name.clone());
        }
    }
    if !plan.problems.is_empty() && (!plan.added.is_empty() || !plan.changed.is_empty()) {
        return refused(plan.problems);
    }
    plan.total = plan.routes.len();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::ownership::{ROUTE_PREFIX, route_name};
    use proptest::prelude::*;

    const CLUSTER: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks";

    fn route(name: &str, prefix: &str, hop: NextHopKind, ip: Option<&str>) -> Route {
        Route {
            name: name.into(),
            address_prefix: prefix.into(),
            next_hop_type: hop,
            next_hop_ip: ip.map(String::from),
        }
    }

    fn want(owner: &str, name: &str, prefix: &str) -> DesiredRoute {
        DesiredRoute {
            owner: owner.into(),
            route: route(
                &route_name(name),
                prefix,
                NextHopKind::VirtualAppliance,
                Some("10.0.2.4"),
            ),
        }
    }

    fn node_routes(n: usize) -> Vec<Route> {
        (0..n)
            .map(|i| {
                route(
                    &format!("aks-nodepool1-1234-vmss{i:06}"),
                    &format!("10.244.{i}.0/24"),
                    NextHopKind::VirtualAppliance,
                    Some("10.240.0.4"),
                )
            })
            .collect()
    }

    #[test]
    fn an_unrecorded_route_is_kept_reported_and_not_written_over() {
        // "poolnet-default" was left by a DetachOnDelete deletion: no object records it. A new
        // object wanting that name has not recorded it (its reconcile sees the name taken in
        // `unrecorded` and refuses to record it), so its route is not written.
        let left = route(
            "poolnet-default",
            "0.0.0.0/0",
            NextHopKind::VirtualAppliance,
            Some("10.0.2.4"),
        );
        let table = RouteTableView {
            routes: vec![left],
            cluster_tag: Some(CLUSTER.into()),
        };
        let desired = [want("NodePoolNetwork new", "default", "10.8.0.0/16")];
        let scope = Scope::new(ROUTE_PREFIX, Vec::<String>::new());
        let plan = plan_routes(&table, &desired, &scope, CLUSTER, 0, 400);
        assert_eq!(plan.unrecorded, ["poolnet-default"]);
        assert!(!plan.needs_write(), "{plan:?}");
        assert!(
            !plan.untag,
            "a route of this cluster's poolnet is still there"
        );
        assert_eq!(plan.routes, table.routes, "kept as read");
    }

    #[test]
    fn merges_next_to_node_routes_and_converges() {
        let table = RouteTableView {
            routes: node_routes(3),
            cluster_tag: None,
        };
        let desired = [want("npn/kubenet", "default", "0.0.0.0/0")];
        let plan = plan_routes(
            &table,
            &desired,
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            3,
            400,
        );
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(plan.added, ["poolnet-default"]);
        assert!(plan.tag && plan.needs_write());
        assert_eq!(plan.total, 4);
        assert!(
            node_routes(3).iter().all(|r| plan.routes.contains(r)),
            "node routes are kept as read"
        );
        let after = RouteTableView {
            routes: plan.routes.clone(),
            cluster_tag: Some(CLUSTER.into()),
        };
        let again = plan_routes(
            &after,
            &desired,
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            3,
            400,
        );
        assert!(!again.needs_write(), "{again:?}");
    }

    #[test]
    fn refuses_other_cluster_limit_and_missing_default() {
        let table = RouteTableView {
            routes: vec![],
            cluster_tag: Some("/subscriptions/s/other".into()),
        };
        let plan = plan_routes(
            &table,
            &[want("a", "x", "0.0.0.0/0")],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            0,
            400,
        );
        assert!(matches!(
            plan.problems[0],
            RouteProblem::OtherCluster { .. }
        ));
        assert!(!plan.needs_write());

        let table = RouteTableView {
            routes: node_routes(2),
            cluster_tag: None,
        };
        let plan = plan_routes(
            &table,
            &[want("a", "x", "0.0.0.0/0")],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            399,
            400,
        );
        assert!(
            plan.problems.is_empty(),
            "399 node routes + 1 fits 400 exactly"
        );
        let plan = plan_routes(
            &table,
            &[want("a", "x", "0.0.0.0/0")],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            400,
            400,
        );
        assert_eq!(plan.problems.len(), 1);
        assert!(
            plan.problems[0].to_string().contains(
                "would need 401 routes (1 from poolnet, 0 other routes, 400 node routes)"
            ),
            "{}",
            plan.problems[0]
        );
        let plan = plan_routes(
            &table,
            &[want("a", "x", "10.1.0.0/16")],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            2,
            400,
        );
        assert_eq!(plan.problems, [RouteProblem::NoDefaultRoute]);
    }

    #[test]
    fn conflicts_are_reported_not_resolved() {
        let mut routes = node_routes(1);
        routes.push(route(
            "to-firewall",
            "0.0.0.0/0",
            NextHopKind::VirtualAppliance,
            Some("10.0.2.4"),
        ));
        let table = RouteTableView {
            routes,
            cluster_tag: None,
        };
        let plan = plan_routes(
            &table,
            &[want("npn/a", "default", "0.0.0.0/0")],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            1,
            400,
        );
        assert!(
            matches!(&plan.problems[0], RouteProblem::PrefixConflict { route, .. } if route == "to-firewall")
        );
        let plan = plan_routes(
            &table,
            &[
                want("npn/a", "x", "10.1.0.0/16"),
                want("npn/b", "x", "10.2.0.0/16"),
            ],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            1,
            400,
        );
        assert!(
            matches!(&plan.problems[0], RouteProblem::NameConflict { owners, .. } if owners.len() == 2)
        );
    }

    #[test]
    fn removes_only_owned_stale_routes() {
        let mut routes = node_routes(1);
        routes.push(route(
            "poolnet-old",
            "10.9.0.0/16",
            NextHopKind::VnetLocal,
            None,
        ));
        routes.push(route("handmade", "0.0.0.0/0", NextHopKind::Internet, None));
        let table = RouteTableView {
            routes,
            cluster_tag: Some(CLUSTER.into()),
        };
        let plan = plan_routes(
            &table,
            &[],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            1,
            400,
        );
        assert_eq!(plan.removed, ["poolnet-old"]);
        assert_eq!(plan.routes.len(), 2);
        assert!(plan.routes.iter().all(|r| r.name != "poolnet-old"));
        assert!(
            plan.untag,
            "no poolnet route left: the claim on the table goes too"
        );
    }

    #[test]
    fn removals_are_planned_even_without_room_or_default_route() {
        // The last object leaves: its default route goes, though nothing routes 0.0.0.0/0 then.
        let mut routes = node_routes(3);
        routes.push(route(
            "poolnet-default",
            "0.0.0.0/0",
            NextHopKind::VirtualAppliance,
            Some("10.0.2.4"),
        ));
        let table = RouteTableView {
            routes: routes.clone(),
            cluster_tag: Some(CLUSTER.into()),
        };
        let plan = plan_routes(
            &table,
            &[],
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            3,
            400,
        );
        assert_eq!(plan.problems, [RouteProblem::NoDefaultRoute]);
        assert_eq!(plan.removed, ["poolnet-default"]);
        assert!(plan.untag && plan.needs_write());
        assert_eq!(plan.routes, node_routes(3));

        // Over the limit (the pool grew): removing a route is allowed, adding one is not.
        routes.push(route(
            "poolnet-extra",
            "10.9.0.0/16",
            NextHopKind::VnetLocal,
            None,
        ));
        let table = RouteTableView {
            routes,
            cluster_tag: Some(CLUSTER.into()),
        };
        let keep_default = [want("a", "default", "0.0.0.0/0")];
        let plan = plan_routes(
            &table,
            &keep_default,
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            10,
            5,
        );
        assert!(matches!(
            plan.problems[0],
            RouteProblem::LimitExceeded { .. }
        ));
        assert_eq!(plan.removed, ["poolnet-extra"]);
        assert!(plan.needs_write());
        let more = [
            want("a", "default", "0.0.0.0/0"),
            want("a", "extra", "10.9.0.0/16"),
            want("a", "new", "10.8.0.0/16"),
        ];
        let plan = plan_routes(
            &table,
            &more,
            &Scope::prefix_only(ROUTE_PREFIX),
            CLUSTER,
            10,
            5,
        );
        assert!(!plan.problems.is_empty());
        assert!(
            !plan.needs_write(),
            "an addition over the limit is refused: {plan:?}"
        );
    }

    proptest! {
        #[test]
        fn foreign_routes_survive_and_plans_converge(
            foreign_n in 0usize..20,
            wanted in prop::collection::btree_set(1u8..200, 0..10),
            stale in prop::collection::btree_set(1u8..200, 0..5),
        ) {
            let mut routes = node_routes(foreign_n);
            routes.push(route("default", "0.0.0.0/0", NextHopKind::Internet, None));
            routes.extend(stale.iter().map(|i| route(&route_name(&format!("r{i}")), &format!("10.{i}.0.0/16"), NextHopKind::VnetLocal, None)));
            let table = RouteTableView { routes: routes.clone(), cluster_tag: None };
            let desired: Vec<DesiredRoute> = wanted.iter().map(|i| want("npn/x", &format!("r{i}"), &format!("10.{i}.0.0/16"))).collect();
            let plan = plan_routes(&table, &desired, &Scope::prefix_only(ROUTE_PREFIX), CLUSTER, foreign_n, 400);
            prop_assert!(plan.problems.is_empty());
            for r in routes.iter().filter(|r| !r.name.starts_with("poolnet-")) {
                prop_assert!(plan.routes.contains(r));
            }
            prop_assert_eq!(plan.total, foreign_n + 1 + wanted.len());
            let after = RouteTableView { routes: plan.routes.clone(), cluster_tag: (!desired.is_empty()).then(|| CLUSTER.into()) };
            prop_assert!(!plan_routes(&after, &desired, &Scope::prefix_only(ROUTE_PREFIX), CLUSTER, foreign_n, 400).needs_write());
        }
    }
}
