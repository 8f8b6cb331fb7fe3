//! `spec.nodePool.template`: the AKS agent pool poolnet creates when the pool named by
//! `agentPoolId` does not exist, with the node public IP settings AKS takes only at creation
//! (docs/node-pools.md).

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most nodes AKS allows in one pool.
pub const MAX_POOL_NODES: i32 = 1000;

/// AKS's default `upgradeSettings.maxSurge` for new pools.
pub const DEFAULT_MAX_SURGE: &str = "10%";

/// How to create the agent pool when it does not exist. poolnet creates it (as
/// `az aks nodepool add` would) with the node public IP settings, allowed host ports and ASGs
/// of this NodePoolNetwork, and deletes it when this object is deleted, but only a pool it
/// created. Changes here after the pool exists are not applied: the fields AKS fixes at
/// creation are reported as RequiresNodePoolRecreate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.count) || has(self.autoscaling)").message("nodePool.template needs count (a fixed number of nodes) or autoscaling (minCount and maxCount)"),
    validation = Rule::new("!has(self.count) || !has(self.autoscaling) || (self.count >= self.autoscaling.minCount && self.count <= self.autoscaling.maxCount)").message("nodePool.template.count must lie between autoscaling.minCount and autoscaling.maxCount (with autoscaling, count is the initial size)"),
    validation = Rule::new("!has(self.mode) || self.mode != 'System' || !has(self.osType) || self.osType == 'Linux'").message("nodePool.template: a System pool must run Linux (osType: Linux); Windows pools can only be User pools"),
    validation = Rule::new("!has(self.mode) || self.mode != 'System' || ((!has(self.count) || self.count >= 1) && (!has(self.autoscaling) || self.autoscaling.minCount >= 1))").message("nodePool.template: a System pool needs at least one node (count and autoscaling.minCount at least 1), as AKS requires"),
)]
pub struct AgentPoolTemplate {
    /// VM size of the nodes, e.g. Standard_D4s_v5.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_]*$')").message("vmSize must be an Azure VM size such as Standard_D4s_v5: letters, digits and '_'"))]
    pub vm_size: String,

    /// Number of nodes of a fixed-size pool; with autoscaling, the initial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub count: Option<i32>,

    /// Let the cluster autoscaler size the pool between minCount and maxCount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// upgradeSettings.maxSurge: extra nodes during an upgrade, as a number ("3") or a
    /// percentage of the pool's size, rounded up ("33%"). Default "10%". Each surge node gets a
    /// public IP too, so the prefix must have room for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    #[x_kube(validation = Rule::new("self.matches('^([1-9][0-9]{0,2}|1000|[1-9][0-9]?%|100%)$')").message("maxSurge must be a node count from 1 to 1000 (e.g. \"3\") or a percentage from 1% to 100% (e.g. \"33%\")"))]
    pub max_surge: Option<String>,

    /// User (default) or System.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PoolMode>,

    /// Linux (default) or Windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<OsType>,

    /// Kubernetes version of the nodes, e.g. 1.30 or 1.30.3. Default: the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(r"self.matches('^[0-9]+\\.[0-9]+(\\.[0-9]+)?$')").message("orchestratorVersion must be a Kubernetes version such as 1.30 or 1.30.3"))]
    pub orchestrator_version: Option<String>,

    /// Subnet of the nodes (bring-your-own VNet). Default: AKS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.Network/virtualNetworks/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,62}[a-zA-Z0-9_])?/subnets/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')").message("vnetSubnetId must be a subnet ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"))]
    pub vnet_subnet_id: Option<String>,

    /// Availability zones of the nodes, e.g. ["1","2","3"]. Empty means no zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(z, z in ['1', '2', '3'])").message("availabilityZones must be chosen from \"1\", \"2\" and \"3\""),
    )]
    pub availability_zones: Vec<String>,

    /// Pods per node. Default: AKS's (110 with kubenet, 250 with Azure CNI overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 250))]
    pub max_pods: Option<i32>,

    /// Kubernetes labels of the nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::selector::label_map_schema")]
    pub node_labels: BTreeMap<String, String>,

    /// Taints of the nodes, as `key=value:Effect` or `key:Effect` with Effect NoSchedule,
    /// PreferNoSchedule or NoExecute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 317)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new(r"self.all(t, t.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?(=([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)?:(NoSchedule|PreferNoSchedule|NoExecute)$'))").message("each nodeTaints item must be key=value:Effect or key:Effect, e.g. sku=gpu:NoSchedule, with Effect NoSchedule, PreferNoSchedule or NoExecute"),
    )]
    pub node_taints: Vec<String>,
}

