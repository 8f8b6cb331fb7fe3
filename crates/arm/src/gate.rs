//! Fencing: a replica that may have lost its leader Lease sends no more ARM writes.
//!
//! Leader election steps a replica down when its election task notices that renewing failed.
//! A replica frozen past its Lease (a stopped process, a long pause) resumes with reconciles
//! whose reads finished during the freeze, and they could send their writes before the
//! election task runs, while another replica already leads. The [`WriteGate`] closes that
//! window: the elector keeps it open until the renew deadline after the last successful renew
//! (measured from before that renew was sent), and the ARM pipeline checks it right before
//! every request other than a GET or HEAD leaves. A frozen process's clock runs on, so on
//! resuming the gate is already closed.
//!
//! Deadlines are [`tokio::time::Instant`]s, the clock the elector times its renewals with, so
//! both sides agree under a paused test clock too (outside a paused runtime it is the
//! monotonic clock of [`std::time::Instant`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum State {
    /// No leader election: writes always pass.
    Always,
    /// Writes pass until this instant.
    Until(Instant),
    /// Not leading.
    Closed,
}

#[derive(Debug)]
struct Inner {
    state: RwLock<State>,
    /// A refusal was logged at warn level since the gate last opened (one warning per loss).
    warned: AtomicBool,
}

/// Whether this process may send ARM writes now. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct WriteGate(Arc<Inner>);

impl Default for WriteGate {
    /// Always open (no leader election).
    fn default() -> Self {
        WriteGate::always_open()
    }
}

impl WriteGate {
    fn with(state: State) -> Self {
        WriteGate(Arc::new(Inner {
            state: RwLock::new(state),
            warned: AtomicBool::new(false),
        }))
    }

    /// A gate that never closes (a single replica, no leader election).
    pub fn always_open() -> Self {
        WriteGate::with(State::Always)
    }

    /// A gate that stays closed until [`WriteGate::open_until`] (leader election on).
    pub fn closed() -> Self {
        WriteGate::with(State::Closed)
    }

    /// `true` for a gate made by [`WriteGate::always_open`]: it ignores `open_until` and
    /// `close`, so it fences nothing.
    pub fn is_always_open(&self) -> bool {
        matches!(self.state(), State::Always)
    }

    /// Writes may pass until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        if self.set(State::Until(deadline)) {
            self.0.warned.store(false, Ordering::Relaxed);
        }
    }

    /// No more writes (leadership lost or released).
    pub fn close(&self) {
        self.set(State::Closed);
    }

    /// `false` (and no change) for an always-open gate.
    fn set(&self, state: State) -> bool {
        let mut s = self.0.state.write().unwrap_or_else(|e| e.into_inner());
        // A gate without election stays open.
        if matches!(*s, State::Always) {
            return false;
        }
        *s = state;
        true
    }

    fn state(&self) -> State {
        *self.0.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` when a write may leave now; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        match self.state() {
            State::Always => Ok(()),
            State::Until(deadline) if now < deadline => Ok(()),
            State::Until(_) => Err(
                "this replica's leader Lease was not renewed within its renew deadline: it may \
                 have passed to another replica"
                    .into(),
            ),
            State::Closed => Err("this replica does not hold the leader Lease".into()),
        }
    }

    /// `true` for the first refusal since the gate last opened: log that one as a warning,
    /// the rest quietly (a lost Lease refuses every write of every reconcile still running).
    pub(crate) fn first_refusal(&self) -> bool {
        !self.0.warned.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_until_the_deadline_then_closed() {
        let gate = WriteGate::closed();
        let now = Instant::now();
        assert!(gate.check_at(now).is_err());
        gate.open_until(now + Duration::from_secs(4));
        assert!(gate.check_at(now + Duration::from_secs(3)).is_ok());
        // A process frozen past its deadline finds the gate shut when it resumes.
        assert!(gate.check_at(now + Duration::from_secs(4)).is_err());
        let clone = gate.clone();
        gate.open_until(now + Duration::from_secs(10));
        assert!(clone.check_at(now + Duration::from_secs(5)).is_ok());
        gate.close();
        assert!(clone.check_at(now).is_err());
        assert!(!gate.is_always_open());
    }

    #[test]
    fn without_election_it_never_closes() {
        let gate = WriteGate::default();
        assert!(gate.is_always_open());
        gate.close();
        assert!(gate.check().is_ok());
    }

    #[test]
    fn one_warning_per_loss() {
        let gate = WriteGate::closed();
        assert!(gate.first_refusal());
        assert!(!gate.first_refusal());
        // Losing it again after a renew (which opened the gate) is a new loss.
        gate.close();
        assert!(
            !gate.first_refusal(),
            "a step-down after a lapse is the same loss"
        );
        gate.open_until(Instant::now());
        assert!(gate.first_refusal());
        assert!(!gate.first_refusal());
    }
}
