//! Building status conditions the kstatus way: one condition per part plus `Ready`, with
//! `lastTransitionTime` kept while a condition's status does not change (so a converged
//! object's status never churns).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use poolnet_api::v1alpha1::conditions::READY;

/// The state of one part of an object, before it becomes a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartState {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl PartState {
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub fn failed(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// Conditions for `parts` plus `Ready` (True only when every part is), carrying over
/// `lastTransitionTime` from `previous` where the status is unchanged.
pub fn conditions(
    parts: &[PartState],
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let failing: Vec<&PartState> = parts.iter().filter(|p| !p.ok).collect();
    let ready = match failing.first() {
        None => PartState::ok(READY, "Reconciled", "every part is reconciled"),
        Some(first) => PartState {
            type_: READY,
            ok: false,
            reason: first.reason,
            message: failing
                .iter()
                .map(|p| format!("{}: {}", p.type_, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        },
    };
    std::iter::once(&ready)
        .chain(parts.iter())
        .map(|p| {
            let status = if p.ok { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == p.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: p.type_.to_string(),
                status: status.to_string(),
                reason: p.reason.to_string(),
                message: p.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn ready_summarises_failing_parts_and_keeps_transition_times() {
        let parts = [
            PartState::ok("PrefixReady", "Reconciled", "ok"),
            PartState::failed("RoutesReady", "NoDefaultRoute", "no 0.0.0.0/0"),
        ];
        let first = conditions(&parts, Some(3), &[], &time(100));
        assert_eq!(first[0].type_, "Ready");
        assert_eq!(first[0].status, "False");
        assert_eq!(first[0].reason, "NoDefaultRoute");
        assert!(first[0].message.contains("RoutesReady: no 0.0.0.0/0"));
        assert!(first.iter().all(|c| c.observed_generation == Some(3)));
        // Same state later: times are kept, so the status is byte-for-byte stable.
        let again = conditions(&parts, Some(3), &first, &time(200));
        assert_eq!(again, first);
        // A part flips: only its time (and Ready's) moves.
        let fixed = [
            parts[0].clone(),
            PartState::ok("RoutesReady", "Reconciled", "ok"),
        ];
        let later = conditions(&fixed, Some(4), &first, &time(300));
        assert_eq!(later[0].status, "True");
        assert_eq!(later[0].last_transition_time, time(300));
        assert_eq!(later[1].last_transition_time, time(100));
        assert_eq!(later[2].last_transition_time, time(300));
    }
}
