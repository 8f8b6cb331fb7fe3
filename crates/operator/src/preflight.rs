//! Preflight's thin shell: read the facts `poolnet_preflight::live::check` needs from ARM (the
//! managed cluster with its `agentPoolProfiles`, the VNet of the pool's subnet), keep them a
//! short while per cluster and VNet, and hand them over. The webhook reads under a deadline and
//! admits with a warning when ARM does not answer in time; the controller reads with its
//! cached cluster facts every reconcile; `kubectl poolnet plan` reads once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poolnet_api::v1alpha1::NodePoolNetworkSpec;
use poolnet_arm::{AgentPoolProfile, ArmError, ArmNetwork, ManagedCluster, ResourceId};
use poolnet_preflight::live::{ClusterFacts, LiveFacts, PoolFacts};

/// How long facts read for admission are reused: long enough that a burst of applies reads
/// ARM once, short enough that a scale or upgrade is seen on the next apply.
pub const DEFAULT_FACTS_TTL: Duration = Duration::from_secs(30);

/// What the facts of one pool are built from: its cluster as read, and the VNet's address
/// space when the pool has a subnet of its own.
pub fn facts_from_cluster(
    cluster: &ManagedCluster,
    cluster_name: &str,
    pool_name: &str,
    vnet_address_space: Vec<String>,
) -> LiveFacts {
    let props = &cluster.properties;
    let net = props.network_profile.as_ref();
    let profiles = props.agent_pool_profiles.as_deref().unwrap_or(&[]);
    let (mine, others): (Vec<&AgentPoolProfile>, Vec<&AgentPoolProfile>) =
        profiles.iter().partition(|p| {
            p.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(pool_name))
        });
    LiveFacts {
        cluster: ClusterFacts {
            name: cluster_name.to_string(),
            network_plugin: net.and_then(|n| n.network_plugin.clone()),
            pod_cidr: net.and_then(|n| n.pod_cidr.clone()),
            service_cidr: net.and_then(|n| n.service_cidr.clone()),
            kubernetes_version: props.kubernetes_version.clone(),
        },
        pool: mine.first().map(|p| pool_facts(p)),
        other_pools: others.into_iter().map(pool_facts).collect(),
        vnet_address_space,
        existing_routes: None,
        host_port_feature_registered: None,
    }
}

fn pool_facts(profile: &AgentPoolProfile) -> PoolFacts {
    let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
    let p = &profile.properties;
    PoolFacts {
        name: profile.name.clone().unwrap_or_default(),
        os_type: p.os_type.clone(),
        count: count(p.count).unwrap_or(0),
        enable_auto_scaling: p.enable_auto_scaling.unwrap_or(false),
        max_count: count(p.max_count),
        max_surge: p
            .upgrade_settings
            .as_ref()
            .and_then(|u| u.max_surge.clone()),
        orchestrator_version: p.orchestrator_version.clone(),
    }
}

/// The pool `spec.nodePool.template` describes, as preflight sees a live one.
fn template_pool_facts(name: &str, t: &poolnet_api::v1alpha1::AgentPoolTemplate) -> PoolFacts {
    PoolFacts {
        name: name.to_string(),
        os_type: Some(t.os_type.unwrap_or_default().as_str().to_string()),
        count: u32::try_from(t.initial_count()).unwrap_or(0),
        enable_auto_scaling: t.autoscaling.is_some(),
        max_count: t.autoscaling.and_then(|a| u32::try_from(a.max_count).ok()),
        max_surge: Some(t.max_surge().to_string()),
        orchestrator_version: t.orchestrator_version.clone(),
    }
}

/// The subnet a pool's nodes are in, per its profile.
fn pool_subnet(cluster: &ManagedCluster, pool_name: &str) -> Option<String> {
    cluster
        .properties
        .agent_pool_profiles
        .as_deref()?
        .iter()
        .find(|p| {
            p.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(pool_name))
        })?
        .properties
        .vnet_subnet_id
        .clone()
}

/// Why facts could not be read, for the webhook's warning and the condition's message.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("spec.nodePool.agentPoolId is not an agent pool ID")]
    BadId,
    #[error("managed cluster {0} not found")]
    ClusterNotFound(String),
    #[error("reading {what}: {error}")]
    Arm { what: String, error: ArmError },
}

