//! The public IP prefix a pool's node IPs come from: which one the spec names, and whether
//! the prefix found in Azure can serve it.
//!
//! Azure fixes a prefix's length and IP tags when it is created, so a prefix whose tags
//! differ from the spec can never be fixed in place: it is reported, not written.

use poolnet_api::armid::{NETWORK, ResourceId};
use poolnet_api::v1alpha1::{IpTag, NodePoolNetwork};

/// ID of the prefix poolnet manages for `npn` (`prefix.managed`), in the agent pool's
/// subscription.
pub fn managed_prefix_id(npn: &NodePoolNetwork) -> Option<String> {
    let m = npn
        .spec
        .node_public_ip
        .as_ref()?
        .prefix
        .as_ref()?
        .managed
        .as_ref()?;
    let pool = ResourceId::parse(&npn.spec.node_pool.agent_pool_id).ok()?;
    let id = ResourceId::top_level(
        pool.subscription,
        m.resource_group.clone(),
        NETWORK,
        "publicIPPrefixes",
        m.name.clone(),
    );
    Some(id.to_string())
}

/// The prefix the pool's node IPs should come from: the adopted one or the managed one.
pub fn wanted_prefix_id(npn: &NodePoolNetwork) -> Option<String> {
    let prefix = npn.spec.node_public_ip.as_ref()?.prefix.as_ref()?;
    prefix
        .existing_id
        .clone()
        .or_else(|| managed_prefix_id(npn))
}

/// The IP tags the spec asks for, sorted.
pub fn spec_ip_tags(npn: &NodePoolNetwork) -> Vec<IpTag> {
    let mut tags = npn
        .spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.ip_tags.clone())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// A prefix as poolnet reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPrefix {
    /// Sorted.
    pub ip_tags: Vec<IpTag>,
    /// The address range, once Azure has allocated it.
    pub cidr: Option<String>,
    /// Whether a create or update is still running.
    pub updating: bool,
    /// Public IPs allocated from the prefix (`publicIPAddresses`).
    pub addresses_in_use: u32,
}

/// Whether a prefix the spec adopts (`prefix.existingId`) can serve the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptedPrefix {
    Ready,
    /// The spec asks for IP tags the prefix was not created with.
    IpTagsMismatch {
        have: Vec<IpTag>,
        want: Vec<IpTag>,
    },
    /// Azure has not allocated its range yet.
    NoRange,
}

/// Judge an adopted prefix against the spec's IP tags (`want`, sorted; empty when the spec
/// names none, which accepts any tags).
pub fn judge_adopted(prefix: &ObservedPrefix, want: &[IpTag]) -> AdoptedPrefix {
    if !want.is_empty() && prefix.ip_tags != want {
        AdoptedPrefix::IpTagsMismatch {
            have: prefix.ip_tags.clone(),
            want: want.to_vec(),
        }
    } else if prefix.cidr.is_none() {
        AdoptedPrefix::NoRange
    } else {
        AdoptedPrefix::Ready
    }
}

/// Whether a managed prefix that exists is done being created.
pub fn managed_is_ready(prefix: &ObservedPrefix) -> bool {
    !prefix.updating && prefix.cidr.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npn(nip: serde_json::Value) -> NodePoolNetwork {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "game"},
            "spec": {
                "nodePool": {"agentPoolId": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game"},
                "nodePublicIP": nip,
            },
        }))
        .unwrap()
    }

    fn tag(t: &str, v: &str) -> IpTag {
        IpTag {
            ip_tag_type: t.into(),
            tag: v.into(),
        }
    }

    #[test]
    fn managed_prefix_lives_in_the_pools_subscription() {
        let n = npn(serde_json::json!({
            "enabled": true,
            "prefix": {"managed": {"resourceGroup": "rg-ips", "name": "pipp-game", "location": "eastus", "prefixLength": 28}},
        }));
        let id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ips/providers/Microsoft.Network/publicIPPrefixes/pipp-game";
        assert_eq!(managed_prefix_id(&n).as_deref(), Some(id));
        assert_eq!(wanted_prefix_id(&n).as_deref(), Some(id));
        let adopted = npn(serde_json::json!({
            "enabled": true,
            "prefix": {"existingId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/publicIPPrefixes/z"},
        }));
        assert_eq!(managed_prefix_id(&adopted), None);
        assert!(wanted_prefix_id(&adopted).unwrap().ends_with("/z"));
    }

    #[test]
    fn ip_tags_are_sorted_and_judged() {
        let n = npn(serde_json::json!({
            "enabled": true,
            "ipTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}, {"ipTagType": "FirstPartyUsage", "tag": "/Sql"}],
        }));
        let want = spec_ip_tags(&n);
        assert_eq!(want[0].ip_tag_type, "FirstPartyUsage");
        let ready = ObservedPrefix {
            ip_tags: want.clone(),
            cidr: Some("203.0.113.0/28".into()),
            updating: false,
            addresses_in_use: 0,
        };
        assert_eq!(judge_adopted(&ready, &want), AdoptedPrefix::Ready);
        let other = ObservedPrefix {
            ip_tags: vec![tag("RoutingPreference", "Internet")],
            ..ready.clone()
        };
        assert!(matches!(
            judge_adopted(&other, &want),
            AdoptedPrefix::IpTagsMismatch { .. }
        ));
        // No tags in the spec accepts any prefix.
        assert_eq!(judge_adopted(&other, &[]), AdoptedPrefix::Ready);
        let unallocated = ObservedPrefix {
            cidr: None,
            ..ready.clone()
        };
        assert_eq!(judge_adopted(&unallocated, &want), AdoptedPrefix::NoRange);
        assert!(managed_is_ready(&ready));
        assert!(!managed_is_ready(&unallocated));
        assert!(!managed_is_ready(&ObservedPrefix {
            updating: true,
            ..ready
        }));
    }
}
