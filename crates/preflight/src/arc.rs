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

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::finding::{CheckId, Finding};
use super::model::{ArcCluster, ArcPlan, LoadBalancerService, Protocol};
use super::net::Span;

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

/// Gateway, IP pool and DNS servers of the logical network.
pub fn check_logical_network(arc: &ArcPlan) -> Vec<Finding> {
    let lnet = &arc.logical_network;
    let Some(prefix) = lnet.address_prefix.net() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    let pool = pool_span(arc);
    let edges = [prefix.network(), prefix.broadcast()];

    if let Some(gw) = lnet.gateway.ip() {
        let field = format!("{LNET}.gateway");
        let problem = if !prefix.contains(&gw) {
            Some(format!(
                "gateway {gw} is outside the address prefix {prefix}"
            ))
        } else if edges.contains(&gw) {
            Some(format!(
                "{gw} is the network or broadcast address of {prefix}"
            ))
        } else if pool.is_some_and(|p| p.contains_addr(gw)) {
            Some(format!(
                "gateway {gw} is inside the IP pool, so a VM could be given it"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            findings.push(
                Finding::error(CheckId::ArcGateway, field, lnet.gateway.raw())
                    .problem(problem)
                    .expected(format!(
                        "a host address of {prefix} outside the IP pool{}",
                        pool.map(|p| format!(" {p}")).unwrap_or_default()
                    )),
            );
        }
    }

    let pool_field = format!("{LNET}.ipPool");
    let (start, end) = (lnet.ip_pool.start.ip(), lnet.ip_pool.end.ip());
    for (name, addr, raw) in [
        ("start", start, lnet.ip_pool.start.raw()),
        ("end", end, lnet.ip_pool.end.raw()),
    ] {
        if let Some(a) = addr
            && !prefix.contains(&a)
        {
            findings.push(
                Finding::error(CheckId::ArcIpPool, format!("{pool_field}.{name}"), raw)
                    .problem(format!(
                        "IP pool {name} {a} is outside the address prefix {prefix}"
                    ))
                    .expected(format!(
                        "an address from {} to {}",
                        Span::of_net(prefix).first(),
                        Span::of_net(prefix).last()
                    )),
            );
        }
    }
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            findings.push(
                Finding::error(CheckId::ArcIpPool, &pool_field, format!("{s}-{e}"))
                    .problem("the IP pool starts after it ends")
                    .expected(format!("start {e}, end {s}")),
            );
        } else if let Some(p) = pool
            && let Some(edge) = edges.iter().find(|a| p.contains_addr(**a))
        {
            findings.push(
                Finding::error(CheckId::ArcIpPool, &pool_field, p.to_string())
                    .problem(format!(
                        "the IP pool includes {edge}, the network or broadcast address of {prefix}"
                    ))
                    .expected("a pool of host addresses only"),
            );
        }
    }

    if let Some(p) = pool {
        for (i, dns) in lnet.dns_servers.iter().enumerate() {
            if let Some(ip) = dns.ip()
                && p.contains_addr(ip)
            {
                findings.push(
                    Finding::error(
                        CheckId::ArcIpPool,
                        format!("{LNET}.dnsServers[{i}]"),
                        dns.raw(),
                    )
                    .problem(format!(
                        "DNS server {ip} is inside the IP pool {p}, so a VM could be given it"
                    ))
                    .expected(format!("an address outside {p}")),
                );
            }
        }
    }
    findings
}

/// The IP pool holds one address per node VM plus one per cluster for rolling upgrades.
pub fn check_pool_capacity(arc: &ArcPlan, plan: &ArcAddressPlan) -> Vec<Finding> {
    let Some(pool) = pool_span(arc) else {
        return Vec::new();
    };
    if pool.size() >= plan.ip_pool_needed {
        return Vec::new();
    }
    vec![
        Finding::error(
            CheckId::ArcPoolCapacity,
            format!("{LNET}.ipPool"),
            pool.to_string(),
        )
        .problem(format!(
            "the IP pool has {} addresses but needs {} ({} node VMs + {} for rolling upgrades)",
            pool.size(),
            plan.ip_pool_needed,
            plan.node_vms,
            plan.rolling_upgrade
        ))
        .expected(format!(
            "a pool of at least {} addresses, e.g. {}-{}",
            plan.ip_pool_needed,
            pool.first(),
            Ipv4Addr::from(u32::from(pool.first()).saturating_add(
                u32::try_from(plan.ip_pool_needed.saturating_sub(1)).unwrap_or(u32::MAX)
            ))
        )),
    ]
}

