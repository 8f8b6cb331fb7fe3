//! Deletion: undo exactly what poolnet did, in dependency order (rules and routes first,
//! then the pool's membership, or the whole pool when poolnet created it, then the ASG and
//! the prefix nothing refers to any more),
//! honouring `reconcilePolicy`. An object refused because an older one holds its agent pool
//! leaves the pool alone: its settings are the holder's (the other steps touch only what
//! carries this object's name or owner tag, and write only when some of it is there, so such
//! an object, which never acted, writes nothing). Each step that waits for Azure returns
//! [`Error::CleanupInProgress`], so the finalizer stays until every step is done.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use poolnet_api::one_per_pool;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{NodePoolNetwork, NodePoolNetworkStatus, Owned, ReconcilePolicy};
use poolnet_api::validation::managed_asg_enabled;
use poolnet_arm::{ArmError, Lro, NotFoundExt, ResourceId};
use poolnet_plan::agent_pool::differs_from_original;
use poolnet_plan::desired::{cluster_of, managed_asg_id, route_union};
use poolnet_plan::prefix::managed_prefix_id;
use poolnet_plan::routes::RouteProblem;
use tracing::info;

use super::super::Context;
use super::super::status::publish;
use super::{Error, pools_with, write_status};
use crate::arm_models::{agent_pool_body, observed_pool, ours, pool_ours, pool_updating};
use crate::writers::{Freshness, RouteBudget};

fn in_progress(what: String, retry_in: Duration) -> Error {
    Error::CleanupInProgress { what, retry_in }
}

fn arm_id(raw: &str) -> Result<ResourceId, Error> {
    raw.parse::<ResourceId>()
        .map_err(|e| Error::Arm(poolnet_arm::ArmError::from(e)))
}

pub(super) async fn cleanup(npn: Arc<NodePoolNetwork>, ctx: &Context) -> Result<Action, Error> {
    let name = npn.name_any();
    // Deletion reads Azure afresh, and a later object of the same name must too.
    for raw in std::iter::once(npn.spec.node_pool.agent_pool_id.clone())
        .chain(poolnet_plan::desired::pool_asgs(&npn))
    {
        if let Ok(id) = raw.parse::<ResourceId>() {
            ctx.reads.forget(&id);
        }
    }
    match npn.spec.reconcile_policy {
        ReconcilePolicy::Observe => return Ok(Action::await_change()),
        ReconcilePolicy::DetachOnDelete => {
            info!(%name, "DetachOnDelete: leaving Azure resources in place");
            let note = (
                EventType::Normal,
                "Detached",
                "reconcilePolicy DetachOnDelete: Azure resources left in place".to_string(),
            );
            publish(&ctx.recorder, npn.as_ref(), "Delete", [note]).await;
            return Ok(Action::await_change());
        }
        ReconcilePolicy::Manage => {}
    }
    let reported = npn
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .any(|c| {
            c.type_ == cond::READY
                && c.status == "False"
                && [reason::DELETING, reason::CLEANUP_FAILED].contains(&c.reason.as_str())
        });
    if !reported {
        report(&npn, ctx, reason::DELETING, DELETING_MESSAGE.to_string()).await?;
    }
    let cluster = cluster_of(&npn.spec.node_pool.agent_pool_id).unwrap_or_default();
    // An object from before the record: what its status reported is its record.
    let npn = if npn.status.as_ref().is_some_and(|s| s.owned.is_none()) {
        let mut seeded = (*npn).clone();
        if let Some(s) = seeded.status.as_mut() {
            s.owned = Some(super::ledger::seed(s));
        }
        Arc::new(seeded)
    } else {
        npn
    };
    let done = async {
        remove_rules(&npn, ctx, &cluster).await?;
        remove_routes(&npn, ctx, &cluster).await?;
        if !delete_created_pool(&npn, ctx, &cluster).await? {
            restore_agent_pool(&npn, ctx).await?;
        }
        delete_managed(&npn, ctx, &cluster).await
    }
    .await;
    match done {
        Ok(()) => {
            info!(%name, "cleaned up Azure resources");
            Ok(Action::await_change())
        }
        Err(Error::CleanupInProgress { what, retry_in }) => {
            report(
                &npn,
                ctx,
                reason::DELETING,
                format!("{DELETING_MESSAGE}; waiting for {what}"),
            )
            .await?;
            Err(Error::CleanupInProgress { what, retry_in })
        }
        Err(e) => {
            let message = format!("deletion cannot finish: {e}");
            if report(&npn, ctx, reason::CLEANUP_FAILED, message.clone()).await? {
                publish(
                    &ctx.recorder,
                    npn.as_ref(),
                    "Delete",
                    [(EventType::Warning, reason::CLEANUP_FAILED, message)],
                )
                .await;
            }
            Err(e)
        }
    }
}

const DELETING_MESSAGE: &str =
    "the object is being deleted: poolnet is removing what it wrote in Azure";

