//! The HostPortPolicy reconciler: accept (validate against the pool, the namespace and the
//! other policies), report the ports held for the policy's pods (from HostPortClaims) and
//! how full its range is, open the ports in the pool's NSGs through the shared NSG writer,
//! and label the namespace so poolnet's pod webhook sees its pods.
//!
//! The pipeline is pure steps around two side effects: one NSG sync per NSG of the pool
//! (coalesced with the NodePoolNetwork controller's by the writer) and one server-side-apply
//! status patch when something changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{
    AllocatedPort, HostPortClaim, HostPortPolicy, HostPortPolicyStatus, NodePoolNetwork,
    PodAllocation, RangeUtilization, ReconcilePolicy, RuleRef,
};
use poolnet_api::validation::{PolicyContext, validate_host_port_policy};
use poolnet_arm::ResourceId;
use poolnet_plan::desired::{cluster_of, desired_rules_for_nsg, destination_asgs};
use poolnet_plan::nsg::{Owner, cluster_rule_prefix, plan_nsg};
use serde_json::json;
use tracing::{instrument, warn};

use super::Context;
use super::conditions::{PartState, conditions};
use super::status::{apply_status, publish};
use crate::writers::Freshness;
use crate::writers::convert::existing_rules;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
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

/// Runs the controller until `shutdown` resolves; `policy_events` and `pool_events` are
/// subscriptions of the shared HostPortPolicy and NodePoolNetwork informers (a pool's
/// changes requeue its policies). Claims are watched here (their changes requeue the
/// policy they belong to). Run it while holding the Lease.
pub async fn run(
    reconciler: Arc<Reconciler>,
    policy_events: ReflectHandle<HostPortPolicy>,
    pool_events: ReflectHandle<NodePoolNetwork>,
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
    .reflect(writer)
    .touched_objects();
    let policies = reconciler.ctx.stores.policies.clone();
    let sweeper = tokio::spawn(sweep_namespace_labels(Arc::clone(&reconciler)));
    let by_pool = policies.clone();
    Controller::for_shared_stream(super::meaningful_changes(policy_events), policies)
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
        .watches_stream(claims, |claim: HostPortClaim| {
            claim
                .spec
                .policy
                .as_ref()
                .map(|p| ObjectRef::new(p).within(&claim.spec.pod_namespace))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, reconciler)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "HostPortPolicy reconcile failed");
            }
        })
        .await;
    sweeper.abort();
}

fn error_policy(_policy: Arc<HostPortPolicy>, err: &Error, _r: Arc<Reconciler>) -> Action {
    warn!(error = %err, "HostPortPolicy reconcile error");
    Action::requeue(Duration::from_secs(10))
}

#[instrument(skip(policy, r), fields(namespace = policy.namespace().unwrap_or_default(), name = policy.name_any()))]
async fn reconcile(policy: Arc<HostPortPolicy>, r: Arc<Reconciler>) -> Result<Action, Error> {
    let timer = r.ctx.metrics.reconcile_started(CONTROLLER);
    match apply(&policy, &r).await {
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
    let usage = usage(policy, &claims);
    let ports_part = if usage.exhausted.is_empty() {
        PartState::ok(
            cond::PORTS_ALLOCATED,
            reason::RECONCILED,
            format!("{} port(s) held by {} pod(s)", usage.held, usage.pod_count),
        )
    } else {
        PartState::failed(
            cond::PORTS_ALLOCATED,
            reason::RANGE_EXHAUSTED,
            format!(
                "no free host port left in {}: new pods are refused until pods holding ports \
                 in the range are deleted or spec.hostPortRange is widened",
                usage.exhausted.join(", ")
            ),
        )
    };
    let (rules_part, rules) = match (&pool, accepted.ok) {
        (Some(pool), true) => security_rules(policy, pool, r).await,
        _ => (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                accepted.reason,
                "not opened: the policy is not accepted",
            ),
            Vec::new(),
        ),
    };

    let previous = policy.status.clone().unwrap_or_default();
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
    };
    if status != previous {
        let api = Api::<HostPortPolicy>::namespaced(r.ctx.client.clone(), &ns);
        apply_status(&api, &policy.name_any(), MANAGER, &status).await?;
    }
    publish(&r.ctx.recorder, policy, "Reconcile", events).await;
    Ok(Action::requeue(RESYNC))
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
    let others: Vec<HostPortPolicy> = stores
        .all_policies()
        .into_iter()
        .filter(|p| !(p.namespace() == policy.namespace() && p.name_any() == policy.name_any()))
        .collect();
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

