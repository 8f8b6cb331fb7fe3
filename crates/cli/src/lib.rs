//! The parts of `kubectl-poolnet` other crates test against: [`status`] (the joined
//! per-pool view of `kubectl poolnet status`) and [`diff`] (an Observe object's pending
//! changes, `kubectl poolnet diff`).

pub mod diff;
pub mod preview;
pub mod status;
