//! The agent pool: what poolnet wants of an AKS agent pool's network profile, compared with
//! what the pool has.
//!
//! AKS lets two network fields change on a live pool (`allowedHostPorts` and
//! `applicationSecurityGroups`): those poolnet writes. The node public IP fields
//! (`enableNodePublicIP`, `nodePublicIPPrefixID`, `nodePublicIPTags`) are set only when a pool
//! is created: a difference there is reported as "requires recreate", never written.

use poolnet_api::portspec::{self, HostPortSpec, PortSet};
use poolnet_api::v1alpha1::{AgentPoolOriginal, IpTag, NodePoolNetwork};
use poolnet_api::validation::allowed_host_ports;

use crate::desired::pool_asgs;
use crate::prefix::{spec_ip_tags, wanted_prefix_id};

/// An agent pool as poolnet reads it (converted from ARM's model at the edge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedPool {
    pub enable_node_public_ip: bool,
    pub node_public_ip_prefix_id: Option<String>,
    /// As the pool lists them (not sorted).
    pub node_public_ip_tags: Vec<IpTag>,
    /// Canonical host-port list ([`canonical_ports`]).
    pub allowed_host_ports: String,
    /// Sorted case-insensitively ([`sorted_ids`]).
    pub application_security_groups: Vec<String>,
    /// Size and machine (compared with `spec.nodePool.template`, and the shape of the
    /// `az aks nodepool add` command that would recreate the pool).
    pub shape: crate::new_pool::PoolShape,
}

/// What the pool should get, and what keeps it from matching the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolPlan {
    /// One sentence per creation-time field that differs from the spec.
    pub requires_recreate: Vec<String>,
    /// When `requires_recreate` is not empty: the `az aks nodepool add` command that creates
    /// the pool the spec describes.
    pub recreate_command: Option<String>,
    /// Canonical host-port list the spec allows.
    pub want_ports: String,
    /// The ASGs the pool's NICs should join now: those of the spec that exist.
    pub want_asgs: Vec<String>,
    /// ASGs of the spec that do not exist yet (the pool waits for them).
    pub missing_asgs: Vec<String>,
    /// Whether the writable fields differ from what is wanted now.
    pub drift: bool,
}

/// One canonical string for a set of host ports: merged, sorted, formatted as the API writes
/// them, so two lists that mean the same compare equal.
pub fn canonical_ports(specs: &[HostPortSpec]) -> String {
    portspec::format_list(&PortSet::from_specs(specs).to_specs())
}

/// ARM IDs sorted case-insensitively (ARM compares them so).
pub fn sorted_ids(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort_by_key(|s| s.to_ascii_lowercase());
    v
}

