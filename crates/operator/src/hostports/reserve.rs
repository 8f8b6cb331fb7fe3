//! Reserving host ports durably for one admission: drives the pure
//! [`Reservation`](poolnet_plan::hostports::Reservation) against the API server.
//!
//! Each proposed key is recorded by creating the `HostPortClaim` named after it. The API
//! server refuses a second object with the same name, so a key is reserved exactly when its
//! create succeeded (S2); a refusal means someone else holds it and another key is tried.
//! The index only makes good first guesses. Before denying, the claims are re-read live so
//! a denial for lack of ports is true at the time of that read (L2). A reservation that
//! fails deletes the claims it created: nobody was told about them, because only this call
//! carries its token and it has not answered yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::api::{Patch, PatchParams};
use kube::{Client, ResourceExt};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_api::v1alpha1::{ClaimOwner, HostPortClaim, HostPortClaimSpec, HostPortSource};
use poolnet_plan::hostports::{
    AllocError, Assignment, Key, KeySet, PortRequest, RequestPlan, Reservation, Source, Step,
};
use tokio::time::Instant;

use super::blocks::{BlockError, Blocks, Route};
use super::index::HostPortIndex;

/// Live re-reads of the claims one admission may make before it gives up.
pub const MAX_REFRESHES: u32 = 3;

/// Who a reservation is for: the admission request and its pod as seen during admission
/// (a pod named by generateName has no name yet, and no pod has a UID yet).
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// Reservation token: the admission request's UID (unique per webhook call).
    pub token: &'a str,
    pub namespace: &'a str,
    pub pod_name: Option<&'a str>,
    pub generate_name: Option<&'a str>,
    /// The DaemonSet controlling the pod: its static ports are shared with the other pods
    /// of that DaemonSet (one claim per port, see [`super::shared`]).
    pub daemon_set: Option<DaemonSetRef<'a>>,
}

/// A DaemonSet by name and UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonSetRef<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// Why ports could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// No ports to give (exhausted range, static port taken, persistent contention).
    #[error(transparent)]
    Denied(#[from] AllocError),
    #[error("recording host port {key} in HostPortClaim {key} failed: {source}")]
    Api { key: Key, source: kube::Error },
    #[error("listing HostPortClaims failed: {0}")]
    List(kube::Error),
    #[error("reserving host ports did not finish within {0:?}; retry the request")]
    Timeout(Duration),
    /// A host-port block could not serve the request (another replica's block, no valid
    /// Lease, every other block held by live replicas, an API error).
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error(
        "host port {key} became part of HostPortBlock {block} while it was being claimed; retry the request"
    )]
    BlockRace { key: Key, block: String },
    #[error(
        "no free {protocol} host port in this poolnet replica's blocks of {range}, and the rest of the range is in HostPortBlocks held by other replicas (kubectl get hostportblocks); retry the request: it may reach another replica"
    )]
    Busy {
        protocol: Protocol,
        range: PortRange,
    },
}

enum Outcome {
    /// This call's claim exists (created now, or by an earlier attempt of this call).
    Mine,
    /// Another reservation holds the key.
    Theirs,
    Failed(kube::Error),
    /// A shared claim kept disappearing under us.
    Churn,
}

/// Counters of one [`Reserver`] (for metrics, tests and the benchmark).
#[derive(Debug, Default)]
pub struct ReserverStats {
    /// Reservations that completed.
    pub reserved: AtomicU64,
    /// Claims created.
    pub created: AtomicU64,
    /// Proposals refused because another reservation held the key.
    pub conflicts: AtomicU64,
    /// Live re-reads of the claims after a stale proposal failed.
    pub refreshes: AtomicU64,
    /// Reservations abandoned (their claims rolled back).
    pub failed: AtomicU64,
}

impl ReserverStats {
    /// (reserved, created, conflicts, refreshes, failed).
    pub fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.reserved),
            get(&self.created),
            get(&self.conflicts),
            get(&self.refreshes),
            get(&self.failed),
        )
    }
}

