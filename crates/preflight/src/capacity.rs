//! Subnet capacity under kubenet and Azure CNI (seed 001).
//!
//! kubenet gives each node one subnet address and puts pods in a separate pod CIDR (a /24 per
//! node), so a /24 subnet holds 256 - 5 = 251 nodes and 251 x 110 = 27,610 pods. Azure CNI
//! reserves an address for every pod a node may run, so a node costs 1 + maxPods addresses:
//! with 30 pods, floor(251 / 31) = 8 nodes and 8 x 30 = 240 pods. Upgrades add surge nodes
//! that need the same room, which is why a plan must leave it free.

use ipnet::Ipv4Net;
use serde::Serialize;

use super::finding::{CheckId, Finding};
use super::model::NetworkPlugin;
use super::net::{address_count, smallest_prefix_len_for, usable_addresses};

pub const KUBENET_DEFAULT_MAX_PODS: u32 = 110;
/// kubenet cannot go above 110 pods per node on AKS.
pub const KUBENET_MAX_PODS_LIMIT: u32 = 110;
pub const AZURE_CNI_DEFAULT_MAX_PODS: u32 = 30;
pub const AZURE_CNI_MAX_PODS_LIMIT: u32 = 250;
pub const MIN_MAX_PODS: u32 = 10;
/// kubenet hands each node a /24 of the pod CIDR.
pub const KUBENET_NODE_POD_PREFIX_LEN: u8 = 24;

pub const fn default_max_pods(plugin: NetworkPlugin) -> u32 {
    match plugin {
        NetworkPlugin::Kubenet => KUBENET_DEFAULT_MAX_PODS,
        NetworkPlugin::Azure => AZURE_CNI_DEFAULT_MAX_PODS,
    }
}

/// Subnet addresses one node consumes.
pub fn addresses_per_node(plugin: NetworkPlugin, max_pods: u32) -> u64 {
    match plugin {
        NetworkPlugin::Kubenet => 1,
        NetworkPlugin::Azure => 1 + u64::from(max_pods),
    }
}

/// What one network model gets out of one subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCapacity {
    pub plugin: NetworkPlugin,
    pub max_pods_per_node: u32,
    pub addresses_per_node: u64,
    /// Nodes the subnet holds, with nothing kept back (the figure Azure's docs quote).
    pub max_nodes: u64,
    pub max_pods: u64,
    /// Nodes that can run while `surge` more still fit for an upgrade.
    pub max_nodes_with_surge: u64,
}

pub fn model_capacity(
    prefix: Ipv4Net,
    plugin: NetworkPlugin,
    max_pods: u32,
    surge: u32,
) -> ModelCapacity {
    let per_node = addresses_per_node(plugin, max_pods);
    let max_nodes = usable_addresses(prefix) / per_node;
    ModelCapacity {
        plugin,
        max_pods_per_node: max_pods,
        addresses_per_node: per_node,
        max_nodes,
        max_pods: max_nodes * u64::from(max_pods),
        max_nodes_with_surge: max_nodes.saturating_sub(u64::from(surge)),
    }
}

/// A cluster's node subnet seen under both network models, for the comparison table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetCapacity {
    pub cluster: String,
    pub subnet: String,
    pub prefix: String,
    pub usable_addresses: u64,
    pub plugin: NetworkPlugin,
    pub planned_nodes: u32,
    pub surge: u32,
    pub kubenet: ModelCapacity,
    pub azure_cni: ModelCapacity,
}

impl SubnetCapacity {
    /// `max_pods` applies to the cluster's own plugin; the other model is shown at its default.
    pub fn new(
        cluster: &str,
        subnet: &str,
        prefix: Ipv4Net,
        plugin: NetworkPlugin,
        max_pods: u32,
        planned_nodes: u32,
        surge: u32,
    ) -> SubnetCapacity {
        let pods_for = |p: NetworkPlugin| {
            if p == plugin {
                max_pods
            } else {
                default_max_pods(p)
            }
        };
        SubnetCapacity {
            cluster: cluster.to_owned(),
            subnet: subnet.to_owned(),
            prefix: prefix.to_string(),
            usable_addresses: usable_addresses(prefix),
            plugin,
            planned_nodes,
            surge,
            kubenet: model_capacity(
                prefix,
                NetworkPlugin::Kubenet,
                pods_for(NetworkPlugin::Kubenet),
                surge,
            ),
            azure_cni: model_capacity(
                prefix,
                NetworkPlugin::Azure,
                pods_for(NetworkPlugin::Azure),
                surge,
            ),
        }
    }

