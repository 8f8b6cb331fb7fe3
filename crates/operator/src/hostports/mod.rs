//! Durable, cluster-unique host-port reservations (DESIGN §5), the I/O half; the decisions
//! live in [`poolnet_plan::hostports`].
//!
//! | part | role | runs on |
//! |---|---|---|
//! | [`index`] | who holds which key (claims and pods' own host ports), fed by [`watch`] | every replica |
//! | [`reserve`] | one admission's reservation: create the claims, roll back on failure | every replica (webhook) |
//! | [`repair`] | bind claims to pods, release claims of gone pods and orphans, adopt author-written ports | the leader |
//! | [`coverage`] | which written host ports a pod must reserve (any policy's ranges, copies); pure | every replica (webhook) |
//! | [`shared`] | claims a DaemonSet's pods share: owner, keep or release; pure | both |
//!
//! How the guarantees hold:
//! - S1/S2: a key is reserved by creating the `HostPortClaim` named after it; the API server
//!   refuses duplicates, and the webhook patches a pod only after all its creates succeeded.
//!   Every written host port inside any reserved range is reserved the same way
//!   ([`coverage`]); a DaemonSet's pods join their DaemonSet's claim by a write ([`shared`]).
//! - S3: [`repair`] deletes a claim only after a live read confirmed that its pod is gone, or
//!   that no pod carries its token two passes apart after a grace period that outlasts the
//!   API server's create deadline ([`repair::CREATE_DEADLINE`]), with preconditions.
//!
//! `docs/hostports.md` gives the argument for coverage, DaemonSets, copies and that bound.
//! - S4: the pod carries the token (label `poolnet.dev/reservation`); a re-invocation finds
//!   its claims by it and writes nothing; dry-run requests only preview.
//! - S5: the index is rebuilt from watches; marks and bindings are on the claims.

pub mod blocks;
pub mod coverage;
pub mod index;
pub mod repair;
pub mod reserve;
pub mod shared;
pub mod watch;

/// The pure allocator core these parts drive (for benchmarks and tools).
pub use poolnet_plan::hostports as core;

pub use index::HostPortIndex;
pub use poolnet_plan::hostports::ReleasePolicy;
pub use repair::{PassReport, RepairConfig, Repairer};
pub use reserve::{Claimant, DaemonSetRef, ReserveError, Reserver, ReserverStats};
pub use watch::{run_index, start_index};

/// Pod annotation poolnet writes with the ports it assigned, e.g. `8080/TCP=41932,8443/TCP=49482`.
pub const ASSIGNED_ANNOTATION: &str = "poolnet.dev/host-ports";
