//! Shared, coalescing read-modify-write of NSGs and route tables.
//!
//! An NSG or route table may be named by many NodePoolNetworks and HostPortPolicies. Each
//! reconcile passes the writer of that resource a provider of the union of what *all* of them
//! want (from the informer caches); the writer serialises callers per resource and calls the
//! provider only once it holds the resource, so a caller that waited never writes a union
//! older than the write it waited for (a deleted object's rules would come back for good).
//! It compares the union with the last state it read or wrote. So when 100 objects change at once, the first caller
//! writes everything the cache already shows and the others find nothing left to do: changes
//! coalesce into one or two writes per resource, and a converged resource costs no ARM call at
//! all until the periodic drift check re-reads it.
//!
//! Every write is the whole resource with `If-Match: <etag>`; a 412 (someone else wrote in
//! between, e.g. AKS or the cloud controller) re-reads and retries a bounded number of times.
//!
//! One generic [`Writer`] (`rmw.rs`) does all of that; `nsg.rs` and `routes.rs` only say how
//! to read, plan, apply and PUT their kind of resource, and `convert.rs` is the one place
//! the ARM request bodies of rules and routes are assembled.

pub mod batch;
pub mod convert;
mod nsg;
mod rmw;
mod routes;

pub use batch::Batches;
pub use nsg::{NsgSync, NsgWriter};
pub use rmw::{REFUSAL_RETRY, Refusal, Synced, Writer};
pub use routes::{RouteBudget, RouteSync, RouteWriter};

use std::time::Duration;

/// How a sync may use what the writer remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Trust the last state read or written: no ARM call when it already matches.
    Cached,
    /// Read the resource again first (periodic drift detection).
    Reread,
    /// Read it again unless this writer read or wrote it less than this long ago: the
    /// objects that share an NSG or a route table share its periodic re-read.
    ReadWithin(std::time::Duration),
}

/// Attempts of a read-modify-write when ARM answers 412 in between.
pub const PRECONDITION_ATTEMPTS: usize = 4;
/// How long a write may wait for its long-running operation before handing the caller a
/// pending result to requeue on.
pub const LRO_WAIT: Duration = Duration::from_secs(10);
/// How long a write's long-running operation may stay running before the writer forgets it
/// and reads and plans again: a stuck operation must not block the resource until restart.
/// Azure finishes NSG and route-table writes in seconds.
pub const PENDING_EXPIRY: Duration = Duration::from_secs(10 * 60);
