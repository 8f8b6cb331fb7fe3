//! The NodePoolNetwork reconciler.
//!
//! One reconcile is a pipeline of parts, each reading Azure, comparing with the spec and
//! writing only on drift: public IP prefix → application security groups → agent pool →
//! NSG rules → routes → node public IPs. A part never aborts the others: it ends as a
//! condition (`PrefixReady`, `ASGReady`, `AgentPoolReady`, `SecurityRulesReady`,
//! `RoutesReady`, `NodeIPsReady`), and `Ready` summarises them. Retryable ARM errors requeue
//! with capped exponential backoff; fatal ones wait for a spec change (or the periodic drift
//! check) and say what to fix.
//!
//! Deletion (finalizer `poolnet.dev/cleanup`) removes exactly what poolnet created, in
//! dependency order, honouring `reconcilePolicy`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Api, Resource, ResourceExt};
use poolnet_api::portspec::{self, PortSet, Protocol};
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{
    AgentPoolOriginal, AgentPoolStatus, AsgStatus, IpTag, IpVersion, NodeAddress, NodePoolNetwork,
    NodePoolNetworkStatus, NsgStatus, PrefixStatus, ReconcilePolicy, RouteTableStatus, RuleStatus,
};
use poolnet_api::validation::{
    allowed_host_ports, managed_asg_enabled, validate_node_pool_network,
};
use poolnet_arm::models::{
    ApplicationSecurityGroup, IpVersion as ArmIpVersion, ProvisioningState, PublicIpPrefix,
    PublicIpPrefixPropertiesFormat, PublicIpPrefixSku, Resource as ArmResource,
    public_ip_prefix_sku,
};
use poolnet_arm::{
    AgentPool, ArmError, ArmNetwork, Etagged, Lro, NotFoundExt, Precondition, ResourceId,
};
use poolnet_plan::desired::{
    cluster_of, desired_routes_for_table, desired_rules_for_nsg, managed_asg_id, pool_asgs,
};
use poolnet_plan::nsg::{Owner, cluster_rule_prefix, plan_nsg};
use poolnet_plan::routes::{RouteProblem, plan_routes};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::Context;
use super::conditions::{PartState, conditions};
use crate::writers::convert::{existing_rules, route_table_view, set_tag, tag_value};
use crate::writers::{Freshness, RouteBudget};

/// Reconciles at a time. Unbounded, a fleet reconciling at once opens one ARM connection per
/// request in flight and keeps them (bench_npn, 200 objects: about 370 TLS connections, RSS of
/// operator and armsim together 761 MiB; with 8: 58 descriptors, 115 MiB, same convergence
/// time), and spends the subscription's ARM budget in bursts.
const CONCURRENCY: u16 = 8;

/// How long a reconcile waits for more changes first.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// Soonest retry after ARM (or the client's own budget) throttled a call.
const THROTTLED_RETRY_FLOOR: Duration = Duration::from_secs(1);

/// Finalizer that holds deletion until Azure is cleaned up.
pub const FINALIZER: &str = "poolnet.dev/cleanup";
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "nodepoolnetwork";
/// Server-side-apply field manager of the status.
pub const MANAGER: &str = "poolnet/nodepoolnetwork";
/// Tag on Azure resources poolnet created: `NodePoolNetwork/<name>`.
pub const OWNER_TAG: &str = "poolnet.dev/owner";
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
}

/// The reconciler's context: the shared one plus per-object memory (backoff, drift timer)
/// and what it learnt of each managed cluster.
pub struct Reconciler {
    pub ctx: Arc<Context>,
    memory: Mutex<HashMap<String, Memory>>,
    /// Facts of a managed cluster (location, network plugin) that every object of that
    /// cluster needs and that practically never change: read once per resync period per
    /// cluster, not once per reconcile.
    clusters: Mutex<HashMap<String, (Instant, ClusterFacts)>>,
}

impl Reconciler {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            memory: Mutex::new(HashMap::new()),
            clusters: Mutex::new(HashMap::new()),
        })
    }

    fn with_memory<T>(&self, name: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(name.to_string()).or_default())
    }

    /// The cluster's facts when they were read less than a resync period ago.
    fn cached_cluster(&self, key: &str) -> Option<ClusterFacts> {
        let resync = self.ctx.config.resync;
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters
            .get(&key.to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < resync)
            .map(|(_, facts)| facts.clone())
    }

    fn remember_cluster(&self, facts: &ClusterFacts) {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters.insert(
            facts.key.to_ascii_lowercase(),
            (Instant::now(), facts.clone()),
        );
    }

    /// Re-read Azure (drift detection) when the last full read is older than the resync period.
    fn freshness(&self, name: &str) -> Freshness {
        let resync = self.ctx.config.resync;
        self.with_memory(name, |m| match m.last_reread {
            Some(t) if t.elapsed() < resync => Freshness::Cached,
            _ => {
                m.last_reread = Some(Instant::now());
                // Another object's re-read of a shared NSG or route table in the last half
                // period is as good as our own.
                Freshness::ReadWithin(resync / 2)
            }
        })
    }
}