/// What the claims say about one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub allocations: Vec<PodAllocation>,
    pub pod_count: i32,
    /// Ports held for this policy's pods.
    pub held: usize,
    /// Per protocol of its automatic ports: held in the range by anyone / range size.
    pub utilization: Vec<RangeUtilization>,
    /// `<held for this policy>/<size of its range(s)>`, e.g. `6/20000`.
    pub ports_in_use: String,
    /// Ranges with no free port, e.g. `40000-40001/tcp`.
    pub exhausted: Vec<String>,
}

/// The policy's allocations and its range's utilisation, from the claims (all of them: a
/// range is shared by every policy and pod that uses it).
pub fn usage(policy: &HostPortPolicy, claims: &[Arc<HostPortClaim>]) -> Usage {
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let mine: Vec<&HostPortClaim> = claims
        .iter()
        .map(Arc::as_ref)
        .filter(|c| c.spec.pod_namespace == ns && c.spec.policy.as_deref() == Some(name.as_str()))
        .collect();
    let mut by_pod: BTreeMap<String, Vec<AllocatedPort>> = BTreeMap::new();
    let mut bound = BTreeSet::new();
    for c in &mine {
        let pod = match c.status.as_ref().and_then(|s| s.pod.as_ref()) {
            Some(p) => {
                bound.insert(p.uid.clone());
                p.name.clone()
            }
            // Reserved at admission; the pod is being created.
            None => format!(
                "(admitting {})",
                c.spec
                    .pod_name
                    .as_deref()
                    .or(c.spec.pod_generate_name.as_deref())
                    .unwrap_or("pod")
            ),
        };
        by_pod.entry(pod).or_default().push(AllocatedPort {
            container_port: c.spec.container_port.unwrap_or(0),
            protocol: c.spec.protocol,
            host_port: c.spec.port,
        });
    }
    let allocations = by_pod
        .into_iter()
        .map(|(pod, mut ports)| {
            ports.sort_by_key(|p| (p.container_port, p.host_port));
            PodAllocation { pod, ports }
        })
        .collect();
    let protocols: BTreeSet<Protocol> = policy
        .spec
        .ports
        .iter()
        .filter(|p| p.host_port.is_none())
        .map(|p| p.protocol.into())
        .collect();
    let range = PortRange::new(
        policy.spec.host_port_range.start,
        policy.spec.host_port_range.end,
    );
    let mut utilization = Vec::new();
    let mut exhausted = Vec::new();
    let mut total = 0i64;
    if let Some(range) = range {
        for proto in protocols {
            let used = claims
                .iter()
                .filter(|c| Protocol::from(c.spec.protocol) == proto && range.contains(c.spec.port))
                .count() as i64;
            let size = i64::from(range.len());
            total += size;
            if used >= size {
                exhausted.push(format!("{range}/{proto}"));
            }
            utilization.push(RangeUtilization {
                protocol: proto.into(),
                range: range.to_string(),
                used,
                total: size,
            });
        }
    }
    Usage {
        allocations,
        pod_count: bound.len() as i32,
        held: mine.len(),
        utilization,
        ports_in_use: format!("{}/{total}", mine.len()),
        exhausted,
    }
}