/// Makes reservations against the API server.
#[derive(Clone)]
pub struct Reserver {
    claims: Api<HostPortClaim>,
    index: Arc<HostPortIndex>,
    stats: Arc<ReserverStats>,
    /// With blocks, automatic ports (and static ones inside a block) come from this
    /// replica's blocks, with no write per admission; without, every key is a claim.
    blocks: Option<Blocks>,
}

impl Reserver {
    pub fn new(client: Client, index: Arc<HostPortIndex>) -> Self {
        Self {
            claims: Api::all(client),
            index,
            stats: Arc::default(),
            blocks: None,
        }
    }

    /// Gives automatic ports from host-port blocks (`docs/hostport-blocks.md`).
    pub fn with_blocks(mut self, blocks: Blocks) -> Self {
        self.blocks = Some(blocks);
        self
    }

    pub fn blocks(&self) -> Option<&Blocks> {
        self.blocks.as_ref()
    }

    /// Whether the answer to admission `token` may still be sent: when it carries keys
    /// from this replica's blocks, only while its Lease is valid by its own clock (a replica
    /// frozen past it resumes and drops the answer); answers from claims always.
    pub fn may_answer(&self, namespace: &str, token: &str) -> bool {
        self.blocks
            .as_ref()
            .is_none_or(|b| b.granted(namespace, token).is_none() || b.may_answer())
    }

    pub fn stats(&self) -> &ReserverStats {
        &self.stats
    }

    pub fn index(&self) -> &Arc<HostPortIndex> {
        &self.index
    }

