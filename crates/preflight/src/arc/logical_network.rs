//! The logical network of an Arc plan: gateway, IP pool and DNS servers, and whether the
//! pool holds every node VM.

use std::net::Ipv4Addr;

use crate::finding::{CheckId, Finding};
use crate::model::ArcPlan;
use crate::net::Span;

use super::{ArcAddressPlan, LNET, pool_span};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arc::address_plan;
    use crate::arc::test_plans::seed_004;
    use crate::net::Address;

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
}