/// Put the deletion's state in `Ready` (False: a Terminating object is never Ready), keeping
/// the other conditions as they were. Returns whether the condition changed (a changed
/// failure is worth an Event; the same one again is not).
async fn report(
    npn: &NodePoolNetwork,
    ctx: &Context,
    reason: &'static str,
    message: String,
) -> Result<bool, Error> {
    let previous = npn.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = NodePoolNetworkStatus {
        conditions: deletion_conditions(
            &previous.conditions,
            npn.metadata.generation,
            reason,
            &message,
            &now,
        ),
        ..previous.clone()
    };
    if status == previous {
        return Ok(false);
    }
    write_status(ctx, npn, &status).await?;
    Ok(true)
}

/// `previous` with `Ready` set False for `reason` (its transition time kept when it was
/// already False).
fn deletion_conditions(
    previous: &[Condition],
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: &Time,
) -> Vec<Condition> {
    let since = previous
        .iter()
        .find(|c| c.type_ == cond::READY && c.status == "False")
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    let ready = Condition {
        type_: cond::READY.to_string(),
        status: "False".to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: since,
    };
    std::iter::once(ready)
        .chain(previous.iter().filter(|c| c.type_ != cond::READY).cloned())
        .collect()
}

/// A parent already gone in Azure holds nothing of ours: there is nothing left to remove.
fn gone<T>(result: Result<T, ArmError>) -> Result<Option<T>, ArmError> {
    result.optional()
}

/// Rewrite each NSG without this object's rules (it carries its deletion timestamp, so the
/// union leaves it out, while its record keeps its rules in scope).
async fn remove_rules(npn: &NodePoolNetwork, ctx: &Context, cluster: &str) -> Result<(), Error> {
    let owned = npn
        .status
        .as_ref()
        .and_then(|s| s.owned.clone())
        .unwrap_or_default();
    let spec = npn
        .spec
        .network_security_groups
        .iter()
        .map(|t| t.id.clone());
    // What the record names (a superset of what was written) and what the spec names.
    for raw in Owned::ids_with(&owned.security_rules, spec) {
        let id = arm_id(&raw)?;
        // The union as the caches show it once the writer holds the NSG, with this object
        // as given (deleting) even where the cache still shows it without the timestamp.
        let union = || {
            ctx.stores
                .nsg_union(cluster, &raw, &pools_with(npn, ctx), None)
        };
        let Some(sync) = gone(ctx.nsg_writer.sync(&id, union, Freshness::Reread).await)? else {
            info!(nsg = %raw, "the NSG is gone in Azure: none of this object's rules are left there");
            continue;
        };
        if let Some(wait) = sync.pending {
            return Err(in_progress(format!("NSG {raw}"), wait));
        }
    }
    Ok(())
}

/// Rewrite each route table without this object's routes.
async fn remove_routes(npn: &NodePoolNetwork, ctx: &Context, cluster: &str) -> Result<(), Error> {
    let owned = npn
        .status
        .as_ref()
        .and_then(|s| s.owned.clone())
        .unwrap_or_default();
    let spec = npn.spec.route_table.iter().map(|rt| rt.id.clone());
    for raw in Owned::ids_with(&owned.routes, spec) {
        let id = arm_id(&raw)?;
        // As in remove_rules: computed under the writer's lock, with this object as deleting.
        let union = || route_union(cluster, &raw, &pools_with(npn, ctx));
        // Removing routes never needs room, and conflicts of others are not ours to judge:
        // plan with a generous budget so only poolnet's own routes change.
        let budget = RouteBudget {
            node_routes: 0,
            limit: usize::MAX,
        };
        let Some(sync) = gone(
            ctx.route_writer
                .sync(&id, union, cluster, budget, Freshness::Reread)
                .await,
        )?
        else {
            info!(table = %raw, "the route table is gone in Azure: none of this object's routes are left there");
            continue;
        };
        if let Some(wait) = sync.pending {
            return Err(in_progress(format!("route table {raw}"), wait));
        }
        if let Some(p) = sync
            .plan
            .problems
            .iter()
            .find(|p| !matches!(p, RouteProblem::NoDefaultRoute))
        {
            return Err(Error::CleanupPending(format!("route table {raw}: {p}")));
        }
    }
    Ok(())
}

