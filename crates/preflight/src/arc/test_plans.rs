//! Arc plans the tests of this module share: seed 004's walk-through and its parts.

use crate::model::{
    ArcCluster, ArcNodePool, ArcPlan, IpPool, LoadBalancerService, LogicalNetwork, Protocol,
};
use crate::net::{Address, AddressRange, Prefix};

pub(super) fn svc(name: &str, port: u16, instances: u32) -> LoadBalancerService {
    LoadBalancerService {
        name: name.into(),
        port,
        protocol: Protocol::Tcp,
        instances,
    }
}

fn cluster(name: &str, cp: u32, workers: u32, cp_ip: &str) -> ArcCluster {
    ArcCluster {
        name: name.into(),
        control_plane_nodes: cp,
        node_pools: vec![ArcNodePool {
            name: "pool1".into(),
            node_count: workers,
        }],
        control_plane_ip: Address::from(cp_ip),
        load_balancer_ips: Vec::new(),
        load_balancer_services: Vec::new(),
    }
}

/// Seed 004's walk-through on a /24 with a 21-address pool.
pub(super) fn seed_004() -> ArcPlan {
    let mut a = cluster("cluster-a", 3, 5, "10.220.32.10");
    a.load_balancer_services = vec![svc("frontend", 443, 3), svc("backend", 80, 1)];
    a.load_balancer_ips = vec![AddressRange::from("10.220.32.40-10.220.32.42")];
    ArcPlan {
        logical_network: LogicalNetwork {
            name: "lnet".into(),
            address_prefix: Prefix::from("10.220.32.0/24"),
            gateway: Address::from("10.220.32.1"),
            dns_servers: vec![Address::from("10.220.32.16")],
            ip_pool: IpPool {
                start: Address::from("10.220.32.18"),
                end: Address::from("10.220.32.38"),
            },
            vlan: None,
        },
        management_network: None,
        clusters: vec![a, cluster("cluster-b", 1, 3, "10.220.32.11")],
        allow_rules: Vec::new(),
    }
}