/// An address set that other addresses must stay clear of.
struct Taken {
    span: Span,
    what: String,
}

/// Addresses already spoken for on the logical network and the management network.
fn fixed_addresses(arc: &ArcPlan) -> Vec<Taken> {
    let lnet = &arc.logical_network;
    let mut taken = Vec::new();
    if let Some(p) = pool_span(arc) {
        taken.push(Taken {
            span: p,
            what: format!("the IP pool {p} ({LNET}.ipPool)"),
        });
    }
    if let Some(prefix) = lnet.address_prefix.net() {
        taken.push(Taken {
            span: Span::single(prefix.network()),
            what: format!("the network address of {prefix}"),
        });
        taken.push(Taken {
            span: Span::single(prefix.broadcast()),
            what: format!("the broadcast address of {prefix}"),
        });
    }
    if let Some(gw) = lnet.gateway.ip() {
        taken.push(Taken {
            span: Span::single(gw),
            what: format!("the gateway ({LNET}.gateway)"),
        });
    }
    for (i, d) in lnet.dns_servers.iter().enumerate() {
        if let Some(ip) = d.ip() {
            taken.push(Taken {
                span: Span::single(ip),
                what: format!("a DNS server ({LNET}.dnsServers[{i}])"),
            });
        }
    }
    if let Some(m) = &arc.management_network
        && let Some(infra) = m.infrastructure_ips.as_ref().and_then(|r| r.span())
    {
        taken.push(Taken {
            span: infra,
            what: format!(
                "the management infrastructure IPs {infra} (arc.managementNetwork.infrastructureIps)"
            ),
        });
    }
    taken
}

/// First host address of `prefix` that none of `taken` covers.
fn first_free(prefix: Ipv4Net, taken: &[Span]) -> Option<Ipv4Addr> {
    let first = u32::from(prefix.network()).checked_add(1)?;
    let last = u32::from(prefix.broadcast()).checked_sub(1)?;
    let mut candidate = first;
    while candidate <= last {
        match taken
            .iter()
            .find(|t| t.contains_addr(Ipv4Addr::from(candidate)))
        {
            Some(t) => candidate = u32::from(t.last()).checked_add(1)?,
            None => return Some(Ipv4Addr::from(candidate)),
        }
    }
    None
}

fn cp_field(i: usize) -> String {
    format!("arc.clusters[{i}].controlPlaneIp")
}

/// Control-plane IPs: inside the prefix, outside the pool, clear of every fixed address and of
/// each other.
pub fn check_control_plane_ips(arc: &ArcPlan) -> Vec<Finding> {
    let Some(prefix) = arc.logical_network.address_prefix.net() else {
        return Vec::new();
    };
    let fixed = fixed_addresses(arc);
    let mut all_taken: Vec<Span> = fixed.iter().map(|t| t.span).collect();
    all_taken.extend(
        arc.clusters
            .iter()
            .filter_map(|c| c.control_plane_ip.ip().map(Span::single)),
    );
    all_taken.extend(
        arc.clusters
            .iter()
            .flat_map(|c| c.load_balancer_ips.iter().filter_map(|r| r.span())),
    );
    let suggestion = first_free(prefix, &all_taken)
        .map(|a| format!(", e.g. {a}"))
        .unwrap_or_default();
    let pool = pool_span(arc).map(|p| format!(" {p}")).unwrap_or_default();
    let expected = format!("an unused address of {prefix} outside the IP pool{pool}{suggestion}");

    let mut findings = Vec::new();
    for (i, c) in arc.clusters.iter().enumerate() {
        let Some(ip) = c.control_plane_ip.ip() else {
            continue;
        };
        let problem = if !prefix.contains(&ip) {
            Some(format!(
                "control-plane IP {ip} of cluster {} is outside the address prefix {prefix}",
                c.name
            ))
        } else if let Some(t) = fixed.iter().find(|t| t.span.contains_addr(ip)) {
            Some(format!(
                "control-plane IP {ip} of cluster {} collides with {}",
                c.name, t.what
            ))
        } else {
            arc.clusters[..i]
                .iter()
                .position(|o| o.control_plane_ip.ip() == Some(ip))
                .map(|j| {
                    format!(
                        "control-plane IP {ip} of cluster {} is also the control-plane IP of cluster {} ({})",
                        c.name,
                        arc.clusters[j].name,
                        cp_field(j)
                    )
                })
        };
        if let Some(problem) = problem {
            findings.push(
                Finding::error(
                    CheckId::ArcControlPlaneIp,
                    cp_field(i),
                    c.control_plane_ip.raw(),
                )
                .problem(problem)
                .expected(expected.clone()),
            );
        }
    }
    findings
}

