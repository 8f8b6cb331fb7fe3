//! Part 1: the public IP prefix node IPs come from. An adopted prefix (`existingId`) is only
//! read and judged; a managed one is created (with its IP tags, fixed from then on) when
//! missing, and must carry poolnet's owner tag for this object to count as its own.

use std::time::Duration;

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::PrefixStatus;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::models::PublicIpPrefix;
use poolnet_arm::{Lro, NotFoundExt, Precondition, ResourceId};
use poolnet_plan::prefix::{
    AdoptedPrefix, judge_adopted, managed_is_ready, managed_prefix_id, spec_ip_tags,
};

use super::super::conditions::PartState;
use super::Pass;
use super::outcome::{Effects, Part};
use crate::arm_models::{managed_prefix_body, observed_prefix, ours};

fn prefix_status(id: &str, p: &PublicIpPrefix, managed: bool) -> PrefixStatus {
    let seen = observed_prefix(p);
    PrefixStatus {
        id: id.to_string(),
        cidr: seen.cidr,
        ip_tags: seen.ip_tags,
        managed,
        addresses_in_use: Some(seen.addresses_in_use),
    }
}

fn managed_ready(id: &str) -> PartState {
    PartState::ok(
        cond::PREFIX_READY,
        reason::RECONCILED,
        format!("managed prefix {id}"),
    )
}

fn progressing(id: &str, what: &str) -> PartState {
    PartState::failed(
        cond::PREFIX_READY,
        reason::PROGRESSING,
        format!("prefix {id} {what}"),
    )
}

