//! The subset of the AKS agent pool resource poolnet reads and writes
//! (`Microsoft.ContainerService/managedClusters/{c}/agentPools/{p}`), which azure_mgmt_network does
//! not cover.
//!
//! Every struct keeps the fields it does not name in `extra`, so a read-modify-write PUT sends back
//! everything AKS returned (upgrade settings, node labels, taints, ...) and never drops them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// API version used for agent pools (and the read of their managed cluster): the first GA
/// version that documents an agent pool ETag, so the read-modify-write PUT can be conditional.
///
/// The fields poolnet writes (`networkProfile.allowedHostPorts`, `applicationSecurityGroups`,
/// `nodePublicIPTags`) are GA since 2024-02-01, but up to 2024-09-01 AKS returns no ETag for an
/// agent pool and documents no `If-Match`, so every pool PUT was last-writer-wins. 2024-10-01 is
/// the first stable version whose spec has the read-only `properties.eTag` on the pool and
/// `If-Match` / `If-None-Match` on `AgentPools_CreateOrUpdate` (`If-Match` on `AgentPools_Delete`);
/// it documents no `ETag` response header. Read in Azure/azure-rest-api-specs,
/// specification/containerservice/resource-manager/Microsoft.ContainerService/aks/stable/
/// 2024-10-01/managedClusters.json (and, for the absence, stable/2024-09-01/managedClusters.json).
pub const AGENT_POOL_API_VERSION: &str = "2024-10-01";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub properties: AgentPoolProperties,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    /// `Linux` or `Windows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// `System` or `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scaling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i32>,
    /// Only settable when the pool is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<i32>,
    /// Only settable when the pool is created.
    #[serde(
        default,
        rename = "vnetSubnetID",
        skip_serializing_if = "Option::is_none"
    )]
    pub vnet_subnet_id: Option<String>,
    /// Only settable when the pool is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zones: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_taints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_settings: Option<UpgradeSettings>,
    #[serde(
        default,
        rename = "enableNodePublicIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_node_public_ip: Option<bool>,
    /// Only settable when the pool is created.
    #[serde(
        default,
        rename = "nodePublicIPPrefixID",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_public_ip_prefix_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<AgentPoolNetworkProfile>,
    /// Read-only; `Succeeded`, `Creating`, `Updating`, `Failed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// Read-only ETag AKS reports in the body from api-version 2024-10-01, which documents no
    /// `ETag` header for agent pools. It is what `If-Match` carries; `put_agent_pool` leaves it
    /// out of the body it sends, where it would only be a stale read-only value.
    #[serde(default, rename = "eTag", skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `upgradeSettings` of a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSettings {
    /// Extra nodes during an upgrade: a count ("3") or a percentage ("33%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolNetworkProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_host_ports: Option<Vec<PortRange>>,
    /// ASG resource IDs the pool's NICs join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_security_groups: Option<Vec<String>>,
    /// Only settable when the pool is created.
    #[serde(
        default,
        rename = "nodePublicIPTags",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_public_ip_tags: Option<Vec<IpTag>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_start: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_end: Option<u16>,
    /// `TCP` or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpTag {
    #[serde(default, rename = "ipTagType", skip_serializing_if = "Option::is_none")]
    pub ip_tag_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AgentPool {
    /// The network profile, created empty when absent, for editing.
    pub fn network_profile_mut(&mut self) -> &mut AgentPoolNetworkProfile {
        self.properties
            .network_profile
            .get_or_insert_with(AgentPoolNetworkProfile::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKS_BODY: &str = r#"{
      "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/np1",
      "name": "np1",
      "type": "Microsoft.ContainerService/managedClusters/agentPools",
      "properties": {
        "count": 3,
        "vmSize": "Standard_D4s_v5",
        "osType": "Linux",
        "mode": "User",
        "enableNodePublicIP": true,
        "nodePublicIPPrefixID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p",
        "provisioningState": "Succeeded",
        "orchestratorVersion": "1.29.4",
        "nodeLabels": {"team": "games"},
        "upgradeSettings": {"maxSurge": "33%"},
        "networkProfile": {
          "allowedHostPorts": [{"portStart": 80, "portEnd": 80, "protocol": "TCP"}],
          "applicationSecurityGroups": ["/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/a"],
          "nodePublicIPTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}],
          "futureField": 1
        }
      },
      "systemData": {"createdBy": "someone"}
    }"#;

    #[test]
    fn reads_the_fields_poolnet_uses() {
        let pool: AgentPool = serde_json::from_str(AKS_BODY).unwrap();
        let p = &pool.properties;
        assert_eq!(p.count, Some(3));
        assert_eq!(p.enable_node_public_ip, Some(true));
        assert_eq!(p.provisioning_state.as_deref(), Some("Succeeded"));
        let np = p.network_profile.as_ref().unwrap();
        assert_eq!(
            np.allowed_host_ports.as_ref().unwrap()[0],
            PortRange {
                port_start: Some(80),
                port_end: Some(80),
                protocol: Some("TCP".into()),
                extra: Map::new()
            }
        );
        assert_eq!(
            np.node_public_ip_tags.as_ref().unwrap()[0]
                .ip_tag_type
                .as_deref(),
            Some("RoutingPreference")
        );
    }

    #[test]
    fn a_round_trip_keeps_every_unknown_field() {
        let original: Value = serde_json::from_str(AKS_BODY).unwrap();
        let pool: AgentPool = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(serde_json::to_value(&pool).unwrap(), original);
    }

    #[test]
    fn edits_keep_unknown_fields() {
        let mut pool: AgentPool = serde_json::from_str(AKS_BODY).unwrap();
        pool.network_profile_mut().allowed_host_ports = Some(vec![PortRange {
            port_start: Some(40000),
            port_end: Some(60000),
            protocol: Some("UDP".into()),
            extra: Map::new(),
        }]);
        let v = serde_json::to_value(&pool).unwrap();
        assert_eq!(v["properties"]["nodeLabels"]["team"], "games");
        assert_eq!(v["properties"]["networkProfile"]["futureField"], 1);
        assert_eq!(
            v["properties"]["networkProfile"]["allowedHostPorts"][0]["portEnd"],
            60000
        );
        assert_eq!(v["systemData"]["createdBy"], "someone");
    }
}

/// The subset of a managed cluster (`Microsoft.ContainerService/managedClusters/{c}`) poolnet
/// reads: where it lives and how its nodes are networked. Read-only: poolnet never writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default)]
    pub properties: ManagedClusterProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resource_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<ManagedClusterNetworkProfile>,
    /// The control plane's Kubernetes version (what a new pool gets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// Every pool of the cluster as the cluster GET lists it (preflight: node counts,
    /// autoscaler maxima, surge, OS, versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pool_profiles: Option<Vec<AgentPoolProfile>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterNetworkProfile {
    /// `kubenet`, `azure` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_plugin: Option<String>,
    /// kubenet (and Azure CNI overlay) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    #[serde(
        default,
        rename = "dnsServiceIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub dns_service_ip: Option<String>,
}

/// One entry of a managed cluster's `agentPoolProfiles` (read-only here): the pool's name and
/// the properties its agent pool resource carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentPoolProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub properties: AgentPoolProperties,
}
