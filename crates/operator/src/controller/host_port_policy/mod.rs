//! The HostPortPolicy reconciler: accept (validate against the pool, the namespace and the
//! other policies), report the ports held for the policy's pods (from HostPortClaims) and
//! how full its range is, open the ports in the pool's NSGs through the shared NSG writer,
//! and label the namespace so poolnet's pod webhook sees its pods.
//!
//! The pipeline is pure steps around two side effects: one NSG sync per NSG of the pool
//! (coalesced with the NodePoolNetwork controller's by the writer) and one server-side-apply
//! status patch when something changed.

mod namespaces;
mod rules;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{HostPortClaim, HostPortPolicy, HostPortPolicyStatus, NodePoolNetwork};
use poolnet_api::validation::{PolicyContext, validate_host_port_policy};
use tracing::{instrument, warn};

use super::Context;
use super::conditions::{PartState, conditions};
use super::status::{apply_status, publish};
use namespaces::{ensure_namespace_label, spawn_sweeper};
use rules::{Record, security_rules};
pub use usage::{CachedRanges, Usage, range_samples, usage};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "hostportpolicy";
/// Server-side-apply field manager of the status.
pub const MANAGER: &str = "poolnet/hostportpolicy";
/// Field manager of the namespace label.
pub const NAMESPACE_MANAGER: &str = "poolnet/hostportpolicy-namespaces";
/// Namespace label that routes all of a namespace's pods to the pod webhook
/// (`policy.host-ports.poolnet.dev` in config/webhook/webhooks.yaml).
pub const NAMESPACE_LABEL: &str = "poolnet.dev/host-port-policies";
/// Utilisation changes with every pod: look again this often even without events.
const RESYNC: Duration = Duration::from_secs(60);

const NOT_REACHABLE: &str = "PortsNotReachable";

/// Reconciles at a time. Unbounded, 5,000 policies created at once were 5,000 reconciles in
/// flight, each holding its copies of the caches while it waited for its NSG's writer
/// (bench_memory); the writer serialises them per NSG anyway.
const CONCURRENCY: u16 = 8;

