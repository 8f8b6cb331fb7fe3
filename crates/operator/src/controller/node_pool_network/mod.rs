//! The NodePoolNetwork reconciler.
//!
//! One reconcile is a pipeline of parts, each reading Azure, comparing with the spec (the
//! decisions live in `poolnet_plan`) and writing only on drift: public IP prefix
//! ([`prefix`]), after [`preflight`] (condition `PreflightPassed`) → application security groups ([`asgs`]) → agent pool ([`agent_pool`]) →
//! NSG rules ([`nsgs`]) → routes ([`routes`]) → node public IPs ([`node_ips`]). A part never
//! aborts the others: it returns its piece of status and a condition (`PrefixReady`,
//! `ASGReady`, `AgentPoolReady`, `SecurityRulesReady`, `RoutesReady`, `NodeIPsReady`), and
//! [`apply`] assembles the status, with `Ready` summarising the parts. Retryable ARM errors
//! requeue with capped exponential backoff; fatal ones wait for a spec change (or the
//! periodic drift check) and say what to fix.
//!
//! An object whose agent pool an older object already holds (one agent pool, one
//! NodePoolNetwork: `poolnet_api::one_per_pool`) gets `Accepted=False` `Conflict` and runs no
//! part, so it writes nothing; it takes over once the older one is gone.
//!
//! Deletion (finalizer `poolnet.dev/cleanup`, [`cleanup`]) removes exactly what poolnet
//! created, in dependency order, honouring `reconcilePolicy`.

mod agent_pool;
mod asgs;
mod cleanup;
mod cluster;
mod coverage;
mod ledger;
mod new_pool;
mod node_ips;
mod nsgs;
mod outcome;
mod prefix;
mod preflight;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use poolnet_api::one_per_pool;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{AsgStatus, NodePoolNetwork, NodePoolNetworkStatus, ReconcilePolicy};
use poolnet_api::validation::validate_node_pool_network;
use poolnet_arm::ArmError;
use tracing::{instrument, warn};

use super::Context;
use super::conditions::{PartState, conditions};
use super::status::{apply_status, publish};
use crate::writers::Freshness;
use cluster::ClusterFacts;
use outcome::Outcome;

/// Reconciles at a time. Unbounded, a fleet reconciling at once opens one ARM connection per
/// request in flight and keeps them (bench_npn, 200 objects: about 370 TLS connections, RSS of
/// operator and armsim together 761 MiB; with 8: 58 descriptors, 115 MiB, same convergence
/// time), and spends the subscription's ARM budget in bursts.
const CONCURRENCY: u16 = 8;

/// How long a reconcile waits for more changes first.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Finalizer that holds deletion until Azure is cleaned up.
pub const FINALIZER: &str = "poolnet.dev/cleanup";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "nodepoolnetwork";
/// Server-side-apply field manager of the status.
pub const MANAGER: &str = "poolnet/nodepoolnetwork";
/// The label AKS puts on every node, naming its pool.
pub const AGENT_POOL_LABEL: &str = "kubernetes.azure.com/agentpool";

/// Everything that can stop a reconcile (ARM problems become conditions, not errors, except
/// during cleanup).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Arm(#[from] ArmError),
    #[error("the informer caches stopped")]
    CachesGone,
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup waits: {0}")]
    CleanupPending(String),
    /// A deletion step is running in Azure. An error, not `Ok(requeue)`: the finalizer helper
    /// removes the finalizer on any `Ok` from cleanup, which would strand the later steps.
    #[error("cleanup in progress: {what}")]
    CleanupInProgress { what: String, retry_in: Duration },
    /// `preview` was called with a context that would write.
    #[error("preview needs a dry-run context (Context::dry_run)")]
    NotDryRun,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Arm(e) => e.metric_label(),
            Error::CachesGone => "caches_gone",
            Error::Finalizer(_) => "finalizer",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::CleanupInProgress { .. } => "cleanup_in_progress",
            Error::NotDryRun => "not_dry_run",
        }
    }

    /// When cleanup only waits for Azure: retry then, without counting a failure.
    fn in_progress(&self) -> Option<Duration> {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::CleanupFailed(Error::CleanupInProgress {
                    retry_in,
                    ..
                }) => Some(*retry_in),
                _ => None,
            },
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Arm(e) => e.retry_after(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.retry_after(),
                _ => None,
            },
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    failures: u32,
    last_reread: Option<Instant>,
    /// Pods (UID) and host ports already warned about as unreachable.
    warned: std::collections::BTreeSet<(String, poolnet_plan::hostports::Key)>,
}

