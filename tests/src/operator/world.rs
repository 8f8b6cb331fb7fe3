//! The armsim demo world as tests name it: IDs, samples, Node objects, an ARM client.

use anyhow::{Context, Result};
use armsim::RunningSim;
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use kube::api::ObjectMeta;
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_arm::{ArmClient, ArmConfig, CredentialConfig, Secret, Url};

use super::*;

pub fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks-demo"
    )
}

pub fn agent_pool_id(pool: &str) -> String {
    format!("{}/agentPools/{pool}", cluster_id())
}

/// ARM ID of a Microsoft.Network resource of the fixture, e.g. `network_id(RG,
/// "networkSecurityGroups", "nsg-snet-aks")`.
pub fn network_id(resource_group: &str, kind: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Network/{kind}/{name}"
    )
}

/// The BYO subnet NSG of the fixture, which AKS never touches.
pub fn byo_nsg_id() -> String {
    network_id(RG, "networkSecurityGroups", "nsg-snet-aks")
}

/// The AKS NSG in the node resource group, with the cloud controller's `k8s-azure-lb_*` rules.
pub fn aks_nsg_id() -> String {
    network_id(
        "MC_rg-poolnet-demo_aks-demo_westeurope",
        "networkSecurityGroups",
        &format!("aks-agentpool-{CLUSTER_DIGITS}-nsg"),
    )
}

pub fn route_table_id() -> String {
    network_id(RG, "routeTables", "rt-kubenet")
}

/// A manifest of `config/samples/`.
pub fn sample(file: &str) -> Result<NodePoolNetwork> {
    let path = crate::repo_root().join("config/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Node objects for the fixture's VMSS instances (no kubelets: they never run pods), named and
/// labelled as AKS names and labels them.
pub fn fixture_nodes() -> Vec<Node> {
    [("game", 3), ("kubenet", 2)]
        .into_iter()
        .flat_map(|(pool, count)| (0..count).map(move |i| pool_node(pool, i)))
        .collect()
}

/// The Node object of instance `instance` of agent pool `pool`'s scale set in the demo
/// cluster, as AKS names and labels it when the VM joins.
pub fn pool_node(pool: &str, instance: u32) -> Node {
    let vmss = format!("aks-{pool}-{CLUSTER_DIGITS}-vmss");
    Node {
        metadata: ObjectMeta {
            name: Some(format!("{vmss}{instance:06}")),
            labels: Some(
                [
                    ("kubernetes.azure.com/agentpool", pool),
                    ("kubernetes.io/os", "linux"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!(
                "azure:///subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{instance}"
            )),
            ..NodeSpec::default()
        }),
        ..Node::default()
    }
}

/// An ARM client for armsim, as the operator builds one (static token, armsim's CA).
pub fn arm_client(sim: &RunningSim) -> Result<ArmClient> {
    let mut config = ArmConfig::new(Url::parse(&sim.base_url()).context("armsim URL")?);
    config.transport.extra_ca_pem = sim.ca_pem();
    Ok(ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("poolnet-tests")),
    )?)
}

/// A benchmark's Azure: one subscription and resource group, one cluster (`cluster_id`) with
/// a system pool and user pools `pool_ids`, and empty NSGs `nsg_ids`, all in westeurope.
pub fn fleet_fixture(
    subscription: &str,
    resource_group: &str,
    cluster_id: &str,
    pool_ids: impl IntoIterator<Item = String>,
    nsg_ids: impl IntoIterator<Item = String>,
) -> Result<armsim::Fixture> {
    let dns_prefix = cluster_id.rsplit('/').next().unwrap_or_default();
    let mut resources = vec![serde_json::json!({
        "id": cluster_id,
        "location": "westeurope",
        "properties": {
            "kubernetesVersion": "1.30.3",
            "dnsPrefix": dns_prefix,
            "networkProfile": {"networkPlugin": "azure"},
            "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}]
        }
    })];
    resources.extend(pool_ids.into_iter().map(|id| {
        serde_json::json!({
            "id": id,
            "properties": {"count": 1, "vmSize": "Standard_D2s_v5", "mode": "User"}
        })
    }));
    resources.extend(
        nsg_ids
            .into_iter()
            .map(|id| serde_json::json!({"id": id, "location": "westeurope"})),
    );
    Ok(serde_json::from_value(serde_json::json!({
        "subscriptions": [{"id": subscription, "resourceGroups": [{"name": resource_group, "location": "westeurope"}]}],
        "resources": resources,
    }))?)
}
