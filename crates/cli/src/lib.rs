//! The parts of `kubectl-poolnet` other crates test against: [`status`] (the joined
//! per-pool view of `kubectl poolnet status`) and [`diff`] (an Observe object's pending
//! changes, `kubectl poolnet diff`), [`live_plan`] (a NodePoolNetwork's preflight against
//! its live cluster, `kubectl poolnet plan NAME`).

pub mod diff;
pub mod live_plan;
pub mod preview;
pub mod status;
