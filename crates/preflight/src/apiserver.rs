//! API server VNet integration (seed 002): the API server's subnet is delegated to
//! `Microsoft.ContainerService/managedClusters`, is at least a /28, keeps at least 9 addresses
//! free for every cluster projecting its API server into it (it scales out there), runs no
//! other workload (several AKS clusters may share it), and lies in the nodes' VNet.

use ipnet::Ipv4Net;

use super::finding::{CheckId, Finding};
use super::net::usable_addresses;

pub const API_SERVER_DELEGATION: &str = "Microsoft.ContainerService/managedClusters";
pub const API_SERVER_MAX_PREFIX_LEN: u8 = 28;
pub const API_SERVER_FREE_PER_CLUSTER: u64 = 9;

pub fn check_delegation(field: &str, delegations: &[String]) -> Vec<Finding> {
    if delegations
        .iter()
        .any(|d| d.trim().eq_ignore_ascii_case(API_SERVER_DELEGATION))
    {
        return Vec::new();
    }
    let value = if delegations.is_empty() {
        "none".to_owned()
    } else {
        delegations.join(", ")
    };
    vec![
        Finding::error(CheckId::ApiServerDelegation, field, value)
            .problem("the API server subnet is not delegated to AKS, so AKS cannot inject the API server into it")
            .expected(API_SERVER_DELEGATION),
    ]
}

pub fn check_size(field: &str, value: &str, prefix: Ipv4Net) -> Vec<Finding> {
    if prefix.prefix_len() <= API_SERVER_MAX_PREFIX_LEN {
        return Vec::new();
    }
    vec![
        Finding::error(CheckId::ApiServerSize, field, value)
            .problem(format!(
                "the smallest API server subnet AKS supports is /{API_SERVER_MAX_PREFIX_LEN}"
            ))
            .expected(format!(
                "/{API_SERVER_MAX_PREFIX_LEN} or shorter, e.g. {}",
                Ipv4Net::new(prefix.network(), API_SERVER_MAX_PREFIX_LEN)
                    .map(|n| n.trunc().to_string())
                    .unwrap_or_default()
            )),
    ]
}

/// `clusters` is how many clusters project their API server into the subnet.
pub fn check_free_addresses(
    field: &str,
    value: &str,
    prefix: Ipv4Net,
    used_addresses: u64,
    clusters: &[String],
) -> Vec<Finding> {
    let usable = usable_addresses(prefix);
    let free = usable.saturating_sub(used_addresses);
    let needed = API_SERVER_FREE_PER_CLUSTER * clusters.len() as u64;
    if free >= needed {
        return Vec::new();
    }
    vec![
        Finding::error(CheckId::ApiServerFreeAddresses, field, value)
            .problem(format!(
                "{free} of {usable} usable addresses are free but {} cluster(s) ({}) need {API_SERVER_FREE_PER_CLUSTER} each; running out stops the API server from scaling",
                clusters.len(),
                clusters.join(", ")
            ))
            .expected(format!(
                "at least {needed} free addresses: fewer used addresses or a larger subnet"
            )),
    ]
}

/// `other_workloads` are non-AKS things in the subnet; `node_pools_here` are clusters whose
/// nodes were placed in it.
pub fn check_dedicated(
    subnet_field: &str,
    other_workloads: &[String],
    node_pools_here: &[String],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !other_workloads.is_empty() {
        findings.push(
            Finding::error(
                CheckId::ApiServerDedicated,
                format!("{subnet_field}.otherWorkloads"),
                other_workloads.join(", "),
            )
            .problem("the API server subnet cannot host other workloads")
            .expected("no other workloads (several AKS clusters' API servers may share it)"),
        );
    }
    if !node_pools_here.is_empty() {
        findings.push(
            Finding::error(
                CheckId::ApiServerDedicated,
                subnet_field,
                format!("node subnet of {}", node_pools_here.join(", ")),
            )
            .problem("the API server subnet is also used as a node subnet")
            .expected("a separate subnet for the nodes"),
        );
    }
    findings
}

pub fn check_same_vnet(field: &str, value: &str, api_vnet: &str, node_vnet: &str) -> Vec<Finding> {
    if api_vnet == node_vnet {
        return Vec::new();
    }
    vec![
        Finding::error(CheckId::ApiServerVnet, field, value)
            .problem(format!(
                "the API server subnet is in VNet {api_vnet} but the cluster's nodes are in {node_vnet}"
            ))
            .expected(format!("a delegated subnet of VNet {node_vnet}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }

    #[test]
    fn delegation_is_required() {
        let ok = vec!["Microsoft.ContainerService/managedClusters".to_owned()];
        assert!(check_delegation("f", &ok).is_empty());
        let f = check_delegation("vnets[0].subnets[0].delegations", &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].value, "none");
        assert_eq!(f[0].expected, API_SERVER_DELEGATION);
        let wrong = vec!["Microsoft.Web/serverFarms".to_owned()];
        assert_eq!(
            check_delegation("f", &wrong)[0].value,
            "Microsoft.Web/serverFarms"
        );
    }

    #[test]
    fn seed_002_slash_28_is_the_minimum() {
        assert!(check_size("f", "172.19.0.0/28", net("172.19.0.0/28")).is_empty());
        assert!(check_size("f", "172.19.0.0/27", net("172.19.0.0/27")).is_empty());
        let f = check_size("f", "172.19.0.0/29", net("172.19.0.0/29"));
        assert_eq!(f.len(), 1);
        assert!(f[0].expected.contains("172.19.0.0/28"));
    }

    #[test]
    fn nine_free_addresses_per_cluster() {
        let one = vec!["a".to_owned()];
        let two = vec!["a".to_owned(), "b".to_owned()];
        // A /28 has 11 usable addresses.
        assert!(check_free_addresses("f", "v", net("172.19.0.0/28"), 2, &one).is_empty());
        assert_eq!(
            check_free_addresses("f", "v", net("172.19.0.0/28"), 3, &one).len(),
            1
        );
        let f = check_free_addresses("f", "v", net("172.19.0.0/28"), 0, &two);
        assert_eq!(f.len(), 1);
        assert!(f[0].expected.contains("18"), "{}", f[0]);
        assert!(check_free_addresses("f", "v", net("172.19.0.0/27"), 0, &two).is_empty());
    }

    #[test]
    fn subnet_runs_only_api_servers() {
        assert!(check_dedicated("s", &[], &[]).is_empty());
        let vm = check_dedicated("vnets[0].subnets[0]", &["jumpbox".to_owned()], &[]);
        assert_eq!(vm[0].field, "vnets[0].subnets[0].otherWorkloads");
        assert_eq!(vm[0].value, "jumpbox");
        assert_eq!(check_dedicated("s", &[], &["prod".to_owned()]).len(), 1);
    }

    #[test]
    fn api_server_subnet_in_node_vnet() {
        assert!(check_same_vnet("f", "v", "vnet", "vnet").is_empty());
        assert_eq!(check_same_vnet("f", "v", "other", "vnet").len(), 1);
    }
}