/// The reconciler's context: the shared one plus per-object memory (backoff, drift timer)
/// and what it learnt of each managed cluster.
pub struct Reconciler {
    pub ctx: Arc<Context>,
    memory: Mutex<HashMap<String, Memory>>,
    clusters: cluster::ClusterCache,
    /// VNet address spaces for preflight, kept a resync period.
    facts: crate::preflight::FactsReader,
}

impl Reconciler {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let facts = crate::preflight::FactsReader::new(ctx.arm.clone(), ctx.config.resync);
        Arc::new(Self {
            ctx,
            memory: Mutex::new(HashMap::new()),
            clusters: cluster::ClusterCache::default(),
            facts,
        })
    }

    fn with_memory<T>(&self, name: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(name.to_string()).or_default())
    }

    /// Re-read Azure (drift detection) when the last full read is older than the resync period.
    fn freshness(&self, name: &str) -> Freshness {
        let resync = self.ctx.resync();
        self.with_memory(name, |m| match m.last_reread {
            Some(t) if !drift_check_due(t.elapsed(), resync) => Freshness::Cached,
            _ => {
                m.last_reread = Some(Instant::now());
                // A re-read within the period (another object's of a shared NSG or route
                // table, or a write's reply) is as good as our own: each resource is read
                // about once per period (docs/arm-traffic.md).
                Freshness::ReadWithin(resync)
            }
        })
    }
}

/// Whether a reconcile `since` the last drift check is the next one. The resync requeue comes
/// 0.9 to 1.1 periods after the last reconcile (`jittered`): it must count as the drift check
/// even when it comes early.
fn drift_check_due(since: Duration, resync: Duration) -> bool {
    since >= resync.mul_f64(0.85)
}

/// What every part of one reconcile reads: the object, the shared context, and what the
/// story settled before the parts ran.
pub(crate) struct Pass<'a> {
    pub npn: &'a NodePoolNetwork,
    pub ctx: &'a Context,
    /// False under `reconcilePolicy: Observe`: read and report, never write.
    pub writes: bool,
    pub cluster: &'a ClusterFacts,
    pub freshness: Freshness,
    /// The status the reconcile started from.
    pub previous: &'a NodePoolNetworkStatus,
    /// What the object has written (status.owned), as this reconcile changes it.
    pub ledger: &'a ledger::Ledger,
}

impl Pass<'_> {
    /// How fresh reads of what only this object reads (its agent pool and ASGs,
    /// `crate::reads`) must be: as the pass says, but a drift check reads them again unless
    /// the last answer (a write's reply) is less than half its bound old, so a change made by
    /// hand is seen at the next drift check, as before.
    pub fn own_freshness(&self) -> Freshness {
        match self.freshness {
            Freshness::ReadWithin(age) => Freshness::ReadWithin(age / 2),
            other => other,
        }
    }

    /// This object as the shared writers must count it: its record as it stands and, once
    /// this reconcile knows them, its ASGs (the cached copy may lag behind both).
    fn me(&self, asgs: Option<&[AsgStatus]>) -> NodePoolNetwork {
        let mut me = self.npn.clone();
        let status = me.status.get_or_insert_with(Default::default);
        status.owned = Some(self.ledger.owned());
        if let Some(asgs) = asgs {
            status.application_security_groups = asgs.to_vec();
        }
        me
    }

    /// This object as if it managed Azure and had recorded `names` in `id` (what an Observe
    /// object reports poolnet would write).
    fn me_managing(
        &self,
        asgs: Option<&[AsgStatus]>,
        which: ledger::Entries,
        id: &str,
        names: Vec<String>,
    ) -> NodePoolNetwork {
        let mut me = self.me(asgs);
        me.spec.reconcile_policy = ReconcilePolicy::Manage;
        let owned = me
            .status
            .get_or_insert_with(Default::default)
            .owned
            .get_or_insert_with(Default::default);
        let entries = match which {
            ledger::Entries::Rules => &mut owned.security_rules,
            ledger::Entries::Routes => &mut owned.routes,
        };
        poolnet_api::v1alpha1::Owned::record(entries, id, names);
        me
    }

    /// All pools from the cache, with this object as reconciled (see [`Pass::me`]).
    fn pools_with_me(&self) -> Vec<NodePoolNetwork> {
        pools_with(&self.me(None), self.ctx)
    }
}

