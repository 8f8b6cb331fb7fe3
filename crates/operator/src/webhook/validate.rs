//! Validating admission of NodePoolNetworks and HostPortPolicies: the checks CEL cannot
//! express, from `poolnet_api::validation`, with the cross-object facts a HostPortPolicy is
//! judged against (its pool, its namespace's labels, every other policy) and the other
//! NodePoolNetworks a new one is judged against (one per agent pool) read live.

use std::collections::BTreeMap;

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

/// Validates poolnet's own kinds.
#[derive(Clone)]
pub struct PolicyValidator {
    client: Client,
    scopes: AllowedScopes,
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
        }
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
            "HostPortPolicy" => self.host_port_policy(req).await,
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => resp,
            Err(message) => resp.deny(message),
        }
    }

    async fn node_pool_network(&self, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        let new: NodePoolNetwork = decode(req.object.as_ref())?.ok_or("no object")?;
        let old: Option<NodePoolNetwork> = decode(req.old_object.as_ref())?;
        validate_node_pool_network(&new, old.as_ref()).map_err(|e| message(&e))?;
        self.scopes
            .check(&new.spec)
            .into_result()
            .map_err(|e| message(&e))?;
        // agentPoolId is immutable: only a new object can take a pool another one holds.
        if old.is_some() {
            return Ok(());
        }
        let others = Api::<NodePoolNetwork>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                format!("poolnet: cannot check the NodePoolNetwork: reading the other NodePoolNetworks failed: {e}; retry")
            })?
            .items;
        validate_unique_agent_pool(&new, &others).map_err(|e| message(&e))
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
        let others: Vec<HostPortPolicy> = Api::<HostPortPolicy>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| unavailable("the other HostPortPolicies", e))?
            .items
            .into_iter()
            .filter(|p| {
                !(p.namespace().as_deref() == Some(&namespace) && p.name_any() == new.name_any())
            })
            .collect();
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
