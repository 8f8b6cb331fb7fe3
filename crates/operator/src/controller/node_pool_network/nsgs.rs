//! Part 4: allow rules in the NSGs the spec names. An NSG is shared (with AKS, other pools,
//! HostPortPolicies, other tools): the shared writer puts the union of every owner's rules
//! into one read-modify-write, so this part computes the union and reports this object's
//! share of the result.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use poolnet_api::ownership::cluster_rule_prefix;
use poolnet_api::portspec::Protocol;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{AsgStatus, NsgStatus, RuleStatus};
use poolnet_arm::ResourceId;
use poolnet_plan::desired::destination_asgs;
use poolnet_plan::nsg::{NsgPlan, Owner, plan_nsg};

use super::super::conditions::PartState;
use super::Pass;
use super::outcome::{Effects, Part, combine};
use crate::writers::convert::existing_rules;

/// The rules piece of status.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Rules {
    Set {
        groups: Vec<NsgStatus>,
        rule_count: Option<i32>,
    },
    /// Waiting for ASGs: status keeps the rules it showed.
    Keep,
}

pub(super) async fn reconcile(pass: &Pass<'_>, asgs: &[AsgStatus]) -> Part<Rules> {
    let npn = pass.npn;
    let ctx = pass.ctx;
    let mut fx = Effects::default();
    if npn.spec.network_security_groups.is_empty() {
        return Part::new(
            Rules::Set {
                groups: Vec::new(),
                rule_count: None,
            },
            PartState::ok(
                cond::SECURITY_RULES_READY,
                reason::NOT_CONFIGURED,
                "no NSGs in spec",
            ),
            fx,
        );
    }
    // ARM refuses rules that name an ASG that does not exist yet: wait for the ASG part.
    let missing: Vec<String> = destination_asgs(npn)
        .into_iter()
        .filter(|d| !asgs.iter().any(|a| a.id.eq_ignore_ascii_case(d)))
        .collect();
    if !missing.is_empty() {
        fx.soon(Duration::from_secs(5));
        let c = PartState::failed(
            cond::SECURITY_RULES_READY,
            reason::PROGRESSING,
            format!(
                "waiting for ASG(s) {} before writing rules that target them",
                missing.join(", ")
            ),
        );
        return Part::new(Rules::Keep, c, fx);
    }
    let prefix = cluster_rule_prefix(&pass.cluster.key);
    // This object with the ASGs this reconcile found, not the status it was triggered with:
    // desired_rules_for_nsg takes an object's rules once its status shows their ASGs.
    let mut me = npn.clone();
    me.status
        .get_or_insert_with(Default::default)
        .application_security_groups = asgs.to_vec();
    let owner = Owner::NodePoolNetwork {
        name: npn.name_any(),
    };
    let mut groups = Vec::new();
    let mut problems: Vec<PartState> = Vec::new();
    for target in &npn.spec.network_security_groups {
        let id: ResourceId = match target.id.parse() {
            Ok(id) => id,
            Err(e) => {
                problems.push(fx.arm_failure(cond::SECURITY_RULES_READY, "NSG ID", &e.into()));
                continue;
            }
        };
        // Read from the caches when the writer holds the NSG, not now: a reconcile that
        // waited for another's write must not put back the union as it was before.
        let desired = || {
            ctx.stores
                .nsg_union(&pass.cluster.key, &target.id, &super::pools_with(&me, ctx))
        };
        let plan = if pass.writes {
            match ctx
                .nsg_writer
                .sync(&id, desired, &prefix, pass.freshness)
                .await
            {
                Ok(sync) => {
                    if sync.wrote {
                        let p = &sync.plan;
                        fx.event(
                            EventType::Normal,
                            "SecurityRulesUpdated",
                            format!(
                                "wrote NSG {}: {} added, {} changed, {} removed",
                                target.id,
                                p.added.len(),
                                p.changed.len(),
                                p.removed.len()
                            ),
                        );
                    }
                    if let Some(wait) = sync.pending {
                        fx.soon(wait);
                        problems.push(PartState::failed(
                            cond::SECURITY_RULES_READY,
                            reason::PROGRESSING,
                            format!("NSG {} is updating", target.id),
                        ));
                        continue;
                    }
                    sync.plan
                }
                Err(e) => {
                    problems.push(fx.arm_failure(
                        cond::SECURITY_RULES_READY,
                        &format!("writing NSG {}", target.id),
                        &e,
                    ));
                    continue;
                }
            }
        } else {
            match ctx.arm.get_nsg(&id).await {
                Ok(nsg) => {
                    let plan =
                        plan_nsg(&existing_rules(&nsg.resource, &prefix), &desired(), &prefix);
                    if plan.needs_write() {
                        problems.push(PartState::failed(
                            cond::SECURITY_RULES_READY,
                            reason::OBSERVE_ONLY,
                            format!("NSG {} differs: poolnet would add {}, change {}, remove {} rule(s) (Observe)", target.id, plan.added.len(), plan.changed.len(), plan.removed.len()),
                        ));
                    }
                    plan
                }
                Err(e) => {
                    problems.push(fx.arm_failure(
                        cond::SECURITY_RULES_READY,
                        &format!("reading NSG {}", target.id),
                        &e,
                    ));
                    continue;
                }
            }
        };
        for u in plan.unplaced.iter().filter(|u| u.rule.owner == owner) {
            problems.push(PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::PRIORITY_BAND_FULL,
                format!(
                    "rule {} in NSG {}: {}; widen spec.networkSecurityGroups priorities",
                    u.rule.name, target.id, u.reason
                ),
            ));
        }
        groups.push(NsgStatus {
            id: target.id.clone(),
            rules: rule_statuses(&plan, &owner),
        });
    }
    let rule_count: i32 = groups.iter().map(|g| g.rules.len() as i32).sum();
    let condition = combine(problems).unwrap_or_else(|| {
        PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::RECONCILED,
            format!(
                "{rule_count} rule(s) in {} NSG(s)",
                npn.spec.network_security_groups.len()
            ),
        )
    });
    Part::new(
        Rules::Set {
            groups,
            rule_count: Some(rule_count),
        },
        condition,
        fx,
    )
}

/// `owner`'s rules in the planned NSG, as status shows them.
fn rule_statuses(plan: &NsgPlan, owner: &Owner) -> Vec<RuleStatus> {
    plan.rules_of(owner)
        .map(|p| RuleStatus {
            name: p.rule.name.clone(),
            priority: i32::from(p.priority),
            protocol: match p.rule.content.protocol {
                Protocol::Tcp => "Tcp".into(),
                Protocol::Udp => "Udp".into(),
            },
            destination_port_ranges: p.rule.content.port_strings(),
            source_address_prefixes: p.rule.content.sources.clone(),
        })
        .collect()
}
