//! The NSG writer.

use std::sync::Arc;
use std::time::Duration;

use poolnet_arm::models::NetworkSecurityGroup;
use poolnet_arm::{ArmError, ArmNetwork, Lro, OperationHandle, ResourceId};
use poolnet_plan::nsg::{DesiredRule, NsgPlan, plan_nsg};
use tracing::{debug, info};

use super::convert::{apply_nsg_plan, existing_rules};
use super::{Freshness, LRO_WAIT, PRECONDITION_ATTEMPTS, PerResource};

#[derive(Debug, Default)]
struct Remembered {
    /// The NSG as last read or written by this writer.
    nsg: Option<NetworkSecurityGroup>,
    /// A write still running in ARM.
    pending: Option<OperationHandle>,
}

/// Result of one sync.
#[derive(Debug, Clone)]
pub struct NsgSync {
    /// The plan against the NSG's state (after the write when one was made).
    pub plan: NsgPlan,
    /// Whether this call wrote the NSG.
    pub wrote: bool,
    /// Set when a write is still running in ARM: ask again after this long.
    pub pending: Option<Duration>,
}

/// Writes NSGs for one cluster's poolnet; see the module docs of `writers`.
#[derive(Debug)]
pub struct NsgWriter {
    arm: Arc<dyn ArmNetwork>,
    state: PerResource<Remembered>,
}

impl NsgWriter {
    pub fn new(arm: Arc<dyn ArmNetwork>) -> Self {
        Self {
            arm,
            state: PerResource::new(),
        }
    }

    /// Make poolnet's rules in `id` (those named `owned_prefix…`) exactly `desired`.
    pub async fn sync(
        &self,
        id: &ResourceId,
        desired: &[DesiredRule],
        owned_prefix: &str,
        freshness: Freshness,
    ) -> Result<NsgSync, ArmError> {
        let slot = self.state.slot(&id.to_string());
        let mut mem = slot.lock().await;

        if let Some(handle) = mem.pending.clone() {
            match self.arm.poll(&handle).await {
                Ok(Lro::Pending(h)) => {
                    let wait = Duration::from_secs(h.retry_after_secs.max(1));
                    mem.pending = Some(h);
                    return Ok(NsgSync {
                        plan: NsgPlan::default(),
                        wrote: false,
                        pending: Some(wait),
                    });
                }
                Ok(Lro::Done(())) => {
                    mem.pending = None;
                    mem.nsg = None;
                }
                Err(e) => {
                    mem.pending = None;
                    mem.nsg = None;
                    return Err(e);
                }
            }
        }

        if freshness == Freshness::Cached
            && let Some(nsg) = &mem.nsg
        {
            let plan = plan_nsg(&existing_rules(nsg, owned_prefix), desired, owned_prefix);
            if !plan.needs_write() {
                return Ok(NsgSync {
                    plan,
                    wrote: false,
                    pending: None,
                });
            }
        }

        let mut last_err = None;
        for attempt in 1..=PRECONDITION_ATTEMPTS {
            let current = match self.arm.get_nsg(id).await {
                Ok(c) => c,
                Err(e) => {
                    mem.nsg = None;
                    return Err(e);
                }
            };
            let plan = plan_nsg(
                &existing_rules(&current.resource, owned_prefix),
                desired,
                owned_prefix,
            );
            if !plan.needs_write() {
                mem.nsg = Some(current.resource);
                return Ok(NsgSync {
                    plan,
                    wrote: false,
                    pending: None,
                });
            }
            let next = apply_nsg_plan(&current.resource, &plan, owned_prefix);
            debug!(nsg = %id, attempt, added = ?plan.added, changed = ?plan.changed, removed = ?plan.removed, "writing NSG");
            match self.arm.put_nsg(id, &next, current.precondition()).await {
                Ok(Lro::Done(written)) => {
                    info!(nsg = %id, added = plan.added.len(), changed = plan.changed.len(), removed = plan.removed.len(), "NSG written");
                    mem.nsg = Some(written.resource);
                    return Ok(NsgSync {
                        plan,
                        wrote: true,
                        pending: None,
                    });
                }
                Ok(Lro::Pending(handle)) => match self.arm.wait(handle.clone(), LRO_WAIT).await {
                    Ok(()) => {
                        mem.nsg = None;
                        return Ok(NsgSync {
                            plan,
                            wrote: true,
                            pending: None,
                        });
                    }
                    Err(ArmError::OperationTimeout { .. }) => {
                        let wait = Duration::from_secs(handle.retry_after_secs.max(1));
                        mem.pending = Some(handle);
                        mem.nsg = None;
                        return Ok(NsgSync {
                            plan,
                            wrote: true,
                            pending: Some(wait),
                        });
                    }
                    Err(e) => {
                        mem.nsg = None;
                        return Err(e);
                    }
                },
                Err(e @ ArmError::PreconditionFailed { .. }) => {
                    debug!(nsg = %id, attempt, "NSG changed between read and write; re-reading");
                    mem.nsg = None;
                    last_err = Some(e);
                }
                Err(e) => {
                    mem.nsg = None;
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ArmError::InvalidResponse {
            id: id.to_string(),
            message: "no attempt was made".into(),
        }))
    }

    /// Forget what is remembered about `id` (after an out-of-band change).
    pub async fn forget(&self, id: &ResourceId) {
        let slot = self.state.slot(&id.to_string());
        slot.lock().await.nsg = None;
    }
}
