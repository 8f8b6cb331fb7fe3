//! The route-table writer.

use futures::future::BoxFuture;

use poolnet_arm::models::RouteTable;
use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, Precondition, ResourceId};
use poolnet_plan::desired::RouteUnion;
use poolnet_plan::routes::{RoutePlan, plan_routes};

use super::Freshness;
use super::convert::{apply_route_plan, route_table_view};
use super::rmw::{Refusals, Synced, Target, Writer};

/// Result of one route-table sync; `plan.problems` non-empty means nothing was written, and why.
pub type RouteSync = Synced<RoutePlan>;

/// What the table must hold room for besides poolnet's routes.
#[derive(Debug, Clone, Copy)]
pub struct RouteBudget {
    /// Node routes kubenet needs in this table (0 for other network plugins).
    pub node_routes: usize,
    /// Routes the table may hold.
    pub limit: usize,
}

struct RouteTarget<'a> {
    /// Called when planning, under the table's lock.
    union: &'a (dyn Fn() -> RouteUnion + Send + Sync),
    cluster: &'a str,
    budget: RouteBudget,
}

impl Target for RouteTarget<'_> {
    type Resource = RouteTable;
    type Plan = RoutePlan;
    const KIND: &'static str = "route table";

    fn get<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Etagged<RouteTable>, ArmError>> {
        arm.get_route_table(id)
    }

    fn put<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
        resource: &'a RouteTable,
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<Lro<Etagged<RouteTable>>, ArmError>> {
        arm.put_route_table(id, resource, precondition)
    }

    fn plan(&self, current: &RouteTable, _refused: &Refusals) -> RoutePlan {
        let union = (self.union)();
        plan_routes(
            &route_table_view(current),
            &union.wanted,
            &union.scope,
            self.cluster,
            self.budget.node_routes,
            self.budget.limit,
        )
    }

    fn needs_write(plan: &RoutePlan) -> bool {
        plan.needs_write()
    }

    fn apply(&self, current: &RouteTable, plan: &RoutePlan) -> RouteTable {
        apply_route_plan(current, plan, self.cluster)
    }

    fn counts(plan: &RoutePlan) -> (usize, usize, usize) {
        (plan.added.len(), plan.changed.len(), plan.removed.len())
    }
}

/// Writes route tables for one cluster's poolnet; see the module docs of `writers`.
pub type RouteWriter = Writer<RouteTable>;

impl RouteWriter {
    /// Make poolnet's routes in table `id` (those in the union's scope) exactly what the
    /// union wants (every pool's recorded routes, from the informer caches) for `cluster`.
    pub async fn sync(
        &self,
        id: &ResourceId,
        union: impl Fn() -> RouteUnion + Send + Sync,
        cluster: &str,
        budget: RouteBudget,
        freshness: Freshness,
    ) -> Result<RouteSync, ArmError> {
        let target = RouteTarget {
            union: &union,
            cluster,
            budget,
        };
        self.sync_target(id, &target, freshness).await
    }
}