    /// Reserves a key for every request of `plan`; returns the assignments in request order
    /// once every claim is created. Gives up at `deadline` (before the API server's webhook
    /// timeout, so a reservation nobody waits for anymore is rolled back by its owner).
    pub async fn reserve(
        &self,
        who: &Claimant<'_>,
        plan: &RequestPlan,
        seed: u64,
        deadline: Instant,
    ) -> Result<Vec<Assignment>, ReserveError> {
        let mut attempted: Vec<Key> = Vec::new();
        let result = self
            .reserve_all(who, plan, seed, deadline, &mut attempted)
            .await;
        match &result {
            Ok(_) => self.stats.reserved.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                self.roll_back(who.token, &attempted).await;
                self.stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    /// A DaemonSet's pod shares its static ports with the other pods of that DaemonSet; every
    /// other request goes through a [`Reservation`].
    async fn reserve_all(
        &self,
        who: &Claimant<'_>,
        plan: &RequestPlan,
        seed: u64,
        deadline: Instant,
        attempted: &mut Vec<Key>,
    ) -> Result<Vec<Assignment>, ReserveError> {
        match &self.blocks {
            Some(blocks) => {
                self.reserve_with_blocks(blocks, who, plan, seed, deadline, attempted)
                    .await
            }
            None => {
                self.reserve_claims(who, plan, seed, deadline, attempted, &[])
                    .await
            }
        }
    }

    /// Static keys outside every block are claimed (as without blocks); everything else is
    /// granted from this replica's blocks, after the claims, so a failed grant rolls them
    /// back. A claim is confirmed by reading its block after the create: a block created
    /// meanwhile by another replica read the claims after its create, or this read sees it.
    async fn reserve_with_blocks(
        &self,
        blocks: &Blocks,
        who: &Claimant<'_>,
        plan: &RequestPlan,
        seed: u64,
        deadline: Instant,
        attempted: &mut Vec<Key>,
    ) -> Result<Vec<Assignment>, ReserveError> {
        let mut claimed = RequestPlan {
            warnings: plan.warnings.clone(),
            ..RequestPlan::default()
        };
        let mut claimed_at = Vec::new();
        let mut granted: Vec<PortRequest> = Vec::new();
        let mut granted_at = Vec::new();
        let mut narrow_auto = false;
        for (i, request) in plan.requests.iter().enumerate() {
            let route = match request.source {
                // A narrow range (a few blocks) stays with claims: held in blocks, it would
                // make every pod of it wait for the one replica holding them.
                // So does every range while this replica has no valid Lease (it could not
                // write it, or was frozen): claims keep admissions going meanwhile.
                Source::Auto(range)
                    if !blocks.wide(request.protocol, range) || !blocks.holding() =>
                {
                    narrow_auto = true;
                    Route::Claim
                }
                Source::Auto(_) => Route::Block,
                Source::Static(port) => {
                    route_by(blocks, Key::new(request.protocol, port), deadline).await?
                }
            };
            match route {
                Route::Claim => {
                    claimed.requests.push(request.clone());
                    claimed
                        .policies
                        .push(plan.policies.get(i).cloned().flatten());
                    claimed_at.push(i);
                }
                Route::Block => {
                    granted.push(request.clone());
                    granted_at.push(i);
                }
                Route::Elsewhere { block, holder } => {
                    let Source::Static(port) = request.source else {
                        unreachable!("only static keys are routed")
                    };
                    let key = Key::new(request.protocol, port);
                    return Err(BlockError::others_block(key, block, holder).into());
                }
            }
        }
        let mut out: Vec<Option<Assignment>> = vec![None; plan.requests.len()];
        if !claimed.requests.is_empty() {
            // Automatic keys for claims are chosen outside every existing block.
            let blocked = if narrow_auto {
                let ranges: Vec<(Protocol, PortRange)> = claimed
                    .requests
                    .iter()
                    .filter_map(|r| match r.source {
                        Source::Auto(range) => Some((r.protocol, range)),
                        Source::Static(_) => None,
                    })
                    .collect();
                tokio::time::timeout_at(deadline, blocks.keys_in_blocks(&ranges))
                    .await
                    .map_err(|_| ReserveError::Timeout(Duration::ZERO))??
            } else {
                Vec::new()
            };
            let got = self
                .reserve_claims(who, &claimed, seed, deadline, attempted, &blocked)
                .await?;
            for a in &got {
                let key = a.key();
                let route = route_by(blocks, key, deadline).await?;
                if route != Route::Claim {
                    return Err(ReserveError::BlockRace {
                        key,
                        block: poolnet_plan::hostports::blocks::BlockId::of(key).name(),
                    });
                }
            }
            for (i, a) in claimed_at.into_iter().zip(got) {
                out[i] = Some(a);
            }
        }
        if !granted.is_empty() {
            let index = Arc::clone(&self.index);
            let namespace = who.namespace.to_string();
            let daemon_set = who.daemon_set.map(|d| d.uid.to_string());
            // A DaemonSet's pods share their static keys: held only by pods of it, no claim.
            let shared = move |key: Key| {
                daemon_set.as_deref().is_some_and(|ds| {
                    index.claim(key).is_none()
                        && index.pods_holding(key).iter().all(|p| {
                            p.namespace == namespace && p.daemon_set.as_deref() == Some(ds)
                        })
                })
            };
            let got = match blocks
                .grant(who.namespace, who.token, &granted, shared, seed, deadline)
                .await
            {
                Ok(got) => got,
                Err(BlockError::Short(s)) => return Err(self.short(blocks, &granted, &s)),
                Err(e) => return Err(e.into()),
            };
            for (i, a) in granted_at.into_iter().zip(got) {
                out[i] = Some(a);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The refusal for a grant short of room: exhaustion when every block of the range is
    /// this replica's (so every free key was looked at), else a retry (other replicas hold
    /// the rest of the range).
    fn short(
        &self,
        blocks: &Blocks,
        requests: &[PortRequest],
        s: &poolnet_plan::hostports::blocks::Shortfall,
    ) -> ReserveError {
        use poolnet_plan::hostports::blocks::{BlockId, Shortfall, shortfall_error};
        let total = match s {
            Shortfall::NoRoom { request } | Shortfall::NotMine { request, .. } => {
                match requests.get(*request).map(|r| (r.protocol, r.source)) {
                    Some((protocol, Source::Auto(range))) => {
                        let held = blocks.held();
                        let all_mine =
                            BlockId::covering(protocol, range).all(|b| held.contains(&b));
                        if !all_mine {
                            return ReserveError::Busy { protocol, range };
                        }
                        range.len()
                    }
                    _ => 1,
                }
            }
            Shortfall::NotHolding => 0,
        };
        shortfall_error(requests, s, total).into()
    }

    /// Every key a claim (the protocol without blocks).
    async fn reserve_claims(
        &self,
        who: &Claimant<'_>,
        plan: &RequestPlan,
        seed: u64,
        deadline: Instant,
        attempted: &mut Vec<Key>,
        blocked: &[Key],
    ) -> Result<Vec<Assignment>, ReserveError> {
        let mut out: Vec<Option<Assignment>> = vec![None; plan.requests.len()];
        let mut rest = RequestPlan {
            warnings: plan.warnings.clone(),
            ..RequestPlan::default()
        };
        let mut rest_at = Vec::new();
        // Keys that must not be proposed (inside HostPortBlocks) count as held.
        let mut shared_keys = blocked.to_vec();
        for (i, request) in plan.requests.iter().enumerate() {
            match (who.daemon_set, request.source) {
                (Some(ds), Source::Static(port)) => {
                    let key = Key::new(request.protocol, port);
                    attempted.push(key);
                    let claim = draft(who, plan, i, key);
                    let shared = tokio::time::timeout_at(deadline, self.share(claim, who, ds))
                        .await
                        .map_err(|_| {
                            ReserveError::Timeout(
                                deadline.saturating_duration_since(Instant::now()),
                            )
                        })?;
                    match shared {
                        Outcome::Mine => {}
                        Outcome::Theirs => {
                            return Err(AllocError::StaticTaken {
                                origin: request.origin.clone(),
                                container_port: request.container_port,
                                protocol: request.protocol,
                                port,
                            }
                            .into());
                        }
                        Outcome::Failed(source) => return Err(ReserveError::Api { key, source }),
                        Outcome::Churn => {
                            return Err(AllocError::Contended { conflicts: 3 }.into());
                        }
                    }
                    shared_keys.push(key);
                    out[i] = Some(Assignment {
                        container_port: request.container_port,
                        protocol: request.protocol,
                        host_port: port,
                    });
                }
                _ => {
                    rest.requests.push(request.clone());
                    rest.policies.push(plan.policies.get(i).cloned().flatten());
                    rest_at.push(i);
                }
            }
        }
        if !rest.requests.is_empty() {
            let mut res = Reservation::new(rest.requests.clone(), seed);
            let got = self
                .drive(who, &rest, &mut res, attempted, deadline, &shared_keys)
                .await?;
            for (i, a) in rest_at.into_iter().zip(got) {
                out[i] = Some(a);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    async fn drive(
        &self,
        who: &Claimant<'_>,
        plan: &RequestPlan,
        res: &mut Reservation,
        attempted: &mut Vec<Key>,
        deadline: Instant,
        also_held: &[Key],
    ) -> Result<Vec<Assignment>, ReserveError> {
        let mut view = self.index.held();
        also_held.iter().for_each(|&k| {
            view.insert(k);
        });
        let mut refreshes = 0;
        loop {
            let mut step = res.next(&view);
            let mut fresh = false;
            if step.is_err() && refreshes < MAX_REFRESHES {
                refreshes += 1;
                self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                res.refresh();
                view = self.fresh_view().await?;
                also_held.iter().for_each(|&k| {
                    view.insert(k);
                });
                step = res.next(&view);
                fresh = true;
            }
            let keys = match step {
                Ok(Step::Done(assignments)) => return Ok(assignments),
                Ok(Step::Create(keys)) => keys,
                // Only a failure against a fresh read stands as it is (L2).
                Err(e) if fresh => return Err(e.into()),
                Err(_) => {
                    return Err(AllocError::Contended {
                        conflicts: res.conflicts(),
                    }
                    .into());
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ReserveError::Timeout(Duration::ZERO));
            }
            attempted.extend(keys.iter().copied());
            let creates = keys.iter().map(|&key| {
                let draft = res.request_of(key).map(|i| draft(who, plan, i, key));
                async move {
                    match draft {
                        Some(claim) => (key, self.create(claim, who.token).await),
                        None => (key, Outcome::Theirs),
                    }
                }
            });
            let outcomes = tokio::time::timeout(remaining, join_all(creates))
                .await
                .map_err(|_| ReserveError::Timeout(remaining))?;
            for (key, outcome) in outcomes {
                match outcome {
                    Outcome::Mine => res.created(key),
                    Outcome::Theirs => {
                        self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                        res.conflicted(key);
                    }
                    Outcome::Failed(source) => return Err(ReserveError::Api { key, source }),
                    Outcome::Churn => {
                        return Err(AllocError::Contended {
                            conflicts: res.conflicts(),
                        }
                        .into());
                    }
                }
                // A key someone else holds must look held from now on, whatever the cache says.
                view.insert(key);
            }
        }
    }

    /// Proposals against the cache only, with no writes: for dry-run requests, which must
    /// have no side effects (sideEffects: NoneOnDryRun) and reserve nothing (S4). A
    /// DaemonSet's static ports show as its own when the cache has them free or shared by it.
    pub fn preview(
        &self,
        plan: &RequestPlan,
        seed: u64,
        daemon_set: Option<DaemonSetRef<'_>>,
    ) -> Result<Vec<Assignment>, AllocError> {
        let mut out: Vec<Option<Assignment>> = vec![None; plan.requests.len()];
        let mut rest = Vec::new();
        let mut rest_at = Vec::new();
        let mut view = self.index.held();
        for (i, request) in plan.requests.iter().enumerate() {
            match (daemon_set, request.source) {
                (Some(ds), Source::Static(port)) => {
                    let key = Key::new(request.protocol, port);
                    let joinable = self
                        .index
                        .claim(key)
                        .is_some_and(|c| c.daemon_set.as_deref() == Some(ds.uid));
                    if !joinable && view.contains(key) {
                        return Err(AllocError::StaticTaken {
                            origin: request.origin.clone(),
                            container_port: request.container_port,
                            protocol: request.protocol,
                            port,
                        });
                    }
                    view.insert(key);
                    out[i] = Some(Assignment {
                        container_port: request.container_port,
                        protocol: request.protocol,
                        host_port: port,
                    });
                }
                _ => {
                    rest.push(request.clone());
                    rest_at.push(i);
                }
            }
        }
        let mut res = Reservation::new(rest, seed);
        let got = loop {
            match res.next(&view)? {
                Step::Done(a) => break a,
                Step::Create(keys) => keys.into_iter().for_each(|k| res.created(k)),
            }
        };
        for (i, a) in rest_at.into_iter().zip(got) {
            out[i] = Some(a);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Claims carrying reservation `token`, read live.
    pub async fn claims_of(&self, token: &str) -> Result<Vec<HostPortClaim>, kube::Error> {
        let lp = ListParams::default().labels(&format!("{RESERVATION_LABEL}={token}"));
        Ok(self.claims.list(&lp).await?.items)
    }

    /// Every claimed key (read live, names only) plus the pods' own host ports (cached).
    async fn fresh_view(&self) -> Result<KeySet, ReserveError> {
        let list = self
            .claims
            .list_metadata(&ListParams::default())
            .await
            .map_err(ReserveError::List)?;
        let mut view = self.index.pod_keys();
        for claim in list.items {
            if let Ok(key) = claim.name_any().parse::<Key>() {
                view.insert(key);
            }
        }
        Ok(view)
    }

    async fn create(&self, claim: HostPortClaim, token: &str) -> Outcome {
        // Two rounds: a claim found gone between our refused create and our read was just
        // released, so the key may be free now.
        for _ in 0..2 {
            match self.claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.stats.created.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Mine;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Outcome::Failed(e),
            }
            match self.claims.get_opt(&claim.name_any()).await {
                // An earlier create of this same call succeeded but its answer was lost.
                Ok(Some(existing)) if existing.spec.request_uid == token => return Outcome::Mine,
                Ok(Some(_)) => return Outcome::Theirs,
                Ok(None) => continue,
                Err(e) => return Outcome::Failed(e),
            }
        }
        Outcome::Theirs
    }

    /// Creates the DaemonSet's claim for `claim`'s key, or joins it when the DaemonSet
    /// (same UID, same namespace) already holds it. Joining writes `status.admittedAt`
    /// before the pod is admitted: the repair loop counts its grace period from it, and a
    /// release that read the claim before this write fails its resourceVersion
    /// precondition; a release that came first makes the write fail (404), and the claim
    /// is created again.
    async fn share(
        &self,
        mut claim: HostPortClaim,
        who: &Claimant<'_>,
        ds: DaemonSetRef<'_>,
    ) -> Outcome {
        claim.spec.daemon_set = Some(ClaimOwner {
            name: ds.name.to_string(),
            uid: ds.uid.to_string(),
        });
        for _ in 0..3 {
            match self.claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.stats.created.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Mine;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Outcome::Failed(e),
            }
            let existing = match self.claims.get_opt(&claim.name_any()).await {
                Ok(Some(existing)) => existing,
                Ok(None) => continue,
                Err(e) => return Outcome::Failed(e),
            };
            if existing.spec.request_uid == who.token {
                return Outcome::Mine;
            }
            let same_daemon_set = existing.spec.pod_namespace == who.namespace
                && existing
                    .spec
                    .daemon_set
                    .as_ref()
                    .is_some_and(|o| o.uid == ds.uid);
            if !same_daemon_set {
                return Outcome::Theirs;
            }
            let touch = serde_json::json!({
                "status": {
                    "admittedAt": Time(k8s_openapi::jiff::Timestamp::now()),
                    "orphanSince": null,
                }
            });
            match self
                .claims
                .patch_status(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(touch),
                )
                .await
            {
                Ok(_) => return Outcome::Mine,
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Outcome::Failed(e),
            }
        }
        // Created and released three times over while joining: let the caller retry.
        Outcome::Churn
    }

    /// Deletes this call's claims among `keys` (best effort, bounded in time): a claim is
    /// deleted only if it carries `token`, with its UID as precondition, so a claim someone
    /// else created in the meantime is never touched. What is left is collected by the
    /// repair loop after the grace period.
    pub async fn roll_back(&self, token: &str, keys: &[Key]) {
        let deletes = keys.iter().map(|key| async move {
            let name = key.claim_name();
            let Ok(Some(claim)) = self.claims.get_opt(&name).await else {
                return;
            };
            if claim.spec.request_uid != token {
                return;
            }
            // A DaemonSet's claim this call created may have been joined by another of its
            // pods meanwhile (admittedAt): that pod needs it. Deleted only as it was read.
            let shared = claim.spec.daemon_set.is_some();
            if shared
                && claim
                    .status
                    .as_ref()
                    .is_some_and(|s| s.admitted_at.is_some())
            {
                return;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: claim.metadata.uid.clone(),
                    resource_version: shared
                        .then(|| claim.metadata.resource_version.clone())
                        .flatten(),
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = self.claims.delete(&name, &dp).await {
                tracing::debug!(claim = %name, error = %e, "rolling back a claim");
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), join_all(deletes)).await;
    }
}

/// [`Blocks::route`] within the admission's `deadline`.
async fn route_by(blocks: &Blocks, key: Key, deadline: Instant) -> Result<Route, ReserveError> {
    tokio::time::timeout_at(deadline, blocks.route(key))
        .await
        .map_err(|_| ReserveError::Timeout(Duration::ZERO))?
        .map_err(ReserveError::from)
}

fn draft(who: &Claimant<'_>, plan: &RequestPlan, i: usize, key: Key) -> HostPortClaim {
    let request = &plan.requests[i];
    // Plans name policies `namespace/name`; the claim records the name (the policy lives in
    // the pod's namespace) so it fits a label value.
    let policy = plan
        .policies
        .get(i)
        .cloned()
        .flatten()
        .map(|p| match p.rsplit_once('/') {
            Some((_, name)) => name.to_string(),
            None => p,
        });
    HostPortClaim::for_spec(HostPortClaimSpec {
        protocol: key.protocol.into(),
        port: key.port,
        container_port: Some(request.container_port),
        source: match request.source {
            Source::Auto(_) => HostPortSource::Automatic,
            Source::Static(_) => HostPortSource::Static,
        },
        pod_namespace: who.namespace.to_string(),
        pod_name: who.pod_name.filter(|n| !n.is_empty()).map(String::from),
        pod_generate_name: who
            .generate_name
            .filter(|n| !n.is_empty())
            .map(String::from),
        policy,
        request_uid: who.token.to_string(),
        daemon_set: None,
        created_at: Time(k8s_openapi::jiff::Timestamp::now()),
    })
}
