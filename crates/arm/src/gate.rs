//! Fencing: a replica that may have lost its leader Lease sends no more ARM writes.
//!
//! Leader election steps a replica down when its election task notices that renewing failed.
//! A replica frozen past its Lease (a stopped process, a long pause) resumes with reconciles
//! whose reads finished during the freeze, and they could send their writes before the
//! election task runs, while another replica already leads. The [`WriteGate`] closes that
//! window: the elector keeps it open until the renew deadline after the last successful renew
//! (measured from before that renew was sent), and the ARM pipeline checks it right before
//! every PUT, PATCH, DELETE or POST leaves. A frozen process's clock runs on, so on resuming
//! the gate is already closed.

use std::sync::{Arc, RwLock};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
enum State {
    /// No leader election: writes always pass.
    Always,
    /// Writes pass until this instant.
    Until(Instant),
    /// Not leading.
    Closed,
}

/// Whether this process may send ARM writes now. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct WriteGate(Arc<RwLock<State>>);

impl Default for WriteGate {
    /// Always open (no leader election).
    fn default() -> Self {
        WriteGate::always_open()
    }
}

impl WriteGate {
    /// A gate that never closes (a single replica, no leader election).
    pub fn always_open() -> Self {
        WriteGate(Arc::new(RwLock::new(State::Always)))
    }

    /// A gate that stays closed until [`WriteGate::open_until`] (leader election on).
    pub fn closed() -> Self {
        WriteGate(Arc::new(RwLock::new(State::Closed)))
    }

    /// Writes may pass until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        self.set(State::Until(deadline));
    }

    /// No more writes (leadership lost or released).
    pub fn close(&self) {
        self.set(State::Closed);
    }

    fn set(&self, state: State) {
        let mut s = self.0.write().unwrap_or_else(|e| e.into_inner());
        // A gate without election stays open.
        if !matches!(*s, State::Always) {
            *s = state;
        }
    }

    /// `Ok` when a write may leave now; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        match *self.0.read().unwrap_or_else(|e| e.into_inner()) {
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
    }

    #[test]
    fn without_election_it_never_closes() {
        let gate = WriteGate::default();
        gate.close();
        assert!(gate.check().is_ok());
    }
}
