//! The read-modify-write writer both resource kinds share: per-resource serialisation, the
//! remembered state, `If-Match` with a bounded retry on 412, and long-running operations
//! that are waited for briefly, then handed back to the caller to requeue on, and forgotten
//! when they are still running past a bound (see [`PENDING_EXPIRY`]).
//!
//! One entry ARM refuses (400 naming it) must not stall every other owner of the resource:
//! the writer leaves that entry out, remembers ARM's message for its owner to report
//! ([`Writer::refusals`]) and writes the rest. The refusal holds while the entry's content
//! stays the same, for at most [`REFUSAL_RETRY`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, OperationHandle, ResourceId};
use tracing::{debug, info, warn};

use super::{Freshness, LRO_WAIT, PENDING_EXPIRY, PRECONDITION_ATTEMPTS};

/// What differs between resource kinds: how to read, write, plan and apply one of them,
/// given what the caller wants in it.
pub trait Target {
    type Resource: Clone + Send + Sync;
    type Plan: Clone + Default + Send;

    /// For logs, e.g. "NSG".
    const KIND: &'static str;

    fn get<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Etagged<Self::Resource>, ArmError>>;

    fn put<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
        resource: &'a Self::Resource,
        precondition: poolnet_arm::Precondition,
    ) -> BoxFuture<'a, Result<Lro<Etagged<Self::Resource>>, ArmError>>;

    /// The plan for the resource as it is now, leaving out the entries ARM refused
    /// (`refused`, by lower-cased name, while their content is the same). Called only under
    /// the resource's lock, so a target that computes what the caller wants here computes it
    /// at write time.
    fn plan(&self, current: &Self::Resource, refused: &Refusals) -> Self::Plan;

    /// The entry of `plan` that ARM's refusal (`message` of a 400) names, with the
    /// fingerprint of its content: it is left out and the rest written. `None`: the refusal
    /// is the whole write's.
    fn refused_entry(&self, _plan: &Self::Plan, _message: &str) -> Option<(String, u64)> {
        None
    }

    fn needs_write(plan: &Self::Plan) -> bool;

    /// Asked when the resource needs a write: `Some(wait)` holds it (nothing is written, the
    /// caller asks again within `wait`) because more changes are on their way
    /// (`writers::batch`).
    fn hold(&self) -> Option<Duration> {
        None
    }

    /// The resource to write: `current` with the plan applied.
    fn apply(&self, current: &Self::Resource, plan: &Self::Plan) -> Self::Resource;

    /// `(added, changed, removed)` for logs and Events.
    fn counts(plan: &Self::Plan) -> (usize, usize, usize);
}

/// One async mutex per resource (lower-cased ID), created on first use.
#[derive(Debug)]
struct PerResource<T> {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<T>>>>,
}

impl<T: Default> PerResource<T> {
    fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<T>> {
        // A poisoned map only means another task panicked while inserting; the map itself
        // is still consistent, so keep using it.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(id.to_ascii_lowercase()).or_default().clone()
    }
}

/// An entry ARM refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The entry's name as written.
    pub name: String,
    /// ARM's message.
    pub message: String,
    /// Fingerprint of the refused content: other content is tried again.
    pub fingerprint: u64,
    pub at: std::time::Instant,
}

/// Refusals of one resource, by lower-cased entry name.
pub type Refusals = BTreeMap<String, Refusal>;

/// How long a refused entry stays left out before it is tried again (ARM may accept it by
/// then: a region that was not yet known, a limit raised).
pub const REFUSAL_RETRY: Duration = Duration::from_secs(30 * 60);

/// Refusals in a row one sync may set aside before giving up.
const MAX_REFUSALS_PER_SYNC: usize = 8;

#[derive(Debug)]
struct Remembered<R> {
    /// The resource as last read or written by this writer.
    resource: Option<R>,
    /// When `resource` was read or written.
    at: Option<std::time::Instant>,
    /// A write still running in ARM, and when it was started.
    pending: Option<(OperationHandle, std::time::Instant)>,
}

