//! Mutating admission of pods: host ports for the container ports a pod asks for (the AKS
//! annotation or a HostPortPolicy selecting it), reserved durably before the patch is
//! returned, plus the environment variables naming them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Selector, SelectorExt};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::HostPortPolicy;
use poolnet_api::v1alpha1::conditions::reason;
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_plan::hostports::env::POD_TEMPLATE_HASH_LABEL;
use poolnet_plan::hostports::request::{PolicyPort, SelectingPolicy};
use poolnet_plan::hostports::{
    AKS_ANNOTATION, AllocError, Assignment, DeclaredPort, PodIdentity, RequestPlan,
    deployment_name, env_vars, plan_requests, seed_of,
};
use serde_json::Value;
use tokio::time::Instant;

use super::patch::{PodMutation, parse_assigned, pod_patch};
use crate::hostports::coverage::{
    WrittenPort, cover_written_ports, reserved_ranges, written_ports,
};
use crate::hostports::shared::daemon_set_of;
use crate::hostports::{ASSIGNED_ANNOTATION, Claimant, DaemonSetRef, ReserveError, Reserver};
use poolnet_api::v1alpha1::HostPortClaim;
use poolnet_plan::hostports::Key;

/// The answer when this replica's host-port Lease ran out while it was answering.
const LEASE_LOST: &str =
    "poolnet: this webhook replica's host-port Lease ran out while answering; retry the request";

/// The pod webhook's collaborators.
#[derive(Clone)]
pub struct PodWebhook {
    client: Client,
    reserver: Reserver,
    policies: Store<HostPortPolicy>,
    /// Time budget of one admission; keep it below the configuration's timeoutSeconds so a
    /// reservation nobody waits for is rolled back by its owner.
    budget: Duration,
    recorder: Option<Recorder>,
}

impl PodWebhook {
    pub fn new(
        client: Client,
        reserver: Reserver,
        policies: Store<HostPortPolicy>,
        budget: Duration,
        recorder: Option<Recorder>,
    ) -> Self {
        Self {
            client,
            reserver,
            policies,
            budget,
            recorder,
        }
    }

    /// Answers one admission review for a pod.
    pub async fn admit(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let resp = AdmissionResponse::from(req);
        if req.operation != Operation::Create || req.kind.kind != "Pod" {
            return resp;
        }
        let Some(object) = &req.object else {
            return resp;
        };
        let raw = match serde_json::to_value(object) {
            Ok(v) => v,
            Err(e) => return resp.deny(format!("poolnet: cannot read the pod: {e}")),
        };
        let pod: Pod = match serde_json::from_value(raw.clone()) {
            Ok(p) => p,
            Err(e) => return resp.deny(format!("poolnet: cannot read the pod: {e}")),
        };
        let namespace = req.namespace.clone().unwrap_or_default();
        match self.mutation(req, &raw, &pod, &namespace).await {
            Ok(Outcome::Unchanged(warnings)) => with_warnings(resp, warnings),
            Ok(Outcome::Patch(ops, warnings)) => {
                let patch: json_patch::Patch = match serde_json::from_value(Value::Array(ops)) {
                    Ok(p) => p,
                    Err(e) => return resp.deny(format!("poolnet: building the patch: {e}")),
                };
                match resp.clone().with_patch(patch) {
                    Ok(r) => with_warnings(r, warnings),
                    Err(e) => resp.deny(format!("poolnet: building the patch: {e}")),
                }
            }
            Err(message) => resp.deny(message),
        }
    }

    async fn mutation(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        raw: &Value,
        pod: &Pod,
        namespace: &str,
    ) -> Result<Outcome, String> {
        // Every wait below is bounded by the admission's budget.
        let deadline = Instant::now() + self.budget;
        let daemon_set = daemon_set_of(pod).map(|(name, uid)| DaemonSetRef { name, uid });
        let identity = PodIdentity {
            name: pod.metadata.name.as_deref(),
            generate_name: pod.metadata.generate_name.as_deref(),
            controller: pod
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| (o.kind.as_str(), o.name.as_str())),
            template_hash: pod
                .labels()
                .get(POD_TEMPLATE_HASH_LABEL)
                .map(String::as_str),
        };
        let deployment = deployment_name(&identity);

