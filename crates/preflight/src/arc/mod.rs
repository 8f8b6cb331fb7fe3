//! AKS Arc static IP planning on one logical network (seed 004).
//!
//! What a plan must reserve:
//! - one IP-pool address per node VM, control-plane nodes included;
//! - one more IP-pool address per cluster, for the extra VM of a rolling upgrade;
//! - one control-plane IP per cluster (the KubeVIP address, not one per control-plane node),
//!   inside the address prefix but outside the IP pool, since the pool is handed to VMs;
//! - load-balancer IPs: services on the same port need distinct IPs, services on different
//!   ports can share one, so a cluster needs as many as its busiest port has instances.
//!
//! Seed 004's walk-through (cluster A: 3 control-plane + 5 workers; B: 1 + 3; three front-end
//! instances on 443 and one back-end on 80) comes to 12 + 2 + 2 + 3 = 19 addresses, 14 of them
//! in the IP pool.
//!
//! This module counts what the plan needs (`address_plan`); `logical_network` checks the
//! network and its IP pool, `static_ips` the control-plane and load-balancer IPs.

mod logical_network;
mod static_ips;
#[cfg(test)]
mod test_plans;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{ArcCluster, ArcPlan, LoadBalancerService, Protocol};
use crate::net::Span;

pub use logical_network::{check_logical_network, check_pool_capacity};
pub use static_ips::{check_control_plane_ips, check_load_balancer_count, check_load_balancer_ips};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ArcNeed {
    NodeVms,
    RollingUpgrade,
    ControlPlane,
    LoadBalancer,
}

impl ArcNeed {
    pub const fn label(self) -> &'static str {
        match self {
            ArcNeed::NodeVms => "node VMs",
            ArcNeed::RollingUpgrade => "rolling upgrade",
            ArcNeed::ControlPlane => "control plane",
            ArcNeed::LoadBalancer => "load balancer",
        }
    }

    pub const fn location(self) -> &'static str {
        match self {
            ArcNeed::NodeVms | ArcNeed::RollingUpgrade => "IP pool",
            ArcNeed::ControlPlane => "prefix, outside IP pool",
            ArcNeed::LoadBalancer => "outside IP pool (same or other network)",
        }
    }
}

/// One line of the address breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArcRequirement {
    pub need: ArcNeed,
    pub cluster: String,
    pub addresses: u64,
    pub reason: String,
}

/// Addresses an Arc plan needs, by kind, with the per-cluster breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArcAddressPlan {
    pub logical_network: String,
    pub node_vms: u64,
    pub rolling_upgrade: u64,
    pub control_plane: u64,
    pub load_balancer: u64,
    pub total: u64,
    /// Addresses the IP pool must hold: node VMs + rolling upgrade.
    pub ip_pool_needed: u64,
    /// Addresses the IP pool holds, when its bounds parse.
    pub ip_pool_size: Option<u64>,
    pub requirements: Vec<ArcRequirement>,
}

/// Load-balancer IPs a cluster's services need and the reasoning, busiest port first.
pub fn load_balancer_ips_needed(services: &[LoadBalancerService]) -> (u64, String) {
    let mut by_port: BTreeMap<(Protocol, u16), (u64, Vec<&str>)> = BTreeMap::new();
    for s in services {
        let e = by_port.entry((s.protocol, s.port)).or_default();
        e.0 += u64::from(s.instances);
        e.1.push(&s.name);
    }
    let mut ports: Vec<_> = by_port.into_iter().collect();
    ports.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
    let needed = ports.first().map(|p| p.1.0).unwrap_or(0);
    let parts: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, ((proto, port), (n, names)))| {
            let who = names.join(", ");
            if i == 0 {
                format!("{port}/{}: {n} ({who})", proto.as_str())
            } else {
                format!("{port}/{}: {n} ({who}) shares them", proto.as_str())
            }
        })
        .collect();
    (needed, parts.join("; "))
}

fn node_reason(c: &ArcCluster) -> String {
    format!(
        "{} control-plane + {} worker nodes",
        c.control_plane_nodes,
        c.worker_nodes()
    )
}