/// Opens the policy's ports in each NSG of its pool (through the shared writer, so the
/// NodePoolNetwork controller's writes and these coalesce) and reports its rules.
async fn security_rules(
    policy: &HostPortPolicy,
    pool: &NodePoolNetwork,
    r: &Reconciler,
) -> (PartState, Vec<RuleRef>) {
    let ctx = &r.ctx;
    if pool.spec.network_security_groups.is_empty() {
        return (
            PartState::ok(
                cond::SECURITY_RULES_READY,
                reason::NOT_CONFIGURED,
                format!(
                    "NodePoolNetwork {} names no NSGs: nothing to open",
                    pool.name_any()
                ),
            ),
            Vec::new(),
        );
    }
    // Rules target the pool's ASGs; ARM refuses rules naming an ASG that does not exist.
    let have: Vec<String> = pool
        .status
        .as_ref()
        .map(|s| {
            s.application_security_groups
                .iter()
                .map(|a| a.id.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<String> = destination_asgs(pool)
        .into_iter()
        .filter(|d| !have.contains(&d.to_ascii_lowercase()))
        .collect();
    if !missing.is_empty() {
        return (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::PROGRESSING,
                format!(
                    "waiting for NodePoolNetwork {} to create ASG(s) {}",
                    pool.name_any(),
                    missing.join(", ")
                ),
            ),
            Vec::new(),
        );
    }
    let Some(cluster) = cluster_of(&pool.spec.node_pool.agent_pool_id) else {
        return (
            PartState::failed(
                cond::SECURITY_RULES_READY,
                reason::INVALID_SPEC,
                "the NodePoolNetwork's agentPoolId names no cluster",
            ),
            Vec::new(),
        );
    };
    let prefix = cluster_rule_prefix(&cluster);
    let pools = ctx.stores.all_pools();
    let policies = ctx.stores.all_policies();
    let me = Owner::HostPortPolicy {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
    };
    let writes = pool.spec.reconcile_policy != ReconcilePolicy::Observe;
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for target in &pool.spec.network_security_groups {
        let id: ResourceId = match target.id.parse() {
            Ok(id) => id,
            Err(e) => {
                problems.push(format!("NSG ID {}: {e}", target.id));
                continue;
            }
        };
        let desired = desired_rules_for_nsg(&cluster, &target.id, &pools, &policies, &|h, p| {
            ctx.stores.admits(h, p)
        });
        let plan = if writes {
            match ctx
                .nsg_writer
                .sync(&id, &desired, &prefix, Freshness::Cached)
                .await
            {
                Ok(sync) if sync.pending.is_some() => {
                    problems.push(format!("NSG {} is updating", target.id));
                    continue;
                }
                Ok(sync) => sync.plan,
                Err(e) => {
                    problems.push(format!("writing NSG {}: {e}", target.id));
                    continue;
                }
            }
        } else {
            match ctx.arm.get_nsg(&id).await {
                Ok(nsg) => {
                    let plan = plan_nsg(&existing_rules(&nsg.resource, &prefix), &desired, &prefix);
                    if plan.rules_of(&me).count() == 0 || plan.needs_write() {
                        problems.push(format!(
                            "NSG {} lacks the policy's rules and the pool is Observe-only",
                            target.id
                        ));
                    }
                    plan
                }
                Err(e) => {
                    problems.push(format!("reading NSG {}: {e}", target.id));
                    continue;
                }
            }
        };
        for u in plan.unplaced.iter().filter(|u| u.rule.owner == me) {
            problems.push(format!(
                "rule {} in NSG {}: {}",
                u.rule.name, target.id, u.reason
            ));
        }
        rules.extend(plan.rules_of(&me).map(|p| RuleRef {
            nsg_id: target.id.clone(),
            name: p.rule.name.clone(),
            priority: i32::from(p.priority),
        }));
    }
    let part = if problems.is_empty() {
        PartState::ok(
            cond::SECURITY_RULES_READY,
            reason::RECONCILED,
            format!(
                "{} rule(s) in {} NSG(s)",
                rules.len(),
                pool.spec.network_security_groups.len()
            ),
        )
    } else {
        let reason = if problems.iter().any(|p| p.contains("updating")) {
            reason::PROGRESSING
        } else {
            reason::ARM_ERROR
        };
        PartState::failed(cond::SECURITY_RULES_READY, reason, problems.join("; "))
    };
    (part, rules)
}

/// Sets (or removes) the namespace label that routes the namespace's pods to the pod
/// webhook. Server-side apply with a manager of its own: only that label is touched.
async fn ensure_namespace_label(r: &Reconciler, ns: &str, on: bool) -> Result<(), Error> {
    let current = r
        .ctx
        .stores
        .namespaces
        .get(&ObjectRef::new(ns))
        .and_then(|n| n.labels().get(NAMESPACE_LABEL).cloned());
    if current.as_deref() == on.then_some("enabled") {
        return Ok(());
    }
    let labels = if on {
        json!({ NAMESPACE_LABEL: "enabled" })
    } else {
        json!({})
    };
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": ns, "labels": labels },
    });
    Api::<Namespace>::all(r.ctx.client.clone())
        .patch(
            ns,
            &PatchParams::apply(NAMESPACE_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Removes the label from namespaces that no longer have a HostPortPolicy, so their pods
/// stop depending on the webhook.
async fn sweep_namespace_labels(r: Arc<Reconciler>) {
    loop {
        tokio::time::sleep(RESYNC).await;
        let stores = &r.ctx.stores;
        let with_policies: BTreeSet<String> = stores
            .all_policies()
            .iter()
            .filter_map(|p| p.namespace())
            .collect();
        for ns in stores.namespaces.state() {
            let name = ns.name_any();
            if ns.labels().contains_key(NAMESPACE_LABEL)
                && !with_policies.contains(&name)
                && let Err(e) = ensure_namespace_label(&r, &name, false).await
            {
                warn!(namespace = %name, error = %e, "removing the host-port-policies label");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use poolnet_api::v1alpha1::{
        BoundPod, HostPortClaimSpec, HostPortClaimStatus, HostPortPolicySpec, HostPortSource,
        PortProtocol,
    };

    fn policy(range: (u16, u16)) -> HostPortPolicy {
        let spec: HostPortPolicySpec = serde_json::from_value(json!({
            "nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "echo"}},
            "ports": [{"containerPort": 8080}, {"containerPort": 8443}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
            "hostPortRange": {"start": range.0, "end": range.1},
        }))
        .unwrap();
        let mut p = HostPortPolicy::new("echo", spec);
        p.metadata.namespace = Some("team".into());
        p
    }

    fn claim(
        port: u16,
        container_port: u16,
        policy: Option<&str>,
        pod: Option<(&str, &str)>,
    ) -> Arc<HostPortClaim> {
        let mut c = HostPortClaim::new(
            &format!("tcp-{port}"),
            HostPortClaimSpec {
                protocol: PortProtocol::TCP,
                port,
                container_port: Some(container_port),
                source: HostPortSource::Automatic,
                pod_namespace: "team".into(),
                pod_name: None,
                pod_generate_name: Some("echo-".into()),
                policy: policy.map(String::from),
                request_uid: "t".into(),
                created_at: Time(Timestamp::UNIX_EPOCH),
            },
        );
        c.status = pod.map(|(name, uid)| HostPortClaimStatus {
            pod: Some(BoundPod {
                name: name.into(),
                uid: uid.into(),
            }),
            ..HostPortClaimStatus::default()
        });
        Arc::new(c)
    }

    #[test]
    fn allocations_per_pod_and_shared_range_utilisation() {
        let claims = vec![
            claim(40000, 8080, Some("echo"), Some(("echo-a", "ua"))),
            claim(40001, 8443, Some("echo"), Some(("echo-a", "ua"))),
            claim(40002, 8080, Some("echo"), None),
            // Another policy's pod in the same range counts against the range.
            claim(40003, 8080, Some("other"), Some(("x", "ux"))),
        ];
        let u = usage(&policy((40000, 40003)), &claims);
        assert_eq!(u.pod_count, 1);
        assert_eq!(u.held, 3);
        assert_eq!(u.allocations.len(), 2);
        assert_eq!(u.allocations[1].pod, "echo-a");
        assert_eq!(u.allocations[1].ports.len(), 2);
        assert!(u.allocations[0].pod.starts_with("(admitting"));
        assert_eq!(u.ports_in_use, "3/4");
        assert_eq!(u.utilization.len(), 1, "only TCP has automatic ports");
        assert_eq!((u.utilization[0].used, u.utilization[0].total), (4, 4));
        assert_eq!(u.exhausted, ["40000-40003/tcp"]);
        let roomy = usage(&policy((40000, 49999)), &claims);
        assert!(roomy.exhausted.is_empty());
    }
}
