//! The typed per-resource operations of [`ArmNetwork`] for [`ArmClient`]: NSGs, ASGs, public IP
//! prefixes, route tables and VMSS public IPs through the generated Microsoft.Network client, AKS
//! clusters and agent pools through the small serde model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::Method;
use azure_mgmt_network::package_2024_03::Client as NetworkClient;
use azure_mgmt_network::package_2024_03::models::{
    ApplicationSecurityGroup, NetworkSecurityGroup, PublicIpAddress, PublicIpPrefix, RouteTable,
    VirtualNetwork,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use super::{ArmClient, NETWORK_API_VERSION};

/// api-version of `Microsoft.Features/providers/features` reads.
const FEATURES_API_VERSION: &str = "2021-07-01";
use crate::agentpool::{AGENT_POOL_API_VERSION, AgentPool, ManagedCluster};
use crate::error::ArmError;
use crate::id::{COMPUTE, CONTAINER_SERVICE, NETWORK, ResourceId};
use crate::lro::{Lro, OperationHandle};
use crate::network::{ArmNetwork, Etagged, Precondition};
use crate::policy::{CALL, CallScope, classify};
use crate::stats::ArmStats;

/// Builds one generated operation from (client, resource group, name, subscription).
trait BuildOp<R>:
    FnOnce(&NetworkClient, &str, &str, &str) -> BoxFuture<'static, azure_core::Result<R>> + Send
{
}

impl<R, F> BuildOp<R> for F where
    F: FnOnce(&NetworkClient, &str, &str, &str) -> BoxFuture<'static, azure_core::Result<R>> + Send
{
}

impl ArmClient {
    /// GET of a top-level Microsoft.Network resource of type `type_path`.
    async fn get_network<T, R>(
        &self,
        id: &ResourceId,
        type_path: &str,
        build: impl BuildOp<R>,
    ) -> Result<Etagged<T>, ArmError>
    where
        T: DeserializeOwned,
        R: Into<azure_core::Response>,
    {
        let op = self.network_op(id, type_path, build)?;
        let r = self.call(id, Precondition::None, op).await?;
        self.read(id, r).await
    }

    /// PUT (create or replace) of a top-level Microsoft.Network resource.
    async fn put_network<T, R>(
        &self,
        id: &ResourceId,
        type_path: &str,
        precondition: Precondition,
        build: impl BuildOp<R>,
    ) -> Result<Lro<Etagged<T>>, ArmError>
    where
        T: DeserializeOwned,
        R: Into<azure_core::Response>,
    {
        let op = self.network_op(id, type_path, build)?;
        let r = self.call(id, precondition, op).await?;
        self.put_outcome(id, r, NETWORK_API_VERSION).await
    }

    /// DELETE of a top-level Microsoft.Network resource; absent counts as deleted.
    async fn delete_network<R>(
        &self,
        id: &ResourceId,
        type_path: &str,
        build: impl BuildOp<R>,
    ) -> Result<Lro<()>, ArmError>
    where
        R: Into<azure_core::Response>,
    {
        let op = self.network_op(id, type_path, build)?;
        let r = self.call(id, Precondition::None, op).await;
        self.delete_outcome(id, r).await
    }

    /// Checks the ID's type before any request is built from it.
    fn network_op<R>(
        &self,
        id: &ResourceId,
        type_path: &str,
        build: impl BuildOp<R>,
    ) -> Result<BoxFuture<'static, azure_core::Result<R>>, ArmError> {
        Self::check(id, NETWORK, type_path)?;
        Ok(build(
            &self.network,
            id.resource_group(),
            id.name(),
            id.subscription(),
        ))
    }
}

#[async_trait]
impl ArmNetwork for ArmClient {
    fn write_gate(&self) -> Option<crate::WriteGate> {
        Some(self.write_gate.clone())
    }

    async fn get_nsg(&self, id: &ResourceId) -> Result<Etagged<NetworkSecurityGroup>, ArmError> {
        self.get_network(id, "networkSecurityGroups", |c, rg, n, s| {
            c.network_security_groups_client().get(rg, n, s).send()
        })
        .await
    }