impl<R> Default for Remembered<R> {
    fn default() -> Self {
        Self {
            resource: None,
            at: None,
            pending: None,
        }
    }
}

/// Result of one sync.
#[derive(Debug, Clone)]
pub struct Synced<P> {
    /// The plan against the resource's state (after the write when one was made).
    pub plan: P,
    /// Whether this call wrote the resource.
    pub wrote: bool,
    /// Set when a write is still running in ARM: ask again after this long.
    pub pending: Option<Duration>,
    /// Set when the target held a needed write ([`Target::hold`]): ask again within this.
    pub held: Option<Duration>,
}

impl<P: Default> Synced<P> {
    fn done(plan: P, wrote: bool) -> Self {
        Self {
            plan,
            wrote,
            pending: None,
            held: None,
        }
    }

    fn held(plan: P, wait: Duration) -> Self {
        Self {
            plan,
            wrote: false,
            pending: None,
            held: Some(wait),
        }
    }
}

/// Serialised, remembering read-modify-write of one kind of resource (`R`) for one
/// cluster's poolnet; see the module docs of `writers`. The kinds add their own `sync`.
#[derive(Debug)]
pub struct Writer<R> {
    arm: Arc<dyn ArmNetwork>,
    state: PerResource<Remembered<R>>,
    /// See [`PENDING_EXPIRY`].
    pending_expiry: Duration,
    /// Entries ARM refused, per lower-cased resource ID.
    refused: Mutex<HashMap<String, Refusals>>,
}

