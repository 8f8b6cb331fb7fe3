//! How often poolnet may re-read Azure (docs/arm-traffic.md).
//!
//! Every drift check reads each ARM resource a NodePoolNetwork names about once per resync
//! period. ARM refills a subscription's read bucket at 25 reads/s (Azure Resource Manager
//! throttling); a fleet whose drift checks alone need more than that empties the bucket and
//! throttles every other reader of the subscription, poolnet's own writes' reads included. So
//! the resync period has a floor that grows with the number of resources read:
//! `resources in the busiest subscription / READ_SHARE`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use poolnet_api::armid::ResourceId;
use poolnet_api::v1alpha1::NodePoolNetwork;

use crate::desired::pool_asgs;
use crate::prefix::wanted_prefix_id;

/// Reads per second poolnet's drift checks may spend per subscription: half of ARM's refill
/// of 25 reads/s, leaving the other half to writes' reads, webhooks' preflight, and every
/// other tool using the subscription.
pub const READ_SHARE: f64 = 12.5;

/// The ARM resources the drift checks of `pools` read, by lower-cased subscription: each
/// pool's agent pool, ASGs, NSGs, route table and public IP prefix, and the listing of its
/// node public IPs. Resources shared by many pools count once: they are read once per period
/// for all of them.
pub fn read_set<'a>(
    pools: impl IntoIterator<Item = &'a NodePoolNetwork>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for npn in pools {
        let spec = &npn.spec;
        let mut ids: Vec<String> = vec![spec.node_pool.agent_pool_id.clone()];
        ids.extend(pool_asgs(npn));
        ids.extend(spec.network_security_groups.iter().map(|t| t.id.clone()));
        ids.extend(spec.route_table.iter().map(|r| r.id.clone()));
        ids.extend(wanted_prefix_id(npn));
        if spec.node_public_ip.as_ref().is_some_and(|n| n.enabled) {
            ids.push(format!(
                "{}/publicIPAddresses",
                spec.node_pool.agent_pool_id
            ));
        }
        for raw in ids {
            if let Ok(id) = ResourceId::parse(&raw) {
                out.entry(id.subscription.to_ascii_lowercase())
                    .or_default()
                    .insert(raw.to_ascii_lowercase());
            }
        }
    }
    out
}

/// The shortest resync period that keeps the drift checks of `pools` within [`READ_SHARE`]
/// in every subscription.
pub fn resync_floor<'a>(pools: impl IntoIterator<Item = &'a NodePoolNetwork>) -> Duration {
    let busiest = read_set(pools)
        .values()
        .map(BTreeSet::len)
        .max()
        .unwrap_or(0);
    Duration::from_secs_f64(busiest as f64 / READ_SHARE)
}

/// The resync period to use: the configured one, raised to the floor.
pub fn effective_resync<'a>(
    configured: Duration,
    pools: impl IntoIterator<Item = &'a NodePoolNetwork>,
) -> Duration {
    configured.max(resync_floor(pools))
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::v1alpha1::NodePoolNetworkSpec;
    use proptest::prelude::*;

    fn pool(i: usize, sub: usize, nsg: usize) -> NodePoolNetwork {
        let spec: NodePoolNetworkSpec = serde_yaml::from_str(&format!(
            "nodePool: {{agentPoolId: /subscriptions/00000000-0000-0000-0000-00000000000{sub}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/p{i}}}
allowedHostPorts: ['7000/tcp']
networkSecurityGroups:
  - id: /subscriptions/00000000-0000-0000-0000-00000000000{sub}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-{nsg}
    priorities: {{from: 200, to: 210}}
"
        ))
        .unwrap();
        NodePoolNetwork::new(&format!("p{i}"), spec)
    }

    #[test]
    fn two_hundred_pools_on_twenty_nsgs_read_four_hundred_and_twenty_resources() {
        // Agent pool and managed ASG per pool, the NSGs shared.
        let pools: Vec<_> = (0..200).map(|i| pool(i, 0, i % 20)).collect();
        let set = read_set(&pools);
        assert_eq!(set["00000000-0000-0000-0000-000000000000"].len(), 420);
        assert_eq!(resync_floor(&pools), Duration::from_secs_f64(420.0 / 12.5));
        // A longer configured period is kept; a shorter one is raised.
        assert_eq!(
            effective_resync(Duration::from_secs(300), &pools),
            Duration::from_secs(300)
        );
        assert_eq!(
            effective_resync(Duration::from_secs(10), &pools),
            Duration::from_secs_f64(33.6)
        );
        assert_eq!(resync_floor(&[]), Duration::ZERO);
    }

    proptest! {
        /// At the effective period, the drift checks' reads per second stay within the share
        /// in every subscription, and the period is never below what was configured.
        #[test]
        fn reads_per_second_stay_within_the_share(
            pools in proptest::collection::vec((0usize..3, 0usize..30), 0..300),
            configured in 1u64..600,
        ) {
            let pools: Vec<_> = pools.iter().enumerate().map(|(i, (sub, nsg))| pool(i, *sub, *nsg)).collect();
            let configured = Duration::from_secs(configured);
            let period = effective_resync(configured, &pools);
            prop_assert!(period >= configured);
            let set = read_set(&pools);
            let counted: usize = set.values().map(BTreeSet::len).sum();
            prop_assert!(counted >= pools.len(), "every pool's reads are counted");
            for ids in set.values() {
                let per_second = ids.len() as f64 / period.as_secs_f64();
                prop_assert!(per_second <= READ_SHARE + 1e-9, "{per_second} reads/s");
            }
        }
    }
}
