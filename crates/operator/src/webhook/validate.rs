//! Validating admission of NodePoolNetworks and HostPortPolicies: the checks CEL cannot
//! express, from `poolnet_api::validation`, with the cross-object facts a HostPortPolicy is
//! judged against (its pool, its namespace's labels, every other policy) and the other
//! NodePoolNetworks a new one is judged against (one per agent pool) read live; and, when an
//! ARM client is given, preflight (`poolnet_preflight::live`) with the cluster's facts read
//! from ARM under a short deadline: errors deny, warnings become admission warnings, and ARM
//! not answering in time admits with a warning (the controller's `PreflightPassed` reports).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::{Client, ResourceExt};
use poolnet_api::allowed_scopes::AllowedScopes;
use poolnet_api::error::FieldErrors;
use poolnet_api::one_per_pool::validate_unique_agent_pool;
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use poolnet_api::validation::{
    PolicyContext, validate_host_port_policy, validate_node_pool_network,
};
use serde::de::DeserializeOwned;

use crate::preflight::FactsReader;

/// How long admission waits for ARM's facts: well inside the webhook's 10 s timeout, with
/// room for the API reads and the rest of the checks.
pub const PREFLIGHT_DEADLINE: Duration = Duration::from_secs(3);

/// Validates poolnet's own kinds.
#[derive(Clone)]
pub struct PolicyValidator {
    client: Client,
    scopes: AllowedScopes,
    preflight: Option<(Arc<FactsReader>, Duration)>,
}

fn decode<T: DeserializeOwned>(object: Option<&DynamicObject>) -> Result<Option<T>, String> {
    object
        .map(|o| {
            serde_json::to_value(o)
                .and_then(serde_json::from_value)
                .map_err(|e| format!("poolnet: cannot read the object: {e}"))
        })
        .transpose()
}

impl PolicyValidator {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            scopes: AllowedScopes::default(),
            preflight: None,
        }
    }

    /// Run preflight with facts from `reader`, waiting for ARM at most `deadline`.
    pub fn with_preflight(mut self, reader: Arc<FactsReader>, deadline: Duration) -> Self {
        self.preflight = Some((reader, deadline));
        self
    }

    /// Refuse NodePoolNetworks that name Azure resources outside `scopes`.
    pub fn with_scopes(mut self, scopes: AllowedScopes) -> Self {
        self.scopes = scopes;
        self
    }

    pub async fn admit(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let resp = AdmissionResponse::from(req);
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return resp;
        }
        let verdict = match req.kind.kind.as_str() {
            "NodePoolNetwork" => self.node_pool_network(req).await,
            "HostPortPolicy" => self.host_port_policy(req).await.map(|()| Vec::new()),
            _ => Ok(Vec::new()),
        };
        match verdict {
            Ok(warnings) if warnings.is_empty() => resp,
            Ok(warnings) => {
                let mut resp = resp;
                resp.warnings = Some(warnings);
                resp
            }
            Err(message) => resp.deny(message),
        }
    }

    /// The spec's checks, then preflight; `Ok` carries admission warnings.
    async fn node_pool_network(
        &self,
        req: &AdmissionRequest<DynamicObject>,
    ) -> Result<Vec<String>, String> {
        let new: NodePoolNetwork = decode(req.object.as_ref())?.ok_or("no object")?;
        let old: Option<NodePoolNetwork> = decode(req.old_object.as_ref())?;
        validate_node_pool_network(&new, old.as_ref()).map_err(|e| message(&e))?;
        self.scopes
            .check(&new.spec)
            .into_result()
            .map_err(|e| message(&e))?;
        // agentPoolId is immutable: only a new object can take a pool another one holds.
        if old.is_none() {
            let others = Api::<NodePoolNetwork>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|e| {
                    format!("poolnet: cannot check the NodePoolNetwork: reading the other NodePoolNetworks failed: {e}; retry")
                })?
                .items;
            validate_unique_agent_pool(&new, &others).map_err(|e| message(&e))?;
        }
        // Only a new or changed spec: an update of metadata (a finalizer removed while the
        // object is deleted) must never be refused for what the cluster looks like now.
        let spec_changed = old.as_ref().is_none_or(|o| o.spec != new.spec);
        if !spec_changed || new.metadata.deletion_timestamp.is_some() {
            return Ok(Vec::new());
        }
        self.preflight(&new, old.as_ref()).await
    }

    /// Preflight of a new or changed spec. On an update, an error the stored spec already had
    /// (same check, same field: the cluster changed around it, say another pool's autoscaler
    /// maximum grew) is a warning, so the object can still be edited, e.g. to fix it step by
    /// step; the controller keeps reporting it.
    async fn preflight(
        &self,
        new: &NodePoolNetwork,
        old: Option<&NodePoolNetwork>,
    ) -> Result<Vec<String>, String> {
        let Some((reader, deadline)) = &self.preflight else {
            return Ok(Vec::new());
        };
        let skipped = |why: String| {
            vec![format!(
                "poolnet: preflight against the live cluster was skipped ({why}); the controller runs it and reports it in condition {}",
                poolnet_api::v1alpha1::conditions::PREFLIGHT_PASSED
            )]
        };
        // Read in a task of its own: when the deadline passes, the read goes on and fills the
        // cache for the next attempt.
        let task = {
            let reader = Arc::clone(reader);
            let spec = new.spec.clone();
            tokio::spawn(async move { reader.facts(&spec).await })
        };
        let (facts, problem) = match tokio::time::timeout(*deadline, task).await {
            Err(_) => {
                return Ok(skipped(format!(
                    "Azure Resource Manager did not answer within {} s",
                    deadline.as_secs_f32()
                )));
            }
            Ok(Err(e)) => return Ok(skipped(format!("the ARM read failed: {e}"))),
            Ok(Ok(Err(e))) => return Ok(skipped(e.to_string())),
            Ok(Ok(Ok(read))) => read,
        };
        let findings = poolnet_preflight::live::check(&new.spec, &facts);
        let before = old
            .map(|o| poolnet_preflight::live::check(&o.spec, &facts))
            .unwrap_or_default();
        let inherited = |f: &poolnet_preflight::Finding| {
            before
                .iter()
                .any(|b| b.is_error() && b.check == f.check && b.field == f.field)
        };
        let (errors, warnings): (Vec<_>, Vec<_>) =
            findings.iter().partition(|f| f.is_error() && !inherited(f));
        if !errors.is_empty() {
            let listed: Vec<String> = errors.iter().map(|f| f.to_string()).collect();
            return Err(format!(
                "poolnet: preflight against cluster {} failed: {}",
                facts.cluster.name,
                listed.join("; ")
            ));
        }
        let mut out: Vec<String> = warnings
            .iter()
            .map(|f| format!("poolnet preflight: {f}"))
            .collect();
        if let Some(p) = problem {
            out.push(format!(
                "poolnet: preflight left out the VNet checks ({p}); the controller retries them"
            ));
        }
        Ok(out)
    }

    async fn host_port_policy(&self, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        let new: HostPortPolicy = decode(req.object.as_ref())?.ok_or("no object")?;
        let old: Option<HostPortPolicy> = decode(req.old_object.as_ref())?;
        let namespace = req.namespace.clone().unwrap_or_default();
        let unavailable = |what: &str, e: kube::Error| {
            format!("poolnet: cannot check the HostPortPolicy: reading {what} failed: {e}; retry")
        };
        let pool = Api::<NodePoolNetwork>::all(self.client.clone())
            .get_opt(&new.spec.node_pool_network)
            .await
            .map_err(|e| unavailable("the NodePoolNetwork", e))?;
        let labels: BTreeMap<String, String> = Api::<Namespace>::all(self.client.clone())
            .get_opt(&namespace)
            .await
            .map_err(|e| unavailable("the namespace", e))?
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        // Other policies only matter to static host ports (cluster-unique): a policy without
        // any does not list them all (thousands, in a big fleet) on every admission.
        let others: Vec<HostPortPolicy> = if crate::controller::has_static_ports(&new) {
            Api::<HostPortPolicy>::all(self.client.clone())
                .list(&ListParams::default())
                .await
                .map_err(|e| unavailable("the other HostPortPolicies", e))?
                .items
                .into_iter()
                .filter(|p| {
                    !(p.namespace().as_deref() == Some(&namespace)
                        && p.name_any() == new.name_any())
                })
                .collect()
        } else {
            Vec::new()
        };
        let ctx = PolicyContext {
            pool: pool.as_ref(),
            namespace_labels: &labels,
            other_policies: &others,
        };
        validate_host_port_policy(&new, old.as_ref(), Some(&ctx)).map_err(|e| message(&e))
    }
}