impl FactsError {
    /// The same words for the same kind of failure, without the details that change from one
    /// attempt to the next (a throttle's wait): a status condition quoting it stays put.
    pub fn summary(&self) -> String {
        match self {
            FactsError::Arm { what, error } => {
                format!("reading {what} failed ({})", error.metric_label())
            }
            other => other.to_string(),
        }
    }
}

type Cache<T> = Mutex<HashMap<String, (Instant, T)>>;

/// Reads and briefly keeps the facts preflight needs (one cluster GET per cluster, one VNet
/// GET per VNet, per TTL).
#[derive(Debug)]
pub struct FactsReader {
    arm: Arc<dyn ArmNetwork>,
    ttl: Duration,
    clusters: Cache<Arc<ManagedCluster>>,
    vnets: Cache<Vec<String>>,
    /// Per subscription: whether AKS's host-port auto-assignment preview is registered (`None`:
    /// ARM did not say; remembered as long, so a missing permission costs one read per TTL).
    features: Cache<Option<bool>>,
}

impl FactsReader {
    pub fn new(arm: Arc<dyn ArmNetwork>, ttl: Duration) -> Self {
        Self {
            arm,
            ttl,
            clusters: Mutex::default(),
            vnets: Mutex::default(),
            features: Mutex::default(),
        }
    }

    /// Whether [`poolnet_preflight::live::HOST_PORT_FEATURE`] is registered in the subscription
    /// of `spec`'s pool; `None` when ARM does not say (no permission, an error): the check
    /// that needs it is then left out.
    pub async fn host_port_feature(&self, spec: &NodePoolNetworkSpec) -> Option<bool> {
        let pool: ResourceId = spec.node_pool.agent_pool_id.parse().ok()?;
        let sub = pool.subscription().to_string();
        if let Some(known) = self.cached(&self.features, &sub) {
            return known;
        }
        let state = self
            .arm
            .get_feature_state(
                &sub,
                "Microsoft.ContainerService",
                poolnet_preflight::live::HOST_PORT_FEATURE,
            )
            .await
            .ok();
        // Registering counts: it is on its way, and will assign ports once done.
        let registered = state
            .map(|s| s.eq_ignore_ascii_case("Registered") || s.eq_ignore_ascii_case("Registering"));
        self.remember(&self.features, &sub, registered);
        registered
    }

    fn cached<T: Clone>(&self, cache: &Cache<T>, key: &str) -> Option<T> {
        let c = cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&key.to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn remember<T>(&self, cache: &Cache<T>, key: &str, value: T) {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|_, (at, _)| at.elapsed() < self.ttl);
        c.insert(key.to_ascii_lowercase(), (Instant::now(), value));
    }

    /// The managed cluster of `spec`'s pool, from the cache or ARM.
    pub async fn cluster(
        &self,
        spec: &NodePoolNetworkSpec,
    ) -> Result<Arc<ManagedCluster>, FactsError> {
        let pool: ResourceId = spec
            .node_pool
            .agent_pool_id
            .parse()
            .map_err(|_| FactsError::BadId)?;
        let id = pool.parent().ok_or(FactsError::BadId)?;
        let key = id.to_string();
        if let Some(c) = self.cached(&self.clusters, &key) {
            return Ok(c);
        }
        let read = match self.arm.get_managed_cluster(&id).await {
            Ok(c) => Arc::new(c.resource),
            Err(ArmError::NotFound { .. }) => return Err(FactsError::ClusterNotFound(key)),
            Err(error) => {
                return Err(FactsError::Arm {
                    what: format!("managed cluster {key}"),
                    error,
                });
            }
        };
        self.remember(&self.clusters, &key, read.clone());
        Ok(read)
    }

