//! Building status conditions the kstatus way: one condition per part plus `Ready`, with
//! `lastTransitionTime` kept while a condition's status does not change (so a converged
//! object's status never churns).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use poolnet_api::v1alpha1::conditions::{READY, RECONCILING, STALLED, needs_user_action};

/// The state of one part of an object, before it becomes a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartState {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
    /// Failing, and it stays so until someone changes something: the object is `Stalled`.
    pub stalled: bool,
    /// Whether `Ready` waits for this part. False for capacity (a full host-port range):
    /// the object is reconciled even while the condition reports it.
    pub gates_ready: bool,
}

impl PartState {
    pub fn ok(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: true,
            reason,
            message: message.into(),
            stalled: false,
            gates_ready: true,
        }
    }

    /// A failure; it stalls the object when its reason needs someone's action
    /// ([`needs_user_action`]).
    pub fn failed(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: false,
            reason,
            message: message.into(),
            stalled: needs_user_action(reason),
            gates_ready: true,
        }
    }

    /// This failure will not go away by retrying (e.g. ARM answered 403 or 400).
    pub fn needing_user_action(mut self) -> Self {
        self.stalled = !self.ok;
        self
    }

    /// A capacity report, not reconciliation: `Ready` does not wait for it.
    pub fn capacity(mut self) -> Self {
        self.gates_ready = false;
        self.stalled = false;
        self
    }
}

/// Conditions for `parts` plus `Ready` (True only when every part that gates it is) and,
/// while not Ready, `Stalled` (some failure needs someone's action) or `Reconciling`
/// (poolnet is still getting there), carrying over `lastTransitionTime` from `previous`
/// where the status is unchanged.
pub fn conditions(
    parts: &[PartState],
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let failing: Vec<&PartState> = parts.iter().filter(|p| !p.ok && p.gates_ready).collect();
    let summary = |of: &[&PartState]| {
        of.iter()
            .map(|p| format!("{}: {}", p.type_, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut own = Vec::new();
    match failing.first() {
        None => own.push(PartState::ok(
            READY,
            "Reconciled",
            "every part is reconciled",
        )),
        Some(first) => {
            own.push(PartState::failed(READY, first.reason, summary(&failing)));
            let stalled: Vec<&PartState> = failing.iter().copied().filter(|p| p.stalled).collect();
            // Abnormal-true conditions, present only while True.
            let (type_, why) = match stalled.first() {
                Some(s) => (STALLED, (s.reason, summary(&stalled))),
                None => (RECONCILING, (first.reason, summary(&failing))),
            };
            own.push(PartState::ok(type_, why.0, why.1));
        }
    }
    own.iter()
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

    fn find<'a>(c: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        c.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn not_ready_is_reconciling_or_stalled_and_capacity_does_not_gate_ready() {
        let t = time(1);
        // A transient failure: Reconciling, never Stalled.
        let throttled = [PartState::failed(
            "ASGReady",
            "Throttled",
            "ARM is throttling",
        )];
        let c = conditions(&throttled, Some(1), &[], &t);
        assert_eq!(find(&c, READY).map(|c| c.status.as_str()), Some("False"));
        let r = find(&c, RECONCILING).expect("Reconciling");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "Throttled")
        );
        assert!(find(&c, STALLED).is_none());

        // One part needs a user's change: Stalled wins, naming that part only.
        let mixed = [
            throttled[0].clone(),
            PartState::failed(
                "SecurityRulesReady",
                "PriorityBandFull",
                "band 100-101 is full",
            ),
        ];
        let c = conditions(&mixed, Some(1), &[], &t);
        let s = find(&c, STALLED).expect("Stalled");
        assert_eq!(
            (s.status.as_str(), s.reason.as_str()),
            ("True", "PriorityBandFull")
        );
        assert_eq!(s.message, "SecurityRulesReady: band 100-101 is full");
        assert!(find(&c, RECONCILING).is_none());

        // A fatal ARM answer stalls whatever its reason says.
        let forbidden =
            [PartState::failed("AgentPoolReady", "ArmError", "403").needing_user_action()];
        assert!(find(&conditions(&forbidden, Some(1), &[], &t), STALLED).is_some());

        // A full range: reported False, and still Ready with neither abnormal condition.
        let full = [
            PartState::ok("Accepted", "Reconciled", "ok"),
            PartState::failed("PortsAllocated", "RangeExhausted", "45000-45001/TCP full")
                .capacity(),
        ];
        let c = conditions(&full, Some(2), &[], &t);
        assert_eq!(find(&c, READY).map(|c| c.status.as_str()), Some("True"));
        assert_eq!(
            find(&c, "PortsAllocated").map(|c| c.status.as_str()),
            Some("False")
        );
        assert!(find(&c, RECONCILING).is_none() && find(&c, STALLED).is_none());
    }
}
