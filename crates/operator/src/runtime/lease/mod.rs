//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's algorithm.
//!
//! Only the leader runs the controllers, so status and ARM writes come from one replica at a
//! time; webhooks run on every replica. The safety argument:
//! - a candidate takes a held Lease only after it saw the same record unchanged for the
//!   record's `leaseDurationSeconds`, timed on its own monotonic clock (the holder's
//!   `renewTime` comes from another machine's clock, so comparing it with ours would let
//!   clock skew create two leaders);
//! - the leader steps down when it has not renewed for `renew_deadline`, measured from the
//!   start of its last successful write, which is shorter than the lease duration; so it has
//!   stopped before any candidate may take over;
//! - every write is a replace carrying the `resourceVersion` it read, so of two racing
//!   writers one gets 409 Conflict;
//! - stepping down is up to the election task, which a frozen process runs late, so ARM
//!   writes are also fenced by a clock: the [`WriteGate`] shared with the ARM client
//!   (`LeaderElector::with_write_gate`) is open only until `renew_deadline` after the start
//!   of the last successful acquire or renew, and shut on any loss and on release.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use poolnet_arm::WriteGate;

use super::args::RuntimeArgs;
use super::metrics::Metrics;

/// Conflicting writes tolerated while releasing before giving up (the Lease then simply
/// expires).
const RELEASE_ATTEMPTS: u32 = 5;

/// Where the Lease lives, who we are, and the timings (see [`RuntimeArgs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The configuration the flags ask for; `None` when leader election is disabled.
    pub fn from_args(args: &RuntimeArgs) -> anyhow::Result<Option<Self>> {
        if !args.leader_election {
            return Ok(None);
        }
        let config = Self {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: args.identity(),
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
        };
        config.validate()?;
        Ok(Some(config))
    }

    /// Checks the orderings the safety argument needs.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.namespace.is_empty(), "the Lease namespace is empty");
        ensure!(!self.name.is_empty(), "the Lease name is empty");
        ensure!(!self.identity.is_empty(), "the leader identity is empty");
        ensure!(
            self.lease_duration.subsec_nanos() == 0
                && self.lease_duration.as_secs() >= 1
                && i32::try_from(self.lease_duration.as_secs()).is_ok(),
            "--lease-duration {:?}: the Lease stores whole seconds, so use a whole number \
             of seconds, at least 1",
            self.lease_duration
        );
        ensure!(
            self.renew_deadline < self.lease_duration,
            "--renew-deadline {:?} must be shorter than --lease-duration {:?}: the leader must \
             stop before a successor may start",
            self.renew_deadline,
            self.lease_duration
        );
        ensure!(
            !self.retry_period.is_zero() && self.retry_period < self.renew_deadline,
            "--retry-period {:?} must be positive and shorter than --renew-deadline {:?}, \
             or a single failed renewal costs the leadership",
            self.retry_period,
            self.renew_deadline
        );
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        // `validate` guarantees the value fits.
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Publishes leadership changes, and always retracts leadership when dropped, so a
/// cancelled or panicked elector never leaves `true` behind for its subscribers.
#[derive(Debug)]
struct Leadership {
    tx: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    /// Shared with the ARM client: open only until the renew deadline after the last
    /// successful acquire or renew (`poolnet_arm::WriteGate`).
    gate: WriteGate,
}

impl Leadership {
    /// The Lease is ours until at least `renewed + renew_deadline` (`renewed`: just before
    /// the successful acquire or renew was sent).
    fn held_until(&self, deadline: Instant) {
        self.gate.open_until(deadline);
    }

    fn set(&self, leader: bool) {
        if !leader {
            self.gate.close();
        }
        self.tx.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        });
        self.metrics.set_leader(leader);
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.set(false);
    }
}

enum Renewal {
    Renewed,
    Lost(String),
}

/// Competes for the Lease, renews it while leading, releases it on shutdown.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leadership: Leadership,
    /// The Lease as last read or written, for the `resourceVersion` of the next write.
    current: Option<Lease>,
    /// The holder's record as last seen, and when it was first seen unchanged.
    observed: Option<(LeaseSpec, Instant)>,
    /// Start of the last successful acquire or renew; `Some` exactly while leading.
    last_renew: Option<Instant>,
}

