//! The route-table writer.

use std::sync::Arc;
use std::time::Duration;

use poolnet_arm::models::RouteTable;
use poolnet_arm::{ArmError, ArmNetwork, Lro, OperationHandle, ResourceId};
use poolnet_plan::routes::{DesiredRoute, RoutePlan, plan_routes};
use tracing::{debug, info};

use super::convert::{apply_route_plan, route_table_view};
use super::{Freshness, LRO_WAIT, PRECONDITION_ATTEMPTS, PerResource};

#[derive(Debug, Default)]
struct Remembered {
    table: Option<RouteTable>,
    pending: Option<OperationHandle>,
}

/// Result of one sync.
#[derive(Debug, Clone)]
pub struct RouteSync {
    /// The plan; `plan.problems` non-empty means nothing was written and why.
    pub plan: RoutePlan,
    pub wrote: bool,
    pub pending: Option<Duration>,
}

/// What the table must hold room for besides poolnet's routes.
#[derive(Debug, Clone, Copy)]
pub struct RouteBudget {
    /// Node routes kubenet needs in this table (0 for other network plugins).
    pub node_routes: usize,
    /// Routes the table may hold.
    pub limit: usize,
}

/// Writes route tables for one cluster's poolnet.
#[derive(Debug)]
pub struct RouteWriter {
    arm: Arc<dyn ArmNetwork>,
    state: PerResource<Remembered>,
}

impl RouteWriter {
    pub fn new(arm: Arc<dyn ArmNetwork>) -> Self {
        Self {
            arm,
            state: PerResource::new(),
        }
    }

    /// Make poolnet's routes in table `id` exactly `desired` for `cluster`.
    pub async fn sync(
        &self,
        id: &ResourceId,
        desired: &[DesiredRoute],
        cluster: &str,
        budget: RouteBudget,
        freshness: Freshness,
    ) -> Result<RouteSync, ArmError> {
        let slot = self.state.slot(&id.to_string());
        let mut mem = slot.lock().await;

        if let Some(handle) = mem.pending.clone() {
            match self.arm.poll(&handle).await {
                Ok(Lro::Pending(h)) => {
                    let wait = Duration::from_secs(h.retry_after_secs.max(1));
                    mem.pending = Some(h);
                    return Ok(RouteSync {
                        plan: RoutePlan::default(),
                        wrote: false,
                        pending: Some(wait),
                    });
                }
                Ok(Lro::Done(())) => {
                    mem.pending = None;
                    mem.table = None;
                }
                Err(e) => {
                    mem.pending = None;
                    mem.table = None;
                    return Err(e);
                }
            }
        }

        let plan_for = |table: &RouteTable| {
            plan_routes(
                &route_table_view(table),
                desired,
                cluster,
                budget.node_routes,
                budget.limit,
            )
        };
        if freshness == Freshness::Cached
            && let Some(table) = &mem.table
        {
            let plan = plan_for(table);
            if !plan.needs_write() {
                return Ok(RouteSync {
                    plan,
                    wrote: false,
                    pending: None,
                });
            }
        }

        let mut last_err = None;
        for attempt in 1..=PRECONDITION_ATTEMPTS {
            let current = match self.arm.get_route_table(id).await {
                Ok(c) => c,
                Err(e) => {
                    mem.table = None;
                    return Err(e);
                }
            };
            let plan = plan_for(&current.resource);
            if !plan.needs_write() {
                mem.table = Some(current.resource);
                return Ok(RouteSync {
                    plan,
                    wrote: false,
                    pending: None,
                });
            }
            let owned: Vec<_> = plan
                .routes
                .iter()
                .filter(|r| {
                    r.name
                        .to_ascii_lowercase()
                        .starts_with(poolnet_api::route::OWNED_ROUTE_PREFIX)
                })
                .cloned()
                .collect();
            let next = apply_route_plan(&current.resource, &owned, cluster);
            debug!(table = %id, attempt, added = ?plan.added, changed = ?plan.changed, removed = ?plan.removed, "writing route table");
            match self
                .arm
                .put_route_table(id, &next, current.precondition())
                .await
            {
                Ok(Lro::Done(written)) => {
                    info!(table = %id, added = plan.added.len(), changed = plan.changed.len(), removed = plan.removed.len(), "route table written");
                    mem.table = Some(written.resource);
                    return Ok(RouteSync {
                        plan,
                        wrote: true,
                        pending: None,
                    });
                }
                Ok(Lro::Pending(handle)) => match self.arm.wait(handle.clone(), LRO_WAIT).await {
                    Ok(()) => {
                        mem.table = None;
                        return Ok(RouteSync {
                            plan,
                            wrote: true,
                            pending: None,
                        });
                    }
                    Err(ArmError::OperationTimeout { .. }) => {
                        let wait = Duration::from_secs(handle.retry_after_secs.max(1));
                        mem.pending = Some(handle);
                        mem.table = None;
                        return Ok(RouteSync {
                            plan,
                            wrote: true,
                            pending: Some(wait),
                        });
                    }
                    Err(e) => {
                        mem.table = None;
                        return Err(e);
                    }
                },
                Err(e @ ArmError::PreconditionFailed { .. }) => {
                    debug!(table = %id, attempt, "route table changed between read and write; re-reading");
                    mem.table = None;
                    last_err = Some(e);
                }
                Err(e) => {
                    mem.table = None;
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ArmError::InvalidResponse {
            id: id.to_string(),
            message: "no attempt was made".into(),
        }))
    }
}
