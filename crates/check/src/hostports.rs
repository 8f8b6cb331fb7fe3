//! (c) Host ports (DESIGN §5, docs/hostports.md): a key is (protocol, port) across the
//! cluster. No two live pods hold one key (the pods of one DaemonSet sharing its claim, or
//! sharing its key inside a block with each recording it, count as one holder), every claim maps to a live pod or is inside its grace, and every key a
//! pod holds inside a reserved range has a claim naming that pod, or lies in the span of an
//! existing HostPortBlock and is listed in the pod's `poolnet.dev/host-ports` annotation
//! (docs/hostport-blocks.md: the block's holder gives such keys from memory, and the pod is
//! their only record). Claims inside a block's span are legal (static ports claimed before
//! the block existed) and judged like any other.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use poolnet_api::portspec::Protocol;
use poolnet_api::v1alpha1::host_port_block::{BLOCK_SIZE, block_name, block_start};
use poolnet_api::v1alpha1::{HostPortBlock, HostPortClaim};
use poolnet_operator::hostports::ASSIGNED_ANNOTATION;
use poolnet_operator::hostports::coverage::{is_reserved, reserved_ranges};
use poolnet_plan::hostports::Key;
use serde_json::json;

use crate::model::{Invariant, Kind, Options, PodHold, Report, Snapshot, Violation};

fn v(kind: Kind, subject: &str) -> Violation {
    Violation::new(Invariant::HostPorts, kind, subject)
}

fn elapsed(now: Timestamp, then: &Time) -> Duration {
    Duration::try_from(now.duration_since(then.0)).unwrap_or(Duration::ZERO)
}

fn pod_name(p: &PodHold) -> String {
    format!("{}/{}", p.namespace, p.name)
}

/// Whether `pod` is the holder `claim` names: its bound pod, the pod carrying its token
/// (not bound yet), or a pod of the DaemonSet that shares it.
fn holds(claim: &HostPortClaim, pod: &PodHold) -> bool {
    if pod.namespace != claim.spec.pod_namespace {
        return false;
    }
    if let Some(ds) = &claim.spec.daemon_set {
        return pod.daemon_set.as_deref() == Some(ds.uid.as_str());
    }
    match claim.status.as_ref().and_then(|s| s.pod.as_ref()) {
        Some(bound) => bound.uid == pod.uid,
        None => pod.token.as_deref() == Some(claim.spec.request_uid.as_str()),
    }
}

/// One holder per pod, except the pods of one DaemonSet that share the key: through its
/// claim, or, with no claim inside an existing block's span, each recording the key in its
/// annotation (the block's holder gives a DaemonSet's static key to all its pods, as a shared
/// claim does).
fn holder_id(pod: &PodHold, key: Key, claim: Option<&HostPortClaim>, in_block: bool) -> String {
    let Some(mine) = &pod.daemon_set else {
        return format!("pod:{}", pod.uid);
    };
    let shares = match claim {
        Some(c) => c.spec.daemon_set.as_ref().is_some_and(|ds| ds.uid == *mine) && holds(c, pod),
        None => in_block && records(pod, key),
    };
    if shares {
        format!("daemonset:{}/{mine}", pod.namespace)
    } else {
        format!("pod:{}", pod.uid)
    }
}

/// The blocks of `snap` by (protocol, first port); a block whose spec does not match its
/// name, or whose first port is not aligned, is an input error (the API server's validation
/// rules forbid both) and spans nothing.
fn blocks_of<'a>(
    snap: &'a Snapshot,
    report: &mut Report,
) -> BTreeMap<(Protocol, u16), &'a HostPortBlock> {
    let mut out = BTreeMap::new();
    for b in &snap.blocks {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        let (protocol, start) = (b.protocol(), b.spec.start);
        if start % BLOCK_SIZE != 0 {
            report.errors.push(format!(
                "HostPortBlock {name}: first port {start} is not a multiple of {BLOCK_SIZE}; \
                 the check ignores the block (delete it: the webhook takes blocks by name)"
            ));
            continue;
        }
        let expected = block_name(protocol, start);
        if name != expected {
            report.errors.push(format!(
                "HostPortBlock {name}: its spec ({protocol} from {start}) names it {expected}; \
                 the check ignores the block (delete it: the webhook takes blocks by name)"
            ));
            continue;
        }
        out.insert((protocol, start), b);
    }
    out
}