/// Autoscaler bounds of the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minCount <= self.maxCount").message("autoscaling.minCount must not be greater than autoscaling.maxCount"))]
pub struct Autoscaling {
    /// Fewest nodes (0-1000).
    #[schemars(range(min = 0, max = 1000))]
    pub min_count: i32,
    /// Most nodes (1-1000). The prefix must have room for them plus the surge.
    #[schemars(range(min = 1, max = 1000))]
    pub max_count: i32,
}

/// AKS agent pool mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PoolMode {
    #[default]
    User,
    System,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::User => "User",
            PoolMode::System => "System",
        }
    }
}

/// Operating system of the nodes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OsType {
    #[default]
    Linux,
    Windows,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Linux => "Linux",
            OsType::Windows => "Windows",
        }
    }
}

impl AgentPoolTemplate {
    /// The most nodes the pool can have: the autoscaler's maximum, else its count.
    pub fn max_nodes(&self) -> u32 {
        let n = match self.autoscaling {
            Some(a) => a.max_count,
            None => self.count.unwrap_or(0),
        };
        u32::try_from(n).unwrap_or(0)
    }

    /// The initial node count sent to AKS: count, else the autoscaler's minimum.
    pub fn initial_count(&self) -> i32 {
        self.count
            .or(self.autoscaling.map(|a| a.min_count))
            .unwrap_or(0)
    }

    /// maxSurge as written to AKS.
    pub fn max_surge(&self) -> &str {
        self.max_surge.as_deref().unwrap_or(DEFAULT_MAX_SURGE)
    }
}

/// Surge nodes `max_surge` ("3" or "33%") adds to a pool of `nodes`: a percentage is of the
/// pool's size, rounded up, as AKS computes it. `None` when `max_surge` is neither.
pub fn surge_nodes(max_surge: &str, nodes: u32) -> Option<u32> {
    let s = max_surge.trim();
    if let Some(pct) = s.strip_suffix('%') {
        let pct: u32 = pct.parse().ok().filter(|p| (1..=100).contains(p))?;
        Some((nodes * pct).div_ceil(100))
    } else {
        s.parse().ok().filter(|n| *n >= 1)
    }
}

/// Addresses a pool needs from its public IP prefix: one per node at its largest, plus one
/// per surge node during an upgrade.
pub fn addresses_needed(template: &AgentPoolTemplate) -> Option<u32> {
    let nodes = template.max_nodes();
    Some(nodes + surge_nodes(template.max_surge(), nodes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn surge_is_a_count_or_a_percentage_rounded_up() {
        assert_eq!(surge_nodes("3", 10), Some(3));
        assert_eq!(surge_nodes("10%", 10), Some(1));
        assert_eq!(surge_nodes("10%", 11), Some(2));
        assert_eq!(surge_nodes("33%", 3), Some(1));
        assert_eq!(surge_nodes("100%", 7), Some(7));
        assert_eq!(surge_nodes("0", 7), None);
        assert_eq!(surge_nodes("0%", 7), None);
        assert_eq!(surge_nodes("101%", 7), None);
        assert_eq!(surge_nodes("x", 7), None);
    }

    #[test]
    fn a_template_needs_its_largest_size_plus_surge() {
        let t: AgentPoolTemplate = serde_json::from_value(serde_json::json!({
            "vmSize": "Standard_D4s_v5", "count": 2, "autoscaling": {"minCount": 1, "maxCount": 12}
        }))
        .unwrap();
        assert_eq!(t.max_nodes(), 12);
        assert_eq!(t.initial_count(), 2);
        assert_eq!(
            addresses_needed(&t),
            Some(14),
            "12 nodes + 10% of 12 rounded up"
        );
    }

    proptest! {
        #[test]
        fn a_percentage_surge_is_never_below_its_exact_share(nodes in 0u32..=1000, pct in 1u32..=100) {
            let s = surge_nodes(&format!("{pct}%"), nodes).unwrap();
            prop_assert!(u64::from(s) * 100 >= u64::from(nodes) * u64::from(pct));
            prop_assert!(s <= nodes);
        }
    }
}
