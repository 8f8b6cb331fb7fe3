//! Host-port blocks, the I/O half (`docs/hostport-blocks.md`; the decisions are in
//! [`poolnet_plan::hostports::blocks`]).
//!
//! Every webhook replica runs one [`Blocks`]: it keeps its own Lease renewed
//! (`poolnet-ports-<pod>` in the operator's namespace), takes `HostPortBlock`s when its
//! admissions need room, gives their keys to pods from memory (no API write on the answer
//! path), confirms with live reads what its caches do not show yet, and gives back blocks
//! nothing uses. Blocks of a replica that stopped renewing are taken over after its Lease's
//! duration plus the quarantine, by the taker's clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_api::v1alpha1::{HostPortBlock, HostPortClaim};
use poolnet_plan::hostports::blocks::{
    BlockId, Book, CREATE_DEADLINE, HolderWatch, LeaseSeen, LeaseTiming, Pending, Seen, Shortfall,
    candidates,
};
use poolnet_plan::hostports::{Assignment, Key, PodView, PortRequest};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::index::{HostPortIndex, pod_keys};

/// A grant not shown by the caches this long after the admission is checked live: the
/// API server's create deadline plus a margin.
pub const CHECK_AFTER: Duration = Duration::from_secs(CREATE_DEADLINE.as_secs() + 5);

/// Take more blocks, in the background, once fewer free keys than this are left for a
/// range: admissions come in bursts as large as the API server's concurrency (64 in flight
/// use a block in milliseconds), and a take is a few API calls.
pub const LOW_WATER: u32 = 192;

/// Free keys a background take aims for.
pub const HIGH_WATER: u32 = 2 * LOW_WATER;

/// (take below, aim for) free keys of `range` held here: the water marks, but never more
/// than an eighth / a quarter of the range, so that one replica does not hold a range other
/// replicas need.
fn marks(range: PortRange) -> (u32, u32) {
    let len = range.len();
    (
        LOW_WATER.min(len / 8).max(1),
        HIGH_WATER.min(len / 4).max(1),
    )
}

/// Blocks one take may add.
pub const TAKE_AT_ONCE: u32 = 8;

/// Automatic ports of ranges narrower than this many blocks keep one claim per port: held
/// in blocks, every pod of a small range would have to reach the one replica holding them.
pub const MIN_BLOCKS: usize = 16;

/// How a replica works its blocks.
#[derive(Debug, Clone)]
pub struct BlockConfig {
    /// Namespace of the replica's Lease (the operator's own).
    pub namespace: String,
    /// The pod (or process) name: the Lease is `poolnet-ports-<name>`.
    pub name: String,
    pub timing: LeaseTiming,
    /// Give back a block unused this long that holds no key.
    pub idle: Duration,
    /// Write a block's `status.inUse` at most this often (and only when it changed).
    pub status_every: Duration,
    /// Ranges of at least this many blocks get automatic ports from blocks ([`MIN_BLOCKS`]).
    pub min_blocks: usize,
}

impl BlockConfig {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            timing: LeaseTiming::default(),
            idle: Duration::from_secs(600),
            status_every: Duration::from_secs(60),
            min_blocks: MIN_BLOCKS,
        }
    }
}

/// Counters (metrics, tests, the benchmark).
#[derive(Debug, Default)]
pub struct BlockStats {
    pub granted: AtomicU64,
    pub taken: AtomicU64,
    pub taken_over: AtomicU64,
    pub released: AtomicU64,
    pub renewals: AtomicU64,
    pub lapses: AtomicU64,
    pub live_checks: AtomicU64,
}

/// Why a block grant failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(
        "this poolnet replica's host-port Lease is not valid (not renewed in time); retry the request"
    )]
    NotHolding,
    #[error(
        "host port {key} lies in HostPortBlock {block}, given out by poolnet replica {holder}; retry the request (it may reach that replica), or choose a port outside {first}-{last}"
    )]
    OthersBlock {
        key: Key,
        block: String,
        holder: String,
        first: u16,
        last: u16,
    },
    /// No room in the blocks this replica holds and none could be taken.
    #[error("no room in this replica's host-port blocks ({0:?})")]
    Short(Shortfall),
    #[error("HostPortBlock {block}: {source}")]
    Api { block: String, source: kube::Error },
}