/// Finalizer that holds a policy's deletion until its rules are out of every NSG.
pub const FINALIZER: &str = "poolnet.dev/cleanup";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Arm(#[from] poolnet_arm::ArmError),
    #[error("the informer caches stopped")]
    CachesGone,
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A removal is still running in Azure: an error, not `Ok`, or the finalizer goes.
    #[error("removing the policy's rules: NSG write in progress")]
    CleanupInProgress { retry_in: Duration },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Arm(e) => e.metric_label(),
            Error::CachesGone => "caches_gone",
            Error::Finalizer(_) => "finalizer",
            Error::CleanupInProgress { .. } => "cleanup_in_progress",
        }
    }

    fn retry_in(&self) -> Option<Duration> {
        match self {
            Error::CleanupInProgress { retry_in } => Some(*retry_in),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::CleanupFailed(e)
                | kube::runtime::finalizer::Error::ApplyFailed(e) => e.retry_in(),
                _ => None,
            },
            Error::Arm(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The reconciler's context: the shared one plus the claims cache.
pub struct Reconciler {
    pub ctx: Arc<Context>,
    claims: Store<HostPortClaim>,
    claims_writer: std::sync::Mutex<Option<reflector::store::Writer<HostPortClaim>>>,
}

impl Reconciler {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let (claims, writer) = reflector::store();
        Arc::new(Self {
            ctx,
            claims,
            claims_writer: std::sync::Mutex::new(Some(writer)),
        })
    }
}

/// Runs the controller until `shutdown` resolves; `policy_events`, `pool_events` and
/// `namespace_events` are subscriptions of the shared informers (a pool's changes requeue its
/// policies, a namespace's those in it: both decide whether a policy is admitted). Claims are watched here (their changes requeue the
/// policy they belong to). Run it while holding the Lease.
pub async fn run(
    reconciler: Arc<Reconciler>,
    policy_events: super::Events<HostPortPolicy>,
    pool_events: super::Events<NodePoolNetwork>,
    namespace_events: super::Events<Namespace>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Some(writer) = reconciler
        .claims_writer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        warn!("the HostPortPolicy controller can run once per reconciler");
        return;
    };
    let claims = watcher(
        Api::<HostPortClaim>::all(reconciler.ctx.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(super::slim_meta::<HostPortClaim>)
    .reflect(writer)
    .touched_objects();
    let policies = reconciler.ctx.stores.policies.clone();
    let _sweeper = spawn_sweeper(Arc::clone(&reconciler));
    let by_pool = policies.clone();
    let by_namespace = policies.clone();
    let policies_by_pods = policies.clone();
    Controller::for_shared_stream(super::meaningful_changes(policy_events), policies)
        // Started on gaining the Lease: what changed before is not in the streams.
        .reconcile_all_on(super::once_ready(reconciler.ctx.stores.clone()))
        // A pool's spec (allowed ports, admitted namespaces) and status (its ASGs, hence
        // where the policy's rules may go) decide each of its policies' state.
        .watches_shared_stream(pool_events, move |pool: Arc<NodePoolNetwork>| {
            let name = pool.name_any();
            by_pool
                .state()
                .iter()
                .filter(|p| p.spec.node_pool_network == name)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        // A namespace's labels decide whether a pool admits its policies.
        .watches_shared_stream(namespace_events, move |ns: Arc<Namespace>| {
            let name = ns.name_any();
            by_namespace
                .state()
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(name.as_str()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(claims, |claim: HostPortClaim| {
            claim
                .spec
                .policy
                .as_ref()
                .map(|p| ObjectRef::new(p).within(&claim.spec.pod_namespace))
        })
        // Ports given from blocks have no claim: a namespace's admitted pods coming or
        // going re-checks its policies.
        .reconcile_on(namespace_pods(&reconciler, policies_by_pods))
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, reconciler)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "HostPortPolicy reconcile failed");
            }
        })
        .await;
}

/// The policies of every namespace whose poolnet-admitted pods came or went (from the
/// host-port index, when this replica serves the webhooks); nothing without an index.
fn namespace_pods(
    reconciler: &Reconciler,
    policies: Store<HostPortPolicy>,
) -> futures::stream::BoxStream<'static, ObjectRef<HostPortPolicy>> {
    let Some(index) = reconciler.ctx.host_ports.clone() else {
        return futures::stream::empty().boxed();
    };
    let rx = index.subscribe_namespaces();
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ns) => return Some((ns, rx)),
                // Missed names: the next ones (and the periodic requeue) catch up.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |ns| {
        let refs: Vec<ObjectRef<HostPortPolicy>> = policies
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
    .boxed()
}

fn error_policy(_policy: Arc<HostPortPolicy>, err: &Error, _r: Arc<Reconciler>) -> Action {
    let wait = err.retry_in().unwrap_or(Duration::from_secs(10));
    warn!(error = %err, retry_in = ?wait, "HostPortPolicy reconcile error");
    Action::requeue(wait)
}

#[instrument(skip(policy, r), fields(namespace = policy.namespace().unwrap_or_default(), name = policy.name_any()))]
async fn reconcile(policy: Arc<HostPortPolicy>, r: Arc<Reconciler>) -> Result<Action, Error> {
    // The NSG union is computed from the caches: a half-filled cache would look like
    // "nobody wants these rules".
    r.ctx
        .stores
        .wait_ready()
        .await
        .map_err(|_| Error::CachesGone)?;
    let timer = r.ctx.metrics.reconcile_started(CONTROLLER);
    let api = Api::<HostPortPolicy>::namespaced(
        r.ctx.client.clone(),
        &policy.namespace().unwrap_or_default(),
    );
    let result = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &r).await,
            Finalizer::Cleanup(p) => cleanup(&p, &r).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match result {
        Ok(action) => {
            timer.ok();
            Ok(action)
        }
        Err(e) => {
            timer.error(e.metric_label());
            Err(e)
        }
    }
}

