//! Part 3: the AKS agent pool. poolnet writes its two live-editable network fields
//! (`allowedHostPorts`, `applicationSecurityGroups`) by read-modify-write with `If-Match`,
//! keeping every other field; creation-time fields that differ from the spec are reported
//! as `RequiresNodePoolRecreate`. Before its first change poolnet records the pool's
//! original values in status, so deletion can restore them even after a crash.

use std::time::Duration;

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{
    AgentPoolOriginal, AgentPoolStatus, AsgStatus, NodePoolNetworkStatus, PrefixStatus,
};
use poolnet_arm::{AgentPool, ArmError, Lro, ResourceId};
use poolnet_plan::agent_pool::plan_agent_pool;

use super::super::conditions::PartState;
use super::outcome::{Effects, Part};
use super::{Error, Pass, write_status};
use crate::arm_models::{agent_pool_body, observed_pool, pool_ours, pool_updating};

/// What was read of the pool: its status piece and node count.
#[derive(Debug, Clone)]
pub(super) struct PoolRead {
    pub status: AgentPoolStatus,
    pub node_count: Option<i32>,
}

/// `None` in the part when the pool could not be read (status keeps what it had).
pub(super) async fn reconcile(
    pass: &Pass<'_>,
    asgs: &[AsgStatus],
    prefix: Option<&PrefixStatus>,
) -> Result<Part<Option<PoolRead>>, Error> {
    let npn = pass.npn;
    let arm = pass.ctx.arm.as_ref();
    let mut fx = Effects::default();
    let id: ResourceId = match npn.spec.node_pool.agent_pool_id.parse() {
        Ok(id) => id,
        Err(e) => return Err(Error::Arm(e.into())),
    };
    let reads = &pass.ctx.reads;
    let current = match reads
        .read(
            &id,
            pass.own_freshness(),
            |p| !pool_updating(p),
            arm.get_agent_pool(&id),
        )
        .await
    {
        Ok(p) => p,
        Err(ArmError::NotFound { .. }) if npn.spec.node_pool.template.is_some() => {
            let template = npn.spec.node_pool.template.as_ref().expect("checked");
            return super::new_pool::create(pass, &id, template, asgs, prefix).await;
        }
        Err(e) => {
            if matches!(e, ArmError::NotFound { .. }) {
                // A pool poolnet created and someone deleted: nothing left to delete later.
                pass.ledger.update(|o| o.agent_pool = None);
            }
            let c = fx.arm_failure(
                cond::AGENT_POOL_READY,
                &format!("reading agent pool {id}"),
                &e,
            );
            return Ok(Part::new(None, c, fx));
        }
    };
    let seen = observed_pool(&current.resource);
    let existing: Vec<String> = asgs.iter().map(|a| a.id.clone()).collect();
    let plan = plan_agent_pool(npn, &seen, &existing);
    let created = created_by_us(pass, &current.resource);
    let original = pass
        .previous
        .agent_pool
        .as_ref()
        .and_then(|a| a.original.clone())
        .filter(|_| !created);
    let provisioning_state = current.resource.properties.provisioning_state.clone();
    let mut status = AgentPoolStatus {
        enable_node_public_ip: seen.enable_node_public_ip,
        node_public_ip_prefix_id: seen.node_public_ip_prefix_id.clone(),
        node_public_ip_tags: seen.node_public_ip_tags.clone(),
        allowed_host_ports: Some(seen.allowed_host_ports.clone()).filter(|s| !s.is_empty()),
        application_security_groups: seen.application_security_groups.clone(),
        requires_recreate: plan.requires_recreate.clone(),
        recreate_command: plan.recreate_command.clone(),
        provisioning_state: provisioning_state.clone(),
        created,
        original: original.clone(),
    };
    let node_count = current.resource.properties.count;

    let mut part = if !plan.requires_recreate.is_empty() {
        PartState::failed(
            cond::AGENT_POOL_READY,
            reason::REQUIRES_NODE_POOL_RECREATE,
            format!(
                "AKS sets these only when a node pool is created: {}; change the spec to match the pool, or recreate the node pool ({})",
                plan.requires_recreate.join("; "),
                recreate_hint(npn, plan.recreate_command.as_deref())
            ),
        )
    } else if created
        && provisioning_state
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("Failed"))
    {
        // AKS could not build it (quota, VM size not offered): someone must look.
        PartState::failed(
            cond::AGENT_POOL_READY,
            reason::ARM_REFUSED,
            format!(
                "agent pool {id}, created by poolnet from spec.nodePool.template, is in provisioningState Failed: see the pool's activity log; delete it (poolnet creates it again) or fix the template"
            ),
        )
    } else if created
        && provisioning_state
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded"))
    {
        fx.soon(Duration::from_secs(10));
        PartState::failed(
            cond::AGENT_POOL_READY,
            reason::PROGRESSING,
            format!(
                "agent pool {id} is {}",
                provisioning_state.as_deref().unwrap_or_default()
            ),
        )
    } else {
        PartState::ok(
            cond::AGENT_POOL_READY,
            reason::RECONCILED,
            "allowed host ports and ASGs match the spec",
        )
    };
    if plan.drift && !pass.writes {
        fx.pending.extend(poolnet_plan::preview::agent_pool_changes(
            &npn.spec.node_pool.agent_pool_id,
            &seen,
            &plan,
        ));
    }
    if plan.drift {
        if !plan.missing_asgs.is_empty() {
            // Writing the pool now would apply half the spec and cost a second (slow) pool
            // update once the rest exists: wait for every ASG first.
            fx.soon(Duration::from_secs(5));
            waiting(
                &mut part,
                PartState::failed(
                    cond::AGENT_POOL_READY,
                    reason::PROGRESSING,
                    format!(
                        "waiting for ASG(s) {} to exist before updating the pool",
                        plan.missing_asgs.join(", ")
                    ),
                ),
            );
        } else if pool_updating(&current.resource) {
            fx.soon(Duration::from_secs(10));
            waiting(&mut part, pool_is_updating());
        } else if !pass.writes {
            waiting(
                &mut part,
                PartState::failed(
                    cond::AGENT_POOL_READY,
                    reason::OBSERVE_ONLY,
                    format!(
                        "would set allowedHostPorts to {:?} and ASGs to {:?} (Observe)",
                        plan.want_ports, plan.want_asgs
                    ),
                ),
            );
        } else {
            // Remember what the pool had before poolnet's first change, durably, before
            // changing it: deletion restores it even if poolnet crashes right after the write.
            // A pool poolnet created is deleted instead.
            if original.is_none() && !created {
                status.original = Some(AgentPoolOriginal {
                    allowed_host_ports: seen.allowed_host_ports.clone(),
                    application_security_groups: seen.application_security_groups.clone(),
                });
                let recorded = NodePoolNetworkStatus {
                    agent_pool: Some(status.clone()),
                    ..pass.previous.clone()
                };
                write_status(pass.ctx, npn, &recorded).await?;
            }
            let body = agent_pool_body(&current.resource, &plan.want_ports, &plan.want_asgs);
            let put = arm.put_agent_pool(&id, &body, current.precondition()).await;
            match &put {
                Ok(Lro::Done(written)) if !pool_updating(&written.resource) => {
                    reads.keep(&id, written.clone())
                }
                // Running, refused (a 412: the kept answer was out of date), or failed:
                // read again next time.
                _ => reads.forget(&id),
            }
            match put {
                Ok(done) => {
                    fx.event(
                        EventType::Normal,
                        "AgentPoolUpdated",
                        format!(
                            "set allowedHostPorts {:?} and {} ASG(s) on agent pool {id}",
                            plan.want_ports,
                            plan.want_asgs.len()
                        ),
                    );
                    if let Lro::Pending(h) = done {
                        fx.soon(h.next_poll_in());
                        waiting(&mut part, pool_is_updating());
                    } else {
                        status.allowed_host_ports =
                            Some(plan.want_ports.clone()).filter(|s| !s.is_empty());
                        status.application_security_groups = plan.want_asgs.clone();
                    }
                }
                Err(e) => {
                    part = fx.arm_failure(
                        cond::AGENT_POOL_READY,
                        &format!("updating agent pool {id}"),
                        &e,
                    )
                }
            }
        }
    }
    Ok(Part::new(Some(PoolRead { status, node_count }), part, fx))
}