impl BlockError {
    /// `key` lies in block `block` (its name) that replica `holder` gives out.
    pub fn others_block(key: Key, block: String, holder: String) -> Self {
        let span = BlockId::of(key).span();
        Self::OthersBlock {
            key,
            block,
            holder,
            first: span.start(),
            last: span.end(),
        }
    }
}

/// Where a static key is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// In no block: one HostPortClaim, as before blocks.
    Claim,
    /// In a block this replica holds.
    Block,
    /// In another replica's block.
    Elsewhere { block: String, holder: String },
}

struct Inner {
    client: Client,
    blocks: Api<HostPortBlock>,
    leases: Api<Lease>,
    claims: Api<HostPortClaim>,
    pods: Api<Pod>,
    index: Arc<HostPortIndex>,
    config: BlockConfig,
    lease_name: String,
    epoch: Instant,
    book: Mutex<Book>,
    identity: Mutex<String>,
    watch: Mutex<HolderWatch>,
    /// One take at a time on this replica (two admissions short of room need one block).
    taking: tokio::sync::Mutex<()>,
    /// A take ahead of need is running.
    prefetching: std::sync::atomic::AtomicBool,
    /// Per block: (inUse last written, when).
    reported: Mutex<std::collections::HashMap<BlockId, (u32, Duration)>>,
    stats: BlockStats,
}

/// One replica's blocks. Cheap to clone.
#[derive(Clone)]
pub struct Blocks {
    inner: Arc<Inner>,
}

fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Lease names are DNS subdomains; pod names are too, but a name given by flag may not be.
fn lease_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches(|c| c == '-' || c == '.');
    let mut out = format!("poolnet-ports-{clean}");
    out.truncate(253);
    out
}

struct IndexSeen<'a>(&'a HostPortIndex);

impl Seen for IndexSeen<'_> {
    fn admission_stored(&self, namespace: &str, token: &str) -> bool {
        self.0.with_token(namespace, token).is_some()
    }
    fn pod_cached(&self, uid: &str) -> bool {
        self.0.has_uid(uid)
    }
    fn claim_cached(&self, name: &str) -> bool {
        name.parse::<Key>()
            .ok()
            .and_then(|k| self.0.claim(k))
            .is_some()
    }
}

impl Blocks {
    pub fn new(client: Client, index: Arc<HostPortIndex>, config: BlockConfig) -> Self {
        let identity = format!("{}/{}", config.name, nonce());
        Self {
            inner: Arc::new(Inner {
                client: client.clone(),
                blocks: Api::all(client.clone()),
                leases: Api::namespaced(client.clone(), &config.namespace),
                claims: Api::all(client.clone()),
                pods: Api::all(client),
                index,
                lease_name: lease_name(&config.name),
                book: Mutex::new(Book::new(config.timing)),
                config,
                epoch: Instant::now(),
                identity: Mutex::new(identity),
                watch: Mutex::default(),
                taking: tokio::sync::Mutex::new(()),
                prefetching: std::sync::atomic::AtomicBool::new(false),
                reported: Mutex::default(),
                stats: BlockStats::default(),
            }),
        }
    }

    fn now(&self) -> Duration {
        Instant::now().duration_since(self.inner.epoch)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This replica's current holder identity (`<name>/<nonce>`; a new one after a lapse).
    pub fn identity(&self) -> String {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.inner.config.namespace, self.inner.lease_name)
    }

    pub fn stats(&self) -> &BlockStats {
        &self.inner.stats
    }

    /// Blocks held now.
    pub fn held(&self) -> Vec<BlockId> {
        self.book().blocks()
    }

    /// Whether this replica may answer from its blocks now.
    pub fn holding(&self) -> bool {
        let now = self.now();
        self.book().holding(now)
    }

    /// The assignments this replica granted to admission `token` in `namespace` and still
    /// remembers (a re-invocation gets the same ports).
    pub fn granted(&self, namespace: &str, token: &str) -> Option<Vec<Assignment>> {
        self.book().granted(namespace, token)
    }

