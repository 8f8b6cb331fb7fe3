//! Cluster-unique host-port allocation, the pure part (DESIGN §5).
//!
//! A key is a (protocol, port) pair ([`Key`]). The operator records each reserved key as a
//! cluster-scoped `HostPortClaim` named after it, so the API server's refusal of a duplicate
//! name makes reservation linearizable. This module decides everything that can be decided
//! without I/O:
//! - [`request`]: which container ports of a pod need host ports, and from which range;
//! - [`reservation`]: which keys to propose, as a state machine the webhook drives;
//! - [`repair`]: when a claim is bound to its pod, marked as an orphan, or released;
//! - [`env`]: the environment variables naming the ports, and the workload name in them;
//! - [`coverage`]: which host ports in use a pool's allowedHostPorts and NSG rules leave
//!   unreachable.
//!
//! The model-based test (`model.rs`) runs the whole protocol in memory with stale caches,
//! crashes and slow deletions, checking uniqueness, reserve-before-admit, no premature
//! release, progress and no leaks.

pub mod blocks;
pub mod coverage;
pub mod env;
pub mod key;
pub mod keyset;
pub mod repair;
pub mod request;
pub mod reservation;

#[cfg(test)]
mod block_model;
#[cfg(test)]
mod model;

pub use env::{PodIdentity, deployment_name, env_vars};
pub use key::Key;
pub use keyset::{Held, KeySet, Union};
pub use repair::{ClaimFacts, PodRef, PodView, ReleasePolicy, ReleaseReason, Repair, decide};
pub use request::{AKS_ANNOTATION, DeclaredPort, RequestPlan, SelectingPolicy, plan_requests};
pub use reservation::{AllocError, Assignment, PortRequest, Reservation, Source, Step, seed_of};
