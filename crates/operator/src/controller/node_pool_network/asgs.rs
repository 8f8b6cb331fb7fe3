//! Part 2: the application security groups the pool's NICs join. The managed ASG is created
//! when missing (and must carry poolnet's owner tag for this object); custom ASGs are only
//! checked to exist.

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::AsgStatus;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::validation::managed_asg_enabled;
use poolnet_arm::{Lro, NotFoundExt, Precondition, ResourceId};
use poolnet_plan::desired::managed_asg_id;

use super::super::conditions::PartState;
use super::Pass;
use super::outcome::{Effects, Part, combine};
use crate::arm_models::{managed_asg_body, ours};

pub(super) async fn reconcile(pass: &Pass<'_>) -> Part<Vec<AsgStatus>> {
    let npn = pass.npn;
    let arm = pass.ctx.arm.as_ref();
    let mut fx = Effects::default();
    let mut asgs = Vec::new();
    let mut problems = Vec::new();
    // An ASG that could not be read (throttled, ARM error) stays as last seen: status says
    // which ASGs exist, and other objects sharing an NSG rely on it (desired_rules_for_nsg).
    let as_last_seen = |raw: &str, asgs: &mut Vec<AsgStatus>| {
        if let Some(a) = pass
            .previous
            .application_security_groups
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(raw))
        {
            asgs.push(a.clone());
        }
    };
    if managed_asg_enabled(&npn.spec)
        && let Some(raw) = managed_asg_id(npn)
    {
        match raw.parse::<ResourceId>() {
            Err(e) => problems.push(fx.arm_failure(cond::ASG_READY, "managed ASG ID", &e.into())),
            Ok(id) => {
                match read_asg(pass, &id).await.optional() {
                    Ok(Some(a)) if ours(&a.resource.resource, npn, &pass.cluster.key) => {
                        pass.ledger
                            .update(|o| o.application_security_group = Some(raw.clone()));
                        asgs.push(AsgStatus {
                            id: raw,
                            managed: true,
                        });
                    }
                    Ok(Some(_)) => {
                        // Read again next time: the answer kept may be of a predecessor's ASG.
                        pass.ctx.reads.forget(&id);
                        problems.push(PartState::failed(
                    cond::ASG_READY,
                    "ASGNotOwned",
                    format!("an ASG {raw} exists that poolnet did not create for this object; remove it, or set applicationSecurityGroups.managed: false and list it in customIds"),
                ));
                    }
                    Ok(None) if !pass.writes => {
                        fx.pending.push(poolnet_api::v1alpha1::PendingChange {
                            resource_id: raw.clone(),
                            target: poolnet_api::v1alpha1::ChangeTarget::ApplicationSecurityGroup,
                            name: id.name().to_string(),
                            action: poolnet_api::v1alpha1::ChangeAction::Add,
                            fields: vec![poolnet_api::v1alpha1::FieldChange {
                                field: "tags".into(),
                                old: None,
                                new: Some(format!(
                                    "{}={}",
                                    poolnet_api::ownership::OWNER_TAG,
                                    poolnet_api::ownership::owner_tag_value(
                                        &kube::ResourceExt::name_any(npn)
                                    )
                                )),
                            }],
                        });
                        problems.push(PartState::failed(
                        cond::ASG_READY,
                        reason::NOT_FOUND,
                        format!("managed ASG {raw} does not exist (Observe: poolnet would create it)"),
                    ));
                        // A preview (`kubectl poolnet diff -f`) plans the later parts as if it
                        // existed, as they will be once applied.
                        if pass.ctx.dry_run.is_some() {
                            asgs.push(AsgStatus {
                                id: raw,
                                managed: true,
                            });
                        }
                    }
                    Ok(None) => {
                        // Recorded before created (docs/ownership.md).
                        if let Err(e) = pass
                            .ledger
                            .record_created(pass.ctx, npn, |o| {
                                o.application_security_group = Some(raw.clone())
                            })
                            .await
                        {
                            fx.soon(std::time::Duration::from_secs(5));
                            let c = PartState::failed(
                                cond::ASG_READY,
                                reason::PROGRESSING,
                                format!("recording ASG {raw} in status before creating it: {e}"),
                            );
                            return Part::new(asgs, c, fx);
                        }
                        let body =
                            managed_asg_body(npn, pass.cluster.location.clone(), &pass.cluster.key);
                        match arm.put_asg(&id, &body, Precondition::IfNoneMatch).await {
                            Ok(Lro::Done(written)) => {
                                pass.ctx.reads.keep(&id, written);
                                fx.event(
                                    EventType::Normal,
                                    "ASGCreated",
                                    format!("created application security group {raw}"),
                                );
                                asgs.push(AsgStatus {
                                    id: raw,
                                    managed: true,
                                });
                            }
                            Ok(Lro::Pending(h)) => {
                                fx.soon(h.next_poll_in());
                                problems.push(PartState::failed(
                                    cond::ASG_READY,
                                    reason::PROGRESSING,
                                    format!("creating ASG {raw}"),
                                ));
                            }
                            Err(e) => problems.push(fx.arm_failure(
                                cond::ASG_READY,
                                &format!("creating ASG {raw}"),
                                &e,
                            )),
                        }
                    }
                    Err(e) => {
                        problems.push(fx.arm_failure(
                            cond::ASG_READY,
                            &format!("reading ASG {raw}"),
                            &e,
                        ));
                        as_last_seen(&raw, &mut asgs);
                    }
                }
            }
        }
    }
    for raw in npn
        .spec
        .application_security_groups
        .iter()
        .flat_map(|a| a.custom_ids.iter())
    {
        match raw.parse::<ResourceId>() {
            Err(e) => problems.push(fx.arm_failure(cond::ASG_READY, "custom ASG ID", &e.into())),
            Ok(id) => match read_asg(pass, &id).await.optional() {
                Ok(Some(_)) => asgs.push(AsgStatus {
                    id: raw.clone(),
                    managed: false,
                }),
                Ok(None) => problems.push(PartState::failed(
                    cond::ASG_READY,
                    reason::NOT_FOUND,
                    format!(
                        "custom ASG {raw} does not exist: create it or remove it from customIds"
                    ),
                )),
                Err(e) => {
                    problems.push(fx.arm_failure(
                        cond::ASG_READY,
                        &format!("reading ASG {raw}"),
                        &e,
                    ));
                    as_last_seen(raw, &mut asgs);
                }
            },
        }
    }
    let condition = match combine(problems) {
        Some(p) => p,
        None if asgs.is_empty() => PartState::ok(
            cond::ASG_READY,
            reason::NOT_CONFIGURED,
            "no application security groups",
        ),
        None => PartState::ok(
            cond::ASG_READY,
            reason::RECONCILED,
            format!("{} ASG(s)", asgs.len()),
        ),
    };
    Part::new(asgs, condition, fx)
}

