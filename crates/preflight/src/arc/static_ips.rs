//! Static IPs an Arc plan hands out by hand: the control-plane IP of each cluster and its
//! load-balancer IPs, checked against the pool, the fixed addresses and each other.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::finding::{CheckId, Finding};
use crate::model::ArcPlan;
use crate::net::Span;

use super::{LNET, load_balancer_ips_needed, pool_span};

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
    use crate::arc::test_plans::seed_004;
    use crate::net::{Address, AddressRange};

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
