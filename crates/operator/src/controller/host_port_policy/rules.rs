//! The policy's allow rules, opened in each NSG of its pool through the shared writer (so the
//! NodePoolNetwork controller's writes and these coalesce into one write per NSG), under the
//! ownership protocol of docs/ownership.md: what the policy is about to write is recorded in
//! its status first, the union is written under the NSG's lock, and the record is settled.
//!
//! A policy's rules exist exactly while its pool admits it: a policy that is not accepted
//! (pool gone, namespace no longer admitted, ports or sources outside what the pool allows
//! now) wants nothing, so every NSG it recorded is written without its rules. Its finalizer
//! does the same on deletion ([`remove_all`]).

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{
    HostPortPolicy, HostPortPolicyStatus, NodePoolNetwork, Owned, RuleRef,
};
use poolnet_arm::{ArmError, ResourceId};
use poolnet_plan::desired::{cluster_of, destination_asgs, policy_rules, writes_for};
use poolnet_plan::nsg::{NsgPlan, Owner, plan_nsg};

use super::super::Context;
use super::super::conditions::PartState;
use super::super::status::apply_status;
use super::{Error, MANAGER};
use crate::writers::Freshness;
use crate::writers::convert::existing_rules;

/// The policy's record, as this reconcile changes it.
pub(super) struct Record {
    pub owned: Owned,
    /// The status last written (intent writes build on it).
    pub written: HostPortPolicyStatus,
}

impl Record {
    pub fn new(policy: &HostPortPolicy) -> Self {
        let written = policy.status.clone().unwrap_or_default();
        // A policy from before the record: the rules its status reported are its record.
        let owned = written.owned.clone().unwrap_or_else(|| {
            let mut o = Owned::default();
            for r in &written.security_rules {
                Owned::record(&mut o.security_rules, &r.nsg_id, [r.name.clone()]);
            }
            o
        });
        Self { owned, written }
    }

    /// Add `names` in `nsg` and write the status before anything is written there.
    async fn intend(
        &mut self,
        ctx: &Context,
        policy: &HostPortPolicy,
        cluster: &str,
        nsg: &str,
        names: Vec<String>,
    ) -> Result<(), Error> {
        let mut grown = self.owned.clone();
        let added = Owned::record(&mut grown.security_rules, nsg, names);
        let cluster_known = grown.cluster.as_deref() == Some(cluster);
        if !added && cluster_known {
            return Ok(());
        }
        grown.cluster = Some(cluster.to_string());
        let status = HostPortPolicyStatus {
            owned: Some(grown.clone()),
            ..self.written.clone()
        };
        let api = Api::<HostPortPolicy>::namespaced(
            ctx.client.clone(),
            &policy.namespace().unwrap_or_default(),
        );
        apply_status(&api, &policy.name_any(), MANAGER, &status).await?;
        self.owned = grown;
        self.written = status;
        Ok(())
    }
}

fn owner(policy: &HostPortPolicy) -> Owner {
    Owner::HostPortPolicy {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    }
}

/// This policy as the shared writer must count it: with its record as it stands.
fn me(policy: &HostPortPolicy, record: &Record) -> HostPortPolicy {
    let mut me = policy.clone();
    me.status.get_or_insert_with(Default::default).owned = Some(record.owned.clone());
    me
}

/// Write the union into NSG `raw` under its lock.
async fn sync(
    ctx: &Context,
    cluster: &str,
    raw: &str,
    policy: &HostPortPolicy,
    record: &Record,
) -> Result<(NsgPlan, Option<Duration>), ArmError> {
    let id: ResourceId = raw.parse().map_err(ArmError::from)?;
    let me = me(policy, record);
    let union = || {
        ctx.stores
            .nsg_union(cluster, raw, &ctx.stores.all_pools(), Some(&me))
    };
    let s = ctx.nsg_writer.sync(&id, union, Freshness::Cached).await?;
    Ok((s.plan, s.pending))
}

/// The cluster the policy's rules belong to: its pool's, or (pool gone) the one its record
/// names.
fn cluster_for(pool: Option<&NodePoolNetwork>, record: &Record) -> Option<String> {
    pool.and_then(|p| cluster_of(&p.spec.node_pool.agent_pool_id))
        .or_else(|| record.owned.cluster.clone())
}