/// `applicationSecurityGroups.managed` turned off: once the pool's NICs have left the ASG this
/// object created (`pool_lists`: the ASGs the agent pool lists after this reconcile) and the
/// rules no longer target it (`rules_done`), delete it. Returns a condition while that is not
/// done, and the effects (an Event when deleted).
pub(super) async fn retire(
    pass: &Pass<'_>,
    pool_lists: Option<&[String]>,
    rules_done: bool,
) -> (Option<PartState>, Effects) {
    let mut fx = Effects::default();
    let c = retire_with(pass, pool_lists, rules_done, &mut fx).await;
    (c, fx)
}

async fn retire_with(
    pass: &Pass<'_>,
    pool_lists: Option<&[String]>,
    rules_done: bool,
    fx: &mut Effects,
) -> Option<PartState> {
    let npn = pass.npn;
    if !pass.writes || managed_asg_enabled(&npn.spec) {
        return None;
    }
    let raw = pass.ledger.owned().application_security_group?;
    let in_use = pool_lists.is_none_or(|l| l.iter().any(|a| a.eq_ignore_ascii_case(&raw)));
    if in_use || !rules_done {
        fx.soon(std::time::Duration::from_secs(10));
        return Some(PartState::failed(
            cond::ASG_READY,
            reason::PROGRESSING,
            format!(
                "managed ASG {raw} is deleted once the pool's nodes have left it and no rule targets it"
            ),
        ));
    }
    let id: ResourceId = match raw.parse() {
        Ok(id) => id,
        Err(e) => return Some(fx.arm_failure(cond::ASG_READY, "recorded ASG ID", &e.into())),
    };
    let arm = pass.ctx.arm.as_ref();
    pass.ctx.reads.forget(&id);
    match arm.get_asg(&id).await.optional() {
        Ok(Some(a)) if ours(&a.resource.resource, npn, &pass.cluster.key) => {
            match arm.delete_asg(&id).await {
                Ok(Lro::Done(())) => {
                    pass.ledger.update(|o| o.application_security_group = None);
                    fx.event(
                        EventType::Normal,
                        "ASGDeleted",
                        format!("deleted application security group {raw}: applicationSecurityGroups.managed is false"),
                    );
                    None
                }
                Ok(Lro::Pending(h)) => {
                    fx.soon(h.next_poll_in());
                    Some(PartState::failed(
                        cond::ASG_READY,
                        reason::PROGRESSING,
                        format!("deleting managed ASG {raw}"),
                    ))
                }
                Err(e) => Some(fx.arm_failure(
                    cond::ASG_READY,
                    &format!("deleting managed ASG {raw}"),
                    &e,
                )),
            }
        }
        // Gone, or not ours after all (another owner's tags): nothing of ours to delete.
        Ok(_) => {
            pass.ledger.update(|o| o.application_security_group = None);
            None
        }
        Err(e) => Some(fx.arm_failure(cond::ASG_READY, &format!("reading ASG {raw}"), &e)),
    }
}

/// The ASG as last read or written within the reconcile's freshness (`crate::reads`).
async fn read_asg(
    pass: &Pass<'_>,
    id: &ResourceId,
) -> Result<
    poolnet_arm::Etagged<poolnet_arm::models::ApplicationSecurityGroup>,
    poolnet_arm::ArmError,
> {
    pass.ctx
        .reads
        .read(id, pass.own_freshness(), |_| true, pass.ctx.arm.get_asg(id))
        .await
}
