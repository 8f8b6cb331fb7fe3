//! The policy's allow rules: opened in each NSG of its pool through the shared writer, so
//! the NodePoolNetwork controller's writes and these coalesce into one write per NSG.

use kube::ResourceExt;
use poolnet_api::ownership::cluster_rule_prefix;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork, ReconcilePolicy, RuleRef};
use poolnet_arm::ResourceId;
use poolnet_plan::desired::{cluster_of, destination_asgs};
use poolnet_plan::nsg::{Owner, plan_nsg};

use super::super::conditions::PartState;
use super::Reconciler;
use crate::writers::Freshness;
use crate::writers::convert::existing_rules;

/// Opens the policy's ports in each NSG of its pool (through the shared writer, so the
/// NodePoolNetwork controller's writes and these coalesce) and reports its rules.
pub(super) async fn security_rules(
    policy: &HostPortPolicy,
    pool: &NodePoolNetwork,
    r: &Reconciler,
) -> (PartState, Vec<RuleRef>) {
    let ctx = &r.ctx;
    if pool.spec.network_security_groups.is_empty() {
        return (
            PartState::ok(
                cond::SECURITY_RULES_READY,
                reason::NOT_CONFIGURED,
                format!(
                    "NodePoolNetwork {} names no NSGs: nothing to open",
                    pool.name_any()
                ),
            ),
            Vec::new(),
        );
    }
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
    let prefix = cluster_rule_prefix(&cluster);
    let me = Owner::HostPortPolicy {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    };
    let writes = pool.spec.reconcile_policy != ReconcilePolicy::Observe;
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
        // Read from the caches when the writer holds the NSG, not now: a reconcile that
        // waited for another's write must not put back the union as it was before.
        let desired = || {
            ctx.stores
                .nsg_union(&cluster, &target.id, &ctx.stores.all_pools())
        };
        let plan = if writes {
            match ctx
                .nsg_writer
                .sync(&id, desired, &prefix, Freshness::Cached)
                .await
            {
                Ok(sync) if sync.pending.is_some() => {
                    problems.push(format!("NSG {} is updating", target.id));
                    continue;
                }
                Ok(sync) => sync.plan,
                Err(e) => {
                    problems.push(format!("writing NSG {}: {e}", target.id));
                    continue;
                }
            }
        } else {
            match ctx.arm.get_nsg(&id).await {
                Ok(nsg) => {
                    let plan =
                        plan_nsg(&existing_rules(&nsg.resource, &prefix), &desired(), &prefix);
                    if plan.rules_of(&me).count() == 0 || plan.needs_write() {
                        problems.push(format!(
                            "NSG {} lacks the policy's rules and the pool is Observe-only",
                            target.id
                        ));
                    }
                    plan
                }
                Err(e) => {
                    problems.push(format!("reading NSG {}: {e}", target.id));
                    continue;
                }
            }
        };
        for u in plan.unplaced.iter().filter(|u| u.rule.owner == me) {
            problems.push(format!(
                "rule {} in NSG {}: {}",
                u.rule.name, target.id, u.reason
            ));
        }
        rules.extend(plan.rules_of(&me).map(|p| RuleRef {
            nsg_id: target.id.clone(),
            name: p.rule.name.clone(),
            priority: i32::from(p.priority),
        }));
    }
    let part = if problems.is_empty() {
        PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::RECONCILED,
            format!(
                "{} rule(s) in {} NSG(s)",
                rules.len(),
                pool.spec.network_security_groups.len()
            ),
        )
    } else {
        let reason = if problems.iter().any(|p| p.contains("updating")) {
            reason::PROGRESSING
        } else {
            reason::ARM_ERROR
        };
        PartState::failed(cond::SECURITY_RULES_READY, reason, problems.join("; "))
    };
    (part, rules)
}