pub(super) async fn reconcile(pass: &Pass<'_>) -> Part<Option<PrefixStatus>> {
    let npn = pass.npn;
    let mut fx = Effects::default();
    let Some(source) = npn
        .spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.prefix.as_ref())
    else {
        return Part::new(
            None,
            PartState::ok(
                cond::PREFIX_READY,
                reason::NOT_CONFIGURED,
                "no public IP prefix in spec",
            ),
            fx,
        );
    };
    let (raw_id, managed) = match (&source.existing_id, &source.managed) {
        (Some(id), _) => (id.clone(), None),
        (None, Some(m)) => match managed_prefix_id(npn) {
            Some(id) => (id, Some(m)),
            None => return no_prefix_id(fx),
        },
        (None, None) => return no_prefix_id(fx),
    };
    let id: ResourceId = match raw_id.parse() {
        Ok(id) => id,
        Err(e) => {
            let c = fx.arm_failure(cond::PREFIX_READY, "prefix ID", &e.into());
            return Part::new(None, c, fx);
        }
    };
    let found = match pass.ctx.arm.get_public_ip_prefix(&id).await.optional() {
        Ok(f) => f,
        Err(e) => {
            let c = fx.arm_failure(
                cond::PREFIX_READY,
                &format!("reading public IP prefix {raw_id}"),
                &e,
            );
            return Part::new(None, c, fx);
        }
    };
    let want_tags = spec_ip_tags(npn);
    match (found, managed) {
        (Some(p), None) => {
            let st = prefix_status(&raw_id, &p.resource, false);
            let c = match judge_adopted(&observed_prefix(&p.resource), &want_tags) {
                AdoptedPrefix::IpTagsMismatch { have, want } => PartState::failed(
                    cond::PREFIX_READY,
                    "IpTagsMismatch",
                    format!(
                        "prefix {raw_id} carries IP tags {have:?} but spec.nodePublicIP.ipTags asks for {want:?}; Azure fixes a prefix's tags at creation, so use a prefix created with those tags"
                    ),
                ),
                AdoptedPrefix::NoRange => {
                    fx.soon(Duration::from_secs(5));
                    progressing(&raw_id, "has no address range yet")
                }
                AdoptedPrefix::Ready => PartState::ok(
                    cond::PREFIX_READY,
                    reason::RECONCILED,
                    format!("adopted prefix {raw_id}"),
                ),
            };
            Part::new(Some(st), c, fx)
        }
        (None, None) => Part::new(
            None,
            PartState::failed(
                cond::PREFIX_READY,
                reason::NOT_FOUND,
                format!(
                    "public IP prefix {raw_id} does not exist: create it, or let poolnet create one with prefix.managed"
                ),
            ),
            fx,
        ),
        (Some(p), Some(_)) => {
            if !ours(&p.resource.resource, npn, &pass.cluster.key) {
                let c = PartState::failed(
                    cond::PREFIX_READY,
                    "PrefixNotOwned",
                    format!(
                        "a public IP prefix {raw_id} already exists and was not created by poolnet for this object; adopt it with prefix.existingId instead of prefix.managed"
                    ),
                );
                return Part::new(None, c, fx);
            }
            pass.ledger
                .update(|o| o.public_ip_prefix = Some(raw_id.clone()));
            let st = prefix_status(&raw_id, &p.resource, true);
            let c = if managed_is_ready(&observed_prefix(&p.resource)) {
                managed_ready(&raw_id)
            } else {
                fx.soon(Duration::from_secs(5));
                progressing(&raw_id, "is being created")
            };
            Part::new(Some(st), c, fx)
        }
        (None, Some(m)) => {
            if !pass.writes {
                let tags: Vec<String> = npn
                    .spec
                    .node_public_ip
                    .as_ref()
                    .and_then(|n| n.ip_tags.clone())
                    .unwrap_or_default()
                    .iter()
                    .map(|t| format!("{}={}", t.ip_tag_type, t.tag))
                    .collect();
                let mut fields = vec![
                    ("location", m.location.clone()),
                    ("publicIPAddressVersion", format!("{:?}", m.ip_version)),
                    ("prefixLength", m.prefix_length.to_string()),
                    ("zones", m.zones.join(",")),
                    ("ipTags", tags.join(",")),
                ];
                fields.retain(|(_, v)| !v.is_empty());
                fx.pending.push(poolnet_api::v1alpha1::PendingChange {
                    resource_id: raw_id.clone(),
                    target: poolnet_api::v1alpha1::ChangeTarget::PublicIPPrefix,
                    name: m.name.clone(),
                    action: poolnet_api::v1alpha1::ChangeAction::Add,
                    fields: fields
                        .into_iter()
                        .map(|(f, v)| poolnet_api::v1alpha1::FieldChange {
                            field: f.into(),
                            old: None,
                            new: Some(v),
                        })
                        .collect(),
                });
                let c = PartState::failed(
                    cond::PREFIX_READY,
                    reason::NOT_FOUND,
                    format!("prefix {raw_id} does not exist (Observe: poolnet would create it)"),
                );
                return Part::new(None, c, fx);
            }
            // Recorded before created (docs/ownership.md).
            if let Err(e) = pass
                .ledger
                .record_created(pass.ctx, npn, |o| o.public_ip_prefix = Some(raw_id.clone()))
                .await
            {
                fx.soon(Duration::from_secs(5));
                let c = progressing(
                    &raw_id,
                    &format!("is recorded in status before it is created; that failed: {e}"),
                );
                return Part::new(None, c, fx);
            }
            let body = managed_prefix_body(npn, m, &want_tags, &pass.cluster.key);
            match pass
                .ctx
                .arm
                .put_public_ip_prefix(&id, &body, Precondition::IfNoneMatch)
                .await
            {
                Ok(Lro::Done(p)) => {
                    fx.event(
                        EventType::Normal,
                        "PrefixCreated",
                        format!("created public IP prefix {raw_id} (/{})", m.prefix_length),
                    );
                    let st = prefix_status(&raw_id, &p.resource, true);
                    let c = if st.cidr.is_some() {
                        managed_ready(&raw_id)
                    } else {
                        fx.soon(Duration::from_secs(2));
                        progressing(&raw_id, "is being created")
                    };
                    Part::new(Some(st), c, fx)
                }
                Ok(Lro::Pending(h)) => {
                    fx.event(
                        EventType::Normal,
                        "PrefixCreating",
                        format!("creating public IP prefix {raw_id} (/{})", m.prefix_length),
                    );
                    fx.soon(h.next_poll_in());
                    Part::new(None, progressing(&raw_id, "is being created"), fx)
                }
                Err(e) => {
                    let c = fx.arm_failure(
                        cond::PREFIX_READY,
                        &format!("creating public IP prefix {raw_id}"),
                        &e,
                    );
                    Part::new(None, c, fx)
                }
            }
        }
    }
}

/// Validation guarantees a prefix source and an agent pool ID; should either be missing,
/// the part reports nothing of the prefix, as before.
fn no_prefix_id(fx: Effects) -> Part<Option<PrefixStatus>> {
    Part::new(
        None,
        PartState::ok(
            cond::PREFIX_READY,
            reason::NOT_CONFIGURED,
            "no public IP prefix in spec",
        ),
        fx,
    )
}
