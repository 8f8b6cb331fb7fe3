//! What the parts of one reconcile report, and how the story gathers it.
//!
//! A part returns a [`Part`]: its piece of status, its condition, and its [`Effects`]
//! (Events to publish, how soon to look again). The story folds every part into one
//! [`Outcome`] and assembles the status itself; no part writes another part's status.

use std::time::Duration;

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::conditions::reason;
use poolnet_arm::ArmError;

use super::super::conditions::PartState;
use super::super::status::Note;

/// Soonest retry after ARM (or the client's own budget) throttled a call.
const THROTTLED_RETRY_FLOOR: Duration = Duration::from_secs(1);

/// A part's piece of status: a new value, or the last one kept (the part could not read
/// Azure this time, or is waiting, and what status said is still the best knowledge).
#[derive(Debug, Clone, PartialEq)]
pub enum Piece<T> {
    Set(T),
    Keep,
}

impl<T> Piece<T> {
    /// Write the piece into its place in the status.
    pub fn apply(self, slot: &mut T) {
        if let Piece::Set(v) = self {
            *slot = v;
        }
    }
}

/// Side notes of a part: Events and the soonest requeue.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<Note>,
    pub requeue: Option<Duration>,
    /// A retryable ARM failure happened: the next attempt backs off.
    pub retryable_failure: bool,
    /// ARM throttled a call: the next attempt waits for its Retry-After, and the backoff
    /// counter is left as it is (throttling is paced by ARM, not a failure that grows).
    pub throttled: bool,
    /// Observe: the changes this part would make (`status.pendingChanges`).
    pub pending: Vec<poolnet_api::v1alpha1::PendingChange>,
}

impl Effects {
    /// Look again no later than `d`.
    pub fn soon(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    pub fn event(&mut self, t: EventType, reason: &'static str, note: String) {
        self.events.push((t, reason, note));
    }

    fn merge(&mut self, other: Effects) {
        self.events.extend(other.events);
        if let Some(d) = other.requeue {
            self.soon(d);
        }
        self.retryable_failure |= other.retryable_failure;
        self.throttled |= other.throttled;
        self.pending.extend(other.pending);
    }

    /// Turn an ARM error into a failed condition: retryable ones requeue, fatal ones explain.
    pub fn arm_failure(&mut self, type_: &'static str, what: &str, e: &ArmError) -> PartState {
        if let ArmError::Throttled { .. } = e {
            // The message stays the same from one attempt to the next (no wait time in it):
            // a status that changes on every attempt is patched every time, and each patch
            // triggers another reconcile. At least a second apart, or a throttled fleet
            // retries in a tight loop for the few tokens the budget frees.
            self.throttled = true;
            self.soon(
                e.retry_after()
                    .unwrap_or(Duration::from_secs(5))
                    .max(THROTTLED_RETRY_FLOOR),
            );
            PartState::failed(
                type_,
                reason::THROTTLED,
                format!("{what}: ARM is throttling requests (will retry)"),
            )
        } else if e.is_retryable() {
            self.retryable_failure = true;
            self.soon(e.retry_after().unwrap_or(Duration::from_secs(5)));
            PartState::failed(
                type_,
                reason::ARM_ERROR,
                format!("{what}: {e} (will retry)"),
            )
        } else if matches!(e, ArmError::NotFound { .. }) {
            PartState::failed(type_, reason::NOT_FOUND, format!("{what}: {e}"))
        } else {
            PartState::failed(
                type_,
                reason::ARM_ERROR,
                format!("{what}: {e} (not retried: fix the spec or the Azure resource)"),
            )
            .needing_user_action()
        }
    }
}

/// What one part reports.
#[derive(Debug)]
pub struct Part<T> {
    pub status: T,
    pub condition: PartState,
    pub effects: Effects,
}

impl<T> Part<T> {
    pub fn new(status: T, condition: PartState, effects: Effects) -> Self {
        Self {
            status,
            condition,
            effects,
        }
    }
}

/// The first problem of a part, with the messages of the others appended; `None` when
/// there were none.
pub fn combine(problems: Vec<PartState>) -> Option<PartState> {
    problems.into_iter().reduce(|a, b| PartState {
        message: format!("{}; {}", a.message, b.message),
        ..a
    })
}

/// Everything one reconcile gathered from its parts.
#[derive(Debug, Default)]
pub struct Outcome {
    pub conditions: Vec<PartState>,
    pub effects: Effects,
}

impl Outcome {
    /// Take a part's condition and effects, hand back its status piece.
    pub fn take<T>(&mut self, part: Part<T>) -> T {
        self.condition(part.condition);
        self.effects.merge(part.effects);
        part.status
    }

    /// One condition per type: a type reported twice (the cluster read failing, then the
    /// agent pool's own check) is merged, failures first, or the API server rejects the
    /// whole status for its duplicate condition keys.
    pub fn condition(&mut self, p: PartState) {
        match self.conditions.iter_mut().find(|q| q.type_ == p.type_) {
            None => self.conditions.push(p),
            Some(q) if q.ok => *q = p,
            Some(q) if !p.ok => q.message = format!("{}; {}", q.message, p.message),
            Some(_) => {}
        }
    }

    pub fn effects(&mut self, e: Effects) {
        self.effects.merge(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_type_is_reported_once_failures_first() {
        let mut out = Outcome::default();
        out.condition(PartState::failed("AgentPoolReady", "ArmError", "cluster"));
        out.condition(PartState::ok("AgentPoolReady", "Reconciled", "fine"));
        out.condition(PartState::failed("AgentPoolReady", "Progressing", "pool"));
        out.condition(PartState::ok("PrefixReady", "Reconciled", "ok"));
        assert_eq!(out.conditions.len(), 2);
        assert_eq!(out.conditions[0].reason, "ArmError");
        assert_eq!(out.conditions[0].message, "cluster; pool");
    }

    /// A write the ARM client refused to send (leader fencing) is transient: retried soon,
    /// never a `Stalled` object waiting for the user.
    #[test]
    fn a_fenced_write_is_retried_not_stalled() {
        let mut fx = Effects::default();
        let e = ArmError::Fenced {
            id: "/subscriptions/s/x".into(),
            message: "this replica does not hold the leader Lease".into(),
        };
        let c = fx.arm_failure("NSGReady", "writing NSG x", &e);
        assert!(!c.ok && !c.stalled, "{c:?}");
        assert!(c.message.ends_with("(will retry)"), "{}", c.message);
        assert!(fx.retryable_failure && !fx.throttled);
        assert_eq!(fx.requeue, Some(Duration::from_secs(5)));
    }

    #[test]
    fn effects_keep_the_soonest_requeue_and_every_event() {
        let mut out = Outcome::default();
        let mut a = Effects::default();
        a.soon(Duration::from_secs(10));
        a.event(EventType::Normal, "A", "a".into());
        let mut b = Effects::default();
        b.soon(Duration::from_secs(3));
        b.retryable_failure = true;
        b.event(EventType::Normal, "B", "b".into());
        out.take(Part::new((), PartState::ok("X", "R", ""), a));
        out.take(Part::new((), PartState::ok("Y", "R", ""), b));
        assert_eq!(out.effects.requeue, Some(Duration::from_secs(3)));
        assert!(out.effects.retryable_failure);
        assert_eq!(out.effects.events.len(), 2);
        let mut keep = 1;
        Piece::Keep.apply(&mut keep);
        Piece::Set(2).apply(&mut keep);
        assert_eq!(keep, 2);
    }
}