    pub fn planned_model(&self) -> &ModelCapacity {
        match self.plugin {
            NetworkPlugin::Kubenet => &self.kubenet,
            NetworkPlugin::Azure => &self.azure_cni,
        }
    }
}

pub fn check_max_pods(field: &str, plugin: NetworkPlugin, max_pods: u32) -> Vec<Finding> {
    let upper = match plugin {
        NetworkPlugin::Kubenet => KUBENET_MAX_PODS_LIMIT,
        NetworkPlugin::Azure => AZURE_CNI_MAX_PODS_LIMIT,
    };
    if (MIN_MAX_PODS..=upper).contains(&max_pods) {
        return Vec::new();
    }
    vec![
        Finding::error(CheckId::CapacityMaxPods, field, max_pods.to_string())
            .problem(format!(
                "{} supports {MIN_MAX_PODS} to {upper} pods per node",
                plugin.label()
            ))
            .expected(format!(
                "{MIN_MAX_PODS}..={upper} (default {})",
                default_max_pods(plugin)
            )),
    ]
}

/// Nodes one cluster places in a subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDemand {
    /// Field holding the node count, e.g. `clusters[0].nodeCount`.
    pub field: String,
    pub cluster: String,
    pub nodes: u32,
    pub surge: u32,
    pub addresses_per_node: u64,
}

impl NodeDemand {
    pub fn addresses(&self) -> u64 {
        (u64::from(self.nodes) + u64::from(self.surge)) * self.addresses_per_node
    }
}

/// Does the subnet hold every cluster's nodes, their surge and the addresses already used?
/// One cluster: the finding points at its node count. Several: at the subnet prefix, as no
/// single count is to blame.
pub fn check_subnet_capacity(
    subnet_field: &str,
    prefix: Ipv4Net,
    used_addresses: u64,
    demands: &[NodeDemand],
) -> Vec<Finding> {
    let usable = usable_addresses(prefix);
    let needed: u64 = demands.iter().map(NodeDemand::addresses).sum::<u64>() + used_addresses;
    if needed <= usable {
        return Vec::new();
    }
    let bigger = smallest_prefix_len_for(needed + super::net::AZURE_RESERVED_PER_SUBNET)
        .map(|len| format!("a /{len} or larger subnet"))
        .unwrap_or_else(|| "a larger subnet".to_owned());
    let other_use = if used_addresses > 0 {
        format!(" and {used_addresses} addresses already in use")
    } else {
        String::new()
    };
    if let [only] = demands {
        let room_for = (usable.saturating_sub(used_addresses) / only.addresses_per_node)
            .saturating_sub(u64::from(only.surge));
        let per_node = if only.addresses_per_node == 1 {
            "1 address per node".to_owned()
        } else {
            format!(
                "{} addresses per node (the node and its pods)",
                only.addresses_per_node
            )
        };
        return vec![
            Finding::error(CheckId::CapacitySubnet, &only.field, only.nodes.to_string())
                .problem(format!(
                    "cluster {} needs {needed} addresses ({} nodes + {} surge at {per_node}{other_use}) but {prefix} has {usable} usable",
                    only.cluster, only.nodes, only.surge
                ))
                .expected(format!(
                    "at most {room_for} nodes on {prefix} with surge {}, or {bigger}",
                    only.surge
                )),
        ];
    }
    let clusters: Vec<String> = demands
        .iter()
        .map(|d| format!("{} {}", d.cluster, d.addresses()))
        .collect();
    vec![
        Finding::error(CheckId::CapacitySubnet, subnet_field, prefix.to_string())
            .problem(format!(
                "clusters need {needed} addresses ({}{other_use}) but the subnet has {usable} usable",
                clusters.join(", ")
            ))
            .expected(bigger),
    ]
}