    /// The facts of `spec`'s pool, given its cluster as read. The VNet is read when the pool
    /// has its own subnet; a VNet that cannot be read leaves its checks out (`Err` names why).
    pub async fn facts_with(
        &self,
        spec: &NodePoolNetworkSpec,
        cluster: &ManagedCluster,
    ) -> (LiveFacts, Option<FactsError>) {
        let pool = spec.node_pool.agent_pool_id.parse::<ResourceId>().ok();
        let pool_name = pool
            .as_ref()
            .map(|p| p.name().to_string())
            .unwrap_or_default();
        let cluster_name = pool
            .as_ref()
            .and_then(|p| p.parent())
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        let template = spec.node_pool.template.as_ref();
        let subnet = pool_subnet(cluster, &pool_name)
            .or_else(|| template.and_then(|t| t.vnet_subnet_id.clone()));
        let (space, problem) = match subnet {
            Some(subnet) => match self.vnet_space(&subnet).await {
                Ok(space) => (space, None),
                Err(e) => (Vec::new(), Some(e)),
            },
            None => (Vec::new(), None),
        };
        let mut facts = facts_from_cluster(cluster, &cluster_name, &pool_name, space);
        // A pool poolnet will create is judged as its template describes it.
        if facts.pool.is_none()
            && let Some(t) = template
        {
            facts.pool = Some(template_pool_facts(&pool_name, t));
        }
        (facts, problem)
    }

    /// Cluster and VNet: everything preflight needs for `spec`.
    pub async fn facts(
        &self,
        spec: &NodePoolNetworkSpec,
    ) -> Result<(LiveFacts, Option<FactsError>), FactsError> {
        let cluster = self.cluster(spec).await?;
        Ok(self.facts_with(spec, &cluster).await)
    }

    async fn vnet_space(&self, subnet: &str) -> Result<Vec<String>, FactsError> {
        let vnet = subnet
            .parse::<ResourceId>()
            .ok()
            .and_then(|s| s.parent())
            .ok_or_else(|| FactsError::Arm {
                what: format!("the VNet of subnet {subnet}"),
                error: ArmError::InvalidResponse {
                    id: subnet.to_string(),
                    message: "vnetSubnetID is not a subnet ID".into(),
                },
            })?;
        let key = vnet.to_string();
        if let Some(space) = self.cached(&self.vnets, &key) {
            return Ok(space);
        }
        let read = self
            .arm
            .get_virtual_network(&vnet)
            .await
            .map_err(|error| FactsError::Arm {
                what: format!("virtual network {key}"),
                error,
            })?;
        let space = read
            .resource
            .properties
            .and_then(|p| p.address_space)
            .map(|a| a.address_prefixes)
            .unwrap_or_default();
        self.remember(&self.vnets, &key, space.clone());
        Ok(space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_split_this_pool_from_the_others() {
        let cluster: ManagedCluster = serde_json::from_value(serde_json::json!({
            "properties": {
                "kubernetesVersion": "1.30.3",
                "networkProfile": {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10"},
                "agentPoolProfiles": [
                    {"name": "system", "count": 2, "osType": "Linux"},
                    {"name": "Game", "count": 3, "enableAutoScaling": true, "maxCount": 20, "osType": "Windows",
                     "upgradeSettings": {"maxSurge": "33%"}, "orchestratorVersion": "1.29.2",
                     "vnetSubnetID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes"}
                ]
            }
        }))
        .expect("cluster");
        let f = facts_from_cluster(&cluster, "aks", "game", vec!["10.224.0.0/12".into()]);
        assert_eq!(f.cluster.network_plugin.as_deref(), Some("kubenet"));
        assert_eq!(f.cluster.pod_cidr.as_deref(), Some("10.244.0.0/16"));
        let pool = f.pool.expect("pool");
        assert_eq!((pool.count, pool.max_nodes()), (3, 20));
        assert_eq!(pool.max_surge.as_deref(), Some("33%"));
        assert_eq!(pool.os_type.as_deref(), Some("Windows"));
        assert_eq!(f.other_pools.len(), 1);
        assert_eq!(f.other_pools[0].count, 2);
        assert!(pool_subnet(&cluster, "game").is_some_and(|s| s.ends_with("/subnets/nodes")));
        assert!(
            facts_from_cluster(&cluster, "aks", "new", Vec::new())
                .pool
                .is_none()
        );
        let t: poolnet_api::v1alpha1::AgentPoolTemplate = serde_json::from_value(serde_json::json!({
            "vmSize": "Standard_D4s_v5", "count": 2, "autoscaling": {"minCount": 1, "maxCount": 9}, "osType": "Windows"
        }))
        .expect("template");
        let p = template_pool_facts("new", &t);
        assert_eq!((p.count, p.max_nodes()), (2, 9));
        assert_eq!(p.os_type.as_deref(), Some("Windows"));
        assert_eq!(p.max_surge.as_deref(), Some("10%"));
    }
}