/// Put back the host ports and ASGs the pool had before poolnet's first change, unless an
/// older object holds the pool now.
async fn restore_agent_pool(npn: &NodePoolNetwork, ctx: &Context) -> Result<(), Error> {
    if let Some(holder) = one_per_pool::holder(npn, &pools_with(npn, ctx)) {
        info!(name = %npn.name_any(), holder = %holder.name_any(), "the agent pool is held by an older NodePoolNetwork: leaving it as it is");
        return Ok(());
    }
    let Some(original) = npn
        .status
        .as_ref()
        .and_then(|s| s.agent_pool.as_ref())
        .and_then(|a| a.original.clone())
    else {
        return Ok(());
    };
    let id = arm_id(&npn.spec.node_pool.agent_pool_id)?;
    let Some(current) = ctx.arm.get_agent_pool(&id).await.optional()? else {
        return Ok(());
    };
    if pool_updating(&current.resource) {
        return Err(in_progress(
            format!("agent pool {id} is updating"),
            Duration::from_secs(10),
        ));
    }
    if !differs_from_original(&observed_pool(&current.resource), &original) {
        return Ok(());
    }
    let body = agent_pool_body(
        &current.resource,
        &original.allowed_host_ports,
        &original.application_security_groups,
    );
    if let Lro::Pending(h) = ctx
        .arm
        .put_agent_pool(&id, &body, current.precondition())
        .await?
    {
        return Err(in_progress(
            format!("restoring agent pool {id}"),
            h.next_poll_in(),
        ));
    }
    info!(name = %npn.name_any(), pool = %id, "restored the agent pool's original host ports and ASGs");
    Ok(())
}

/// Delete the agent pool poolnet created from `spec.nodePool.template` (recorded in
/// `status.owned.agentPoolId` and carrying this object's owner tags), before the ASG and the
/// prefix it uses. Returns whether the record named a pool (then there is nothing to
/// restore: poolnet never changed a pool it found).
async fn delete_created_pool(
    npn: &NodePoolNetwork,
    ctx: &Context,
    cluster: &str,
) -> Result<bool, Error> {
    let recorded = npn
        .status
        .as_ref()
        .and_then(|s| s.owned.as_ref())
        .and_then(|o| o.agent_pool.clone());
    // No record, but a template: a create whose answer was lost may have made the pool after
    // the record was dropped. The pool of the spec is ours only if it carries this very
    // object's tags, UID included (pool_ours requires it).
    let Some(raw) = recorded.clone().or_else(|| {
        npn.spec
            .node_pool
            .template
            .is_some()
            .then(|| npn.spec.node_pool.agent_pool_id.clone())
    }) else {
        return Ok(false);
    };
    let id = arm_id(&raw)?;
    let Some(current) = ctx.arm.get_agent_pool(&id).await.optional()? else {
        return Ok(recorded.is_some());
    };
    // Confirmed by an earlier read (its tags may have been replaced since), or by its tags now.
    let confirmed = recorded.is_some()
        && npn
            .status
            .as_ref()
            .and_then(|s| s.agent_pool.as_ref())
            .is_some_and(|a| a.created);
    if !confirmed && !pool_ours(&current.resource, npn, cluster) {
        if recorded.is_some() {
            info!(name = %npn.name_any(), pool = %id, "the recorded agent pool does not carry this object's owner tags: leaving it");
            return Ok(true);
        }
        // A pool poolnet found: restore it, never delete it.
        return Ok(false);
    }
    let state = current
        .resource
        .properties
        .provisioning_state
        .clone()
        .unwrap_or_default();
    // Deleting already, or still creating or updating (AKS refuses a DELETE meanwhile).
    if pool_updating(&current.resource) {
        return Err(in_progress(
            format!("agent pool {id} ({state})"),
            Duration::from_secs(10),
        ));
    }
    match ctx.arm.delete_agent_pool(&id).await? {
        Lro::Pending(h) => Err(in_progress(
            format!("deleting agent pool {id}"),
            h.next_poll_in(),
        )),
        Lro::Done(()) => {
            info!(name = %npn.name_any(), pool = %id, "deleted the agent pool poolnet created");
            Ok(true)
        }
    }
}

/// Delete the managed ASG and prefix, if their tags say this object of this cluster made them.
async fn delete_managed(npn: &NodePoolNetwork, ctx: &Context, cluster: &str) -> Result<(), Error> {
    let owned = npn
        .status
        .as_ref()
        .and_then(|s| s.owned.clone())
        .unwrap_or_default();
    let asg = owned.application_security_group.clone().or_else(|| {
        managed_asg_enabled(&npn.spec)
            .then(|| managed_asg_id(npn))
            .flatten()
    });
    if let Some(raw) = asg {
        let id = arm_id(&raw)?;
        if let Some(a) = ctx.arm.get_asg(&id).await.optional()?
            && ours(&a.resource.resource, npn, cluster)
            && let Lro::Pending(h) = ctx.arm.delete_asg(&id).await?
        {
            return Err(in_progress(format!("deleting ASG {raw}"), h.next_poll_in()));
        }
    }
    if let Some(raw) = owned
        .public_ip_prefix
        .clone()
        .or_else(|| managed_prefix_id(npn))
    {
        let id = arm_id(&raw)?;
        if let Some(p) = ctx.arm.get_public_ip_prefix(&id).await.optional()?
            && ours(&p.resource.resource, npn, cluster)
            && let Lro::Pending(h) = ctx.arm.delete_public_ip_prefix(&id).await?
        {
            return Err(in_progress(
                format!("deleting public IP prefix {raw}"),
                h.next_poll_in(),
            ));
        }
    }
    Ok(())
}