async fn apply(policy: &HostPortPolicy, r: &Reconciler) -> Result<Action, Error> {
    let ns = policy.namespace().unwrap_or_default();
    ensure_namespace_label(r, &ns, true).await?;

    let stores = &r.ctx.stores;
    let pool = stores
        .pools
        .get(&ObjectRef::new(&policy.spec.node_pool_network));
    let accepted = accepted_part(policy, pool.as_deref(), stores);

    let claims = r.claims.state();
    let usage = match &r.ctx.host_ports {
        Some(index) => usage(
            policy,
            &claims,
            &index.admitted_in(&ns),
            Some(&index.held()),
        ),
        None => usage(policy, &claims, &[], None),
    };
    let ports_part = if usage.exhausted.is_empty() {
        PartState::ok(
            cond::PORTS_ALLOCATED,
            reason::RECONCILED,
            format!("{} port(s) held by {} pod(s)", usage.held, usage.pod_count),
        )
    } else {
        // Capacity, not reconciliation: Ready (what GitOps health checks wait for) stays True.
        PartState::failed(
            cond::PORTS_ALLOCATED,
            reason::RANGE_EXHAUSTED,
            format!(
                "no free host port left in {}: new pods are refused until pods holding ports \
                 in the range are deleted or spec.hostPortRange is widened",
                usage.exhausted.join(", ")
            ),
        )
        .capacity()
    };
    // Also when not accepted: a policy its pool no longer allows takes its rules out.
    let mut record = Record::new(policy);
    let (rules_part, rules) =
        security_rules(policy, pool.as_deref(), &accepted, &r.ctx, &mut record).await;

    let previous = record.written.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut events = Vec::new();
    if !ports_part.ok && !was(&previous, cond::PORTS_ALLOCATED, reason::RANGE_EXHAUSTED) {
        events.push((
            EventType::Warning,
            reason::RANGE_EXHAUSTED,
            ports_part.message.clone(),
        ));
    }
    if usage.held > 0
        && !rules_part.ok
        && !was(&previous, cond::SECURITY_RULES_READY, rules_part.reason)
    {
        events.push((
            EventType::Warning,
            NOT_REACHABLE,
            format!(
                "{} host port(s) are assigned but not reachable: {}",
                usage.held, rules_part.message
            ),
        ));
    }
    let parts = [accepted, ports_part, rules_part];
    let status = HostPortPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: conditions(
            &parts,
            policy.metadata.generation,
            &previous.conditions,
            &now,
        ),
        pod_count: Some(usage.pod_count),
        allocations: usage.allocations,
        utilization: usage.utilization,
        ports_in_use: Some(usage.ports_in_use),
        security_rules: rules,
        owned: Some(record.owned),
    };
    if status != previous {
        let api = Api::<HostPortPolicy>::namespaced(r.ctx.client.clone(), &ns);
        apply_status(&api, &policy.name_any(), MANAGER, &status).await?;
    }
    publish(&r.ctx.recorder, policy, "Reconcile", events).await;
    Ok(Action::requeue(RESYNC))
}

/// Deletion: the policy's rules out of every NSG it recorded, then the finalizer goes.
async fn cleanup(policy: &HostPortPolicy, r: &Reconciler) -> Result<Action, Error> {
    let pool = r
        .ctx
        .stores
        .pools
        .get(&ObjectRef::new(&policy.spec.node_pool_network));
    match rules::remove_all(policy, pool.as_deref(), &r.ctx).await? {
        Some(retry_in) => Err(Error::CleanupInProgress { retry_in }),
        None => Ok(Action::await_change()),
    }
}

fn was(previous: &HostPortPolicyStatus, type_: &str, reason: &str) -> bool {
    previous
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "False" && c.reason == reason)
}

fn accepted_part(
    policy: &HostPortPolicy,
    pool: Option<&NodePoolNetwork>,
    stores: &super::Stores,
) -> PartState {
    let ns = policy.namespace().unwrap_or_default();
    let labels = stores
        .namespaces
        .get(&ObjectRef::new(&ns))
        .map(|n| n.labels().clone())
        .unwrap_or_default();
    let others = stores.static_port_rivals(policy);
    let ctx = PolicyContext {
        pool,
        namespace_labels: &labels,
        other_policies: &others,
    };
    match validate_host_port_policy(policy, None, Some(&ctx)) {
        Ok(()) => PartState::ok(
            cond::ACCEPTED,
            reason::RECONCILED,
            format!(
                "admitted by NodePoolNetwork {}",
                policy.spec.node_pool_network
            ),
        ),
        Err(errs) => {
            let reason = if pool.is_none() {
                reason::POOL_NOT_FOUND
            } else if pool.is_some_and(|p| !stores.admits(policy, p)) {
                reason::NAMESPACE_NOT_ADMITTED
            } else {
                reason::INVALID_SPEC
            };
            PartState::failed(cond::ACCEPTED, reason, errs.to_string())
        }
    }
}