        // A pod that already carries a reservation token is either this request coming back
        // (re-invocation after other webhooks changed it) or a copy of another pod.
        let mut copied: Vec<Assignment> = Vec::new();
        if let Some(token) = pod.labels().get(RESERVATION_LABEL) {
            let own = tokio::time::timeout_at(
                deadline,
                self.own_reservation(namespace, token, pod, daemon_set),
            )
            .await
            .map_err(|_| {
                "poolnet: checking the pod's host-port reservation took too long; retry".to_string()
            })?;
            match own {
                Ok(Some(assignments)) => {
                    if !self.reserver.may_answer(namespace, token) {
                        return Err(LEASE_LOST.to_string());
                    }
                    let env = env_vars(&deployment, &assignments);
                    let ops = pod_patch(
                        raw,
                        &PodMutation {
                            assignments: &assignments,
                            env: &env,
                            token,
                        },
                    );
                    return Ok(if ops.is_empty() {
                        Outcome::Unchanged(Vec::new())
                    } else {
                        Outcome::Patch(ops, Vec::new())
                    });
                }
                Ok(None) => {
                    copied = pod
                        .annotations()
                        .get(ASSIGNED_ANNOTATION)
                        .map(|v| parse_assigned(v))
                        .unwrap_or_default();
                }
                Err(e) => {
                    return Err(format!(
                        "poolnet: checking the pod's host-port reservation: {e}; retry"
                    ));
                }
            }
        }

