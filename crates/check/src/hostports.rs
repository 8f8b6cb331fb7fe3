//! (c) Host ports (DESIGN §5, docs/hostports.md): a key is (protocol, port) across the
//! cluster. No two live pods hold one key (the pods of one DaemonSet sharing its claim count
//! as one holder), every claim maps to a live pod or is inside its grace, and every key a
//! pod holds inside a reserved range has a claim naming that pod.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use poolnet_api::v1alpha1::HostPortClaim;
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

/// One holder per pod, except the pods of one DaemonSet that shares the key's claim.
fn holder_id(pod: &PodHold, claim: Option<&HostPortClaim>) -> String {
    match (
        claim.and_then(|c| c.spec.daemon_set.as_ref()),
        &pod.daemon_set,
    ) {
        (Some(ds), Some(mine)) if ds.uid == *mine && claim.is_some_and(|c| holds(c, pod)) => {
            format!("daemonset:{}/{mine}", pod.namespace)
        }
        _ => format!("pod:{}", pod.uid),
    }
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
    let mut by_key: BTreeMap<Key, Vec<&PodHold>> = BTreeMap::new();
    for p in &snap.pods {
        for k in &p.keys {
            by_key.entry(*k).or_default().push(p);
        }
    }
    for (key, pods) in &by_key {
        let claim = claims.get(key).copied();
        let mut holders: Vec<String> = pods.iter().map(|p| holder_id(p, claim)).collect();
        holders.sort();
        holders.dedup();
        let managed = claim.is_some() || is_reserved(&reserved, *key);
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
        match claim {
            None => report.violations.push(
                v(Kind::Unclaimed, &names.join(", "))
                    .entry(key.to_string())
                    .message(format!(
                        "{key} lies in a reserved range but no HostPortClaim records its holder"
                    )),
            ),
            Some(c) if !pods.iter().all(|p| holds(c, p)) => report.violations.push(
                v(Kind::ForeignHolder, &names.join(", "))
                    .entry(key.to_string())
                    .expected(json!(c.holder()))
                    .found(json!(names))
                    .message(format!("holds {key}, but {}", c.describe())),
            ),
            Some(_) => {}
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