/// Load-balancer IPs overlap nothing: not the pool, gateway, DNS servers, management
/// infrastructure IPs, any control-plane IP, nor each other.
pub fn check_load_balancer_ips(arc: &ArcPlan) -> Vec<Finding> {
    let fixed = fixed_addresses(arc);
    let mut findings = Vec::new();
    let mut seen: Vec<(Span, String)> = Vec::new();
    for (i, c) in arc.clusters.iter().enumerate() {
        for (j, entry) in c.load_balancer_ips.iter().enumerate() {
            let Some(span) = entry.span() else {
                continue;
            };
            let field = format!("arc.clusters[{i}].loadBalancerIps[{j}]");
            let mut clashes: Vec<String> = fixed
                .iter()
                .filter(|t| t.span.overlaps(&span))
                .map(|t| t.what.clone())
                .collect();
            clashes.extend(arc.clusters.iter().enumerate().filter_map(|(k, o)| {
                let ip = o.control_plane_ip.ip()?;
                span.contains_addr(ip).then(|| {
                    format!(
                        "the control-plane IP of cluster {} ({})",
                        o.name,
                        cp_field(k)
                    )
                })
            }));
            clashes.extend(
                seen.iter()
                    .filter(|(s, _)| s.overlaps(&span))
                    .map(|(s, f)| format!("load-balancer IPs {s} ({f})")),
            );
            if !clashes.is_empty() {
                findings.push(
                    Finding::error(CheckId::ArcLoadBalancerIp, &field, entry.raw())
                        .problem(format!(
                            "load-balancer IPs {span} of cluster {} overlap {}",
                            c.name,
                            clashes.join(", ")
                        ))
                        .expected(
                            "addresses used by nothing else: outside the IP pool, the gateway, DNS servers, control-plane IPs and other load-balancer IPs",
                        ),
                );
            }
            seen.push((span, field));
        }
    }
    findings
}