/// Whether two lists name the same ARM resources, in any order and letter case.
pub fn same_ids(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// Compare `npn`'s spec with the pool. `existing_asgs` are the ASGs the ASG part found (only
/// those can join the pool).
pub fn plan_agent_pool(
    npn: &NodePoolNetwork,
    pool: &ObservedPool,
    existing_asgs: &[String],
) -> PoolPlan {
    let want_ports = canonical_ports(&allowed_host_ports(&npn.spec));
    let wanted = pool_asgs(npn);
    let want_asgs: Vec<String> = wanted
        .iter()
        .filter(|w| existing_asgs.iter().any(|e| e.eq_ignore_ascii_case(w)))
        .cloned()
        .collect();
    let missing_asgs: Vec<String> = wanted
        .into_iter()
        .filter(|w| !want_asgs.iter().any(|e| e.eq_ignore_ascii_case(w)))
        .collect();
    let drift = pool.allowed_host_ports != want_ports
        || !same_ids(&pool.application_security_groups, &want_asgs);
    let requires_recreate = recreate_reasons(npn, pool);
    let recreate_command = if requires_recreate.is_empty() {
        None
    } else {
        // Shaped as the template says, else as the live pool is, so the new pool is like it.
        let shape = npn
            .spec
            .node_pool
            .template
            .as_ref()
            .map(crate::new_pool::PoolShape::from)
            .unwrap_or_else(|| pool.shape.clone());
        crate::new_pool::nodepool_add_command(npn, &npn.spec.node_pool.agent_pool_id, &shape)
    };
    PoolPlan {
        requires_recreate,
        recreate_command,
        want_ports,
        want_asgs,
        missing_asgs,
        drift,
    }
}

/// The creation-time fields of the pool that differ from the spec (its node public IP
/// settings, and the template's machine and placement when it has one).
pub fn recreate_reasons(npn: &NodePoolNetwork, pool: &ObservedPool) -> Vec<String> {
    let mut out = npn
        .spec
        .node_pool
        .template
        .as_ref()
        .map(|t| crate::new_pool::template_differences(t, &pool.shape))
        .unwrap_or_default();
    let Some(nip) = &npn.spec.node_public_ip else {
        return out;
    };
    if pool.enable_node_public_ip != nip.enabled {
        out.push(format!(
            "enableNodePublicIP is {} on the pool but {} in spec.nodePublicIP.enabled",
            pool.enable_node_public_ip, nip.enabled
        ));
    }
    if let Some(want) = wanted_prefix_id(npn)
        && !pool
            .node_public_ip_prefix_id
            .as_deref()
            .is_some_and(|have| have.eq_ignore_ascii_case(&want))
    {
        out.push(format!(
            "nodePublicIPPrefixID is {} on the pool but {want} in spec",
            pool.node_public_ip_prefix_id.as_deref().unwrap_or("unset")
        ));
    }
    let mut have_tags = pool.node_public_ip_tags.clone();
    have_tags.sort();
    let want_tags = spec_ip_tags(npn);
    if nip.ip_tags.is_some() && have_tags != want_tags {
        out.push(format!(
            "nodePublicIPTags are {have_tags:?} on the pool but {want_tags:?} in spec"
        ));
    }
    out
}

/// Whether restoring `original` (on deletion) needs a write.
pub fn differs_from_original(pool: &ObservedPool, original: &AgentPoolOriginal) -> bool {
    pool.allowed_host_ports != original.allowed_host_ports
        || !same_ids(
            &pool.application_security_groups,
            &original.application_security_groups,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";
    const ASG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/custom";

    fn npn(spec: serde_json::Value) -> NodePoolNetwork {
        let mut spec = spec;
        spec["nodePool"] = serde_json::json!({ "agentPoolId": POOL });
        serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "game"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn managed_asg() -> String {
        crate::desired::managed_asg_id(&npn(serde_json::json!({}))).unwrap()
    }

    #[test]
    fn ports_and_asgs_that_match_are_no_drift() {
        let n = npn(serde_json::json!({
            "allowedHostPorts": ["443/tcp,80/tcp", "53/udp"],
            "applicationSecurityGroups": {"customIds": [ASG]},
        }));
        let pool = ObservedPool {
            allowed_host_ports: "80/tcp,443/tcp,53/udp".into(),
            application_security_groups: sorted_ids(&[ASG.to_uppercase(), managed_asg()]),
            ..Default::default()
        };
        let plan = plan_agent_pool(&n, &pool, &[managed_asg(), ASG.into()]);
        assert_eq!(plan.want_ports, "80/tcp,443/tcp,53/udp");
        assert!(!plan.drift, "{plan:?}");
        assert!(plan.missing_asgs.is_empty());
        assert!(plan.requires_recreate.is_empty());
    }

    #[test]
    fn asgs_that_do_not_exist_yet_are_missing_not_wanted() {
        let n = npn(serde_json::json!({
            "allowedHostPorts": ["80/tcp"],
            "applicationSecurityGroups": {"customIds": [ASG]},
        }));
        let plan = plan_agent_pool(&n, &ObservedPool::default(), &[ASG.into()]);
        assert_eq!(plan.want_asgs, [ASG]);
        assert_eq!(plan.missing_asgs, [managed_asg()]);
        assert!(plan.drift);
    }

    #[test]
    fn creation_time_fields_are_reported_not_planned() {
        let n = npn(serde_json::json!({
            "nodePublicIP": {
                "enabled": true,
                "prefix": {"existingId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p"},
                "ipTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}],
            },
        }));
        let reasons = recreate_reasons(&n, &ObservedPool::default());
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("enableNodePublicIP is false on the pool but true"));
        assert!(reasons[1].contains("nodePublicIPPrefixID is unset on the pool"));
        assert!(reasons[2].starts_with("nodePublicIPTags are []"));
        let matching = ObservedPool {
            enable_node_public_ip: true,
            node_public_ip_prefix_id: Some(
                "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/publicIPPrefixes/P"
                    .into(),
            ),
            node_public_ip_tags: vec![IpTag {
                ip_tag_type: "RoutingPreference".into(),
                tag: "Internet".into(),
            }],
            ..Default::default()
        };
        assert!(recreate_reasons(&n, &matching).is_empty());
    }

    #[test]
    fn restore_compares_ports_and_ids_canonically() {
        let pool = ObservedPool {
            allowed_host_ports: "80/tcp".into(),
            application_security_groups: vec!["/A".into(), "/b".into()],
            ..Default::default()
        };
        let same = AgentPoolOriginal {
            allowed_host_ports: "80/tcp".into(),
            application_security_groups: vec!["/B".into(), "/a".into()],
        };
        assert!(!differs_from_original(&pool, &same));
        let other = AgentPoolOriginal {
            allowed_host_ports: String::new(),
            ..same
        };
        assert!(differs_from_original(&pool, &other));
    }

    proptest! {
        #[test]
        fn same_ids_ignores_order_and_case(ids in proptest::collection::vec("[a-zA-Z/]{1,12}", 0..6), seed in any::<u64>()) {
            let mut shuffled: Vec<String> = ids.iter().map(|s| s.to_ascii_uppercase()).collect();
            let n = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % n);
            prop_assert!(same_ids(&ids, &shuffled));
            prop_assert_eq!(sorted_ids(&ids).len(), ids.len());
            let mut longer = ids.clone();
            longer.push("extra".into());
            prop_assert!(!same_ids(&ids, &longer));
        }

        #[test]
        fn canonical_ports_is_order_independent(ports in proptest::collection::vec((1u16..65535, 0u16..100, any::<bool>()), 1..8)) {
            let specs: Vec<HostPortSpec> = ports
                .iter()
                .map(|&(start, len, udp)| HostPortSpec {
                    protocol: if udp { portspec::Protocol::Udp } else { portspec::Protocol::Tcp },
                    range: portspec::PortRange::new(start, start.saturating_add(len)).unwrap(),
                })
                .collect();
            let mut reversed = specs.clone();
            reversed.reverse();
            let a = canonical_ports(&specs);
            prop_assert_eq!(&a, &canonical_ports(&reversed));
            // Canonical form is a fixed point.
            let parsed = portspec::parse_list(&a).unwrap();
            prop_assert_eq!(&a, &canonical_ports(&parsed));
        }
    }
}