pub fn address_plan(arc: &ArcPlan) -> ArcAddressPlan {
    let mut requirements = Vec::new();
    for c in &arc.clusters {
        requirements.push(ArcRequirement {
            need: ArcNeed::NodeVms,
            cluster: c.name.clone(),
            addresses: u64::from(c.control_plane_nodes) + c.worker_nodes(),
            reason: node_reason(c),
        });
    }
    for c in &arc.clusters {
        requirements.push(ArcRequirement {
            need: ArcNeed::RollingUpgrade,
            cluster: c.name.clone(),
            addresses: 1,
            reason: "one extra VM while a rolling upgrade runs".to_owned(),
        });
    }
    for c in &arc.clusters {
        requirements.push(ArcRequirement {
            need: ArcNeed::ControlPlane,
            cluster: c.name.clone(),
            addresses: 1,
            reason: "KubeVIP address of the API server".to_owned(),
        });
    }
    for c in &arc.clusters {
        let (n, reason) = load_balancer_ips_needed(&c.load_balancer_services);
        if n > 0 {
            requirements.push(ArcRequirement {
                need: ArcNeed::LoadBalancer,
                cluster: c.name.clone(),
                addresses: n,
                reason,
            });
        }
    }
    let sum = |need: ArcNeed| -> u64 {
        requirements
            .iter()
            .filter(|r| r.need == need)
            .map(|r| r.addresses)
            .sum()
    };
    let (node_vms, rolling_upgrade, control_plane, load_balancer) = (
        sum(ArcNeed::NodeVms),
        sum(ArcNeed::RollingUpgrade),
        sum(ArcNeed::ControlPlane),
        sum(ArcNeed::LoadBalancer),
    );
    ArcAddressPlan {
        logical_network: arc.logical_network.name.clone(),
        node_vms,
        rolling_upgrade,
        control_plane,
        load_balancer,
        total: node_vms + rolling_upgrade + control_plane + load_balancer,
        ip_pool_needed: node_vms + rolling_upgrade,
        ip_pool_size: pool_span(arc).map(|s| s.size()),
        requirements,
    }
}

fn pool_span(arc: &ArcPlan) -> Option<Span> {
    let pool = &arc.logical_network.ip_pool;
    Span::new(pool.start.ip()?, pool.end.ip()?)
}

const LNET: &str = "arc.logicalNetwork";

#[cfg(test)]
mod tests {
    use super::test_plans::{seed_004, svc};
    use super::*;
    use crate::finding::Finding;

    fn all_checks(arc: &ArcPlan) -> Vec<Finding> {
        let plan = address_plan(arc);
        let mut f = check_logical_network(arc);
        f.extend(check_pool_capacity(arc, &plan));
        f.extend(check_control_plane_ips(arc));
        f.extend(check_load_balancer_ips(arc));
        f.extend(check_load_balancer_count(arc));
        f
    }

    #[test]
    fn seed_004_needs_19_addresses() {
        let plan = address_plan(&seed_004());
        assert_eq!(plan.node_vms, 12);
        assert_eq!(plan.rolling_upgrade, 2);
        assert_eq!(plan.control_plane, 2);
        assert_eq!(plan.load_balancer, 3);
        assert_eq!(plan.total, 19);
        assert_eq!(plan.ip_pool_needed, 14);
        assert_eq!(plan.ip_pool_size, Some(21));
        let a_nodes = &plan.requirements[0];
        assert_eq!(
            (a_nodes.cluster.as_str(), a_nodes.addresses),
            ("cluster-a", 8)
        );
        assert_eq!(plan.requirements[1].addresses, 4);
        assert!(
            all_checks(&seed_004()).is_empty(),
            "{:?}",
            all_checks(&seed_004())
        );
    }

    #[test]
    fn services_on_different_ports_share_ips() {
        let (n, why) = load_balancer_ips_needed(&[svc("frontend", 443, 3), svc("backend", 80, 1)]);
        assert_eq!(n, 3);
        assert!(why.starts_with("443/tcp: 3 (frontend)"), "{why}");
        assert!(why.contains("80/tcp: 1 (backend) shares them"), "{why}");
        // Two services on the same port cannot share.
        assert_eq!(
            load_balancer_ips_needed(&[svc("a", 443, 2), svc("b", 443, 1)]).0,
            3
        );
        let udp = LoadBalancerService {
            protocol: Protocol::Udp,
            ..svc("dns", 443, 2)
        };
        assert_eq!(load_balancer_ips_needed(&[svc("a", 443, 2), udp]).0, 2);
        assert_eq!(load_balancer_ips_needed(&[]).0, 0);
    }
}
