//! Part 5: custom routes merged into a bring-your-own (kubenet) route table, shared with the
//! cloud provider's node routes and other pools: the shared writer puts the union of this
//! cluster's routes into one read-modify-write, within the table's route limit.

use kube::runtime::events::EventType;
use poolnet_api::ownership::route_name;
use poolnet_api::v1alpha1::RouteTableStatus;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::ResourceId;
use poolnet_plan::desired::desired_routes_for_table;
use poolnet_plan::routes::{RouteProblem, plan_routes};

use super::super::conditions::PartState;
use super::Pass;
use super::outcome::{Effects, Part, Piece};
use crate::writers::RouteBudget;
use crate::writers::convert::route_table_view;

fn route_reason(p: &RouteProblem) -> &'static str {
    match p {
        RouteProblem::OtherCluster { .. } => reason::ROUTE_TABLE_IN_USE,
        RouteProblem::LimitExceeded { .. } => reason::ROUTE_LIMIT_EXCEEDED,
        RouteProblem::NoDefaultRoute => reason::NO_DEFAULT_ROUTE,
        RouteProblem::NameConflict { .. } | RouteProblem::PrefixConflict { .. } => "RouteConflict",
    }
}

pub(super) async fn reconcile(pass: &Pass<'_>) -> Part<Piece<Option<RouteTableStatus>>> {
    let ctx = pass.ctx;
    let mut fx = Effects::default();
    let Some(rt) = &pass.npn.spec.route_table else {
        return Part::new(
            Piece::Set(None),
            PartState::ok(
                cond::ROUTES_READY,
                reason::NOT_CONFIGURED,
                "no route table in spec",
            ),
            fx,
        );
    };
    let id: ResourceId = match rt.id.parse() {
        Ok(id) => id,
        Err(e) => {
            let c = fx.arm_failure(cond::ROUTES_READY, "route table ID", &e.into());
            return Part::new(Piece::Keep, c, fx);
        }
    };
    let cluster = &pass.cluster.key;
    // Read from the caches when the writer holds the table (see nsgs.rs).
    let desired = || desired_routes_for_table(cluster, &rt.id, &pass.pools_with_me());
    let budget = RouteBudget {
        node_routes: if pass.cluster.kubenet {
            ctx.stores.nodes.state().len()
        } else {
            0
        },
        limit: rt.route_limit as usize,
    };
    let result = if pass.writes {
        ctx.route_writer
            .sync(&id, desired, cluster, budget, pass.freshness)
            .await
            .map(|s| (s.plan, s.wrote, s.pending))
    } else {
        ctx.arm.get_route_table(&id).await.map(|t| {
            let plan = plan_routes(
                &route_table_view(&t.resource),
                &desired(),
                cluster,
                budget.node_routes,
                budget.limit,
            );
            (plan, false, None)
        })
    };
    let (plan, wrote) = match result {
        Err(e) => {
            let c = fx.arm_failure(cond::ROUTES_READY, &format!("route table {}", rt.id), &e);
            return Part::new(Piece::Keep, c, fx);
        }
        Ok((_, _, Some(wait))) => {
            fx.soon(wait);
            let c = PartState::failed(
                cond::ROUTES_READY,
                reason::PROGRESSING,
                format!("route table {} is updating", rt.id),
            );
            return Part::new(Piece::Keep, c, fx);
        }
        Ok((plan, wrote, None)) => (plan, wrote),
    };
    let mine: Vec<String> = rt.routes.iter().map(|x| route_name(&x.name)).collect();
    let status = RouteTableStatus {
        id: rt.id.clone(),
        owned_routes: mine.clone(),
        route_count: plan.total as i32,
        route_limit: rt.route_limit as i32,
    };
    let condition = if let Some(first) = plan.problems.first() {
        let msg = plan
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        fx.event(EventType::Warning, route_reason(first), msg.clone());
        PartState::failed(cond::ROUTES_READY, route_reason(first), msg)
    } else if !pass.writes && plan.needs_write() {
        PartState::failed(
            cond::ROUTES_READY,
            reason::OBSERVE_ONLY,
            format!(
                "route table {} differs: poolnet would add {}, change {}, remove {} route(s) (Observe)",
                rt.id,
                plan.added.len(),
                plan.changed.len(),
                plan.removed.len()
            ),
        )
    } else {
        if wrote {
            fx.event(
                EventType::Normal,
                "RoutesUpdated",
                format!(
                    "wrote route table {}: {} added, {} changed, {} removed",
                    rt.id,
                    plan.added.len(),
                    plan.changed.len(),
                    plan.removed.len()
                ),
            );
        }
        PartState::ok(
            cond::ROUTES_READY,
            reason::RECONCILED,
            format!(
                "{} route(s) of {} in use, limit {}",
                mine.len(),
                plan.total,
                rt.route_limit
            ),
        )
    };
    Part::new(Piece::Set(Some(status)), condition, fx)
}