/// Each cluster supplies as many load-balancer IPs as its busiest port needs.
pub fn check_load_balancer_count(arc: &ArcPlan) -> Vec<Finding> {
    arc.clusters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let (needed, reason) = load_balancer_ips_needed(&c.load_balancer_services);
            let supplied: u64 = c
                .load_balancer_ips
                .iter()
                .filter_map(|r| r.span())
                .map(|s| s.size())
                .sum();
            (supplied < needed).then(|| {
                let listed: Vec<&str> = c.load_balancer_ips.iter().map(|r| r.raw()).collect();
                Finding::error(
                    CheckId::ArcLoadBalancerCount,
                    format!("arc.clusters[{i}].loadBalancerIps"),
                    format!("[{}]", listed.join(", ")),
                )
                .problem(format!(
                    "cluster {} has {supplied} load-balancer IPs but its services need {needed} ({reason})",
                    c.name
                ))
                .expected(format!("at least {needed} addresses"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ArcNodePool, IpPool, LogicalNetwork};
    use crate::net::{Address, AddressRange, Prefix};

    fn svc(name: &str, port: u16, instances: u32) -> LoadBalancerService {
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
    fn seed_004() -> ArcPlan {
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

    #[test]
    fn gateway_inside_prefix_and_outside_pool() {
        let mut arc = seed_004();
        arc.logical_network.gateway = Address::from("10.220.33.1");
        let f = check_logical_network(&arc);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, CheckId::ArcGateway);
        assert_eq!(f[0].field, "arc.logicalNetwork.gateway");
        arc.logical_network.gateway = Address::from("10.220.32.20");
        assert!(
            check_logical_network(&arc)[0]
                .problem
                .contains("inside the IP pool")
        );
    }

    #[test]
    fn pool_inside_prefix_and_in_order() {
        let mut arc = seed_004();
        arc.logical_network.ip_pool.end = Address::from("10.220.33.5");
        let f = check_logical_network(&arc);
        assert_eq!(f[0].field, "arc.logicalNetwork.ipPool.end");
        assert_eq!(f[0].value, "10.220.33.5");
        arc.logical_network.ip_pool.end = Address::from("10.220.32.2");
        assert!(
            check_logical_network(&arc)[0]
                .problem
                .contains("starts after it ends")
        );
        arc.logical_network.ip_pool.start = Address::from("10.220.32.0");
        arc.logical_network.ip_pool.end = Address::from("10.220.32.9");
        let f = check_logical_network(&arc);
        assert!(
            f.iter().any(
                |f| f.check == CheckId::ArcIpPool && f.problem.contains("network or broadcast")
            ),
            "{f:?}"
        );
    }

    #[test]
    fn dns_server_outside_pool() {
        let mut arc = seed_004();
        arc.logical_network.dns_servers = vec![Address::from("10.220.32.20")];
        let f = check_logical_network(&arc);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "arc.logicalNetwork.dnsServers[0]");
    }

    #[test]
    fn pool_must_hold_node_vms_and_upgrade_ips() {
        let mut arc = seed_004();
        arc.logical_network.ip_pool.end = Address::from("10.220.32.30");
        let f = check_pool_capacity(&arc, &address_plan(&arc));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].problem.contains("has 13 addresses but needs 14"),
            "{}",
            f[0]
        );
        assert!(
            f[0].expected.contains("10.220.32.18-10.220.32.31"),
            "{}",
            f[0]
        );
    }

    #[test]
    fn control_plane_ip_inside_prefix_outside_pool_and_unique() {
        let mut arc = seed_004();
        arc.clusters[0].control_plane_ip = Address::from("10.220.32.20");
        let f = check_control_plane_ips(&arc);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "arc.clusters[0].controlPlaneIp");
        assert!(f[0].problem.contains("IP pool"), "{}", f[0]);
        // .2 is the first address not used by gateway, DNS, pool or other clusters.
        assert!(f[0].expected.contains("e.g. 10.220.32.2"), "{}", f[0]);
        arc.clusters[0].control_plane_ip = Address::from("10.220.40.10");
        assert!(check_control_plane_ips(&arc)[0].problem.contains("outside"));
        arc.clusters[0].control_plane_ip = Address::from("10.220.32.11");
        let dup = check_control_plane_ips(&arc);
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].field, "arc.clusters[1].controlPlaneIp");
    }

    #[test]
    fn load_balancer_ips_overlap_nothing() {
        let mut arc = seed_004();
        arc.clusters[0].load_balancer_ips = vec![AddressRange::from("10.220.32.8-10.220.32.10")];
        let f = check_load_balancer_ips(&arc);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].problem
                .contains("control-plane IP of cluster cluster-a"),
            "{}",
            f[0]
        );
        arc.clusters[0].load_balancer_ips = vec![AddressRange::from("10.220.32.36-10.220.32.40")];
        assert!(check_load_balancer_ips(&arc)[0].problem.contains("IP pool"));
        arc.clusters[0].load_balancer_ips = vec![AddressRange::from("10.220.32.40-10.220.32.42")];
        arc.clusters[1].load_balancer_ips = vec![AddressRange::from("10.220.32.42")];
        let twice = check_load_balancer_ips(&arc);
        assert_eq!(twice.len(), 1);
        assert_eq!(twice[0].field, "arc.clusters[1].loadBalancerIps[0]");
        // Another network is allowed (seed 004's external load-balancing option).
        arc.clusters[1].load_balancer_ips = vec![AddressRange::from("192.168.50.0/29")];
        assert!(check_load_balancer_ips(&arc).is_empty());
    }

    #[test]
    fn load_balancer_ips_must_be_enough_for_the_busiest_port() {
        let mut arc = seed_004();
        arc.clusters[0].load_balancer_ips = vec![AddressRange::from("10.220.32.40-10.220.32.41")];
        let f = check_load_balancer_count(&arc);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "arc.clusters[0].loadBalancerIps");
        assert!(f[0].expected.contains("at least 3"));
    }
}