impl<R: Clone + Send + Sync> Writer<R> {
    pub fn new(arm: Arc<dyn ArmNetwork>) -> Self {
        Self {
            arm,
            state: PerResource::new(),
            pending_expiry: PENDING_EXPIRY,
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// The entries of `id` ARM refused recently (their owners report ARM's message).
    pub fn refusals(&self, id: &ResourceId) -> Vec<Refusal> {
        self.current_refusals(id).into_values().collect()
    }

    fn current_refusals(&self, id: &ResourceId) -> Refusals {
        let mut all = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let key = id.to_string().to_ascii_lowercase();
        let Some(of) = all.get_mut(&key) else {
            return Refusals::new();
        };
        of.retain(|_, r| r.at.elapsed() < REFUSAL_RETRY);
        of.clone()
    }

    fn refuse(&self, id: &ResourceId, refusal: Refusal) {
        let mut all = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(id.to_string().to_ascii_lowercase())
            .or_default()
            .insert(refusal.name.to_ascii_lowercase(), refusal);
    }

    /// Forget a write's operation that is still running after `expiry` instead of
    /// [`PENDING_EXPIRY`].
    pub fn with_pending_expiry(mut self, expiry: Duration) -> Self {
        self.pending_expiry = expiry;
        self
    }

    /// Bring `id` to what `target` plans, writing only when the plan says so.
    pub(super) async fn sync_target<T: Target<Resource = R>>(
        &self,
        id: &ResourceId,
        target: &T,
        freshness: Freshness,
    ) -> Result<Synced<T::Plan>, ArmError> {
        let arm = self.arm.as_ref();
        let slot = self.state.slot(&id.to_string());
        let mut mem = slot.lock().await;

        if let Some((handle, since)) = mem.pending.clone() {
            match arm.poll(&handle).await {
                Ok(Lro::Pending(h)) if since.elapsed() >= self.pending_expiry => {
                    // Likely stuck: read again and plan as if no write were running; the
                    // next write's If-Match still refuses a change made in between.
                    warn!(
                        kind = T::KIND,
                        id = %id,
                        operation = %h.url,
                        running = ?since.elapsed(),
                        "a write's operation is still running past the bound; forgetting it and reading again"
                    );
                    *mem = Remembered::default();
                }
                Ok(Lro::Pending(h)) => {
                    let wait = h.next_poll_in();
                    mem.pending = Some((h, since));
                    return Ok(Synced {
                        plan: T::Plan::default(),
                        wrote: false,
                        pending: Some(wait),
                        held: None,
                    });
                }
                Ok(Lro::Done(())) => *mem = Remembered::default(),
                Err(e) => {
                    *mem = Remembered::default();
                    return Err(e);
                }
            }
        }

        let trusted = match freshness {
            Freshness::Cached => true,
            Freshness::Reread => false,
            Freshness::ReadWithin(age) => mem.at.is_some_and(|at| at.elapsed() < age),
        };
        let refused = self.current_refusals(id);
        if trusted && let Some(remembered) = &mem.resource {
            let plan = target.plan(remembered, &refused);
            if !T::needs_write(&plan) {
                return Ok(Synced::done(plan, false));
            }
            if let Some(wait) = target.hold() {
                return Ok(Synced::held(plan, wait));
            }
        }

        let mut last_err = None;
        let mut refused = refused;
        let mut set_aside = 0;
        let mut attempt = 0;
        while attempt < PRECONDITION_ATTEMPTS {
            attempt += 1;
            // Whatever happens below, what was remembered is stale until proven otherwise.
            mem.resource = None;
            let current = target.get(arm, id).await?;
            let plan = target.plan(&current.resource, &refused);
            if !T::needs_write(&plan) {
                mem.resource = Some(current.resource);
                mem.at = Some(std::time::Instant::now());
                return Ok(Synced::done(plan, false));
            }
            if attempt == 1
                && let Some(wait) = target.hold()
            {
                mem.resource = Some(current.resource);
                mem.at = Some(std::time::Instant::now());
                return Ok(Synced::held(plan, wait));
            }
            let next = target.apply(&current.resource, &plan);
            let (added, changed, removed) = T::counts(&plan);
            debug!(kind = T::KIND, id = %id, attempt, added, changed, removed, "writing");
            let sent = std::time::Instant::now();
            match target.put(arm, id, &next, current.precondition()).await {
                Ok(Lro::Done(written)) => {
                    info!(kind = T::KIND, id = %id, added, changed, removed, "written");
                    mem.resource = Some(written.resource);
                    mem.at = Some(std::time::Instant::now());
                    return Ok(Synced::done(plan, true));
                }
                Ok(Lro::Pending(handle)) => {
                    return match arm.wait(handle.clone(), LRO_WAIT).await {
                        Ok(()) => Ok(Synced::done(plan, true)),
                        Err(ArmError::OperationTimeout { .. }) => {
                            let wait = handle.next_poll_in();
                            mem.pending = Some((handle, sent));
                            Ok(Synced {
                                plan,
                                wrote: true,
                                pending: Some(wait),
                                held: None,
                            })
                        }
                        Err(e) => Err(e),
                    };
                }
                Err(e @ ArmError::PreconditionFailed { .. }) => {
                    debug!(kind = T::KIND, id = %id, attempt, "changed between read and write; re-reading");
                    last_err = Some(e);
                }
                Err(e) => {
                    let named = match &e {
                        ArmError::Api {
                            status: 400,
                            message,
                            ..
                        } if set_aside < MAX_REFUSALS_PER_SYNC => target
                            .refused_entry(&plan, message)
                            .map(|entry| (entry, message.clone())),
                        _ => None,
                    };
                    let Some(((name, fingerprint), message)) = named else {
                        return Err(e);
                    };
                    warn!(kind = T::KIND, id = %id, entry = %name, %message, "ARM refused one entry; writing the others without it");
                    let refusal = Refusal {
                        name: name.clone(),
                        message,
                        fingerprint,
                        at: std::time::Instant::now(),
                    };
                    refused.insert(name.to_ascii_lowercase(), refusal.clone());
                    self.refuse(id, refusal);
                    set_aside += 1;
                    // Not a precondition attempt: the write is tried again without it.
                    attempt -= 1;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ArmError::InvalidResponse {
            id: id.to_string(),
            message: "no attempt was made".into(),
        }))
    }

    /// Forget what is remembered about `id` (after an out-of-band change).
    pub async fn forget(&self, id: &ResourceId) {
        let slot = self.state.slot(&id.to_string());
        slot.lock().await.resource = None;
    }
}