/// Run the controller until `shutdown` resolves. `pool_events` and `node_events` are
/// subscriptions of the shared informers.
pub async fn run(
    reconciler: Arc<Reconciler>,
    pool_events: ReflectHandle<NodePoolNetwork>,
    node_events: ReflectHandle<Node>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let pools = reconciler.ctx.stores.pools.clone();
    let selector_pools = pools.clone();
    Controller::for_shared_stream(super::meaningful_changes(pool_events), pools)
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

/// The node labels that select a pool's nodes.
pub fn node_selector(npn: &NodePoolNetwork) -> BTreeMap<String, String> {
    if !npn.spec.node_pool.node_selector.is_empty() {
        return npn.spec.node_pool.node_selector.clone();
    }
    let pool = npn
        .spec
        .node_pool
        .agent_pool_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
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
            Finalizer::Cleanup(o) => cleanup(o, &r).await,
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

/// What one reconcile collects on its way: conditions, events, the soonest requeue.
#[derive(Default)]
struct Outcome {
    parts: Vec<PartState>,
    events: Vec<(EventType, &'static str, String)>,
    requeue: Option<Duration>,
    retryable_failure: bool,
}

impl Outcome {
    /// One part per condition type: a type reported twice (the cluster read failing, then
    /// the agent pool's own check) is merged, failures first, or the API server rejects the
    /// whole status for its duplicate condition keys.
    fn part(&mut self, p: PartState) {
        match self.parts.iter_mut().find(|q| q.type_ == p.type_) {
            None => self.parts.push(p),
            Some(q) if q.ok => *q = p,
            Some(q) if !p.ok => q.message = format!("{}; {}", q.message, p.message),
            Some(_) => {}
        }
    }

    fn soon(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn event(&mut self, t: EventType, reason: &'static str, note: String) {
        self.events.push((t, reason, note));
    }

    /// Turn an ARM error into a failed part: retryable ones requeue, fatal ones explain.
    fn arm_failure(&mut self, type_: &'static str, what: &str, e: &ArmError) -> PartState {
        if let ArmError::Throttled { .. } = e {
            // The message stays the same from one attempt to the next (no wait time in it):
            // a status that changes on every attempt is patched every time, and each patch
            // triggers another reconcile. At least a second apart, or a throttled fleet
            // retries in a tight loop for the few tokens the budget frees.
            self.retryable_failure = true;
            self.soon(
                e.retry_after()
                    .unwrap_or(Duration::from_secs(5))
                    .max(THROTTLED_RETRY_FLOOR),
            );
            PartState::failed(
                type_,
                reason::THROTTLED,
                format!("{what}: ARM is throttling requests (will retry)"),
            )
        } else if e.is_retryable() {
            self.retryable_failure = true;
            self.soon(e.retry_after().unwrap_or(Duration::from_secs(5)));
            PartState::failed(
                type_,
                reason::ARM_ERROR,
                format!("{what}: {e} (will retry)"),
            )
        } else if matches!(e, ArmError::NotFound { .. }) {
            PartState::failed(type_, reason::NOT_FOUND, format!("{what}: {e}"))
        } else {
            PartState::failed(
                type_,
                reason::ARM_ERROR,
                format!("{what}: {e} (not retried: fix the spec or the Azure resource)"),
            )
        }
    }
}

fn arm_id(raw: &str) -> Result<ResourceId, ArmError> {
    Ok(raw.parse::<ResourceId>()?)
}

/// The cluster an object's agent pool belongs to.
#[derive(Debug, Clone)]
struct ClusterFacts {
    key: String,
    location: Option<String>,
    kubenet: bool,
}

async fn apply(npn: Arc<NodePoolNetwork>, r: &Reconciler) -> Result<Action, Error> {
    let ctx = &r.ctx;
    let name = npn.name_any();
    let previous = npn.status.clone().unwrap_or_default();
    let mut status = NodePoolNetworkStatus {
        observed_generation: npn.metadata.generation,
        ..previous.clone()
    };
    let mut out = Outcome::default();

    if let Err(errs) = validate_node_pool_network(&npn, None) {
        out.part(PartState::failed(
            cond::ACCEPTED,
            reason::INVALID_SPEC,
            errs.to_string(),
        ));
        out.event(EventType::Warning, reason::INVALID_SPEC, errs.to_string());
        finish(&npn, r, status, &previous, out).await?;
        return Ok(Action::await_change());
    }

    let writes = npn.spec.reconcile_policy != ReconcilePolicy::Observe;
    let freshness = r.freshness(&name);
    let pool_id = arm_id(&npn.spec.node_pool.agent_pool_id)?;
    let cluster_key = cluster_of(&npn.spec.node_pool.agent_pool_id).unwrap_or_default();
    let cluster = match r.cached_cluster(&cluster_key) {
        Some(facts) => facts,
        None => match ctx.arm.get_managed_cluster(&arm_id(&cluster_key)?).await {
            Ok(c) => {
                let facts = ClusterFacts {
                    key: cluster_key.clone(),
                    location: c.resource.location.clone(),
                    kubenet: c
                        .resource
                        .properties
                        .network_profile
                        .as_ref()
                        .and_then(|n| n.network_plugin.as_deref())
                        .is_some_and(|p| p.eq_ignore_ascii_case("kubenet")),
                };
                r.remember_cluster(&facts);
                facts
            }
            Err(e) => {
                let p = out.arm_failure(cond::AGENT_POOL_READY, "reading the managed cluster", &e);
                out.part(p);
                ClusterFacts {
                    key: cluster_key.clone(),
                    location: None,
                    kubenet: false,
                }
            }
        },
    };

    status.public_ip_prefix =
        reconcile_prefix(&npn, ctx.arm.as_ref(), writes, &cluster, &mut out).await;
    let asgs = reconcile_asgs(
        &npn,
        ctx.arm.as_ref(),
        writes,
        &cluster,
        &previous.application_security_groups,
        &mut out,
    )
    .await;
    status.application_security_groups = asgs.clone();
    let pool =
        reconcile_agent_pool(&npn, r, &pool_id, writes, &asgs, &mut status, &mut out).await?;
    reconcile_nsgs(
        &npn,
        r,
        &asgs,
        writes,
        &cluster,
        freshness,
        &mut status,
        &mut out,
    )
    .await;
    reconcile_routes(&npn, r, writes, &cluster, freshness, &mut status, &mut out).await;
    reconcile_node_ips(&npn, r, pool.as_ref(), &mut status, &mut out).await;
    status.host_ports = Some(portspec::format_list(
        &PortSet::from_specs(&allowed_host_ports(&npn.spec)).to_specs(),
    ))
    .filter(|s| !s.is_empty());
    if !writes {
        out.part(PartState::ok(
            cond::ACCEPTED,
            reason::OBSERVE_ONLY,
            "reconcilePolicy is Observe: poolnet reads Azure and reports, never writes",
        ));
    }

    let retry = out.retryable_failure;
    let requeue = out.requeue;
    finish(&npn, r, status, &previous, out).await?;
    if !retry {
        r.with_memory(&name, |m| m.failures = 0);
    }
    Ok(Action::requeue(
        requeue.unwrap_or_else(|| jittered(r.ctx.config.resync, &name)),
    ))
}

/// `base` ±10%, fixed per object so resyncs of many objects spread out.
fn jittered(base: Duration, name: &str) -> Duration {
    let h = poolnet_plan::nsg::short_hash(&[name]);
    let frac = u64::from_str_radix(&h[..4], 16).unwrap_or(0) as f64 / 65535.0;
    base.mul_f64(0.9 + 0.2 * frac)
}

/// Write status (only when it changed) and publish events.
async fn finish(
    npn: &NodePoolNetwork,
    r: &Reconciler,
    mut status: NodePoolNetworkStatus,
    previous: &NodePoolNetworkStatus,
    out: Outcome,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status.conditions = conditions(
        &out.parts,
        npn.metadata.generation,
        &previous.conditions,
        &now,
    );
    if &status != previous {
        patch_status(r, npn, &status).await?;
    }
    let reference = npn.object_ref(&());
    for (type_, reason, note) in out.events {
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = r.ctx.recorder.publish(&ev, &reference).await {
            warn!(error = %e, "cannot publish event");
        }
    }
    Ok(())
}

async fn patch_status(
    r: &Reconciler,
    npn: &NodePoolNetwork,
    status: &NodePoolNetworkStatus,
) -> Result<(), Error> {
    let api: Api<NodePoolNetwork> = Api::all(r.ctx.client.clone());
    let patch = json!({
        "apiVersion": NodePoolNetwork::api_version(&()),
        "kind": NodePoolNetwork::kind(&()),
        "status": status,
    });
    api.patch_status(
        &npn.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn owner_tag(npn: &NodePoolNetwork) -> String {
    format!("NodePoolNetwork/{}", npn.name_any())
}

fn ours(resource: &ArmResource, npn: &NodePoolNetwork) -> bool {
    tag_value(resource, OWNER_TAG).as_deref() == Some(owner_tag(npn).as_str())
}

fn owned_tags(resource: &mut ArmResource, npn: &NodePoolNetwork, cluster: &str) {
    set_tag(resource, OWNER_TAG, &owner_tag(npn));
    set_tag(resource, poolnet_plan::routes::CLUSTER_TAG, cluster);
}

/// ID of the managed prefix, in the agent pool's subscription.
fn managed_prefix_id(npn: &NodePoolNetwork) -> Option<String> {
    let m = npn
        .spec
        .node_public_ip
        .as_ref()?
        .prefix
        .as_ref()?
        .managed
        .as_ref()?;
    let pool = poolnet_api::armid::ResourceId::parse(&npn.spec.node_pool.agent_pool_id).ok()?;
    Some(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/publicIPPrefixes/{}",
        pool.subscription, m.resource_group, m.name
    ))
}

/// The prefix the pool's node IPs should come from.
fn wanted_prefix_id(npn: &NodePoolNetwork) -> Option<String> {
    let prefix = npn.spec.node_public_ip.as_ref()?.prefix.as_ref()?;
    prefix
        .existing_id
        .clone()
        .or_else(|| managed_prefix_id(npn))
}

fn spec_ip_tags(npn: &NodePoolNetwork) -> Vec<IpTag> {
    let mut tags = npn
        .spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.ip_tags.clone())
        .unwrap_or_default();
    tags.sort();
    tags
}

fn prefix_tags(p: &PublicIpPrefix) -> Vec<IpTag> {
    let mut tags: Vec<IpTag> = p
        .properties
        .as_ref()
        .map(|pp| {
            pp.ip_tags
                .iter()
                .map(|t| IpTag {
                    ip_tag_type: t.ip_tag_type.clone().unwrap_or_default(),
                    tag: t.tag.clone().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

fn prefix_status(id: &str, p: &PublicIpPrefix, managed: bool) -> PrefixStatus {
    PrefixStatus {
        id: id.to_string(),
        cidr: p.properties.as_ref().and_then(|pp| pp.ip_prefix.clone()),
        ip_tags: prefix_tags(p),
        managed,
    }
}

fn updating(state: Option<&ProvisioningState>) -> bool {
    matches!(state, Some(ProvisioningState::Updating))
}

async fn reconcile_prefix(
    npn: &NodePoolNetwork,
    arm: &dyn ArmNetwork,
    writes: bool,
    cluster: &ClusterFacts,
    out: &mut Outcome,
) -> Option<PrefixStatus> {
    let Some(source) = npn
        .spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.prefix.as_ref())
    else {
        out.part(PartState::ok(
            cond::PREFIX_READY,
            reason::NOT_CONFIGURED,
            "no public IP prefix in spec",
        ));
        return None;
    };
    let (raw_id, managed) = match (&source.existing_id, &source.managed) {
        (Some(id), _) => (id.clone(), None),
        (None, Some(m)) => (managed_prefix_id(npn)?, Some(m)),
        (None, None) => return None,
    };
    let id = match arm_id(&raw_id) {
        Ok(id) => id,
        Err(e) => {
            let p = out.arm_failure(cond::PREFIX_READY, "prefix ID", &e);
            out.part(p);
            return None;
        }
    };
    let found = match arm.get_public_ip_prefix(&id).await.optional() {
        Ok(f) => f,
        Err(e) => {
            let p = out.arm_failure(
                cond::PREFIX_READY,
                &format!("reading public IP prefix {raw_id}"),
                &e,
            );
            out.part(p);
            return None;
        }
    };
    let want_tags = spec_ip_tags(npn);
    match (found, managed) {
        (Some(p), None) => {
            let st = prefix_status(&raw_id, &p.resource, false);
            if !want_tags.is_empty() && st.ip_tags != want_tags {
                out.part(PartState::failed(
                    cond::PREFIX_READY,
                    "IpTagsMismatch",
                    format!(
                        "prefix {raw_id} carries IP tags {:?} but spec.nodePublicIP.ipTags asks for {:?}; Azure fixes a prefix's tags at creation, so use a prefix created with those tags",
                        st.ip_tags, want_tags
                    ),
                ));
            } else if st.cidr.is_none() {
                out.soon(Duration::from_secs(5));
                out.part(PartState::failed(
                    cond::PREFIX_READY,
                    reason::PROGRESSING,
                    format!("prefix {raw_id} has no address range yet"),
                ));
            } else {
                out.part(PartState::ok(
                    cond::PREFIX_READY,
                    reason::RECONCILED,
                    format!("adopted prefix {raw_id}"),
                ));
            }
            Some(st)
        }
        (None, None) => {
            out.part(PartState::failed(
                cond::PREFIX_READY,
                reason::NOT_FOUND,
                format!("public IP prefix {raw_id} does not exist: create it, or let poolnet create one with prefix.managed"),
            ));
            None
        }
        (Some(p), Some(_)) => {
            if !ours(&p.resource.resource, npn) {
                out.part(PartState::failed(
                    cond::PREFIX_READY,
                    "PrefixNotOwned",
                    format!("a public IP prefix {raw_id} already exists and was not created by poolnet for this object; adopt it with prefix.existingId instead of prefix.managed"),
                ));
                return None;
            }
            let st = prefix_status(&raw_id, &p.resource, true);
            let props = p.resource.properties.as_ref();
            if updating(props.and_then(|pp| pp.provisioning_state.as_ref())) || st.cidr.is_none() {
                out.soon(Duration::from_secs(5));
                out.part(PartState::failed(
                    cond::PREFIX_READY,
                    reason::PROGRESSING,
                    format!("prefix {raw_id} is being created"),
                ));
            } else {
                out.part(PartState::ok(
                    cond::PREFIX_READY,
                    reason::RECONCILED,
                    format!("managed prefix {raw_id}"),
                ));
            }
            Some(st)
        }
        (None, Some(m)) => {
            if !writes {
                out.part(PartState::failed(
                    cond::PREFIX_READY,
                    reason::NOT_FOUND,
                    format!("prefix {raw_id} does not exist (Observe: poolnet would create it)"),
                ));
                return None;
            }
            let mut prefix = PublicIpPrefix::default();
            prefix.resource.location = Some(m.location.clone());
            owned_tags(&mut prefix.resource, npn, &cluster.key);
            prefix.sku = Some(PublicIpPrefixSku {
                name: Some(public_ip_prefix_sku::Name::Standard),
                tier: Some(public_ip_prefix_sku::Tier::Regional),
            });
            prefix.zones = m.zones.clone();
            let mut props = PublicIpPrefixPropertiesFormat::new();
            props.prefix_length = Some(i32::from(m.prefix_length));
            props.public_ip_address_version = Some(match m.ip_version {
                IpVersion::IPv4 => ArmIpVersion::IPv4,
                IpVersion::IPv6 => ArmIpVersion::IPv6,
            });
            props.ip_tags = want_tags
                .iter()
                .map(|t| poolnet_arm::models::IpTag {
                    ip_tag_type: Some(t.ip_tag_type.clone()),
                    tag: Some(t.tag.clone()),
                })
                .collect();
            prefix.properties = Some(props);
            match arm
                .put_public_ip_prefix(&id, &prefix, Precondition::IfNoneMatch)
                .await
            {
                Ok(Lro::Done(p)) => {
                    out.event(
                        EventType::Normal,
                        "PrefixCreated",
                        format!("created public IP prefix {raw_id} (/{})", m.prefix_length),
                    );
                    let st = prefix_status(&raw_id, &p.resource, true);
                    if st.cidr.is_some() {
                        out.part(PartState::ok(
                            cond::PREFIX_READY,
                            reason::RECONCILED,
                            format!("managed prefix {raw_id}"),
                        ));
                    } else {
                        out.soon(Duration::from_secs(2));
                        out.part(PartState::failed(
                            cond::PREFIX_READY,
                            reason::PROGRESSING,
                            format!("prefix {raw_id} is being created"),
                        ));
                    }
                    Some(st)
                }
                Ok(Lro::Pending(h)) => {
                    out.event(
                        EventType::Normal,
                        "PrefixCreating",
                        format!("creating public IP prefix {raw_id} (/{})", m.prefix_length),
                    );
                    out.soon(h.next_poll_in());
                    out.part(PartState::failed(
                        cond::PREFIX_READY,
                        reason::PROGRESSING,
                        format!("prefix {raw_id} is being created"),
                    ));
                    None
                }
                Err(e) => {
                    let p = out.arm_failure(
                        cond::PREFIX_READY,
                        &format!("creating public IP prefix {raw_id}"),
                        &e,
                    );
                    out.part(p);
                    None
                }
            }
        }
    }
}

async fn reconcile_asgs(
    npn: &NodePoolNetwork,
    arm: &dyn ArmNetwork,
    writes: bool,
    cluster: &ClusterFacts,
    previous: &[AsgStatus],
    out: &mut Outcome,
) -> Vec<AsgStatus> {
    let mut asgs = Vec::new();
    let mut problems = Vec::new();
    // An ASG that could not be read (throttled, ARM error) stays as last seen: status says
    // which ASGs exist, and other objects sharing an NSG rely on it (desired_rules_for_nsg).
    let as_last_seen = |raw: &str, asgs: &mut Vec<AsgStatus>| {
        if let Some(a) = previous.iter().find(|a| a.id.eq_ignore_ascii_case(raw)) {
            asgs.push(a.clone());
        }
    };
    if managed_asg_enabled(&npn.spec)
        && let Some(raw) = managed_asg_id(npn)
    {
        match arm_id(&raw) {
            Err(e) => problems.push(out.arm_failure(cond::ASG_READY, "managed ASG ID", &e)),
            Ok(id) => match arm.get_asg(&id).await.optional() {
                Ok(Some(a)) if ours(&a.resource.resource, npn) => asgs.push(AsgStatus { id: raw, managed: true }),
                Ok(Some(_)) => problems.push(PartState::failed(
                    cond::ASG_READY,
                    "ASGNotOwned",
                    format!("an ASG {raw} exists that poolnet did not create for this object; remove it, or set applicationSecurityGroups.managed: false and list it in customIds"),
                )),
                Ok(None) if !writes => problems.push(PartState::failed(cond::ASG_READY, reason::NOT_FOUND, format!("managed ASG {raw} does not exist (Observe: poolnet would create it)"))),
                Ok(None) => {
                    let mut asg = ApplicationSecurityGroup::default();
                    asg.resource.location = cluster.location.clone();
                    owned_tags(&mut asg.resource, npn, &cluster.key);
                    match arm.put_asg(&id, &asg, Precondition::IfNoneMatch).await {
                        Ok(Lro::Done(_)) => {
                            out.event(EventType::Normal, "ASGCreated", format!("created application security group {raw}"));
                            asgs.push(AsgStatus { id: raw, managed: true });
                        }
                        Ok(Lro::Pending(h)) => {
                            out.soon(h.next_poll_in());
                            problems.push(PartState::failed(cond::ASG_READY, reason::PROGRESSING, format!("creating ASG {raw}")));
                        }
                        Err(e) => problems.push(out.arm_failure(cond::ASG_READY, &format!("creating ASG {raw}"), &e)),
                    }
                }
                Err(e) => {
                    problems.push(out.arm_failure(cond::ASG_READY, &format!("reading ASG {raw}"), &e));
                    as_last_seen(&raw, &mut asgs);
                }
            },
        }
    }
    for raw in npn
        .spec
        .application_security_groups
        .iter()
        .flat_map(|a| a.custom_ids.iter())
    {
        match arm_id(raw) {
            Err(e) => problems.push(out.arm_failure(cond::ASG_READY, "custom ASG ID", &e)),
            Ok(id) => match arm.get_asg(&id).await.optional() {
                Ok(Some(_)) => asgs.push(AsgStatus {
                    id: raw.clone(),
                    managed: false,
                }),
                Ok(None) => problems.push(PartState::failed(
                    cond::ASG_READY,
                    reason::NOT_FOUND,
                    format!(
                        "custom ASG {raw} does not exist: create it or remove it from customIds"
                    ),
                )),
                Err(e) => {
                    problems.push(out.arm_failure(
                        cond::ASG_READY,
                        &format!("reading ASG {raw}"),
                        &e,
                    ));
                    as_last_seen(raw, &mut asgs);
                }
            },
        }
    }
    match problems.into_iter().reduce(|a, b| PartState {
        message: format!("{}; {}", a.message, b.message),
        ..a
    }) {
        Some(p) => out.part(p),
        None if asgs.is_empty() => out.part(PartState::ok(
            cond::ASG_READY,
            reason::NOT_CONFIGURED,
            "no application security groups",
        )),
        None => out.part(PartState::ok(
            cond::ASG_READY,
            reason::RECONCILED,
            format!("{} ASG(s)", asgs.len()),
        )),
    }
    asgs
}

/// Canonical host-port string of an agent pool's allowedHostPorts.
fn pool_ports(pool: &AgentPool) -> String {
    let specs: Vec<portspec::HostPortSpec> = pool
        .properties
        .network_profile
        .as_ref()
        .and_then(|n| n.allowed_host_ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let protocol = r.protocol.as_deref()?.parse::<Protocol>().ok()?;
            let range = portspec::PortRange::new(r.port_start?, r.port_end?)?;
            Some(portspec::HostPortSpec { protocol, range })
        })
        .collect();
    portspec::format_list(&PortSet::from_specs(&specs).to_specs())
}

fn aks_port_ranges(canonical: &str) -> Vec<poolnet_arm::PortRange> {
    portspec::parse_list(canonical)
        .unwrap_or_default()
        .into_iter()
        .map(|s| poolnet_arm::PortRange {
            port_start: Some(s.range.start()),
            port_end: Some(s.range.end()),
            protocol: Some(s.protocol.as_kubernetes().to_string()),
            extra: Default::default(),
        })
        .collect()
}

fn pool_asg_ids(pool: &AgentPool) -> Vec<String> {
    let mut v: Vec<String> = pool
        .properties
        .network_profile
        .as_ref()
        .and_then(|n| n.application_security_groups.clone())
        .unwrap_or_default();
    v.sort_by_key(|s| s.to_ascii_lowercase());
    v
}

fn same_ids(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// Set the pool's mutable network fields to `ports` and `asgs` (read-modify-write with
/// `If-Match`, keeping every field poolnet does not manage).
async fn write_pool(
    arm: &dyn ArmNetwork,
    id: &ResourceId,
    current: &Etagged<AgentPool>,
    ports: &str,
    asgs: &[String],
) -> Result<Lro<Etagged<AgentPool>>, ArmError> {
    let mut next = current.resource.clone();
    let profile = next
        .properties
        .network_profile
        .get_or_insert_with(Default::default);
    profile.allowed_host_ports = Some(aks_port_ranges(ports));
    profile.application_security_groups = Some(asgs.to_vec());
    arm.put_agent_pool(id, &next, current.precondition()).await
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_agent_pool(
    npn: &NodePoolNetwork,
    r: &Reconciler,
    id: &ResourceId,
    writes: bool,
    asgs: &[AsgStatus],
    status: &mut NodePoolNetworkStatus,
    out: &mut Outcome,
) -> Result<Option<AgentPool>, Error> {
    let arm = r.ctx.arm.as_ref();
    let current = match arm.get_agent_pool(id).await {
        Ok(p) => p,
        Err(e) => {
            let p = out.arm_failure(
                cond::AGENT_POOL_READY,
                &format!("reading agent pool {id}"),
                &e,
            );
            out.part(p);
            return Ok(None);
        }
    };
    let props = &current.resource.properties;
    let profile = props.network_profile.clone().unwrap_or_default();
    let mut recreate = Vec::new();
    if let Some(nip) = &npn.spec.node_public_ip {
        if props.enable_node_public_ip.unwrap_or(false) != nip.enabled {
            recreate.push(format!(
                "enableNodePublicIP is {} on the pool but {} in spec.nodePublicIP.enabled",
                props.enable_node_public_ip.unwrap_or(false),
                nip.enabled
            ));
        }
        if let Some(want) = wanted_prefix_id(npn)
            && !props
                .node_public_ip_prefix_id
                .as_deref()
                .is_some_and(|have| have.eq_ignore_ascii_case(&want))
        {
            recreate.push(format!(
                "nodePublicIPPrefixID is {} on the pool but {want} in spec",
                props.node_public_ip_prefix_id.as_deref().unwrap_or("unset")
            ));
        }
        let mut have_tags: Vec<IpTag> = profile
            .node_public_ip_tags
            .iter()
            .flatten()
            .map(|t| IpTag {
                ip_tag_type: t.ip_tag_type.clone().unwrap_or_default(),
                tag: t.tag.clone().unwrap_or_default(),
            })
            .collect();
        have_tags.sort();
        let want_tags = spec_ip_tags(npn);
        if nip.ip_tags.is_some() && have_tags != want_tags {
            recreate.push(format!(
                "nodePublicIPTags are {have_tags:?} on the pool but {want_tags:?} in spec"
            ));
        }
    }

    let have_ports = pool_ports(&current.resource);
    let have_asgs = pool_asg_ids(&current.resource);
    let want_ports =
        portspec::format_list(&PortSet::from_specs(&allowed_host_ports(&npn.spec)).to_specs());
    // Only ASGs that exist can join the pool; the rest wait for the ASG part.
    let existing: Vec<String> = asgs.iter().map(|a| a.id.clone()).collect();
    let want_asgs: Vec<String> = pool_asgs(npn)
        .into_iter()
        .filter(|w| existing.iter().any(|e| e.eq_ignore_ascii_case(w)))
        .collect();
    let missing_asgs: Vec<String> = pool_asgs(npn)
        .into_iter()
        .filter(|w| !want_asgs.iter().any(|e| e.eq_ignore_ascii_case(w)))
        .collect();
    let drift = have_ports != want_ports || !same_ids(&have_asgs, &want_asgs);

    status.agent_pool = Some(AgentPoolStatus {
        enable_node_public_ip: props.enable_node_public_ip.unwrap_or(false),
        node_public_ip_prefix_id: props.node_public_ip_prefix_id.clone(),
        node_public_ip_tags: profile
            .node_public_ip_tags
            .iter()
            .flatten()
            .map(|t| IpTag {
                ip_tag_type: t.ip_tag_type.clone().unwrap_or_default(),
                tag: t.tag.clone().unwrap_or_default(),
            })
            .collect(),
        allowed_host_ports: Some(have_ports.clone()).filter(|s| !s.is_empty()),
        application_security_groups: have_asgs.clone(),
        requires_recreate: recreate.clone(),
        original: status.agent_pool.as_ref().and_then(|a| a.original.clone()),
    });
    status.node_count = props.count;

    let mut part = if !recreate.is_empty() {
        PartState::failed(
            cond::AGENT_POOL_READY,
            reason::REQUIRES_NODE_POOL_RECREATE,
            format!(
                "AKS sets these only when a node pool is created: {}; recreate the node pool with them (az aks nodepool add) or change the spec to match the pool",
                recreate.join("; ")
            ),
        )
    } else {
        PartState::ok(
            cond::AGENT_POOL_READY,
            reason::RECONCILED,
            "allowed host ports and ASGs match the spec",
        )
    };

    if drift {
        if !missing_asgs.is_empty() {
            // Writing the pool now would apply half the spec and cost a second (slow) pool
            // update once the rest exists: wait for every ASG first.
            out.soon(Duration::from_secs(5));
            if part.ok {
                part = PartState::failed(
                    cond::AGENT_POOL_READY,
                    reason::PROGRESSING,
                    format!(
                        "waiting for ASG(s) {} to exist before updating the pool",
                        missing_asgs.join(", ")
                    ),
                );
            }
        } else if updating_pool(&current.resource) {
            out.soon(Duration::from_secs(10));
            if part.ok {
                part = PartState::failed(
                    cond::AGENT_POOL_READY,
                    reason::PROGRESSING,
                    "the agent pool is updating",
                );
            }
        } else if !writes {
            if part.ok {
                part = PartState::failed(
                    cond::AGENT_POOL_READY,
                    reason::OBSERVE_ONLY,
                    format!(
                        "would set allowedHostPorts to {want_ports:?} and ASGs to {want_asgs:?} (Observe)"
                    ),
                );
            }
        } else {
            // Remember what the pool had before poolnet's first change, durably, before
            // changing it: deletion restores it even if poolnet crashes right after the write.
            if status
                .agent_pool
                .as_ref()
                .is_some_and(|a| a.original.is_none())
            {
                if let Some(a) = status.agent_pool.as_mut() {
                    a.original = Some(AgentPoolOriginal {
                        allowed_host_ports: have_ports.clone(),
                        application_security_groups: have_asgs.clone(),
                    });
                }
                patch_status(r, npn, status).await?;
            }
            match write_pool(arm, id, &current, &want_ports, &want_asgs).await {
                Ok(done) => {
                    out.event(
                        EventType::Normal,
                        "AgentPoolUpdated",
                        format!(
                            "set allowedHostPorts {want_ports:?} and {} ASG(s) on agent pool {id}",
                            want_asgs.len()
                        ),
                    );
                    if let Lro::Pending(h) = done {
                        out.soon(h.next_poll_in());
                        if part.ok {
                            part = PartState::failed(
                                cond::AGENT_POOL_READY,
                                reason::PROGRESSING,
                                "the agent pool is updating",
                            );
                        }
                    } else if let Some(a) = status.agent_pool.as_mut() {
                        a.allowed_host_ports = Some(want_ports.clone()).filter(|s| !s.is_empty());
                        a.application_security_groups = want_asgs.clone();
                    }
                }
                Err(e) => {
                    part = out.arm_failure(
                        cond::AGENT_POOL_READY,
                        &format!("updating agent pool {id}"),
                        &e,
                    )
                }
            }
        }
    }
    out.part(part);
    Ok(Some(current.resource))
}

fn updating_pool(pool: &AgentPool) -> bool {
    pool.properties
        .provisioning_state
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded") && !s.eq_ignore_ascii_case("Failed"))
}

/// All pools from the cache, with this object as reconciled (the cache may lag behind it).
fn pools_with(npn: &NodePoolNetwork, r: &Reconciler) -> Vec<NodePoolNetwork> {
    let mut pools: Vec<NodePoolNetwork> = r
        .ctx
        .stores
        .all_pools()
        .into_iter()
        .filter(|p| p.name_any() != npn.name_any())
        .collect();
    pools.push(npn.clone());
    pools
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_nsgs(
    npn: &NodePoolNetwork,
    r: &Reconciler,
    asgs: &[AsgStatus],
    writes: bool,
    cluster: &ClusterFacts,
    freshness: Freshness,
    status: &mut NodePoolNetworkStatus,
    out: &mut Outcome,
) {
    if npn.spec.network_security_groups.is_empty() {
        status.security_groups.clear();
        status.rule_count = None;
        out.part(PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::NOT_CONFIGURED,
            "no NSGs in spec",
        ));
        return;
    }
    let ctx = &r.ctx;
    // ARM refuses rules that name an ASG that does not exist yet: wait for the ASG part.
    let missing: Vec<String> = poolnet_plan::desired::destination_asgs(npn)
        .into_iter()
        .filter(|d| !asgs.iter().any(|a| a.id.eq_ignore_ascii_case(d)))
        .collect();
    if !missing.is_empty() {
        out.soon(Duration::from_secs(5));
        out.part(PartState::failed(
            cond::SECURITY_RULES_READY,
            reason::PROGRESSING,
            format!(
                "waiting for ASG(s) {} before writing rules that target them",
                missing.join(", ")
            ),
        ));
        return;
    }
    let prefix = cluster_rule_prefix(&cluster.key);
    // This object with the ASGs this reconcile found, not the status it was triggered with:
    // desired_rules_for_nsg takes an object's rules once its status shows their ASGs.
    let mut me = npn.clone();
    me.status
        .get_or_insert_with(Default::default)
        .application_security_groups = asgs.to_vec();
    let pools = pools_with(&me, r);
    let policies = ctx.stores.all_policies();
    let me = Owner::NodePoolNetwork {
        name: npn.name_any(),
    };
    let mut groups = Vec::new();
    let mut problems: Vec<PartState> = Vec::new();
    for target in &npn.spec.network_security_groups {
        let id = match arm_id(&target.id) {
            Ok(id) => id,
            Err(e) => {
                problems.push(out.arm_failure(cond::SECURITY_RULES_READY, "NSG ID", &e));
                continue;
            }
        };
        let desired =
            desired_rules_for_nsg(&cluster.key, &target.id, &pools, &policies, &|h, p| {
                ctx.stores.admits(h, p)
            });
        let plan = if writes {
            match ctx.nsg_writer.sync(&id, &desired, &prefix, freshness).await {
                Ok(sync) => {
                    if sync.wrote {
                        let p = &sync.plan;
                        out.event(
                            EventType::Normal,
                            "SecurityRulesUpdated",
                            format!(
                                "wrote NSG {}: {} added, {} changed, {} removed",
                                target.id,
                                p.added.len(),
                                p.changed.len(),
                                p.removed.len()
                            ),
                        );
                    }
                    if let Some(wait) = sync.pending {
                        out.soon(wait);
                        problems.push(PartState::failed(
                            cond::SECURITY_RULES_READY,
                            reason::PROGRESSING,
                            format!("NSG {} is updating", target.id),
                        ));
                        continue;
                    }
                    sync.plan
                }
                Err(e) => {
                    problems.push(out.arm_failure(
                        cond::SECURITY_RULES_READY,
                        &format!("writing NSG {}", target.id),
                        &e,
                    ));
                    continue;
                }
            }
        } else {
            match ctx.arm.get_nsg(&id).await {
                Ok(nsg) => {
                    let plan = plan_nsg(&existing_rules(&nsg.resource, &prefix), &desired, &prefix);
                    if plan.needs_write() {
                        problems.push(PartState::failed(
                            cond::SECURITY_RULES_READY,
                            reason::OBSERVE_ONLY,
                            format!("NSG {} differs: poolnet would add {}, change {}, remove {} rule(s) (Observe)", target.id, plan.added.len(), plan.changed.len(), plan.removed.len()),
                        ));
                    }
                    plan
                }
                Err(e) => {
                    problems.push(out.arm_failure(
                        cond::SECURITY_RULES_READY,
                        &format!("reading NSG {}", target.id),
                        &e,
                    ));
                    continue;
                }
            }
        };
        for u in plan.unplaced.iter().filter(|u| u.rule.owner == me) {
            problems.push(PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::PRIORITY_BAND_FULL,
                format!(
                    "rule {} in NSG {}: {}; widen spec.networkSecurityGroups priorities",
                    u.rule.name, target.id, u.reason
                ),
            ));
        }
        groups.push(NsgStatus {
            id: target.id.clone(),
            rules: plan
                .rules_of(&me)
                .map(|p| RuleStatus {
                    name: p.rule.name.clone(),
                    priority: i32::from(p.priority),
                    protocol: match p.rule.content.protocol {
                        Protocol::Tcp => "Tcp".into(),
                        Protocol::Udp => "Udp".into(),
                    },
                    destination_port_ranges: p.rule.content.port_strings(),
                    source_address_prefixes: p.rule.content.sources.clone(),
                })
                .collect(),
        });
    }
    status.rule_count = Some(groups.iter().map(|g| g.rules.len() as i32).sum());
    status.security_groups = groups;
    match problems.into_iter().reduce(|a, b| PartState {
        message: format!("{}; {}", a.message, b.message),
        ..a
    }) {
        Some(p) => out.part(p),
        None => out.part(PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::RECONCILED,
            format!(
                "{} rule(s) in {} NSG(s)",
                status.rule_count.unwrap_or(0),
                npn.spec.network_security_groups.len()
            ),
        )),
    }
}

fn route_reason(p: &RouteProblem) -> &'static str {
    match p {
        RouteProblem::OtherCluster { .. } => reason::ROUTE_TABLE_IN_USE,
        RouteProblem::LimitExceeded { .. } => reason::ROUTE_LIMIT_EXCEEDED,
        RouteProblem::NoDefaultRoute => reason::NO_DEFAULT_ROUTE,
        RouteProblem::NameConflict { .. } | RouteProblem::PrefixConflict { .. } => "RouteConflict",
    }
}

async fn reconcile_routes(
    npn: &NodePoolNetwork,
    r: &Reconciler,
    writes: bool,
    cluster: &ClusterFacts,
    freshness: Freshness,
    status: &mut NodePoolNetworkStatus,
    out: &mut Outcome,
) {
    let Some(rt) = &npn.spec.route_table else {
        status.route_table = None;
        out.part(PartState::ok(
            cond::ROUTES_READY,
            reason::NOT_CONFIGURED,
            "no route table in spec",
        ));
        return;
    };
    let ctx = &r.ctx;
    let id = match arm_id(&rt.id) {
        Ok(id) => id,
        Err(e) => {
            let p = out.arm_failure(cond::ROUTES_READY, "route table ID", &e);
            out.part(p);
            return;
        }
    };
    let desired = desired_routes_for_table(&cluster.key, &rt.id, &pools_with(npn, r));
    let budget = RouteBudget {
        node_routes: if cluster.kubenet {
            ctx.stores.nodes.state().len()
        } else {
            0
        },
        limit: rt.route_limit as usize,
    };
    let result = if writes {
        ctx.route_writer
            .sync(&id, &desired, &cluster.key, budget, freshness)
            .await
            .map(|s| (s.plan, s.wrote, s.pending))
    } else {
        ctx.arm.get_route_table(&id).await.map(|t| {
            let plan = plan_routes(
                &route_table_view(&t.resource),
                &desired,
                &cluster.key,
                budget.node_routes,
                budget.limit,
            );
            (plan, false, None)
        })
    };
    match result {
        Err(e) => {
            let p = out.arm_failure(cond::ROUTES_READY, &format!("route table {}", rt.id), &e);
            out.part(p);
        }
        Ok((_, _, Some(wait))) => {
            out.soon(wait);
            out.part(PartState::failed(
                cond::ROUTES_READY,
                reason::PROGRESSING,
                format!("route table {} is updating", rt.id),
            ));
        }
        Ok((plan, wrote, None)) => {
            let mine: Vec<String> = rt
                .routes
                .iter()
                .map(|x| poolnet_plan::routes::azure_route_name(&x.name))
                .collect();
            status.route_table = Some(RouteTableStatus {
                id: rt.id.clone(),
                owned_routes: mine.clone(),
                route_count: plan.total as i32,
                route_limit: rt.route_limit as i32,
            });
            if let Some(first) = plan.problems.first() {
                let msg = plan
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                out.event(EventType::Warning, route_reason(first), msg.clone());
                out.part(PartState::failed(
                    cond::ROUTES_READY,
                    route_reason(first),
                    msg,
                ));
            } else if !writes && plan.needs_write() {
                out.part(PartState::failed(cond::ROUTES_READY, reason::OBSERVE_ONLY, format!("route table {} differs: poolnet would add {}, change {}, remove {} route(s) (Observe)", rt.id, plan.added.len(), plan.changed.len(), plan.removed.len())));
            } else {
                if wrote {
                    out.event(
                        EventType::Normal,
                        "RoutesUpdated",
                        format!(
                            "wrote route table {}: {} added, {} changed, {} removed",
                            rt.id,
                            plan.added.len(),
                            plan.changed.len(),
                            plan.removed.len()
                        ),
                    );
                }
                out.part(PartState::ok(
                    cond::ROUTES_READY,
                    reason::RECONCILED,
                    format!(
                        "{} route(s) of {} in use, limit {}",
                        mine.len(),
                        plan.total,
                        rt.route_limit
                    ),
                ));
            }
        }
    }
}

/// `…/virtualMachineScaleSets/<vmss>/virtualMachines/<instance>` from a node's provider ID.
fn vmss_instance(provider_id: &str) -> Option<(String, String)> {
    let path = provider_id.strip_prefix("azure://")?;
    let lower = path.to_ascii_lowercase();
    let at = lower.find("/virtualmachines/")?;
    let vmss = path[..at].to_string();
    let instance = path[at + "/virtualmachines/".len()..]
        .split('/')
        .next()?
        .to_string();
    vmss.to_ascii_lowercase()
        .contains("/virtualmachinescalesets/")
        .then_some((vmss, instance))
}

/// Instance ID from a VMSS public IP's ipConfiguration ID.
fn instance_of_ip_config(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let at = lower.find("/virtualmachines/")?;
    id[at + "/virtualmachines/".len()..]
        .split('/')
        .next()
        .map(String::from)
}

async fn reconcile_node_ips(
    npn: &NodePoolNetwork,
    r: &Reconciler,
    pool: Option<&AgentPool>,
    status: &mut NodePoolNetworkStatus,
    out: &mut Outcome,
) {
    let enabled = npn.spec.node_public_ip.as_ref().is_some_and(|n| n.enabled);
    if !enabled {
        status.nodes.clear();
        out.part(PartState::ok(
            cond::NODE_IPS_READY,
            reason::NOT_CONFIGURED,
            "node public IPs are off",
        ));
        return;
    }
    let selector = node_selector(npn);
    let nodes: Vec<Arc<Node>> = r
        .ctx
        .stores
        .nodes
        .state()
        .into_iter()
        .filter(|n| selector.iter().all(|(k, v)| n.labels().get(k) == Some(v)))
        .collect();
    let mut by_vmss: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for n in &nodes {
        if let Some((vmss, instance)) = n
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(vmss_instance)
        {
            by_vmss
                .entry(vmss)
                .or_default()
                .push((n.name_any(), instance));
        }
    }
    let mut addresses = Vec::new();
    let mut problems = Vec::new();
    for (vmss, members) in &by_vmss {
        let id = match arm_id(vmss) {
            Ok(id) => id,
            Err(e) => {
                problems.push(out.arm_failure(cond::NODE_IPS_READY, "node provider ID", &e));
                continue;
            }
        };
        match r.ctx.arm.list_vmss_public_ips(&id).await {
            Ok(ips) => {
                let by_instance: HashMap<String, String> = ips
                    .iter()
                    .filter_map(|ip| {
                        let props = ip.properties.as_ref()?;
                        let cfg = props
                            .ip_configuration
                            .as_ref()?
                            .sub_resource
                            .id
                            .as_deref()?;
                        Some((instance_of_ip_config(cfg)?, props.ip_address.clone()?))
                    })
                    .collect();
                for (node, instance) in members {
                    if let Some(ip) = by_instance.get(instance) {
                        addresses.push(NodeAddress {
                            node_name: node.clone(),
                            public_ip: ip.clone(),
                        });
                    }
                }
            }
            Err(e) => problems.push(out.arm_failure(
                cond::NODE_IPS_READY,
                &format!("listing public IPs of {vmss}"),
                &e,
            )),
        }
    }
    addresses.sort_by(|a, b| a.node_name.cmp(&b.node_name));
    let missing: Vec<String> = nodes
        .iter()
        .map(|n| n.name_any())
        .filter(|n| !addresses.iter().any(|a| &a.node_name == n))
        .collect();
    status.nodes = addresses;
    if pool.is_none() || nodes.is_empty() {
        status.node_count = status.node_count.or(Some(nodes.len() as i32));
    }
    if let Some(p) = problems.into_iter().next() {
        out.part(p);
    } else if !missing.is_empty() {
        out.soon(Duration::from_secs(30));
        out.part(PartState::failed(
            cond::NODE_IPS_READY,
            reason::PROGRESSING,
            format!("no public IP found yet for node(s) {}", missing.join(", ")),
        ));
    } else {
        out.part(PartState::ok(
            cond::NODE_IPS_READY,
            reason::RECONCILED,
            format!("{} node(s) with public IPs", status.nodes.len()),
        ));
    }
}

fn in_progress(what: String, retry_in: Duration) -> Error {
    Error::CleanupInProgress { what, retry_in }
}

/// Deletion: undo exactly what poolnet did, in dependency order (rules and routes first,
/// then the pool's membership, then the ASG and the prefix nothing refers to any more).
async fn cleanup(npn: Arc<NodePoolNetwork>, r: &Reconciler) -> Result<Action, Error> {
    let ctx = &r.ctx;
    let name = npn.name_any();
    match npn.spec.reconcile_policy {
        ReconcilePolicy::Observe => return Ok(Action::await_change()),
        ReconcilePolicy::DetachOnDelete => {
            info!(%name, "DetachOnDelete: leaving Azure resources in place");
            let ev = KubeEvent {
                type_: EventType::Normal,
                reason: "Detached".into(),
                note: Some("reconcilePolicy DetachOnDelete: Azure resources left in place".into()),
                action: "Delete".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&ev, &npn.object_ref(&())).await;
            return Ok(Action::await_change());
        }
        ReconcilePolicy::Manage => {}
    }
    let cluster = cluster_of(&npn.spec.node_pool.agent_pool_id).unwrap_or_default();
    let prefix = cluster_rule_prefix(&cluster);
    // The object carries its deletion timestamp, so the unions below leave it out.
    let pools = pools_with(&npn, r);
    let policies = ctx.stores.all_policies();
    for target in &npn.spec.network_security_groups {
        let id = arm_id(&target.id)?;
        let desired = desired_rules_for_nsg(&cluster, &target.id, &pools, &policies, &|h, p| {
            ctx.stores.admits(h, p)
        });
        let sync = ctx
            .nsg_writer
            .sync(&id, &desired, &prefix, Freshness::Reread)
            .await?;
        if let Some(wait) = sync.pending {
            return Err(in_progress(format!("NSG {}", target.id), wait));
        }
    }
    if let Some(rt) = &npn.spec.route_table {
        let id = arm_id(&rt.id)?;
        let desired = desired_routes_for_table(&cluster, &rt.id, &pools);
        // Removing routes never needs room, and conflicts of others are not ours to judge:
        // plan with a generous budget so only poolnet's own routes change.
        let budget = RouteBudget {
            node_routes: 0,
            limit: usize::MAX,
        };
        let sync = ctx
            .route_writer
            .sync(&id, &desired, &cluster, budget, Freshness::Reread)
            .await?;
        if let Some(wait) = sync.pending {
            return Err(in_progress(format!("route table {}", rt.id), wait));
        }
        if let Some(p) = sync
            .plan
            .problems
            .iter()
            .find(|p| !matches!(p, RouteProblem::NoDefaultRoute))
        {
            return Err(Error::CleanupPending(format!("route table {}: {p}", rt.id)));
        }
    }
    if let Some(original) = npn
        .status
        .as_ref()
        .and_then(|s| s.agent_pool.as_ref())
        .and_then(|a| a.original.clone())
    {
        let id = arm_id(&npn.spec.node_pool.agent_pool_id)?;
        match ctx.arm.get_agent_pool(&id).await.optional()? {
            None => {}
            Some(current) => {
                if updating_pool(&current.resource) {
                    return Err(in_progress(
                        format!("agent pool {id} is updating"),
                        Duration::from_secs(10),
                    ));
                }
                let drift = pool_ports(&current.resource) != original.allowed_host_ports
                    || !same_ids(
                        &pool_asg_ids(&current.resource),
                        &original.application_security_groups,
                    );
                if drift {
                    if let Lro::Pending(h) = write_pool(
                        ctx.arm.as_ref(),
                        &id,
                        &current,
                        &original.allowed_host_ports,
                        &original.application_security_groups,
                    )
                    .await?
                    {
                        return Err(in_progress(
                            format!("restoring agent pool {id}"),
                            h.next_poll_in(),
                        ));
                    }
                    info!(%name, pool = %id, "restored the agent pool's original host ports and ASGs");
                }
            }
        }
    }
    if managed_asg_enabled(&npn.spec)
        && let Some(raw) = managed_asg_id(&npn)
    {
        let id = arm_id(&raw)?;
        if let Some(a) = ctx.arm.get_asg(&id).await.optional()?
            && ours(&a.resource.resource, &npn)
            && let Lro::Pending(h) = ctx.arm.delete_asg(&id).await?
        {
            return Err(in_progress(format!("deleting ASG {raw}"), h.next_poll_in()));
        }
    }
    if let Some(raw) = managed_prefix_id(&npn) {
        let id = arm_id(&raw)?;
        if let Some(p) = ctx.arm.get_public_ip_prefix(&id).await.optional()?
            && ours(&p.resource.resource, &npn)
            && let Lro::Pending(h) = ctx.arm.delete_public_ip_prefix(&id).await?
        {
            return Err(in_progress(
                format!("deleting public IP prefix {raw}"),
                h.next_poll_in(),
            ));
        }
    }
    info!(%name, "cleaned up Azure resources");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_map_to_vmss_instances() {
        let pid = "azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-game-1-vmss/virtualMachines/2";
        let (vmss, i) = vmss_instance(pid).unwrap();
        assert!(vmss.ends_with("virtualMachineScaleSets/aks-game-1-vmss"));
        assert_eq!(i, "2");
        assert!(vmss_instance("azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1").is_none());
        let cfg = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/7/networkInterfaces/v/ipConfigurations/ipconfig1";
        assert_eq!(instance_of_ip_config(cfg).as_deref(), Some("7"));
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

    #[test]
    fn aks_port_ranges_round_trip() {
        let ranges = aks_port_ranges("80/tcp,53/udp,40000-60000/tcp");
        let pool = AgentPool {
            properties: poolnet_arm::AgentPoolProperties {
                network_profile: Some(poolnet_arm::AgentPoolNetworkProfile {
                    allowed_host_ports: Some(ranges),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(pool_ports(&pool), "80/tcp,40000-60000/tcp,53/udp");
    }
}