/// All pools from the cache, with `npn` as given in place of its cached copy.
fn pools_with(npn: &NodePoolNetwork, ctx: &Context) -> Vec<NodePoolNetwork> {
    let mut pools: Vec<NodePoolNetwork> = ctx
        .stores
        .all_pools()
        .into_iter()
        .filter(|p| p.name_any() != npn.name_any())
        .collect();
    pools.push(npn.clone());
    pools
}

/// Run the controller until `shutdown` resolves. `pool_events` and `node_events` are
/// subscriptions of the shared informers.
pub async fn run(
    reconciler: Arc<Reconciler>,
    pool_events: super::Events<NodePoolNetwork>,
    rival_events: super::Events<NodePoolNetwork>,
    node_events: super::Events<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let pools = reconciler.ctx.stores.pools.clone();
    let selector_pools = pools.clone();
    let rival_pools = pools.clone();
    let rival_events = super::meaningful_changes(rival_events);
    let host_port_triggers = host_port_triggers(reconciler.ctx.clone());
    Controller::for_shared_stream(super::meaningful_changes(pool_events), pools)
        // Started on gaining the Lease: what changed before is not in the streams.
        .reconcile_all_on(super::once_ready(reconciler.ctx.stores.clone()))
        // A pod holding host ports bound to, or gone from, a pool's node: re-check coverage.
        .reconcile_on(host_port_triggers)
        // The NSG an object held its write for was written (`writers::batch`).
        .reconcile_on(
            reconciler
                .ctx
                .batches
                .woken()
                .map(|name| ObjectRef::<NodePoolNetwork>::new(&name)),
        )
        // An object refused for its pool's holder takes over when the holder's cleanup ends
        // (its last finalizer removed), without waiting for its own requeue.
        .watches_shared_stream(rival_events, move |changed: Arc<NodePoolNetwork>| {
            rival_pools
                .state()
                .iter()
                .filter(|p| {
                    p.metadata.name != changed.metadata.name
                        && one_per_pool::same_agent_pool(p, &changed)
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(node_events, move |node: Arc<Node>| {
            let labels = node.labels().clone();
            selector_pools
                .state()
                .iter()
                .filter(|p| selects(p, &labels))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, reconciler)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// The pools whose nodes' host-port pods changed, as the host-port index reports nodes.
/// Only pools whose `HostPortsCovered` would change are reconciled (each reconcile reads ARM).
fn host_port_triggers(
    ctx: Arc<Context>,
) -> futures::stream::BoxStream<'static, ObjectRef<NodePoolNetwork>> {
    let Some(index) = ctx.host_ports.as_ref() else {
        return futures::stream::empty().boxed();
    };
    // Missed names are caught up by each pool's resync.
    super::broadcast_stream(index.subscribe_nodes())
        .flat_map(move |node| {
            let labels = ctx
                .stores
                .nodes
                .get(&ObjectRef::new(&node))
                .map(|n| n.labels().clone())
                .unwrap_or_default();
            let refs: Vec<ObjectRef<NodePoolNetwork>> = ctx
                .stores
                .pools
                .state()
                .iter()
                .filter(|p| !labels.is_empty() && selects(p, &labels))
                .filter(|p| coverage::outdated(p, &ctx))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
        .boxed()
}

/// The node labels that select a pool's nodes.
pub fn node_selector(npn: &NodePoolNetwork) -> BTreeMap<String, String> {
    if !npn.spec.node_pool.node_selector.is_empty() {
        return npn.spec.node_pool.node_selector.clone();
    }
    // Validation guarantees an agent pool ID; should it not parse, the selector matches no
    // node rather than every node.
    let pool = poolnet_api::armid::ResourceId::parse(&npn.spec.node_pool.agent_pool_id)
        .map(|id| id.name().to_string())
        .unwrap_or_default();
    BTreeMap::from([(AGENT_POOL_LABEL.to_string(), pool)])
}

fn selects(npn: &NodePoolNetwork, labels: &BTreeMap<String, String>) -> bool {
    node_selector(npn)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn error_policy(npn: Arc<NodePoolNetwork>, err: &Error, r: Arc<Reconciler>) -> Action {
    if let Some(wait) = err.in_progress() {
        return Action::requeue(wait);
    }
    let failures = r.with_memory(&npn.name_any(), |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    let backoff = Duration::from_secs(1u64 << failures.min(9)).min(r.ctx.config.max_backoff);
    let wait = err.retry_after().map_or(backoff, |ra| ra.max(backoff));
    warn!(name = %npn.name_any(), error = %err, retry_in = ?wait, "reconcile error");
    Action::requeue(wait)
}

#[instrument(skip_all, fields(name = %npn.name_any(), generation = npn.metadata.generation))]
async fn reconcile(npn: Arc<NodePoolNetwork>, r: Arc<Reconciler>) -> Result<Action, Error> {
    r.ctx
        .stores
        .wait_ready()
        .await
        .map_err(|_| Error::CachesGone)?;
    let timer = r.ctx.metrics.reconcile_started(CONTROLLER);
    let api: Api<NodePoolNetwork> = Api::all(r.ctx.client.clone());
    let result = finalizer(&api, FINALIZER, npn, |event| async {
        match event {
            Finalizer::Apply(o) => apply(o, &r).await,
            Finalizer::Cleanup(o) => cleanup::cleanup(o, &r.ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => timer.ok(),
        Err(e) => timer.error(e.metric_label()),
    }
    result
}

/// What poolnet would change in Azure for `npn`, read from ARM and the caches of `ctx` (a dry
/// run: `ctx.dry_run` must be set), writing nothing anywhere: `npn` is reconciled as an
/// Observe object and the status it would get is returned, `pendingChanges` included. The
/// same planner as the controller's, for `kubectl poolnet diff -f`.
pub async fn preview(
    ctx: Arc<Context>,
    npn: NodePoolNetwork,
) -> Result<NodePoolNetworkStatus, Error> {
    let Some(sink) = ctx.dry_run.clone() else {
        return Err(Error::NotDryRun);
    };
    ctx.stores
        .wait_ready()
        .await
        .map_err(|_| Error::CachesGone)?;
    let mut npn = npn;
    npn.spec.reconcile_policy = ReconcilePolicy::Observe;
    let r = Reconciler::new(ctx);
    apply(Arc::new(npn), &r).await?;
    let status = sink.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok(status.unwrap_or_default())
}

/// The story of one reconcile: validate, learn the cluster, run every part in dependency
/// order, assemble the status from their pieces, write it, publish what happened.
async fn apply(npn: Arc<NodePoolNetwork>, r: &Reconciler) -> Result<Action, Error> {
    let ctx = r.ctx.as_ref();
    let name = npn.name_any();
    let previous = npn.status.clone().unwrap_or_default();
    let mut status = NodePoolNetworkStatus {
        observed_generation: npn.metadata.generation,
        ..previous.clone()
    };
    let mut out = Outcome::default();

    if let Err(errs) = validate_node_pool_network(&npn, None) {
        out.condition(PartState::failed(
            cond::ACCEPTED,
            reason::INVALID_SPEC,
            errs.to_string(),
        ));
        out.effects
            .event(EventType::Warning, reason::INVALID_SPEC, errs.to_string());
        finish(&npn, ctx, status, &previous, out).await?;
        return Ok(Action::await_change());
    }

    // Checked again here: the webhook may have been down, or the list changed since.
    let out_of_scope = ctx.config.allowed_scopes.check(&npn.spec);
    if !out_of_scope.is_empty() {
        let message = out_of_scope.to_string();
        let told = previous.conditions.iter().any(|c| {
            c.type_ == cond::ACCEPTED && c.reason == reason::OUT_OF_SCOPE && c.message == message
        });
        if !told {
            out.effects
                .event(EventType::Warning, reason::OUT_OF_SCOPE, message.clone());
        }
        out.condition(PartState::failed(
            cond::ACCEPTED,
            reason::OUT_OF_SCOPE,
            message,
        ));
        finish(&npn, ctx, status, &previous, out).await?;
        return Ok(Action::await_change());
    }

    if let Some(holder) = one_per_pool::holder(&npn, &pools_with(&npn, ctx)) {
        let message = one_per_pool::conflict_message(holder);
        let told = previous.conditions.iter().any(|c| {
            c.type_ == cond::ACCEPTED && c.reason == reason::CONFLICT && c.message == message
        });
        if !told {
            out.effects
                .event(EventType::Warning, reason::CONFLICT, message.clone());
        }
        out.condition(PartState::failed(cond::ACCEPTED, reason::CONFLICT, message));
        finish(&npn, ctx, status, &previous, out).await?;
        // The holder's end also triggers a reconcile (see `run`); this is the safety net.
        return Ok(Action::requeue(jittered(ctx.resync(), &name)));
    }

    let (cluster, problem) = r.clusters.facts(ctx, &npn).await;
    if let Some((condition, effects)) = problem {
        out.condition(condition);
        out.effects(effects);
    }
    let ledger = ledger::Ledger::new(&previous);
    let pass = Pass {
        npn: &npn,
        ctx,
        writes: npn.spec.reconcile_policy != ReconcilePolicy::Observe,
        cluster: &cluster,
        freshness: r.freshness(&name),
        previous: &previous,
        ledger: &ledger,
    };

    // Judged first (it decides whether routes are written), reported after the parts: a
    // part's own reason (RouteLimitExceeded, ...) is the more precise one for `Ready`.
    let preflight = preflight::reconcile(&pass, &r.facts).await;
    let block_routes = preflight.status.clone();
    status.public_ip_prefix = out.take(prefix::reconcile(&pass).await);
    let asgs = out.take(asgs::reconcile(&pass).await);
    status.application_security_groups = asgs.clone();
    let pool =
        out.take(agent_pool::reconcile(&pass, &asgs, status.public_ip_prefix.as_ref()).await?);
    if let Some(pool) = &pool {
        status.agent_pool = Some(pool.status.clone());
        status.node_count = pool.node_count;
    }
    let rules = nsgs::reconcile(&pass, &asgs).await;
    let rules_done = rules.condition.ok;
    if let nsgs::Rules::Set { groups, rule_count } = out.take(rules) {
        status.security_groups = groups;
        status.rule_count = rule_count;
    }
    match block_routes {
        // A route that would take traffic from the cluster is not written; what is in the
        // table stays as it is until the spec or the cluster changes.
        Some(why) if npn.spec.route_table.is_some() => out.condition(PartState::failed(
            cond::ROUTES_READY,
            reason::PREFLIGHT_FAILED,
            why,
        )),
        _ => out
            .take(routes::reconcile(&pass).await)
            .apply(&mut status.route_table),
    }
    out.take(preflight);
    // After the pool and the rules moved off it: the managed ASG turned off goes.
    let pool_lists = pool
        .as_ref()
        .map(|p| p.status.application_security_groups.as_slice());
    let (retiring, effects) = asgs::retire(&pass, pool_lists, rules_done).await;
    out.effects(effects);
    if let Some(c) = retiring {
        out.condition(c);
    }
    if let Some(ips) = out.take(node_ips::reconcile(&pass).await) {
        status.nodes = ips.addresses;
        if pool.is_none() || ips.selected == 0 {
            status.node_count = status.node_count.or(Some(ips.selected as i32));
        }
    } else {
        status.nodes.clear();
    }
    status.host_ports = Some(poolnet_plan::agent_pool::canonical_ports(
        &poolnet_api::validation::allowed_host_ports(&npn.spec),
    ))
    .filter(|s| !s.is_empty());
    if !pass.writes {
        out.condition(PartState::ok(
            cond::ACCEPTED,
            reason::OBSERVE_ONLY,
            "reconcilePolicy is Observe: poolnet reads Azure and reports, never writes",
        ));
    }

    status.owned = Some(ledger.owned());
    status.pending_changes = std::mem::take(&mut out.effects.pending);

    if let Some((part, gaps)) = coverage::check(&npn, &status, ctx) {
        out.condition(part);
        let warned = r.with_memory(&name, |m| std::mem::take(&mut m.warned));
        let warned = coverage::warn_pods(ctx, &npn, &gaps, warned).await;
        r.with_memory(&name, |m| m.warned = warned);
    }

    let retry = out.effects.retryable_failure;
    let throttled = out.effects.throttled;
    let requeue = out.effects.requeue;
    finish(&npn, ctx, status, &ledger.written(), out).await?;
    // A part that keeps failing retryably backs off like a failed reconcile does, or a
    // fleet with an ARM outage would ask every few seconds for as long as it lasts.
    let failures = r.with_memory(&name, |m| {
        if retry {
            m.failures = m.failures.saturating_add(1);
        } else if !throttled {
            m.failures = 0;
        }
        m.failures
    });
    Ok(Action::requeue(retry_in(
        requeue,
        failures,
        ctx.config.max_backoff,
        jittered(ctx.resync(), &name),
    )))
}

/// When to look again: `soonest` (what the parts asked for: an operation to poll, a
/// Retry-After), but after `failures` retryable failures in a row no sooner than 5 s doubling
/// per failure up to `max_backoff`; the resync period when nothing asked.
fn retry_in(
    soonest: Option<Duration>,
    failures: u32,
    max_backoff: Duration,
    resync: Duration,
) -> Duration {
    let Some(soonest) = soonest else {
        return resync;
    };
    if failures == 0 {
        return soonest;
    }
    let backoff = PART_RETRY_FLOOR
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(max_backoff);
    soonest.max(backoff)
}

/// The first retry after a part failed retryably.
const PART_RETRY_FLOOR: Duration = Duration::from_secs(5);

/// `base` ±10%, fixed per object so resyncs of many objects spread out.
fn jittered(base: Duration, name: &str) -> Duration {
    let h = poolnet_api::ownership::short_hash(&[name]);
    let frac = u64::from_str_radix(&h[..4], 16).unwrap_or(0) as f64 / 65535.0;
    base.mul_f64(0.9 + 0.2 * frac)
}

/// Write status (only when it changed) and publish events.
async fn finish(
    npn: &NodePoolNetwork,
    ctx: &Context,
    mut status: NodePoolNetworkStatus,
    previous: &NodePoolNetworkStatus,
    out: Outcome,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.conditions = conditions(
        &out.conditions,
        npn.metadata.generation,
        &previous.conditions,
        &now,
    );
    if &status != previous || ctx.dry_run.is_some() {
        write_status(ctx, npn, &status).await?;
    }
    if ctx.dry_run.is_none() {
        publish(&ctx.recorder, npn, "Reconcile", out.effects.events).await;
    }
    Ok(())
}

/// Apply `status` as the object's whole status (a dry run keeps it instead).
async fn write_status(
    ctx: &Context,
    npn: &NodePoolNetwork,
    status: &NodePoolNetworkStatus,
) -> Result<(), Error> {
    if let Some(sink) = &ctx.dry_run {
        *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(status.clone());
        return Ok(());
    }
    let api: Api<NodePoolNetwork> = Api::all(ctx.client.clone());
    apply_status(&api, &npn.name_any(), MANAGER, status).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_part_failures_back_off_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let resync = Duration::from_secs(600);
        let s = |n| Some(Duration::from_secs(n));
        let waits: Vec<u64> = (1..=9)
            .map(|f| retry_in(s(5), f, cap, resync).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            retry_in(s(2), 0, cap, resync),
            Duration::from_secs(2),
            "no failure: as asked"
        );
        assert_eq!(
            retry_in(s(120), 1, cap, resync),
            Duration::from_secs(120),
            "a longer Retry-After wins"
        );
        assert_eq!(retry_in(None, 3, cap, resync), resync);
        assert_eq!(retry_in(s(5), u32::MAX, cap, resync), cap);
    }

    #[test]
    fn every_resync_requeue_is_a_drift_check_and_nothing_sooner_is() {
        let resync = Duration::from_secs(60);
        for n in [
            "a",
            "game",
            "kubenet-system",
            "npn-000",
            "npn-001",
            "npn-017",
        ] {
            let requeue = jittered(resync, n);
            assert!(
                drift_check_due(requeue, resync),
                "{n}: a resync requeue after {requeue:?} skipped its drift check"
            );
        }
        assert!(drift_check_due(resync.mul_f64(0.9), resync));
        assert!(!drift_check_due(Duration::from_secs(5), resync));
        assert!(!drift_check_due(resync / 2, resync));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(300);
        for n in ["a", "game", "kubenet-system", "x".repeat(63).as_str()] {
            let j = jittered(base, n);
            assert!(
                j >= base.mul_f64(0.9) && j <= base.mul_f64(1.1),
                "{n}: {j:?}"
            );
        }
    }
}