        let declared = declared_ports(pod, &copied);
        let policies = self.selecting(namespace, pod);
        let mut plan = plan_requests(
            &declared,
            pod.annotations().get(AKS_ANNOTATION).map(String::as_str),
            &policies,
        )
        .map_err(|e| format!("poolnet: {e}"))?;
        // Written host ports inside any policy's reserved ports (not only the policies that
        // select this pod) and ports copied from another pod are reserved too; the others
        // must at least not be ports poolnet gave someone else.
        let reserved = reserved_ranges(self.policies.state().iter().map(|p| p.as_ref()));
        let unreserved = cover_written_ports(&mut plan, &written_ports(pod), &copied, &reserved);
        self.refuse_held(namespace, daemon_set, &unreserved, deadline)
            .await?;
        if plan.requests.is_empty() {
            return Ok(Outcome::Unchanged(plan.warnings));
        }
        let token = req.uid.as_str();
        let who = Claimant {
            token,
            namespace,
            pod_name: pod.metadata.name.as_deref(),
            generate_name: pod.metadata.generate_name.as_deref(),
            daemon_set,
        };
        let seed = seed_of(&[
            namespace,
            pod.metadata
                .name
                .as_deref()
                .or(pod.metadata.generate_name.as_deref())
                .unwrap_or(""),
            token,
        ]);
        let mut warnings = plan.warnings.clone();
        let reserved = if req.dry_run {
            // sideEffects: NoneOnDryRun: a dry run reserves nothing, so say what it shows.
            warnings.push(
                "dry run: the host ports shown are not reserved; a real request may get others"
                    .to_string(),
            );
            self.reserver
                .preview(&plan, seed, daemon_set)
                .map_err(ReserveError::Denied)
        } else {
            self.reserver.reserve(&who, &plan, seed, deadline).await
        };
        let assignments = match reserved {
            Ok(assignments) => assignments,
            Err(e) => {
                let holder = match &e {
                    ReserveError::Denied(AllocError::StaticTaken { protocol, port, .. }) => {
                        self.holder_of(Key::new(*protocol, *port), deadline).await
                    }
                    _ => None,
                };
                let mut message = self.denial(namespace, &plan, e);
                if let Some(holder) = holder {
                    message.push_str(&format!(" (now: {holder})"));
                }
                return Err(message);
            }
        };
        let env = env_vars(&deployment, &assignments);
        let ops = pod_patch(
            raw,
            &PodMutation {
                assignments: &assignments,
                env: &env,
                token,
            },
        );
        // Keys from a block may be sent only while this replica's Lease is valid by its own
        // clock: a replica frozen past it resumes here and drops the answer (S1).
        if !req.dry_run && !self.reserver.may_answer(namespace, token) {
            return Err(LEASE_LOST.to_string());
        }
        Ok(Outcome::Patch(ops, warnings))
    }

    /// The assignments of reservation `token` if this request is its re-invocation: its
    /// claims exist in `namespace`, none is bound, and no pod carries the token yet (a
    /// re-invocation happens before the pod is stored; a pod carrying it means this one is a
    /// copy). A DaemonSet's pod may have joined claims of its DaemonSet instead of creating
    /// them: those count as its own. `None` for a copied or stale token.
    async fn own_reservation(
        &self,
        namespace: &str,
        token: &str,
        pod: &Pod,
        daemon_set: Option<DaemonSetRef<'_>>,
    ) -> Result<Option<Vec<Assignment>>, kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let lp = ListParams::default()
            .labels(&format!("{RESERVATION_LABEL}={token}"))
            .limit(1);
        if !pods.list_metadata(&lp).await?.items.is_empty() {
            return Ok(None);
        }
        let claims = self.reserver.claims_of(token).await?;
        let mut out = Vec::with_capacity(claims.len());
        for c in claims {
            let bound = c.status.as_ref().is_some_and(|s| s.pod.is_some());
            let Some(container_port) = c.spec.container_port else {
                return Ok(None);
            };
            if bound || c.spec.pod_namespace != namespace {
                return Ok(None);
            }
            out.push(Assignment {
                container_port,
                protocol: Protocol::from(c.spec.protocol),
                host_port: c.spec.port,
            });
        }
        // Keys this replica granted from its blocks (no claims): remembered until the pod
        // is stored, which has not happened yet for a re-invocation.
        if let Some(granted) = self
            .reserver
            .blocks()
            .and_then(|b| b.granted(namespace, token))
        {
            for a in granted {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if let Some(ds) = daemon_set {
            let assigned = pod
                .annotations()
                .get(ASSIGNED_ANNOTATION)
                .map(|v| parse_assigned(v))
                .unwrap_or_default();
            let claims: Api<HostPortClaim> = Api::all(self.client.clone());
            for a in assigned {
                if out.contains(&a) {
                    continue;
                }
                let joined = claims
                    .get_opt(&a.key().claim_name())
                    .await?
                    .is_some_and(|c| {
                        c.spec.pod_namespace == namespace
                            && c.spec.daemon_set.is_some_and(|o| o.uid == ds.uid)
                    });
                if !joined {
                    return Ok(None);
                }
                out.push(a);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        out.sort();
        Ok(Some(out))
    }

    /// Refuses host ports written outside every reserved range that a claim gives to
    /// someone else (e.g. a port a deleted policy reserved statically, still held by its
    /// pod). Read live: the claim decides, not the cache.
    async fn refuse_held(
        &self,
        namespace: &str,
        daemon_set: Option<DaemonSetRef<'_>>,
        written: &[WrittenPort],
        deadline: Instant,
    ) -> Result<(), String> {
        let claims: Api<HostPortClaim> = Api::all(self.client.clone());
        for w in written {
            let name = w.key().claim_name();
            let claim = tokio::time::timeout_at(deadline, claims.get_opt(&name))
                .await
                .map_err(|_| format!("poolnet: reading HostPortClaim {name} took too long; retry"))?
                .map_err(|e| format!("poolnet: reading HostPortClaim {name}: {e}; retry"))?;
            let Some(claim) = claim else { continue };
            let ours = daemon_set.is_some_and(|ds| {
                claim.spec.pod_namespace == namespace
                    && claim
                        .spec
                        .daemon_set
                        .as_ref()
                        .is_some_and(|o| o.uid == ds.uid)
            });
            if !ours {
                return Err(format!(
                    "poolnet: hostPort {}/{} of containerPort {} is held by another pod ({}); \
                     host ports poolnet hands out are unique across the cluster: choose \
                     another port or delete the pod holding it",
                    w.host_port,
                    w.protocol,
                    w.container_port,
                    self.describe(&claim)
                ));
            }
        }
        Ok(())
    }

    /// The claim and who holds it; an unbound claim's pod is found by its token in the index
    /// (the repair loop binds claims a moment after their pods appear).
    fn describe(&self, claim: &HostPortClaim) -> String {
        let unbound = claim.status.as_ref().and_then(|s| s.pod.as_ref()).is_none();
        if unbound && claim.spec.daemon_set.is_none() {
            let index = self.reserver.index();
            if let Some(pod) = poolnet_plan::hostports::PodView::with_token(
                index.as_ref(),
                &claim.spec.pod_namespace,
                &claim.spec.request_uid,
            ) {
                let mut bound = claim.clone();
                bound.status.get_or_insert_with(Default::default).pod =
                    Some(poolnet_api::v1alpha1::BoundPod {
                        name: pod.name,
                        uid: pod.uid,
                    });
                return bound.describe();
            }
        }
        claim.describe()
    }

    /// Who holds `key`: its claim (read live), else cached pods that wrote it themselves.
    async fn holder_of(&self, key: Key, deadline: Instant) -> Option<String> {
        let claims: Api<HostPortClaim> = Api::all(self.client.clone());
        if let Ok(Ok(Some(claim))) =
            tokio::time::timeout_at(deadline, claims.get_opt(&key.claim_name())).await
        {
            return Some(self.describe(&claim));
        }
        let pods = self.reserver.index().pods_holding(key);
        (!pods.is_empty()).then(|| {
            pods.iter()
                .map(|p| format!("pod {}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// HostPortPolicies of `namespace` whose podSelector matches `pod`, oldest first.
    fn selecting(&self, namespace: &str, pod: &Pod) -> Vec<SelectingPolicy> {
        let labels = pod.labels();
        let mut found: Vec<Arc<HostPortPolicy>> = self
            .policies
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
            .filter(|p| {
                Selector::try_from(p.spec.pod_selector.clone()).is_ok_and(|s| s.matches(labels))
            })
            .collect();
        found.sort_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()));
        found
            .iter()
            .filter_map(|p| {
                let range =
                    PortRange::new(p.spec.host_port_range.start, p.spec.host_port_range.end)?;
                Some(SelectingPolicy {
                    name: format!("{namespace}/{}", p.name_any()),
                    range,
                    ports: p
                        .spec
                        .ports
                        .iter()
                        .map(|q| PolicyPort {
                            container_port: q.container_port,
                            protocol: q.protocol.into(),
                            static_host_port: q.host_port,
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// The denial message; an exhausted policy range also gets a Warning Event on the policy.
    fn denial(&self, namespace: &str, plan: &RequestPlan, e: ReserveError) -> String {
        if let (
            ReserveError::Denied(AllocError::Exhausted {
                container_port,
                protocol,
                ..
            }),
            Some(recorder),
        ) = (&e, &self.recorder)
        {
            let policy = plan
                .requests
                .iter()
                .zip(&plan.policies)
                .find(|(r, _)| r.container_port == *container_port && r.protocol == *protocol)
                .and_then(|(_, p)| p.clone());
            if let Some(policy) = policy {
                let name = policy.rsplit('/').next().unwrap_or(&policy).to_string();
                let reference = ObjectReference {
                    api_version: Some(HostPortPolicy::api_version(&()).into_owned()),
                    kind: Some(HostPortPolicy::kind(&()).into_owned()),
                    namespace: Some(namespace.to_string()),
                    name: Some(name),
                    ..ObjectReference::default()
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: reason::RANGE_EXHAUSTED.into(),
                    note: Some(e.to_string()),
                    action: "AssignHostPorts".into(),
                    secondary: None,
                };
                let recorder = recorder.clone();
                // Off the admission path: an Event is information, not a precondition.
                tokio::spawn(async move {
                    if let Err(err) = recorder.publish(&event, &reference).await {
                        tracing::debug!(error = %err, "publishing a RangeExhausted event");
                    }
                });
            }
        }
        format!("poolnet: {e}")
    }
}

enum Outcome {
    Unchanged(Vec<String>),
    Patch(Vec<Value>, Vec<String>),
}

fn with_warnings(mut resp: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    resp
}

/// The pod's container ports. Host ports recorded in a copied poolnet annotation are not the
/// author's choice (they were assigned to the pod it was copied from), so they count as unset.
fn declared_ports(pod: &Pod, copied: &[Assignment]) -> Vec<DeclaredPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Ok(container_port) = u16::try_from(p.container_port) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(_) => continue,
            };
            let host_port = p
                .host_port
                .and_then(|h| u16::try_from(h).ok())
                .filter(|&h| h != 0)
                .filter(|&h| {
                    !copied.iter().any(|a| {
                        a.container_port == container_port
                            && a.protocol == protocol
                            && a.host_port == h
                    })
                });
            out.push(DeclaredPort {
                container_port,
                protocol,
                host_port,
            });
        }
    }
    out
}
