//! Part 3, when the agent pool does not exist and the spec has a template: create it
//! (docs/node-pools.md). Everything the pool names must exist first (its ASGs, its prefix
//! with room for the pool's largest size plus surge). The intent is recorded in
//! `status.owned.agentPoolId` before the create request, which goes out with
//! `If-None-Match: *`, so poolnet never takes over a pool someone else made in the meantime;
//! the owner tags on the pool confirm the record on every later read.

use std::time::Duration;

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{AgentPoolStatus, AgentPoolTemplate, AsgStatus, PrefixStatus};
use poolnet_arm::{ArmError, Lro, Precondition, ResourceId};
use poolnet_plan::new_pool::{new_pool, prefix_room};

use super::super::conditions::PartState;
use super::agent_pool::PoolRead;
use super::outcome::{Effects, Part};
use super::{Error, Pass};
use crate::arm_models::new_agent_pool_body;

fn progressing(message: String) -> PartState {
    PartState::failed(cond::AGENT_POOL_READY, reason::PROGRESSING, message)
}

/// The status of a pool being created (AKS answers with the new pool as `Creating`).
fn creating_status(pool: &poolnet_plan::new_pool::NewPool) -> AgentPoolStatus {
    AgentPoolStatus {
        enable_node_public_ip: pool.enable_node_public_ip,
        node_public_ip_prefix_id: pool.node_public_ip_prefix_id.clone(),
        node_public_ip_tags: pool.node_public_ip_tags.clone(),
        allowed_host_ports: Some(pool.allowed_host_ports.clone()).filter(|s| !s.is_empty()),
        application_security_groups: pool.application_security_groups.clone(),
        provisioning_state: Some("Creating".into()),
        created: true,
        ..Default::default()
    }
}

pub(super) async fn create(
    pass: &Pass<'_>,
    id: &ResourceId,
    template: &AgentPoolTemplate,
    asgs: &[AsgStatus],
    prefix: Option<&PrefixStatus>,
) -> Result<Part<Option<PoolRead>>, Error> {
    let npn = pass.npn;
    let mut fx = Effects::default();
    let new = new_pool(npn, template);

    // Observe: what would be created, whatever exists yet (poolnet would create that too).
    if !pass.writes {
        fx.pending.push(poolnet_plan::preview::new_pool_change(
            &npn.spec.node_pool.agent_pool_id,
            &new,
        ));
        let part = PartState::failed(
            cond::AGENT_POOL_READY,
            reason::OBSERVE_ONLY,
            format!(
                "agent pool {id} does not exist; would create it from spec.nodePool.template (Observe)"
            ),
        );
        return Ok(Part::new(None, part, fx));
    }

    let missing: Vec<&String> = new
        .application_security_groups
        .iter()
        .filter(|w| !asgs.iter().any(|a| a.id.eq_ignore_ascii_case(w)))
        .collect();
    if !missing.is_empty() {
        fx.soon(Duration::from_secs(5));
        let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let part = progressing(format!(
            "waiting for ASG(s) {} to exist before creating agent pool {id}",
            list.join(", ")
        ));
        return Ok(Part::new(None, part, fx));
    }
    if new.node_public_ip_prefix_id.is_some() {
        let Some(cidr) = prefix.and_then(|p| p.cidr.as_deref()) else {
            fx.soon(Duration::from_secs(5));
            let part = progressing(format!(
                "waiting for the public IP prefix to be allocated before creating agent pool {id}"
            ));
            return Ok(Part::new(None, part, fx));
        };
        let in_use = prefix.and_then(|p| p.addresses_in_use).unwrap_or(0);
        if let Err(why) = prefix_room(template, cidr, in_use) {
            let part = PartState::failed(
                cond::AGENT_POOL_READY,
                reason::PREFIX_TOO_SMALL,
                format!("agent pool {id} is not created: {why}"),
            );
            return Ok(Part::new(None, part, fx));
        }
    }
    let raw = npn.spec.node_pool.agent_pool_id.clone();
    pass.ledger
        .record_created(pass.ctx, npn, |o| o.agent_pool = Some(raw.clone()))
        .await?;
    let body = new_agent_pool_body(&new, npn, &pass.cluster.key);
    let part = match pass
        .ctx
        .arm
        .put_agent_pool(id, &body, Precondition::IfNoneMatch)
        .await
    {
        Ok(done) => {
            fx.event(
                EventType::Normal,
                "AgentPoolCreated",
                format!(
                    "creating agent pool {id} from spec.nodePool.template ({} x {}, node public IPs {})",
                    new.shape.count.unwrap_or(0),
                    new.shape.vm_size.as_deref().unwrap_or("?"),
                    if new.enable_node_public_ip { "on" } else { "off" },
                ),
            );
            let wait = match &done {
                Lro::Pending(h) => h.next_poll_in(),
                Lro::Done(_) => Duration::from_secs(1),
            };
            fx.soon(wait);
            let status = creating_status(&new);
            let part = progressing(format!("creating agent pool {id}"));
            return Ok(Part::new(
                Some(PoolRead {
                    status,
                    node_count: new.shape.count,
                }),
                part,
                fx,
            ));
        }
        Err(ArmError::PreconditionFailed { .. }) => {
            // Someone created the pool since the read: it is not ours.
            pass.ledger
                .record_created(pass.ctx, npn, |o| o.agent_pool = None)
                .await?;
            fx.soon(Duration::from_secs(1));
            progressing(format!(
                "agent pool {id} was created by someone else meanwhile; reading it"
            ))
        }
        Err(e) => {
            // Refused outright: nothing exists to own. Not known (a timeout, a 5xx, an answer
            // that did not parse): the record stays, and the next read settles it by the
            // pool's owner tags.
            if !e.is_retryable() && !matches!(e, ArmError::InvalidResponse { .. }) {
                pass.ledger
                    .record_created(pass.ctx, npn, |o| o.agent_pool = None)
                    .await?;
            }
            fx.arm_failure(
                cond::AGENT_POOL_READY,
                &format!("creating agent pool {id}"),
                &e,
            )
        }
    };
    Ok(Part::new(None, part, fx))
}