/// A problem of the pool's writable fields shows unless the pool already needs recreating.
fn waiting(part: &mut PartState, problem: PartState) {
    if part.ok {
        *part = problem;
    }
}

/// An operation on the pool is running (ours or another writer's): look again soon.
fn pool_is_updating() -> PartState {
    PartState::failed(
        cond::AGENT_POOL_READY,
        reason::PROGRESSING,
        "the agent pool is updating",
    )
}

/// Whether poolnet created `pool` for this object: recorded in `status.owned.agentPoolId`
/// (before the create request) and confirmed by the owner tags the request carried. A
/// record the tags do not confirm (the create failed and someone else made the pool) is
/// dropped; tags of this very object without a record (a record lost) are recorded again.
fn created_by_us(pass: &Pass<'_>, pool: &AgentPool) -> bool {
    let raw = &pass.npn.spec.node_pool.agent_pool_id;
    let recorded = pass
        .ledger
        .owned()
        .agent_pool
        .is_some_and(|r| r.eq_ignore_ascii_case(raw));
    let tagged = pool_ours(pool, pass.npn, &pass.cluster.key);
    // Confirmed before: the tags were seen on this pool by an earlier read. Someone may have
    // replaced the pool's tags since (`az aks nodepool update --tags` replaces them all); the
    // pool is still the one poolnet made.
    let confirmed = pass.previous.agent_pool.as_ref().is_some_and(|a| a.created);
    match (recorded, tagged) {
        (true, false) if confirmed => true,
        (true, false) => {
            pass.ledger.update(|o| o.agent_pool = None);
            false
        }
        (false, true) => {
            pass.ledger.update(|o| o.agent_pool = Some(raw.clone()));
            true
        }
        (recorded, _) => recorded,
    }
}

/// How to recreate the pool: with a template poolnet creates it again itself (owner-tagged)
/// once it is gone; without, the exact `az aks nodepool add`.
fn recreate_hint(npn: &poolnet_api::v1alpha1::NodePoolNetwork, command: Option<&str>) -> String {
    if npn.spec.node_pool.template.is_some() {
        "az aks nodepool delete; poolnet then creates it from spec.nodePool.template".into()
    } else {
        format!(
            "az aks nodepool delete, then: {}",
            command.unwrap_or("az aks nodepool add with these settings")
        )
    }
}