/// Open the policy's ports in each NSG of its pool when `accepted`, take them out of every
/// NSG it recorded otherwise, and report its rules.
pub(super) async fn security_rules(
    policy: &HostPortPolicy,
    pool: Option<&NodePoolNetwork>,
    accepted: &PartState,
    ctx: &Context,
    record: &mut Record,
) -> (PartState, Vec<RuleRef>) {
    let me = owner(policy);
    let mut rules = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut pending = false;

    // Who decides: a pool that lets poolnet write (or none: its policies' rules go).
    if let Some(pool) = pool
        && !writes_for(pool)
    {
        return observe(policy, pool, accepted, ctx).await;
    }
    let wanted_here = accepted.ok && pool.is_some();
    let pool_nsgs: Vec<String> = pool
        .map(|p| {
            p.spec
                .network_security_groups
                .iter()
                .map(|t| t.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if wanted_here && let Some(pool) = pool {
        // Rules target the pool's ASGs; ARM refuses rules naming an ASG that does not exist.
        let have: Vec<String> = pool
            .status
            .as_ref()
            .map(|s| {
                s.application_security_groups
                    .iter()
                    .map(|a| a.id.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<String> = destination_asgs(pool)
            .into_iter()
            .filter(|d| !have.contains(&d.to_ascii_lowercase()))
            .collect();
        if !missing.is_empty() {
            return (
                PartState::failed(
                    cond::SECURITY_RULES_READY,
                    reason::PROGRESSING,
                    format!(
                        "waiting for NodePoolNetwork {} to create ASG(s) {}",
                        pool.name_any(),
                        missing.join(", ")
                    ),
                ),
                Vec::new(),
            );
        }
    }
    let Some(cluster) = cluster_for(pool, record) else {
        return (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::POOL_NOT_FOUND,
                "no NodePoolNetwork: nothing opened",
            ),
            Vec::new(),
        );
    };
    let spec = if wanted_here {
        pool_nsgs.clone()
    } else {
        Vec::new()
    };
    let targets = Owned::ids_with(&record.owned.security_rules, spec);
    for raw in targets {
        let wanted: Vec<String> = match pool {
            Some(pool) if wanted_here => pool
                .spec
                .network_security_groups
                .iter()
                .filter(|t| t.id.eq_ignore_ascii_case(&raw))
                .flat_map(|t| policy_rules(&cluster, pool, t, policy))
                .map(|r| r.name)
                .collect(),
            _ => Vec::new(),
        };
        if !wanted.is_empty()
            && let Err(e) = record
                .intend(ctx, policy, &cluster, &raw, wanted.clone())
                .await
        {
            problems.push(format!(
                "recording the rules for NSG {raw} in status before writing them: {e}"
            ));
            continue;
        }
        match sync(ctx, &cluster, &raw, policy, record).await {
            Ok((_, Some(_))) => {
                pending = true;
                problems.push(format!("NSG {raw} is updating"));
            }
            Ok((plan, None)) => {
                if let Ok(id) = raw.parse::<ResourceId>() {
                    for r in ctx.nsg_writer.refusals(&id) {
                        if wanted.iter().any(|w| w.eq_ignore_ascii_case(&r.name)) {
                            problems.push(format!(
                                "ARM refused rule {} in NSG {raw}: {}; the NSG's other rules were written without it",
                                r.name, r.message
                            ));
                        }
                    }
                }
                for u in plan.unplaced.iter().filter(|u| u.rule.owner == me) {
                    problems.push(format!("rule {} in NSG {raw}: {}", u.rule.name, u.reason));
                }
                let present: Vec<String> =
                    plan.rules_of(&me).map(|p| p.rule.name.clone()).collect();
                if wanted_here {
                    rules.extend(plan.rules_of(&me).map(|p| RuleRef {
                        nsg_id: raw.clone(),
                        name: p.rule.name.clone(),
                        priority: i32::from(p.priority),
                    }));
                }
                Owned::settle(
                    &mut record.owned.security_rules,
                    &raw,
                    present.into_iter().chain(wanted),
                );
            }
            Err(ArmError::NotFound { .. }) => {
                Owned::settle(&mut record.owned.security_rules, &raw, Vec::<String>::new());
                if wanted_here && pool_nsgs.iter().any(|t| t.eq_ignore_ascii_case(&raw)) {
                    problems.push(format!("NSG {raw} does not exist"));
                }
            }
            Err(e) => problems.push(format!("writing NSG {raw}: {e}")),
        }
    }
    let part = match (accepted.ok, problems.is_empty()) {
        (false, true) => PartState::failed(
            cond::SECURITY_RULES_READY,
            accepted.reason,
            "not opened: the policy is not accepted",
        ),
        (true, true) => PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::RECONCILED,
            format!("{} rule(s) in {} NSG(s)", rules.len(), pool_nsgs.len()),
        ),
        (_, false) => PartState::failed(
            cond::SECURITY_RULES_READY,
            if pending {
                reason::PROGRESSING
            } else {
                reason::ARM_ERROR
            },
            problems.join("; "),
        ),
    };
    (part, rules)
}

/// The pool is Observe: poolnet writes nothing for it or its policies, and reports.
async fn observe(
    policy: &HostPortPolicy,
    pool: &NodePoolNetwork,
    accepted: &PartState,
    ctx: &Context,
) -> (PartState, Vec<RuleRef>) {
    if !accepted.ok {
        return (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                accepted.reason,
                "not opened: the policy is not accepted",
            ),
            Vec::new(),
        );
    }
    let Some(cluster) = cluster_of(&pool.spec.node_pool.agent_pool_id) else {
        return (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::INVALID_SPEC,
                "the NodePoolNetwork's agentPoolId names no cluster",
            ),
            Vec::new(),
        );
    };
    let me = owner(policy);
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for target in &pool.spec.network_security_groups {
        let id: ResourceId = match target.id.parse() {
            Ok(id) => id,
            Err(e) => {
                problems.push(format!("NSG ID {}: {e}", target.id));
                continue;
            }
        };
        match ctx.arm.get_nsg(&id).await {
            Ok(nsg) => {
                // Report the rules the NSG holds for this policy, as they are.
                let union =
                    ctx.stores
                        .nsg_union(&cluster, &target.id, &ctx.stores.all_pools(), None);
                let plan = plan_nsg(
                    &existing_rules(&nsg.resource, union.scope.prefix()),
                    &union.wanted,
                    &union.scope,
                );
                let wanted: Vec<String> = policy_rules(&cluster, pool, target, policy)
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                let held: Vec<&String> = plan
                    .unrecorded
                    .iter()
                    .chain(plan.rules_of(&me).map(|p| &p.rule.name))
                    .filter(|n| wanted.contains(n))
                    .collect();
                if held.len() < wanted.len() {
                    problems.push(format!(
                        "NSG {} lacks the policy's rules and the pool is Observe-only",
                        target.id
                    ));
                }
                rules.extend(held.into_iter().map(|name| RuleRef {
                    nsg_id: target.id.clone(),
                    name: name.clone(),
                    priority: 0,
                }));
            }
            Err(e) => problems.push(format!("reading NSG {}: {e}", target.id)),
        }
    }
    let part = if problems.is_empty() {
        PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::OBSERVE_ONLY,
            "the pool is Observe: poolnet reports and never writes",
        )
    } else {
        PartState::failed(
            cond::SECURITY_RULES_READY,
            reason::OBSERVE_ONLY,
            problems.join("; "),
        )
    };
    (part, rules)
}

/// The finalizer's work: every NSG the policy recorded (and its pool's) written without its
/// rules. `Ok(None)` when done; `Ok(Some(wait))` while a write is still running in Azure.
pub(super) async fn remove_all(
    policy: &HostPortPolicy,
    pool: Option<&NodePoolNetwork>,
    ctx: &Context,
) -> Result<Option<Duration>, ArmError> {
    let mut record = Record::new(policy);
    if let Some(pool) = pool
        && !writes_for(pool)
    {
        // Observe pool: its policies' rules stay as they are.
        return Ok(None);
    }
    let Some(cluster) = cluster_for(pool, &record) else {
        // Neither a pool nor a record: the policy never wrote anything.
        return Ok(None);
    };
    let spec = pool
        .iter()
        .flat_map(|p| p.spec.network_security_groups.iter())
        .map(|t| t.id.clone());
    let targets = Owned::ids_with(&record.owned.security_rules, spec);
    // The policy carries its deletion timestamp: the union leaves it out, its record keeps
    // its rules in scope.
    for raw in targets {
        match sync(ctx, &cluster, &raw, policy, &record).await {
            Ok((_, Some(wait))) => return Ok(Some(wait)),
            Ok((_, None)) | Err(ArmError::NotFound { .. }) => {
                Owned::settle(&mut record.owned.security_rules, &raw, Vec::<String>::new());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