    /// Renews the Lease (creating it if needed). A renewal that finds the previous validity
    /// already run out lapses first: every block is forgotten and a new identity is used,
    /// so what the old one held is taken over by the rules, by anyone, this replica included.
    pub async fn renew(&self) -> Result<(), kube::Error> {
        let sent_at = self.now();
        {
            let mut book = self.book();
            if !book.holding(sent_at) && !book.blocks().is_empty() {
                let lost = book.lapse();
                drop(book);
                let fresh = format!("{}/{}", self.inner.config.name, nonce());
                tracing::warn!(
                    blocks = lost.len(),
                    identity = %fresh,
                    "host-port Lease lapsed: the blocks held are given up and taken again only after the quarantine"
                );
                *self
                    .inner
                    .identity
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = fresh;
                self.inner.stats.lapses.fetch_add(1, Ordering::Relaxed);
            }
        }
        let identity = self.identity();
        let spec = LeaseSpec {
            holder_identity: Some(identity),
            lease_duration_seconds: Some(self.inner.config.timing.duration.as_secs() as i32),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        };
        let leases = &self.inner.leases;
        match leases.get_opt(&self.inner.lease_name).await? {
            Some(mut lease) => {
                let acquire = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    != spec.holder_identity.as_deref();
                let mut next = spec;
                next.acquire_time = if acquire {
                    next.renew_time.clone()
                } else {
                    lease.spec.as_ref().and_then(|s| s.acquire_time.clone())
                };
                lease.spec = Some(next);
                leases
                    .replace(&self.inner.lease_name, &PostParams::default(), &lease)
                    .await?;
            }
            None => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(self.inner.lease_name.clone());
                let mut spec = spec;
                spec.acquire_time = spec.renew_time.clone();
                lease.spec = Some(spec);
                leases.create(&PostParams::default(), &lease).await?;
            }
        }
        self.book().renewed(sent_at);
        self.inner.stats.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Renews, settles and gives back idle blocks until `shutdown`; then gives back every
    /// block it can (empty ones are deleted; the others are left to be taken over).
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.inner.config.timing.renew_every;
        loop {
            if let Err(e) = self.renew().await {
                tracing::warn!(error = %e, lease = %self.lease_ref(), "renewing the host-port Lease failed");
            }
            self.settle().await;
            self.retire_idle(self.inner.config.idle).await;
            self.report_use().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Drops grants the caches show, and checks live the ones due: an admission's pod
    /// (by token), a pod or a claim found when a block was taken.
    pub async fn settle(&self) {
        let due = {
            let now = self.now();
            self.book().settle(&IndexSeen(&self.inner.index), now)
        };
        for why in due {
            self.inner.stats.live_checks.fetch_add(1, Ordering::Relaxed);
            let present = match &why {
                Pending::Admission { namespace, token } => {
                    let pods: Api<Pod> = Api::namespaced(self.inner.client.clone(), namespace);
                    let lp = ListParams::default()
                        .labels(&format!("{RESERVATION_LABEL}={token}"))
                        .limit(1);
                    pods.list_metadata(&lp).await.map(|l| !l.items.is_empty())
                }
                Pending::Pod {
                    namespace,
                    name,
                    uid,
                } => {
                    let pods: Api<Pod> = Api::namespaced(self.inner.client.clone(), namespace);
                    pods.get_metadata_opt(name)
                        .await
                        .map(|p| p.is_some_and(|p| p.metadata.uid.as_deref() == Some(uid)))
                }
                Pending::Claim { name } => {
                    self.inner.claims.get_opt(name).await.map(|c| c.is_some())
                }
            };
            let now = self.now();
            match present {
                Ok(false) => self.book().confirmed_gone(&why),
                // Stored but not cached yet: the cache catches up; look again later.
                Ok(true) => self
                    .book()
                    .recheck_later(&why, now + Duration::from_secs(5)),
                Err(e) => {
                    tracing::debug!(error = %e, "live check of a host-port grant failed");
                    self.book()
                        .recheck_later(&why, now + Duration::from_secs(5));
                }
            }
        }
    }

    /// Gives back blocks unused for `idle` that hold no key: removed from the book first
    /// (no grant can come from them), then deleted if the object still names this replica.
    pub async fn retire_idle(&self, idle: Duration) -> usize {
        let view = self.inner.index.held();
        let idle = {
            let now = self.now();
            self.book().retire_idle(&view, now, idle)
        };
        let mut released = 0;
        for b in idle {
            match self.delete_own(b).await {
                Ok(()) => {
                    released += 1;
                    self.inner.stats.released.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // The delete may have been applied with its answer lost: keep the block
                    // only if a live read shows it still names this replica.
                    tracing::debug!(block = %b, error = %e, "giving back a host-port block failed");
                    let me = self.identity();
                    if let Ok(Some(obj)) = self.inner.blocks.get_opt(&b.name()).await
                        && obj.spec.holder == me
                    {
                        let now = self.now();
                        self.book().add_block(b, now);
                    }
                }
            }
        }
        released
    }

    async fn delete_own(&self, b: BlockId) -> Result<(), kube::Error> {
        let name = b.name();
        let Some(obj) = self.inner.blocks.get_opt(&name).await? else {
            return Ok(());
        };
        if obj.spec.holder != self.identity() {
            return Ok(());
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: obj.metadata.uid.clone(),
                resource_version: obj.metadata.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        self.inner.blocks.delete(&name, &dp).await.map(|_| ())
    }

    /// Writes `status.inUse` of the blocks whose count changed, at most once per
    /// `status_every` each (the admins' `kubectl get hostportblocks` view).
    async fn report_use(&self) {
        let view = self.inner.index.held();
        let now = self.now();
        let counts: Vec<(BlockId, u32)> = {
            let book = self.book();
            book.blocks()
                .into_iter()
                .map(|b| (b, book.in_use(b, &view)))
                .collect()
        };
        for (b, n) in counts {
            let due = {
                let reported = self
                    .inner
                    .reported
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match reported.get(&b) {
                    Some(&(last, at)) => {
                        last != n && now.saturating_sub(at) >= self.inner.config.status_every
                    }
                    None => true,
                }
            };
            if !due {
                continue;
            }
            let patch = serde_json::json!({
                "status": { "inUse": n, "updatedAt": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()) }
            });
            if self
                .inner
                .blocks
                .patch_status(&b.name(), &PatchParams::default(), &Patch::Merge(patch))
                .await
                .is_ok()
            {
                self.inner
                    .reported
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(b, (n, now));
            }
        }
    }

    /// Whether automatic ports of `range` come from blocks: ranges of at least
    /// `min_blocks` blocks. Narrower ranges keep one claim per port, so that every replica
    /// can serve them (a block is served by its holder alone).
    pub fn wide(&self, protocol: Protocol, range: PortRange) -> bool {
        BlockId::covering(protocol, range).count() >= self.inner.config.min_blocks
    }

    /// Keys of `ranges` inside existing HostPortBlocks (a live list): claims must not be
    /// proposed there.
    pub async fn keys_in_blocks(
        &self,
        ranges: &[(Protocol, PortRange)],
    ) -> Result<Vec<Key>, BlockError> {
        let list = self
            .inner
            .blocks
            .list_metadata(&ListParams::default())
            .await
            .map_err(|source| BlockError::Api {
                block: "(list)".into(),
                source,
            })?;
        let names: std::collections::HashSet<String> =
            list.items.into_iter().map(|b| b.name_any()).collect();
        let mut out = Vec::new();
        for &(protocol, range) in ranges {
            for b in BlockId::covering(protocol, range) {
                if names.contains(&b.name()) {
                    let span = b.span();
                    out.extend((span.start()..=span.end()).map(|p| Key::new(protocol, p)));
                }
            }
        }
        Ok(out)
    }

    /// Where static key `key` is recorded: read live (a quorum read), since a block may have
    /// been created a moment ago by another replica.
    pub async fn route(&self, key: Key) -> Result<Route, BlockError> {
        let b = BlockId::of(key);
        if self.book().holds(b) {
            return Ok(Route::Block);
        }
        let name = b.name();
        let obj = self
            .inner
            .blocks
            .get_opt(&name)
            .await
            .map_err(|source| BlockError::Api {
                block: name.clone(),
                source,
            })?;
        let Some(obj) = obj else {
            return Ok(Route::Claim);
        };
        // Ours after all (taken by a concurrent admission), or a dead holder's we may take.
        if self.take_existing(b, &obj).await? {
            return Ok(Route::Block);
        }
        Ok(Route::Elsewhere {
            block: name,
            holder: obj.spec.holder,
        })
    }

    /// Gives every request a key from this replica's blocks, taking blocks as needed.
    /// `shared(key)`: a held static key the pod may share (its DaemonSet's).
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        namespace: &str,
        token: &str,
        requests: &[PortRequest],
        shared: impl Fn(Key) -> bool,
        seed: u64,
        deadline: Instant,
    ) -> Result<Vec<Assignment>, BlockError> {
        let mut tried_renew = false;
        let mut takes = 0;
        loop {
            let view = self.inner.index.held();
            let result = {
                let now = self.now();
                self.book().grant(
                    namespace,
                    token,
                    requests,
                    &view,
                    &shared,
                    seed,
                    now,
                    CHECK_AFTER,
                )
            };
            match result {
                Ok(a) => {
                    self.inner.stats.granted.fetch_add(1, Ordering::Relaxed);
                    self.prefetch(requests, &view, seed);
                    return Ok(a);
                }
                Err(Shortfall::NotHolding) if !tried_renew => {
                    tried_renew = true;
                    let _ = self.renew().await;
                }
                Err(Shortfall::NotHolding) => return Err(BlockError::NotHolding),
                Err(s @ Shortfall::NoRoom { request }) => {
                    let r = &requests[request];
                    let range = match r.source {
                        poolnet_plan::hostports::Source::Auto(range) => range,
                        poolnet_plan::hostports::Source::Static(_) => {
                            return Err(BlockError::Short(s));
                        }
                    };
                    takes += 1;
                    if takes > 4 || Instant::now() >= deadline {
                        return Err(BlockError::Short(s));
                    }
                    // Room for the burst this admission is part of.
                    if !self
                        .take_for(r.protocol, range, seed, 1, marks(range).0)
                        .await?
                    {
                        return Err(BlockError::Short(s));
                    }
                }
                Err(Shortfall::NotMine { block, .. }) => {
                    takes += 1;
                    if takes > 4 {
                        return Err(BlockError::Short(Shortfall::NotMine { request: 0, block }));
                    }
                    match self
                        .route(Key::new(block.protocol, block.start.max(1)))
                        .await?
                    {
                        Route::Block => {}
                        Route::Claim => {
                            if !self.take_block(block).await? {
                                return Err(BlockError::Short(Shortfall::NotMine {
                                    request: 0,
                                    block,
                                }));
                            }
                        }
                        Route::Elsewhere {
                            block: name,
                            holder,
                        } => {
                            return Err(BlockError::others_block(
                                Key::new(block.protocol, block.span().start()),
                                name,
                                holder,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Takes blocks in the background when an automatic request's range (of at least
    /// [`MIN_BLOCKS`] blocks) has fewer than [`LOW_WATER`] free keys left in this
    /// replica's blocks, so admissions rarely wait for a take (one at a time per replica).
    fn prefetch(
        &self,
        requests: &[PortRequest],
        view: &poolnet_plan::hostports::KeySet,
        seed: u64,
    ) {
        for r in requests {
            let poolnet_plan::hostports::Source::Auto(range) = r.source else {
                continue;
            };
            if !self.wide(r.protocol, range) {
                continue;
            }
            let (low, high) = marks(range);
            let spare = self.book().spare(r.protocol, range, view, low);
            if spare >= low || self.inner.prefetching.swap(true, Ordering::AcqRel) {
                continue;
            }
            let this = self.clone();
            let protocol = r.protocol;
            tokio::spawn(async move {
                if let Err(e) = this.take_for(protocol, range, seed, low, high).await {
                    tracing::debug!(error = %e, "taking a host-port block ahead of need");
                }
                this.inner.prefetching.store(false, Ordering::Release);
            });
            return;
        }
    }

    /// What a grant would give now, remembering nothing (dry runs); `None` when the blocks
    /// held cannot say.
    pub fn preview(&self, requests: &[PortRequest], seed: u64) -> Option<Vec<Assignment>> {
        let view = self.inner.index.held();
        let now = self.now();
        self.book().preview(requests, &view, seed, now).ok()
    }

    /// Whether the answer built from a grant may still be sent: the Lease is valid by this
    /// replica's clock (a replica frozen past it resumes here and drops the answer).
    pub fn may_answer(&self) -> bool {
        self.holding()
    }

    /// Unless `enough` free keys of `range` are there already, takes blocks until `want`
    /// are (at most [`TAKE_AT_ONCE`] per call): blocks nobody has first (created together,
    /// one live claims list for all), else blocks whose holder is gone. False when no free
    /// key is there and every block of the range is held by a live replica (or this one).
    pub async fn take_for(
        &self,
        protocol: Protocol,
        range: PortRange,
        seed: u64,
        enough: u32,
        want: u32,
    ) -> Result<bool, BlockError> {
        let _one = self.inner.taking.lock().await;
        let spare = || {
            let view = self.inner.index.held();
            self.book().spare(protocol, range, &view, want.max(enough))
        };
        // Another admission may have taken some while this one waited.
        if spare() >= enough {
            return Ok(true);
        }
        let existing = self
            .inner
            .blocks
            .list(&ListParams::default())
            .await
            .map_err(|source| BlockError::Api {
                block: "(list)".into(),
                source,
            })?;
        let known: std::collections::HashMap<String, HostPortBlock> = existing
            .items
            .into_iter()
            .map(|b| (b.name_any(), b))
            .collect();
        let (fresh, held) = candidates(protocol, range, |b| known.contains_key(&b.name()), seed);
        let mut took = 0;
        let mut fresh = fresh.into_iter();
        // A few rounds: a candidate another replica created meanwhile is skipped (409).
        for _ in 0..3 {
            let have = spare();
            if took >= TAKE_AT_ONCE || have >= want {
                return Ok(true);
            }
            let need = (want - have)
                .div_ceil(u32::from(poolnet_plan::hostports::blocks::BLOCK_SIZE))
                .clamp(1, TAKE_AT_ONCE - took);
            let round: Vec<BlockId> = fresh.by_ref().take(need as usize).collect();
            if round.is_empty() {
                break;
            }
            took += self.create_blocks(&round).await?.len() as u32;
        }
        let mut others: Vec<(BlockId, &HostPortBlock)> = held
            .into_iter()
            .filter(|b| !self.book().holds(*b))
            .filter_map(|b| known.get(&b.name()).map(|o| (b, o)))
            .collect();
        others.sort_by_key(|(b, _)| *b);
        for (b, obj) in others {
            if took >= TAKE_AT_ONCE || spare() >= want {
                break;
            }
            if self.take_existing(b, obj).await? {
                took += 1;
            }
        }
        Ok(spare() > 0)
    }

    /// Takes block `b` for a static key: creates it, or takes it over if its holder is gone.
    async fn take_block(&self, b: BlockId) -> Result<bool, BlockError> {
        let _one = self.inner.taking.lock().await;
        if self.book().holds(b) {
            return Ok(true);
        }
        if !self.create_blocks(&[b]).await?.is_empty() {
            return Ok(true);
        }
        match self.inner.blocks.get_opt(&b.name()).await {
            Ok(Some(obj)) => self.take_existing(b, &obj).await,
            Ok(None) => Ok(false),
            Err(source) => Err(BlockError::Api {
                block: b.name(),
                source,
            }),
        }
    }

    /// Creates the objects of blocks nobody has (concurrently); returns the blocks created.
    /// Keys in their spans were recorded by claims until now: one live list of claims
    /// after the creates pins those the cache lacks, before any key is given.
    async fn create_blocks(&self, blocks: &[BlockId]) -> Result<Vec<BlockId>, BlockError> {
        let me = self.identity();
        let lease = self.lease_ref();
        let creates = blocks.iter().map(|&b| {
            let obj = HostPortBlock::draft(b.protocol, b.start, &me, &lease);
            async move {
                match self.inner.blocks.create(&PostParams::default(), &obj).await {
                    Ok(_) => Ok(Some(b)),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                    Err(source) => Err(BlockError::Api {
                        block: b.name(),
                        source,
                    }),
                }
            }
        });
        let mut created = Vec::new();
        let mut failed = None;
        for r in futures::future::join_all(creates).await {
            match r {
                Ok(Some(b)) => created.push(b),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        if !created.is_empty() {
            if let Err(e) = self.pin_claims(&created).await {
                // Without the claims read the blocks' keys cannot be trusted: give them back.
                for b in &created {
                    let _ = self.delete_own(*b).await;
                }
                return Err(e);
            }
            let now = self.now();
            let mut book = self.book();
            for b in &created {
                book.add_block(*b, now);
            }
            drop(book);
            self.inner
                .stats
                .taken
                .fetch_add(created.len() as u64, Ordering::Relaxed);
            tracing::debug!(blocks = created.len(), "took free host-port blocks");
        }
        match (created.is_empty(), failed) {
            (true, Some(e)) => Err(e),
            _ => Ok(created),
        }
    }

    async fn pin_claims(&self, blocks: &[BlockId]) -> Result<(), BlockError> {
        let claims = self
            .inner
            .claims
            .list_metadata(&ListParams::default())
            .await
            .map_err(|source| BlockError::Api {
                block: blocks.first().map(|b| b.name()).unwrap_or_default(),
                source,
            })?;
        let check_at = self.now() + CHECK_AFTER;
        let mut book = self.book();
        for c in claims.items {
            let name = c.name_any();
            if let Ok(k) = name.parse::<Key>()
                && blocks.iter().any(|b| b.contains(k))
                && self.inner.index.claim(k).is_none()
            {
                book.pin(Pending::Claim { name }, vec![k], check_at);
            }
        }
        Ok(())
    }

    /// Takes over `obj` (block `b`) if its holder is this replica or has shown no renewal
    /// of its Lease for the Lease's duration plus the quarantine. After the write, a live
    /// list of the pods poolnet admitted and of the claims pins every key in the span the
    /// caches do not show yet.
    async fn take_existing(&self, b: BlockId, obj: &HostPortBlock) -> Result<bool, BlockError> {
        let me = self.identity();
        if self.book().holds(b) {
            return Ok(true);
        }
        if obj.spec.holder != me && !self.take_over(b, obj, &me).await? {
            return Ok(false);
        }
        // The object names this replica now (written just now, or by an earlier write whose
        // answer was lost): learn the keys of its span that stored pods and claims hold, and
        // that the caches do not show yet, before giving any of them.
        self.pin_span(b).await?;
        let now = self.now();
        self.book().add_block(b, now);
        Ok(true)
    }

    /// Writes this replica as holder of `obj` if its holder has shown no renewal of its Lease
    /// for the Lease's duration plus the quarantine.
    async fn take_over(
        &self,
        b: BlockId,
        obj: &HostPortBlock,
        me: &str,
    ) -> Result<bool, BlockError> {
        // A Lease that cannot be read says nothing: no takeover on it.
        let Some(seen) = self.holder_lease(&obj.spec.holder_lease).await else {
            return Ok(false);
        };
        let silent = {
            let now = self.now();
            self.inner
                .watch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(&obj.spec.holder, seen, now)
        };
        if silent < self.inner.config.timing.takeover_after() {
            return Ok(false);
        }
        let mut next = obj.clone();
        next.spec.holder = me.to_string();
        next.spec.holder_lease = self.lease_ref();
        next.spec.taken_at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
        next.status = None;
        match self
            .inner
            .blocks
            .replace(&b.name(), &PostParams::default(), &next)
            .await
        {
            Ok(_) => {}
            // Someone else took it, or the holder came back and wrote it.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => return Ok(false),
            Err(source) => {
                return Err(BlockError::Api {
                    block: b.name(),
                    source,
                });
            }
        }
        self.inner.stats.taken_over.fetch_add(1, Ordering::Relaxed);
        tracing::info!(block = %b, from = %obj.spec.holder, "took over a host-port block whose holder stopped renewing its Lease");
        Ok(true)
    }

    /// Pins the keys of `b` held by stored pods poolnet admitted and by claims that the
    /// caches do not show yet (live lists).
    async fn pin_span(&self, b: BlockId) -> Result<(), BlockError> {
        let pods = self
            .inner
            .pods
            .list(&ListParams::default().labels(RESERVATION_LABEL))
            .await
            .map_err(|source| BlockError::Api {
                block: b.name(),
                source,
            })?;
        let check_at = self.now() + CHECK_AFTER;
        {
            let mut book = self.book();
            for p in pods.items {
                let keys: Vec<Key> = pod_keys(&p)
                    .into_iter()
                    .filter(|k| b.contains(*k))
                    .collect();
                let uid = p.metadata.uid.clone().unwrap_or_default();
                if keys.is_empty() || self.inner.index.has_uid(&uid) {
                    continue;
                }
                book.pin(
                    Pending::Pod {
                        namespace: p.namespace().unwrap_or_default(),
                        name: p.name_any(),
                        uid,
                    },
                    keys,
                    check_at,
                );
            }
        }
        self.pin_claims(&[b]).await
    }

    async fn holder_lease(&self, reference: &str) -> Option<LeaseSeen> {
        let Some((ns, name)) = reference.split_once('/') else {
            return Some(LeaseSeen::Absent);
        };
        let leases: Api<Lease> = Api::namespaced(self.inner.client.clone(), ns);
        match leases.get_opt(name).await {
            Ok(Some(l)) => Some(LeaseSeen::Present {
                resource_version: l.resource_version().unwrap_or_default(),
                holder: l.spec.and_then(|s| s.holder_identity).unwrap_or_default(),
            }),
            Ok(None) => Some(LeaseSeen::Absent),
            Err(e) => {
                tracing::debug!(lease = reference, error = %e, "reading a block holder's Lease failed");
                None
            }
        }
    }
}
