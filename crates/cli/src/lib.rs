//! The parts of `kubectl-poolnet` other crates test against: [`status`] (the joined
//! per-pool view of `kubectl poolnet status`).

pub mod status;
