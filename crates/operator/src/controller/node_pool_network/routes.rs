//! Part 5: custom routes merged into a bring-your-own (kubenet) route table, shared with the
//! cloud provider's node routes and other pools: the shared writer puts the union of this
//! cluster's routes into one read-modify-write, within the table's route limit.

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::RouteTableStatus;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::{ArmError, ResourceId};
use poolnet_plan::desired::{pool_routes, route_union};
use poolnet_plan::routes::{RoutePlan, RouteProblem, plan_routes};

use super::super::conditions::PartState;
use super::Pass;
use super::ledger::Entries;
use super::outcome::{Effects, Part, Piece};
use crate::writers::RouteBudget;
use crate::writers::convert::route_table_view;

fn route_reason(p: &RouteProblem) -> &'static str {
    match p {
        RouteProblem::OtherCluster { .. } => reason::ROUTE_TABLE_IN_USE,
        RouteProblem::LimitExceeded { .. } => reason::ROUTE_LIMIT_EXCEEDED,
        RouteProblem::NoDefaultRoute => reason::NO_DEFAULT_ROUTE,
        RouteProblem::NameConflict { .. } | RouteProblem::PrefixConflict { .. } => ROUTE_CONFLICT,
    }
}

pub(super) async fn reconcile(pass: &Pass<'_>) -> Part<Piece<Option<RouteTableStatus>>> {
    let ctx = pass.ctx;
    let mut fx = Effects::default();
    let Some(rt) = &pass.npn.spec.route_table else {
        // A table this object wrote to before its spec dropped it: take its routes out.
        return match leave_recorded(pass, None, &mut fx).await {
            Some(problem) => Part::new(Piece::Keep, problem, fx),
            None => Part::new(
                Piece::Set(None),
                PartState::ok(
                    cond::ROUTES_READY,
                    reason::NOT_CONFIGURED,
                    "no route table in spec",
                ),
                fx,
            ),
        };
    };
    let id: ResourceId = match rt.id.parse() {
        Ok(id) => id,
        Err(e) => {
            let c = fx.arm_failure(cond::ROUTES_READY, "route table ID", &e.into());
            return Part::new(Piece::Keep, c, fx);
        }
    };
    let cluster = &pass.cluster.key;
    let budget = RouteBudget {
        node_routes: if pass.cluster.kubenet {
            ctx.stores.nodes.state().len()
        } else {
            0
        },
        limit: rt.route_limit as usize,
    };
    let wanted: Vec<String> = pool_routes(pass.npn)
        .into_iter()
        .map(|r| r.route.name)
        .collect();
    let mut taken: Vec<String> = Vec::new();
    let result = if pass.writes {
        if let Some(problem) = leave_recorded(pass, Some(&rt.id), &mut fx).await {
            return Part::new(Piece::Keep, problem, fx);
        }
        let recorded = pass.ledger.names(Entries::Routes, &rt.id);
        let new: Vec<String> = wanted
            .iter()
            .filter(|w| !recorded.iter().any(|r| r.eq_ignore_ascii_case(w)))
            .cloned()
            .collect();
        if !new.is_empty() {
            // Before recording a new name, make sure the table holds no route of that name
            // that nobody records (a DetachOnDelete leftover, a hand-made one): recording it
            // would take it over. The sync writes what is recorded already.
            match sync(pass, &id, &rt.id, budget).await {
                Ok((plan, _, None)) => {
                    taken = new
                        .iter()
                        .filter(|n| plan.unrecorded.iter().any(|u| u.eq_ignore_ascii_case(n)))
                        .cloned()
                        .collect();
                }
                Ok((_, _, Some(wait))) => return updating(fx, &rt.id, wait),
                Err(e) => {
                    let c =
                        fx.arm_failure(cond::ROUTES_READY, &format!("route table {}", rt.id), &e);
                    return Part::new(Piece::Keep, c, fx);
                }
            }
            let free: Vec<String> = new.into_iter().filter(|n| !taken.contains(n)).collect();
            if let Err(e) = pass
                .ledger
                .intend(ctx, pass.npn, Entries::Routes, &rt.id, free)
                .await
            {
                fx.soon(std::time::Duration::from_secs(5));
                let c = PartState::failed(
                    cond::ROUTES_READY,
                    reason::PROGRESSING,
                    format!(
                        "recording the routes for route table {} in status before writing them: {e}",
                        rt.id
                    ),
                );
                return Part::new(Piece::Keep, c, fx);
            }
        }
        sync(pass, &id, &rt.id, budget).await
    } else {
        ctx.arm.get_route_table(&id).await.map(|t| {
            // What poolnet would write if this object managed the table.
            let would = pass.me_managing(None, Entries::Routes, &rt.id, wanted.clone());
            let union = route_union(cluster, &rt.id, &super::pools_with(&would, ctx));
            let view = route_table_view(&t.resource);
            let plan = plan_routes(
                &view,
                &union.wanted,
                &union.scope,
                cluster,
                budget.node_routes,
                budget.limit,
            );
            fx.pending.extend(pass.ledger.own_changes(
                Entries::Routes,
                &rt.id,
                &wanted,
                poolnet_plan::preview::route_changes(&rt.id, &view, &plan),
            ));
            (plan, false, None)
        })
    };
    let (plan, wrote) = match result {
        Err(e) => {
            if matches!(e, ArmError::NotFound { .. }) {
                pass.ledger.settle(Entries::Routes, &rt.id, Vec::new());
            }
            let c = fx.arm_failure(cond::ROUTES_READY, &format!("route table {}", rt.id), &e);
            return Part::new(Piece::Keep, c, fx);
        }
        Ok((_, _, Some(wait))) => return updating(fx, &rt.id, wait),
        Ok((plan, wrote, None)) => (plan, wrote),
    };
    if pass.writes && plan.problems.is_empty() {
        // Confirmed: the table holds exactly what the plan put there; keep what is still
        // wanted recorded (no flip-flop while a route waits for room).
        let present = plan
            .routes
            .iter()
            .filter(|r| wanted.iter().any(|w| w.eq_ignore_ascii_case(&r.name)))
            .map(|r| r.name.clone());
        let keep: Vec<String> = present
            .chain(wanted.iter().filter(|w| !taken.contains(w)).cloned())
            .collect();
        pass.ledger.settle(Entries::Routes, &rt.id, keep);
    }
    let mine: Vec<String> = wanted.clone();
    let status = RouteTableStatus {
        id: rt.id.clone(),
        owned_routes: mine.clone(),
        unrecorded_routes: plan.unrecorded.clone(),
        route_count: plan.total as i32,
        route_limit: rt.route_limit as i32,
    };
    let mut problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
    if !taken.is_empty() {
        problems.insert(
            0,
            format!(
                "route(s) {} already exist in route table {} and no NodePoolNetwork records them (left by a DetachOnDelete deletion or made by hand): poolnet does not take them over; delete them in Azure or rename spec.routeTable.routes",
                taken.join(", "),
                rt.id
            ),
        );
    }
    let condition = if !problems.is_empty() {
        let why = if taken.is_empty() {
            route_reason(&plan.problems[0])
        } else {
            ROUTE_CONFLICT
        };
        let msg = problems.join("; ");
        fx.event(EventType::Warning, why, msg.clone());
        PartState::failed(cond::ROUTES_READY, why, msg)
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

const ROUTE_CONFLICT: &str = reason::ROUTE_CONFLICT;

/// A write of the table is still running in Azure: look again then, keep the status.
fn updating(
    mut fx: Effects,
    table: &str,
    wait: std::time::Duration,
) -> Part<Piece<Option<RouteTableStatus>>> {
    fx.soon(wait);
    let c = PartState::failed(
        cond::ROUTES_READY,
        reason::PROGRESSING,
        format!("route table {table} is updating"),
    );
    Part::new(Piece::Keep, c, fx)
}

type SyncResult = Result<(RoutePlan, bool, Option<std::time::Duration>), ArmError>;

/// Write the union into table `id` (`raw` as spelled in the spec or the record), computed
/// under the table's lock with this object as it stands.
async fn sync(pass: &Pass<'_>, id: &ResourceId, raw: &str, budget: RouteBudget) -> SyncResult {
    let cluster = &pass.cluster.key;
    let union = || route_union(cluster, raw, &pass.pools_with_me());
    pass.ctx
        .route_writer
        .sync(id, union, cluster, budget, pass.freshness)
        .await
        .map(|s| (s.plan, s.wrote, s.pending))
}

/// Take this object's routes out of every recorded table other than `keep` (the spec's):
/// a table dropped from the spec, or replaced by another. Returns a condition when that
/// could not finish.
async fn leave_recorded(
    pass: &Pass<'_>,
    keep: Option<&str>,
    fx: &mut Effects,
) -> Option<PartState> {
    if !pass.writes {
        return None;
    }
    let mut problem = None;
    for raw in pass.ledger.ids(Entries::Routes) {
        if keep.is_some_and(|k| k.eq_ignore_ascii_case(&raw)) {
            continue;
        }
        let id: ResourceId = match raw.parse() {
            Ok(id) => id,
            Err(e) => {
                problem =
                    Some(fx.arm_failure(cond::ROUTES_READY, "recorded route table ID", &e.into()));
                continue;
            }
        };
        // Removing routes never needs room.
        let budget = RouteBudget {
            node_routes: 0,
            limit: usize::MAX,
        };
        match sync(pass, &id, &raw, budget).await {
            Ok((plan, wrote, None)) => {
                let recorded = pass.ledger.names(Entries::Routes, &raw);
                if wrote {
                    fx.event(
                        EventType::Normal,
                        "RoutesRemoved",
                        format!(
                            "removed {} route(s) from route table {raw}, which the spec no longer names",
                            plan.removed.len()
                        ),
                    );
                }
                let left: Vec<String> = plan
                    .routes
                    .iter()
                    .filter(|r| plan.scope.owns(&r.name))
                    .filter(|r| recorded.iter().any(|n| n.eq_ignore_ascii_case(&r.name)))
                    .map(|r| r.name.clone())
                    .collect();
                if plan
                    .problems
                    .iter()
                    .all(|p| matches!(p, RouteProblem::NoDefaultRoute))
                {
                    pass.ledger.settle(Entries::Routes, &raw, left);
                }
            }
            Ok((_, _, Some(wait))) => {
                fx.soon(wait);
                problem = Some(PartState::failed(
                    cond::ROUTES_READY,
                    reason::PROGRESSING,
                    format!(
                        "route table {raw} is updating (removing routes the spec no longer asks for)"
                    ),
                ));
            }
            Err(ArmError::NotFound { .. }) => pass.ledger.settle(Entries::Routes, &raw, Vec::new()),
            Err(e) => {
                problem = Some(fx.arm_failure(
                    cond::ROUTES_READY,
                    &format!(
                        "removing routes from route table {raw}, which the spec no longer names"
                    ),
                    &e,
                ));
            }
        }
    }
    problem
}
