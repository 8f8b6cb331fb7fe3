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
            Ok(id) => match arm.get_asg(&id).await.optional() {
                Ok(Some(a)) if ours(&a.resource.resource, npn, &pass.cluster.key) => asgs.push(AsgStatus {
                    id: raw,
                    managed: true,
                }),
                Ok(Some(_)) => problems.push(PartState::failed(
                    cond::ASG_READY,
                    "ASGNotOwned",
                    format!("an ASG {raw} exists that poolnet did not create for this object; remove it, or set applicationSecurityGroups.managed: false and list it in customIds"),
                )),
                Ok(None) if !pass.writes => problems.push(PartState::failed(
                    cond::ASG_READY,
                    reason::NOT_FOUND,
                    format!("managed ASG {raw} does not exist (Observe: poolnet would create it)"),
                )),
                Ok(None) => {
                    let body = managed_asg_body(npn, pass.cluster.location.clone(), &pass.cluster.key);
                    match arm.put_asg(&id, &body, Precondition::IfNoneMatch).await {
                        Ok(Lro::Done(_)) => {
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
                    problems.push(fx.arm_failure(cond::ASG_READY, &format!("reading ASG {raw}"), &e));
                    as_last_seen(&raw, &mut asgs);
                }
            },
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
            Ok(id) => match arm.get_asg(&id).await.optional() {
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