/// `tcp-40000 (40000-40063, holder pod-a/1)`.
fn describe_block(b: &HostPortBlock) -> String {
    let first = b.spec.start.max(1);
    let last = u32::from(b.spec.start) + u32::from(BLOCK_SIZE) - 1;
    format!(
        "{} ({first}-{last}, holder {})",
        b.metadata.name.as_deref().unwrap_or_default(),
        b.spec.holder
    )
}

/// Whether `pod` records `key` itself: its `poolnet.dev/host-ports` annotation lists it
/// (the webhook writes it with every port it gives, automatic or written in the spec).
fn records(pod: &PodHold, key: Key) -> bool {
    pod.assigned.contains(&key)
}

pub fn check(snap: &Snapshot, options: &Options, report: &mut Report) {
    let reserved = reserved_ranges(snap.policies.iter());
    let mut claims: BTreeMap<Key, &HostPortClaim> = BTreeMap::new();
    for c in &snap.claims {
        match c
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .parse::<Key>()
        {
            Ok(k) => {
                claims.insert(k, c);
            }
            Err(e) => report.errors.push(format!("HostPortClaim: {e}")),
        }
    }
    let blocks = blocks_of(snap, report);
    let mut by_key: BTreeMap<Key, Vec<&PodHold>> = BTreeMap::new();
    for p in &snap.pods {
        for k in &p.keys {
            by_key.entry(*k).or_default().push(p);
        }
    }
    for (key, pods) in &by_key {
        let claim = claims.get(key).copied();
        let block = blocks.get(&(key.protocol, block_start(key.port))).copied();
        let mut holders: Vec<String> = pods
            .iter()
            .map(|p| holder_id(p, *key, claim, block.is_some()))
            .collect();
        holders.sort();
        holders.dedup();
        // A key poolnet gave from a block (its pod records it) is poolnet's even where no
        // range reserves it any more (a policy's range removed since).
        let managed = claim.is_some()
            || is_reserved(&reserved, *key)
            || (block.is_some() && pods.iter().any(|p| records(p, *key)));
        if !managed {
            continue;
        }
        let names: Vec<String> = pods.iter().map(|p| pod_name(p)).collect();
        if holders.len() > 1 {
            report.violations.push(
                v(Kind::Duplicate, &key.to_string())
                    .entry(key.to_string())
                    .expected(json!("one holder"))
                    .found(json!(names))
                    .message(format!(
                        "{} live pods hold {key}: {}",
                        names.len(),
                        names.join(", ")
                    )),
            );
            continue;
        }
        match (claim, block) {
            (None, Some(b)) => {
                let unrecorded: Vec<&PodHold> =
                    pods.iter().copied().filter(|p| !records(p, *key)).collect();
                if unrecorded.is_empty() {
                    continue;
                }
                let names: Vec<String> = unrecorded.iter().map(|p| pod_name(p)).collect();
                let found: Vec<Vec<String>> = unrecorded
                    .iter()
                    .map(|p| p.assigned.iter().map(Key::to_string).collect())
                    .collect();
                report.violations.push(
                    v(Kind::Unclaimed, &names.join(", "))
                        .entry(key.to_string())
                        .expected(json!({ ASSIGNED_ANNOTATION: [key.to_string()] }))
                        .found(json!({ ASSIGNED_ANNOTATION: found }))
                        .message(format!(
                            "{key} lies in HostPortBlock {}, but the pod's {ASSIGNED_ANNOTATION} \
                             annotation does not list it and no HostPortClaim records it: the \
                             block's holder did not give it this port and may give it to \
                             another pod; delete the pod so that its owner recreates it through \
                             the webhook, or remove the hostPort",
                            describe_block(b)
                        )),
                );
            }
            (None, None) if pods.iter().all(|p| records(p, *key)) => report.violations.push(
                v(Kind::Unclaimed, &names.join(", "))
                    .entry(key.to_string())
                    .message(format!(
                        "{key} lies in a reserved range and the pod's {ASSIGNED_ANNOTATION} \
                         annotation lists it, but neither a HostPortClaim nor a HostPortBlock \
                         ({}) records it any more (its claim released or its block deleted \
                         while in use), so the key may be given again; delete the pod so that \
                         its owner recreates it with a reserved port",
                        block_name(key.protocol, key.port)
                    )),
            ),
            (None, None) => report.violations.push(
                v(Kind::Unclaimed, &names.join(", "))
                    .entry(key.to_string())
                    .message(format!(
                        "{key} lies in a reserved range but no HostPortClaim records its holder"
                    )),
            ),
            (Some(c), _) if !pods.iter().all(|p| holds(c, p)) => report.violations.push(
                v(Kind::ForeignHolder, &names.join(", "))
                    .entry(key.to_string())
                    .expected(json!(c.holder()))
                    .found(json!(names))
                    .message(format!("holds {key}, but {}", c.describe())),
            ),
            (Some(_), _) => {}
        }
    }
    let deadline = options.release.grace + options.release.confirm_after + options.claim_slack;
    for (key, claim) in &claims {
        let name = format!("HostPortClaim {key}");
        let status = claim.status.clone().unwrap_or_default();
        let held = snap
            .pods
            .iter()
            .any(|p| p.keys.contains(key) && holds(claim, p));
        if held {
            continue;
        }
        let created = claim
            .metadata
            .creation_timestamp
            .as_ref()
            .unwrap_or(&claim.spec.created_at);
        let mut age = elapsed(snap.now, created);
        if claim.spec.daemon_set.is_some()
            && let Some(t) = &status.admitted_at
        {
            age = age.min(elapsed(snap.now, t));
        }
        if claim.spec.daemon_set.is_none()
            && let Some(bound) = &status.pod
        {
            // Bound: released as soon as its pod is gone (no grace).
            let alive = snap.pods.iter().any(|p| p.uid == bound.uid);
            if !alive {
                report.violations.push(
                    v(Kind::ClaimPodGone, &name)
                        .entry(key.to_string())
                        .expected(json!({"pod": format!("{}/{}", claim.spec.pod_namespace, bound.name), "uid": bound.uid}))
                        .found(json!(null))
                        .message(format!(
                            "bound to pod {}/{} which is gone",
                            claim.spec.pod_namespace, bound.name
                        )),
                );
                continue;
            }
            // The bound pod exists but does not declare the port (it carries no hostPort):
            // nothing holds the key, and nothing will release it.
            report
                .violations
                .push(
                    v(Kind::OrphanClaim, &name)
                        .entry(key.to_string())
                        .message(format!(
                            "bound to pod {}/{}, which does not declare {key}",
                            claim.spec.pod_namespace, bound.name
                        )),
                );
            continue;
        }
        if age >= deadline {
            report.violations.push(
                v(Kind::OrphanClaim, &name)
                    .entry(key.to_string())
                    .expected(json!({"releasedWithin": format!("{}s", deadline.as_secs())}))
                    .found(json!({
                        "age": format!("{}s", age.as_secs()),
                        "orphanSince": status.orphan_since,
                        "boundAt": status.bound_at,
                        "admittedAt": status.admitted_at,
                    }))
                    .message(format!(
                        "{} holds it, no live pod carries it, and it is {}s old (grace {}s + confirmation {}s + slack {}s)",
                        claim.holder(),
                        age.as_secs(),
                        options.release.grace.as_secs(),
                        options.release.confirm_after.as_secs(),
                        options.claim_slack.as_secs()
                    )),
            );
        }
    }
}