fn message(errors: &FieldErrors) -> String {
    format!("poolnet: {errors}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;

    /// A client that never connects: the scope check refuses before any API call.
    fn offline_client() -> Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        Client::try_from(config).expect("client")
    }

    fn review(nsg_rg: &str) -> AdmissionRequest<DynamicObject> {
        let sub = "00000000-1111-2222-3333-444444444444";
        let object = serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
            "metadata": {"name": "game"},
            "spec": {
                "nodePool": {"agentPoolId": format!("/subscriptions/{sub}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game")},
                "allowedHostPorts": ["40000-40100/tcp"],
                "networkSecurityGroups": [{"id": format!("/subscriptions/{sub}/resourceGroups/{nsg_rg}/providers/Microsoft.Network/networkSecurityGroups/nsg")}]
            }
        });
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "1", "operation": "UPDATE",
                "kind": {"group": "poolnet.dev", "version": "v1alpha1", "kind": "NodePoolNetwork"},
                "resource": {"group": "poolnet.dev", "version": "v1alpha1", "resource": "nodepoolnetworks"},
                "name": "game",
                "userInfo": {"username": "platform"},
                "object": object, "oldObject": object
            }
        }))
        .expect("review");
        review.try_into().expect("request")
    }

    #[tokio::test]
    async fn a_node_pool_network_outside_the_allowed_scopes_is_refused_naming_the_field() {
        let scopes = AllowedScopes::parse(&[
            "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-aks",
        ])
        .expect("scopes");
        let v = PolicyValidator::new(offline_client()).with_scopes(scopes);
        let inside = v.admit(&review("rg-aks")).await;
        assert!(inside.allowed, "{:?}", inside.result);
        let outside = v.admit(&review("rg-network-team")).await;
        assert!(!outside.allowed);
        let msg = outside.result.message;
        assert!(
            msg.contains("spec.networkSecurityGroups[0].id") && msg.contains("--allowed-scope"),
            "{msg}"
        );
    }
}