    async fn put_nsg(
        &self,
        id: &ResourceId,
        nsg: &NetworkSecurityGroup,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<NetworkSecurityGroup>>, ArmError> {
        self.put_network(id, "networkSecurityGroups", precondition, |c, rg, n, s| {
            c.network_security_groups_client()
                .create_or_update(rg, n, nsg.clone(), s)
                .send()
        })
        .await
    }

    async fn delete_nsg(&self, id: &ResourceId) -> Result<Lro<()>, ArmError> {
        self.delete_network(id, "networkSecurityGroups", |c, rg, n, s| {
            c.network_security_groups_client().delete(rg, n, s).send()
        })
        .await
    }

    async fn get_asg(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<ApplicationSecurityGroup>, ArmError> {
        self.get_network(id, "applicationSecurityGroups", |c, rg, n, s| {
            c.application_security_groups_client().get(rg, n, s).send()
        })
        .await
    }

    async fn put_asg(
        &self,
        id: &ResourceId,
        asg: &ApplicationSecurityGroup,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<ApplicationSecurityGroup>>, ArmError> {
        self.put_network(
            id,
            "applicationSecurityGroups",
            precondition,
            |c, rg, n, s| {
                c.application_security_groups_client()
                    .create_or_update(rg, n, asg.clone(), s)
                    .send()
            },
        )
        .await
    }

    async fn delete_asg(&self, id: &ResourceId) -> Result<Lro<()>, ArmError> {
        self.delete_network(id, "applicationSecurityGroups", |c, rg, n, s| {
            c.application_security_groups_client()
                .delete(rg, n, s)
                .send()
        })
        .await
    }

    async fn get_public_ip_prefix(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<PublicIpPrefix>, ArmError> {
        self.get_network(id, "publicIPPrefixes", |c, rg, n, s| {
            c.public_ip_prefixes_client().get(rg, n, s).send()
        })
        .await
    }

    async fn put_public_ip_prefix(
        &self,
        id: &ResourceId,
        prefix: &PublicIpPrefix,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<PublicIpPrefix>>, ArmError> {
        self.put_network(id, "publicIPPrefixes", precondition, |c, rg, n, s| {
            c.public_ip_prefixes_client()
                .create_or_update(rg, n, prefix.clone(), s)
                .send()
        })
        .await
    }

    async fn delete_public_ip_prefix(&self, id: &ResourceId) -> Result<Lro<()>, ArmError> {
        self.delete_network(id, "publicIPPrefixes", |c, rg, n, s| {
            c.public_ip_prefixes_client().delete(rg, n, s).send()
        })
        .await
    }

    async fn get_route_table(&self, id: &ResourceId) -> Result<Etagged<RouteTable>, ArmError> {
        self.get_network(id, "routeTables", |c, rg, n, s| {
            c.route_tables_client().get(rg, n, s).send()
        })
        .await
    }

    async fn put_route_table(
        &self,
        id: &ResourceId,
        table: &RouteTable,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<RouteTable>>, ArmError> {
        self.put_network(id, "routeTables", precondition, |c, rg, n, s| {
            c.route_tables_client()
                .create_or_update(rg, n, table.clone(), s)
                .send()
        })
        .await
    }

    async fn get_virtual_network(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<VirtualNetwork>, ArmError> {
        self.get_network(id, "virtualNetworks", |c, rg, n, s| {
            c.virtual_networks_client().get(rg, n, s).send()
        })
        .await
    }

    async fn list_vmss_public_ips(
        &self,
        vmss: &ResourceId,
    ) -> Result<Vec<PublicIpAddress>, ArmError> {
        Self::check(vmss, COMPUTE, "virtualMachineScaleSets")?;
        let mut pages = self
            .network
            .public_ip_addresses_client()
            .list_virtual_machine_scale_set_public_ip_addresses(
                vmss.resource_group(),
                vmss.name(),
                vmss.subscription(),
            )
            .into_stream();
        let scope = CallScope {
            precondition: Precondition::None,
            resource_id: vmss.to_string(),
        };
        let collected = CALL
            .scope(scope, async {
                let mut all = Vec::new();
                while let Some(page) = pages.next().await {
                    all.extend(page?.value);
                }
                Ok::<_, azure_core::Error>(all)
            })
            .await;
        match collected {
            Ok(all) => Ok(all),
            Err(e) => Err(self.after_error(classify(e, &vmss.to_string())).await),
        }
    }

    async fn get_managed_cluster(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<ManagedCluster>, ArmError> {
        Self::check(id, CONTAINER_SERVICE, "managedClusters")?;
        let url = self.resource_url(id, AGENT_POOL_API_VERSION)?;
        let r = self
            .send_raw(Method::Get, url, None, Precondition::None, &id.to_string())
            .await?;
        self.read(id, r).await
    }

    async fn get_agent_pool(&self, id: &ResourceId) -> Result<Etagged<AgentPool>, ArmError> {
        Self::check(id, CONTAINER_SERVICE, "managedClusters/agentPools")?;
        let url = self.resource_url(id, AGENT_POOL_API_VERSION)?;
        let r = self
            .send_raw(Method::Get, url, None, Precondition::None, &id.to_string())
            .await?;
        self.read(id, r).await
    }

    async fn get_feature_state(
        &self,
        subscription: &str,
        namespace: &str,
        feature: &str,
    ) -> Result<String, ArmError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Features/providers/{namespace}/features/{feature}"
        );
        let body = self
            .get_json(&format!("{path}?api-version={FEATURES_API_VERSION}"))
            .await?;
        body.get("properties")
            .and_then(|p| p.get("state"))
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .ok_or_else(|| ArmError::InvalidResponse {
                id: path,
                message: "the feature has no properties.state".into(),
            })
    }

    async fn delete_agent_pool(&self, id: &ResourceId) -> Result<Lro<()>, ArmError> {
        Self::check(id, CONTAINER_SERVICE, "managedClusters/agentPools")?;
        let url = self.resource_url(id, AGENT_POOL_API_VERSION)?;
        let r = self
            .send_raw(
                Method::Delete,
                url,
                None,
                Precondition::None,
                &id.to_string(),
            )
            .await;
        self.delete_outcome(id, r).await
    }

    async fn put_agent_pool(
        &self,
        id: &ResourceId,
        pool: &AgentPool,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<AgentPool>>, ArmError> {
        Self::check(id, CONTAINER_SERVICE, "managedClusters/agentPools")?;
        if precondition == Precondition::None {
            warn_unconditional_pool_write(id);
        }
        let url = self.resource_url(id, AGENT_POOL_API_VERSION)?;
        // The read-only eTag of the read is the If-Match value, not part of the new state.
        let mut pool = pool.clone();
        pool.properties.e_tag = None;
        let body = serde_json::to_vec(&pool).map_err(|e| ArmError::InvalidResponse {
            id: id.to_string(),
            message: format!("cannot encode the agent pool: {e}"),
        })?;
        let r = self
            .send_raw(
                Method::Put,
                url,
                Some(body.into()),
                precondition,
                &id.to_string(),
            )
            .await?;
        self.put_outcome(id, r, AGENT_POOL_API_VERSION).await
    }

    async fn poll(&self, handle: &OperationHandle) -> Result<Lro<()>, ArmError> {
        self.poll_operation(handle).await
    }

    async fn wait(&self, handle: OperationHandle, deadline: Duration) -> Result<(), ArmError> {
        self.wait_operation(handle, deadline).await
    }

    fn stats(&self) -> &ArmStats {
        &self.stats
    }
}

/// Set by the first unconditional agent pool PUT of the process (see [`ArmNetwork::put_agent_pool`]).
static UNCONDITIONAL_POOL_WRITE_WARNED: AtomicBool = AtomicBool::new(false);

/// An agent pool PUT without `If-Match`: the read had no eTag. Warned once per process (every
/// pool of such an AKS would repeat it on each write), then at debug level.
fn warn_unconditional_pool_write(id: &ResourceId) {
    if UNCONDITIONAL_POOL_WRITE_WARNED.swap(true, Ordering::Relaxed) {
        tracing::debug!(pool = %id, "agent pool PUT without If-Match (no eTag)");
    } else {
        tracing::warn!(
            pool = %id,
            api_version = AGENT_POOL_API_VERSION,
            "AKS returned no eTag for this agent pool, so its PUT is unconditional: a change someone else makes between poolnet's read and write is overwritten (logged once per process)"
        );
    }
}

#[cfg(test)]
mod tests {
    use azure_core::Url;
    use azure_core::auth::Secret;
    use serde_json::{Value, json};

    use super::*;
    use crate::client::ArmConfig;
    use crate::credential::CredentialConfig;
    use crate::test_http::serve;

    const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/np1";

    /// An agent pool as AKS answers it; `etag` in `properties.eTag` as from 2024-10-01.
    fn pool(etag: Option<&str>) -> String {
        let mut body = json!({
            "id": POOL,
            "name": "np1",
            "properties": {"count": 3, "provisioningState": "Succeeded", "orchestratorVersion": "1.30.3"}
        });
        if let Some(e) = etag {
            body["properties"]["eTag"] = json!(e);
        }
        body.to_string()
    }

    fn client(base: &str) -> ArmClient {
        ArmClient::new(
            ArmConfig::new(Url::parse(base).unwrap()),
            CredentialConfig::Static(Secret::new("t")),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn agent_pool_put_sends_the_read_etag_as_if_match_and_not_in_the_body() {
        let server = serve(|_| (200, pool(Some("ebwiyfneowv")))).await;
        let arm = client(&server.base);
        let id: ResourceId = POOL.parse().unwrap();
        let read = arm.get_agent_pool(&id).await.unwrap();
        assert_eq!(read.etag.as_deref(), Some("ebwiyfneowv"));
        assert_eq!(
            read.precondition(),
            Precondition::IfMatch("ebwiyfneowv".into())
        );
        let done = arm
            .put_agent_pool(&id, &read.resource, read.precondition())
            .await
            .unwrap();
        assert!(matches!(done, Lro::Done(_)));

        let sent = server.recorded();
        assert_eq!(sent.len(), 2);
        for r in &sent {
            assert!(
                r.target.ends_with("?api-version=2024-10-01"),
                "{}",
                r.target
            );
        }
        let put = &sent[1];
        assert_eq!(put.method, "PUT");
        assert_eq!(put.header("if-match"), Some("ebwiyfneowv"));
        assert_eq!(put.header("if-none-match"), None);
        let body: Value = serde_json::from_str(&put.body).unwrap();
        assert_eq!(body["properties"]["count"], 3);
        assert_eq!(body["properties"]["orchestratorVersion"], "1.30.3");
        assert!(body["properties"].get("eTag").is_none(), "{body}");
    }

    /// Leader fencing: a closed gate keeps every write on this side (ARM sees only the
    /// reads), an open one lets it through; every request names the replica.
    #[tokio::test]
    async fn a_closed_write_gate_sends_no_write_and_requests_name_the_replica() {
        let server = serve(|_| (200, pool(Some("e1")))).await;
        let mut config = ArmConfig::new(Url::parse(&server.base).unwrap());
        let gate = crate::WriteGate::closed();
        config.write_gate = gate.clone();
        config.identity = Some("replica-a".into());
        let arm = ArmClient::new(config, CredentialConfig::Static(Secret::new("t"))).unwrap();
        let id: ResourceId = POOL.parse().unwrap();
        let read = arm.get_agent_pool(&id).await.unwrap();
        let put = arm
            .put_agent_pool(&id, &read.resource, read.precondition())
            .await;
        assert!(matches!(put, Err(ArmError::Fenced { .. })), "{put:?}");
        assert!(put.unwrap_err().is_retryable());
        assert!(matches!(
            arm.delete_agent_pool(&id).await,
            Err(ArmError::Fenced { .. })
        ));
        let sent = server.recorded();
        assert_eq!(
            sent.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
            ["GET"]
        );
        let agent = sent[0].header("user-agent").unwrap_or_default();
        assert!(agent.ends_with(" poolnet-replica/replica-a"), "{agent}");

        gate.open_until(tokio::time::Instant::now() + std::time::Duration::from_secs(60));
        arm.put_agent_pool(&id, &read.resource, read.precondition())
            .await
            .unwrap();
        assert_eq!(server.recorded().last().unwrap().method, "PUT");
        assert_eq!(arm.write_gate().map(|g| g.check().is_ok()), Some(true));
    }

    /// An AKS that returns no eTag: the PUT still goes out (unconditional, warned once).
    #[tokio::test]
    async fn agent_pool_without_an_etag_is_written_without_if_match() {
        let server = serve(|_| (200, pool(None))).await;
        let arm = client(&server.base);
        let id: ResourceId = POOL.parse().unwrap();
        let read = arm.get_agent_pool(&id).await.unwrap();
        assert_eq!(read.etag, None);
        assert_eq!(read.precondition(), Precondition::None);
        arm.put_agent_pool(&id, &read.resource, read.precondition())
            .await
            .unwrap();
        let sent = server.recorded();
        assert_eq!(sent[1].method, "PUT");
        assert_eq!(sent[1].header("if-match"), None);
    }
}
