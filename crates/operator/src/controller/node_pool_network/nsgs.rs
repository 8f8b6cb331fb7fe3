//! Part 4: allow rules in the NSGs the spec names. An NSG is shared (with AKS, other pools,
//! HostPortPolicies, other tools): the shared writer puts the union of every owner's rules
//! into one read-modify-write, so this part records what this object is about to write
//! (docs/ownership.md), has the union written, settles the record, and reports this object's
//! share of the result. NSGs the record names but the spec no longer does get this object's
//! rules removed.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use poolnet_api::portspec::Protocol;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{AsgStatus, NsgStatus, RuleStatus};
use poolnet_arm::{ArmError, ResourceId};
use poolnet_plan::desired::{destination_asgs, pool_rules};
use poolnet_plan::nsg::{NsgPlan, Owner, plan_nsg};

use super::super::conditions::PartState;
use super::Pass;
use super::ledger::Entries;
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
    let cluster = pass.cluster.key.as_str();
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
        let wanted: Vec<String> = pool_rules(cluster, npn, target)
            .into_iter()
            .map(|r| r.name)
            .collect();
        let plan = if pass.writes {
            // Recorded before written: a crash after the write forgets nothing.
            if let Err(e) = pass
                .ledger
                .intend(ctx, npn, Entries::Rules, &target.id, wanted.clone())
                .await
            {
                problems.push(PartState::failed(
                    cond::SECURITY_RULES_READY,
                    reason::PROGRESSING,
                    format!(
                        "recording the rules for NSG {} in status before writing them: {e}",
                        target.id
                    ),
                ));
                fx.soon(Duration::from_secs(5));
                continue;
            }
            match sync(pass, asgs, &id, &target.id, Batch::Join).await {
                Synced::Held(wait, on_the_way) => {
                    fx.soon(wait);
                    problems.push(PartState::failed(
                        cond::SECURITY_RULES_READY,
                        reason::PROGRESSING,
                        format!(
                            "rules recorded; holding the write of NSG {} for {on_the_way} other object(s) on their way into it, so that one write serves all (at most {}s more)",
                            target.id,
                            wait.as_secs().max(1)
                        ),
                    ));
                    continue;
                }
                Synced::Done(plan, wrote) => {
                    if wrote {
                        fx.event(
                            EventType::Normal,
                            "SecurityRulesUpdated",
                            format!(
                                "wrote NSG {}: {} added, {} changed, {} removed",
                                target.id,
                                plan.added.len(),
                                plan.changed.len(),
                                plan.removed.len()
                            ),
                        );
                    }
                    // What the NSG holds of this object now, plus what it still wants there
                    // (an unplaced rule stays recorded: no flip-flop of the record).
                    let present = plan.rules_of(&owner).map(|p| p.rule.name.clone());
                    pass.ledger.settle(
                        Entries::Rules,
                        &target.id,
                        present.chain(wanted.iter().cloned()).collect::<Vec<_>>(),
                    );
                    plan
                }
                Synced::Pending(wait) => {
                    fx.soon(wait);
                    problems.push(PartState::failed(
                        cond::SECURITY_RULES_READY,
                        reason::PROGRESSING,
                        format!("NSG {} is updating", target.id),
                    ));
                    continue;
                }
                Synced::Failed(e) => {
                    if matches!(e, ArmError::NotFound { .. }) {
                        pass.ledger.settle(Entries::Rules, &target.id, Vec::new());
                    }
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
                    // What poolnet would write if this object managed the NSG.
                    let would =
                        pass.me_managing(Some(asgs), Entries::Rules, &target.id, wanted.clone());
                    let union = ctx.stores.nsg_union(
                        cluster,
                        &target.id,
                        &super::pools_with(&would, ctx),
                        None,
                    );
                    let existing = existing_rules(&nsg.resource, union.scope.prefix());
                    let plan = plan_nsg(&existing, &union.wanted, &union.scope);
                    fx.pending.extend(pass.ledger.own_changes(
                        Entries::Rules,
                        &target.id,
                        &wanted,
                        poolnet_plan::preview::nsg_changes(&target.id, &existing, &plan),
                    ));
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
        if pass.writes {
            for r in ctx.nsg_writer.refusals(&id) {
                if wanted.iter().any(|w| w.eq_ignore_ascii_case(&r.name)) {
                    problems.push(refused(&r, &target.id));
                }
            }
        }
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
        if !plan.unrecorded.is_empty() {
            tracing::debug!(nsg = %target.id, rules = ?plan.unrecorded, "rules named like poolnet's that no object records: left alone");
        }
        groups.push(NsgStatus {
            id: target.id.clone(),
            rules: rule_statuses(&plan, &owner),
            unrecorded_rules: plan.unrecorded.clone(),
        });
    }
    // NSGs this object wrote to that its spec no longer names: remove what it left there.
    if pass.writes {
        for raw in pass.ledger.ids(Entries::Rules) {
            if npn
                .spec
                .network_security_groups
                .iter()
                .any(|t| t.id.eq_ignore_ascii_case(&raw))
            {
                continue;
            }
            let id: ResourceId = match raw.parse() {
                Ok(id) => id,
                Err(e) => {
                    problems.push(fx.arm_failure(
                        cond::SECURITY_RULES_READY,
                        "recorded NSG ID",
                        &e.into(),
                    ));
                    continue;
                }
            };
            match sync(pass, asgs, &id, &raw, Batch::Alone).await {
                Synced::Done(plan, wrote) => {
                    if wrote {
                        fx.event(
                            EventType::Normal,
                            "SecurityRulesRemoved",
                            format!(
                                "removed {} rule(s) from NSG {}, which the spec no longer names",
                                plan.removed.len(),
                                raw
                            ),
                        );
                    }
                    let present: Vec<String> =
                        plan.rules_of(&owner).map(|p| p.rule.name.clone()).collect();
                    pass.ledger.settle(Entries::Rules, &raw, present);
                }
                // A removal is never held (`Batch::Alone`).
                Synced::Pending(wait) | Synced::Held(wait, _) => {
                    fx.soon(wait);
                    problems.push(PartState::failed(
                        cond::SECURITY_RULES_READY,
                        reason::PROGRESSING,
                        format!(
                            "NSG {raw} is updating (removing rules the spec no longer asks for)"
                        ),
                    ));
                }
                Synced::Failed(ArmError::NotFound { .. }) => {
                    pass.ledger.settle(Entries::Rules, &raw, Vec::new());
                }
                Synced::Failed(e) => problems.push(fx.arm_failure(
                    cond::SECURITY_RULES_READY,
                    &format!("removing rules from NSG {raw}, which the spec no longer names"),
                    &e,
                )),
            }
        }
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

/// ARM refused one of this object's rules: the NSG was written without it.
pub(crate) fn refused(r: &crate::writers::Refusal, nsg: &str) -> PartState {
    PartState::failed(
        cond::SECURITY_RULES_READY,
        reason::ARM_REFUSED,
        format!(
            "ARM refused rule {} in NSG {nsg}: {}; the NSG's other rules were written without it (fix the spec; poolnet tries again when the rule changes)",
            r.name, r.message
        ),
    )
}

/// How one NSG sync ended.
enum Synced {
    Done(NsgPlan, bool),
    Pending(Duration),
    /// Held for this many other objects on their way (`writers::batch`); ask again within.
    Held(Duration, usize),
    Failed(ArmError),
}

/// Whether a sync may hold its write for other objects on their way into the NSG.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Writing this object's own rules: hold while others are on their way.
    Join,
    /// Removing rules (an NSG the spec no longer names): write now.
    Alone,
}

/// Write the union into NSG `id` (`raw` as the spec or record spells it). The union is read
/// from the caches when the writer holds the NSG, not now: a reconcile that waited for
/// another's write must not put back the union as it was before; and this object counts with
/// the ASGs this reconcile found and its record as it stands.
async fn sync(
    pass: &Pass<'_>,
    asgs: &[AsgStatus],
    id: &ResourceId,
    raw: &str,
    batch: Batch,
) -> Synced {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ctx = pass.ctx;
    let me = pass.npn.name_any();
    let union = || {
        let pools = super::pools_with(&pass.me(Some(asgs)), ctx);
        ctx.stores.nsg_union(&pass.cluster.key, raw, &pools, None)
    };
    let on_the_way = AtomicUsize::new(0);
    let hold = || {
        if batch == Batch::Alone {
            return None;
        }
        let pools = super::pools_with(&pass.me(Some(asgs)), ctx);
        let n = poolnet_plan::desired::joining(&pass.cluster.key, raw, &pools, &me).len();
        on_the_way.store(n, Ordering::Relaxed);
        ctx.batches.hold(raw, &me, n)
    };
    match ctx
        .nsg_writer
        .sync_or_hold(id, union, hold, pass.freshness)
        .await
    {
        Ok(s) => match (s.pending, s.held) {
            (Some(wait), _) => Synced::Pending(wait),
            (None, Some(wait)) => Synced::Held(wait, on_the_way.load(Ordering::Relaxed)),
            (None, None) => {
                // The NSG now holds the union: whoever held for it has nothing left to do.
                ctx.batches.written(raw, &me);
                Synced::Done(s.plan, s.wrote)
            }
        },
        Err(e) => Synced::Failed(e),
    }
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