impl LeaderElector {
    /// An elector for `config` (validated here); leadership is also reported in
    /// `poolnet_leader` of `metrics`.
    pub fn new(client: Client, config: LeaseConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        config.validate()?;
        metrics.set_leader(false);
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leadership: Leadership {
                tx: watch::Sender::new(false),
                metrics,
                gate: WriteGate::closed(),
            },
            current: None,
            observed: None,
            last_renew: None,
        })
    }

    /// Keep `gate` open only while the Lease is surely ours: until the renew deadline after
    /// each successful acquire or renew, closed on any loss and on release. Give the same gate
    /// to the ARM client (`ArmConfig::write_gate`): a replica resumed after a freeze past its
    /// Lease then sends no write before its election task even runs.
    pub fn with_write_gate(mut self, gate: WriteGate) -> Self {
        if gate.is_always_open() {
            tracing::warn!(
                "the ARM client's write gate is always open: a replica that lost the Lease \
                 could still send ARM writes until its election task notices"
            );
        }
        gate.close();
        self.leadership.gate = gate;
        self
    }

    /// `true` while this elector leads. Turns `false` before anyone else can lead.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leadership.tx.subscribe()
    }

    /// Runs the election in a task; see [`LeaderHandle`].
    pub fn spawn(self) -> LeaderHandle {
        let leader = self.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // Only an explicit release stops the elector; a dropped handle aborts the task
            // instead (see `LeaderHandle`'s `Drop`).
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        }));
        LeaderHandle {
            leader,
            stop: Some(stop),
            task: Some(task),
            _always: None,
        }
    }

    /// Competes and renews until `shutdown` completes, then steps down and releases the
    /// Lease so a successor takes over at once. Whatever ran under the leadership must have
    /// stopped before `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tracing::info!(
            lease = %self.config.name,
            namespace = %self.config.namespace,
            identity = %self.config.identity,
            "leader election started"
        );
        tokio::pin!(shutdown);
        loop {
            let next = tokio::select! {
                biased;
                () = &mut shutdown => break,
                next = self.step() => next,
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(next) => {}
            }
        }
        let deadline = self.config.renew_deadline;
        tokio::time::timeout(deadline, self.release())
            .await
            .with_context(|| format!("releasing the Lease took longer than {deadline:?}"))?
    }

    /// One acquire or renew attempt; returns when to try next.
    async fn step(&mut self) -> Instant {
        let retry = self.config.retry_period;
        let Some(last_renew) = self.last_renew else {
            // A hung request must not stall the candidate: give up after a retry period.
            match tokio::time::timeout(retry, self.try_acquire()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not read or acquire the Lease"),
                Err(_) => tracing::warn!("acquiring the Lease timed out"),
            }
            return Instant::now() + retry;
        };
        let deadline = last_renew + self.config.renew_deadline;
        match tokio::time::timeout_at(deadline, self.renew()).await {
            Ok(Ok(Renewal::Renewed)) => {}
            Ok(Ok(Renewal::Lost(holder))) => {
                self.step_down(&format!("the Lease is now held by {holder}"));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the Lease failed; retrying"),
            Err(_) => self.step_down(&format!(
                "could not renew the Lease within the renew deadline ({:?})",
                self.config.renew_deadline
            )),
        }
        let next = Instant::now() + retry;
        match self.last_renew {
            // A failing leader must notice the deadline even if it falls before the next
            // regular attempt: the next step then times out at once and steps down.
            Some(last) => next.min(last + self.config.renew_deadline),
            None => next,
        }
    }

    /// Creates the Lease, or takes it over when it is free or expired.
    async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let Some(existing) = self.api.get_opt(&self.config.name).await? else {
            let lease = self.claim(Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            });
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(written) => {
                    self.became_leader(written, started);
                    Ok(true)
                }
                // Another candidate created it first; it is the leader.
                Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&existing);
        let holder = holder_of(&existing);
        let ours = holder == Some(self.config.identity.as_str());
        if let Some(holder) = holder
            && !ours
            && !self.observed_expired()
        {
            tracing::debug!(%holder, "the Lease is held by another replica");
            return Ok(false);
        }
        let mut lease = existing.clone();
        if !ours {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.acquire_time = None;
        }
        let lease = self.claim(lease);
        match self.write(&lease).await {
            Ok(written) => {
                if let Some(previous) = holder.filter(|_| !ours) {
                    tracing::info!(%previous, "took over the expired Lease");
                }
                self.became_leader(written, started);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                // Another candidate won the race (or the Lease was just deleted): the next
                // attempt reads the new state.
                self.leadership.metrics.lease_conflict();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes a new `renewTime`; on 409 re-reads and retries while the Lease is still ours
    /// (the caller bounds this by the renew deadline).
    async fn renew(&mut self) -> Result<Renewal, kube::Error> {
        loop {
            let current = match self.current.take() {
                Some(lease) => lease,
                None => match self.api.get_opt(&self.config.name).await? {
                    Some(lease) => lease,
                    None => return Ok(Renewal::Lost("nobody (the Lease was deleted)".into())),
                },
            };
            match holder_of(&current) {
                Some(holder) if holder == self.config.identity => {}
                other => {
                    let holder = other.unwrap_or("nobody").to_string();
                    self.observe(&current);
                    return Ok(Renewal::Lost(holder));
                }
            }
            let started = Instant::now();
            let lease = self.claim(current);
            match self.write(&lease).await {
                Ok(written) => {
                    self.observe(&written);
                    self.current = Some(written);
                    self.last_renew = Some(started);
                    self.leadership
                        .held_until(started + self.config.renew_deadline);
                    return Ok(Renewal::Renewed);
                }
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    self.leadership.metrics.lease_conflict();
                    tracing::debug!("the Lease changed since it was read; re-reading");
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    return Ok(Renewal::Lost("nobody (the Lease was deleted)".into()));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Steps down, then clears the holder if the Lease is ours on the server (a cancelled
    /// acquire may have landed even if we never learnt of it).
    async fn release(mut self) -> anyhow::Result<()> {
        if self.last_renew.take().is_some() {
            tracing::info!("stepping down: shutting down");
        }
        self.leadership.set(false);
        for _ in 0..RELEASE_ATTEMPTS {
            let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            if holder_of(&lease) != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            let now = Some(MicroTime(Timestamp::now()));
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            // As client-go: a released record is free, and expires at once for any reader
            // that only looks at the duration.
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = now.clone();
            spec.renew_time = now;
            match self.write(&lease).await {
                Ok(_) => {
                    tracing::info!(lease = %self.config.name, "released the Lease");
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    self.leadership.metrics.lease_conflict();
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
                Err(e) => return Err(e).context("releasing the Lease"),
            }
        }
        bail!(
            "could not release the Lease after {RELEASE_ATTEMPTS} conflicting writes; it \
             expires after its duration"
        )
    }

    /// Replaces the Lease; the `resourceVersion` in `lease` makes a stale write fail with
    /// 409 Conflict instead of overwriting someone else's.
    async fn write(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.config.name, &PostParams::default(), lease)
            .await
    }

    /// `lease` with us as holder and a fresh `renewTime` (and `acquireTime` when unset).
    fn claim(&self, mut lease: Lease) -> Lease {
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        spec.acquire_time.get_or_insert_with(|| now.clone());
        spec.renew_time = Some(now);
        lease
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
            self.observed = Some((spec, Instant::now()));
        }
    }

    /// The observed record has not changed for its own lease duration.
    fn observed_expired(&self) -> bool {
        let Some((spec, since)) = &self.observed else {
            return false;
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.config.lease_duration);
        *since + duration <= Instant::now()
    }

    fn became_leader(&mut self, lease: Lease, started: Instant) {
        self.observe(&lease);
        self.current = Some(lease);
        self.last_renew = Some(started);
        self.leadership
            .held_until(started + self.config.renew_deadline);
        self.leadership.set(true);
        tracing::info!(
            lease = %self.config.name,
            identity = %self.config.identity,
            "acquired leadership"
        );
    }

    fn step_down(&mut self, reason: &str) {
        self.last_renew = None;
        self.current = None;
        self.leadership.set(false);
        tracing::warn!(lease = %self.config.name, reason, "lost leadership");
    }
}

/// The holder, if any (an empty identity means the Lease is free).
fn holder_of(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// A running election (see [`LeaderElector::spawn`]), or a stand-in that always leads when
/// leader election is disabled.
///
/// Call [`LeaderHandle::release`] on shutdown, after the work that needs leadership has
/// stopped. Dropping the handle instead aborts the election like a crash: the Lease is not
/// released and a successor waits for it to expire.
#[derive(Debug)]
pub struct LeaderHandle {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the channel open (and `true`) when there is no election.
    _always: Option<watch::Sender<bool>>,
}

impl LeaderHandle {
    /// For `--leader-election=false`: leads from the start, until dropped.
    pub fn always_leader(metrics: &Metrics) -> Self {
        let (tx, leader) = watch::channel(true);
        metrics.set_leader(true);
        Self {
            leader,
            stop: None,
            task: None,
            _always: Some(tx),
        }
    }

    /// `true` while leading; see [`run_while_leader`].
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops the election and releases the Lease if held, so a successor takes over at once.
    pub async fn release(mut self) -> anyhow::Result<()> {
        let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) else {
            return Ok(());
        };
        // The task may already have ended (it only ends on a stop signal or a panic); its
        // join result says which.
        let _ = stop.send(());
        task.await.context("the leader election task panicked")?
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs `work()` while `leader` is `true`: starts it on gaining leadership, drops (cancels)
/// it as soon as leadership is lost, and starts it afresh when leadership returns.
///
/// Returns `Ok(())` once `shutdown` completes (the work is dropped first, so the Lease can
/// then be released safely), the work's own result if it ends by itself, or an error if the
/// election ends underneath it.
pub async fn run_while_leader<F, Fut>(
    mut leader: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
    mut work: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            gained = leader.wait_for(|leading| *leading) => {
                gained.map(drop).context("leader election stopped before this replica led")?;
            }
        }
        tracing::info!("leading: starting the leader-only work");
        let running = work();
        tokio::pin!(running);
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            lost = leader.wait_for(|leading| !*leading) => {
                lost.map(drop).context("leader election stopped while leading")?;
                tracing::warn!("lost leadership: stopped the leader-only work");
            }
            result = &mut running => return result,
        }
    }
}

#[cfg(test)]
mod tests;