/// kubenet carves a /24 per node (surge nodes included) out of the pod CIDR.
pub fn check_pod_cidr_capacity(
    field: &str,
    value: &str,
    pod_cidr: Ipv4Net,
    nodes: u32,
    surge: u32,
) -> Vec<Finding> {
    let blocks = if pod_cidr.prefix_len() > KUBENET_NODE_POD_PREFIX_LEN {
        0
    } else {
        address_count(pod_cidr) >> (32 - u32::from(KUBENET_NODE_POD_PREFIX_LEN))
    };
    let needed = u64::from(nodes) + u64::from(surge);
    if needed <= blocks {
        return Vec::new();
    }
    let len = smallest_prefix_len_for(needed << (32 - u32::from(KUBENET_NODE_POD_PREFIX_LEN)))
        .map(|l| format!("a /{l} or larger pod CIDR"))
        .unwrap_or_else(|| "a larger pod CIDR".to_owned());
    vec![
        Finding::error(CheckId::CapacityPodCidr, field, value)
            .problem(format!(
                "kubenet gives each node a /24 of the pod CIDR: {pod_cidr} has {blocks} for {nodes} nodes + {surge} surge"
            ))
            .expected(len),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }

    #[test]
    fn seed_001_slash_24_under_kubenet_and_azure_cni() {
        let c = SubnetCapacity::new(
            "myAKSCluster",
            "myAKSVnet/myAKSSubnet",
            net("192.168.1.0/24"),
            NetworkPlugin::Kubenet,
            110,
            3,
            1,
        );
        assert_eq!(c.usable_addresses, 251);
        assert_eq!(c.kubenet.max_nodes, 251);
        assert_eq!(c.kubenet.max_pods, 27_610);
        assert_eq!(c.kubenet.max_nodes_with_surge, 250);
        assert_eq!(c.azure_cni.addresses_per_node, 31);
        assert_eq!(c.azure_cni.max_nodes, 8);
        assert_eq!(c.azure_cni.max_pods, 240);
        assert_eq!(c.azure_cni.max_nodes_with_surge, 7);
    }

    #[test]
    fn seed_001_slash_27_runs_20_to_25_nodes_with_room_to_grow() {
        let k = model_capacity(net("10.0.0.0/27"), NetworkPlugin::Kubenet, 110, 1);
        assert_eq!(k.max_nodes, 27);
        assert!(k.max_nodes_with_surge >= 25);
        assert!((2_200..=2_970).contains(&k.max_pods));
    }

    #[test]
    fn max_pods_limits_per_plugin() {
        assert!(check_max_pods("f", NetworkPlugin::Kubenet, 110).is_empty());
        assert!(check_max_pods("f", NetworkPlugin::Azure, 250).is_empty());
        let too_many = check_max_pods("clusters[0].maxPods", NetworkPlugin::Kubenet, 111);
        assert_eq!(too_many.len(), 1);
        assert_eq!(too_many[0].field, "clusters[0].maxPods");
        assert_eq!(too_many[0].value, "111");
        assert!(too_many[0].expected.contains("10..=110"));
        assert_eq!(check_max_pods("f", NetworkPlugin::Azure, 5).len(), 1);
    }

    fn demand(nodes: u32, surge: u32, per_node: u64) -> NodeDemand {
        NodeDemand {
            field: "clusters[0].nodeCount".into(),
            cluster: "c".into(),
            nodes,
            surge,
            addresses_per_node: per_node,
        }
    }

    #[test]
    fn subnet_capacity_keeps_room_for_surge() {
        let s = net("192.168.1.0/24");
        assert!(check_subnet_capacity("s", s, 0, &[demand(250, 1, 1)]).is_empty());
        let full = check_subnet_capacity("s", s, 0, &[demand(251, 1, 1)]);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].check, CheckId::CapacitySubnet);
        assert_eq!(full[0].field, "clusters[0].nodeCount");
        assert_eq!(full[0].value, "251");
        assert!(
            full[0].expected.contains("at most 250 nodes"),
            "{}",
            full[0]
        );
        assert!(full[0].expected.contains("/23"), "{}", full[0]);
    }

    #[test]
    fn azure_cni_subnet_capacity_counts_pod_addresses() {
        let s = net("192.168.1.0/24");
        assert!(check_subnet_capacity("s", s, 0, &[demand(7, 1, 31)]).is_empty());
        let full = check_subnet_capacity("s", s, 0, &[demand(8, 1, 31)]);
        assert_eq!(full.len(), 1);
        assert!(full[0].expected.contains("at most 7 nodes"), "{}", full[0]);
    }

    #[test]
    fn shared_subnet_capacity_blames_the_prefix() {
        let s = net("10.1.0.0/26");
        let mut b = demand(1, 1, 31);
        b.cluster = "b".into();
        let f = check_subnet_capacity(
            "vnets[0].subnets[0].addressPrefix",
            s,
            0,
            &[demand(1, 1, 31), b],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "vnets[0].subnets[0].addressPrefix");
        assert!(check_subnet_capacity("s", net("10.1.0.0/25"), 0, &[demand(1, 1, 31)]).is_empty());
    }

    #[test]
    fn used_addresses_count_against_the_subnet() {
        let s = net("10.0.0.0/28");
        assert!(check_subnet_capacity("s", s, 0, &[demand(10, 1, 1)]).is_empty());
        assert_eq!(
            check_subnet_capacity("s", s, 1, &[demand(10, 1, 1)]).len(),
            1
        );
    }

    #[test]
    fn kubenet_pod_cidr_needs_a_slash_24_per_node() {
        let p = net("10.244.0.0/16");
        assert!(check_pod_cidr_capacity("f", "v", p, 255, 1).is_empty());
        let f = check_pod_cidr_capacity("clusters[0].podCidr", "10.244.0.0/16", p, 256, 1);
        assert_eq!(f.len(), 1);
        assert!(f[0].expected.contains("/15"), "{}", f[0]);
        assert_eq!(
            check_pod_cidr_capacity("f", "v", net("10.244.0.0/25"), 1, 0).len(),
            1
        );
    }

    proptest! {
        #[test]
        fn kubenet_nodes_equal_usable_addresses(len in 8u8..=29) {
            let p = Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), len).expect("len").trunc();
            let k = model_capacity(p, NetworkPlugin::Kubenet, 110, 1);
            prop_assert_eq!(k.max_nodes, (1u64 << (32 - u32::from(len))) - 5);
            prop_assert_eq!(k.max_pods, k.max_nodes * 110);
        }

        #[test]
        fn cni_nodes_and_their_pods_fit_the_subnet(len in 8u8..=29, pods in 10u32..=250) {
            let p = Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), len).expect("len").trunc();
            let c = model_capacity(p, NetworkPlugin::Azure, pods, 1);
            let usable = usable_addresses(p);
            let per = u64::from(pods) + 1;
            prop_assert!(c.max_nodes * per <= usable);
            prop_assert!((c.max_nodes + 1) * per > usable);
            prop_assert_eq!(c.max_pods, c.max_nodes * u64::from(pods));
        }

        #[test]
        fn a_plan_at_the_surge_limit_fits_and_one_more_does_not(len in 16u8..=29, surge in 0u32..4) {
            let p = Ipv4Net::new(std::net::Ipv4Addr::new(10, 0, 0, 0), len).expect("len").trunc();
            let k = model_capacity(p, NetworkPlugin::Kubenet, 110, surge);
            prop_assume!(k.max_nodes_with_surge > 0);
            let nodes = u32::try_from(k.max_nodes_with_surge).expect("fits u32");
            prop_assert!(check_subnet_capacity("s", p, 0, &[demand(nodes, surge, 1)]).is_empty());
            prop_assert_eq!(check_subnet_capacity("s", p, 0, &[demand(nodes + 1, surge, 1)]).len(), 1);
        }
    }
}
