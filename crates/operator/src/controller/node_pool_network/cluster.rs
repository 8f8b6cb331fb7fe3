//! The managed cluster an object's agent pool belongs to: its location (for what poolnet
//! creates) and whether it uses kubenet (node routes count against the route table).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_api::v1alpha1::conditions as cond;
use poolnet_plan::desired::cluster_of;

use super::super::Context;
use super::super::conditions::PartState;
use super::outcome::Effects;

/// What every object of one cluster needs to know about it.
#[derive(Debug, Clone)]
pub struct ClusterFacts {
    /// The cluster's ARM ID, lower-cased.
    pub key: String,
    pub location: Option<String>,
    pub kubenet: bool,
    /// The cluster as read (preflight's facts); `None` when it could not be read.
    pub managed: Option<std::sync::Arc<poolnet_arm::ManagedCluster>>,
}

/// Facts of each managed cluster, read once per resync period per cluster rather than once
/// per reconcile: they practically never change, and every object of the cluster needs them.
#[derive(Default)]
pub struct ClusterCache {
    clusters: Mutex<HashMap<String, (Instant, ClusterFacts)>>,
}

impl ClusterCache {
    /// The facts of `npn`'s cluster, from the cache when read less than a resync period ago.
    /// When ARM cannot be read, facts without location or plugin, and the failed
    /// `AgentPoolReady` condition saying why.
    pub async fn facts(
        &self,
        ctx: &Context,
        npn: &NodePoolNetwork,
    ) -> (ClusterFacts, Option<(PartState, Effects)>) {
        let key = cluster_of(&npn.spec.node_pool.agent_pool_id).unwrap_or_default();
        if let Some(facts) = self.cached(&key, ctx.config.resync) {
            return (facts, None);
        }
        let read = match key.parse() {
            Ok(id) => ctx.arm.get_managed_cluster(&id).await,
            Err(e) => Err(poolnet_arm::ArmError::from(e)),
        };
        match read {
            Ok(c) => {
                let facts = ClusterFacts {
                    key,
                    location: c.resource.location.clone(),
                    kubenet: c
                        .resource
                        .properties
                        .network_profile
                        .as_ref()
                        .and_then(|n| n.network_plugin.as_deref())
                        .is_some_and(|p| p.eq_ignore_ascii_case("kubenet")),
                    managed: Some(std::sync::Arc::new(c.resource)),
                };
                self.remember(&facts);
                (facts, None)
            }
            Err(e) => {
                let mut effects = Effects::default();
                let condition =
                    effects.arm_failure(cond::AGENT_POOL_READY, "reading the managed cluster", &e);
                let facts = ClusterFacts {
                    key,
                    location: None,
                    kubenet: false,
                    managed: None,
                };
                (facts, Some((condition, effects)))
            }
        }
    }

    fn cached(&self, key: &str, resync: std::time::Duration) -> Option<ClusterFacts> {
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters
            .get(&key.to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < resync)
            .map(|(_, facts)| facts.clone())
    }

    fn remember(&self, facts: &ClusterFacts) {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters.insert(
            facts.key.to_ascii_lowercase(),
            (Instant::now(), facts.clone()),
        );
    }
}
