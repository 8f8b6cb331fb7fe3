//! The `plan.address` check: every address, prefix, range and port in a plan parses, and
//! Azure prefixes are aligned. Values that fail here are skipped by the other checks.

use super::finding::{CheckId, Finding};
use super::model::NetworkPlan;
use super::net::{Address, AddressRange, PortRange, Prefix, PrefixProblem};

/// How to treat a prefix with host bits set: Azure ARM rejects it, while Azure Stack HCI
/// logical networks are documented with such prefixes and use the network they fall in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    Required,
    Tolerated,
}

pub fn check_prefix(field: &str, prefix: &Prefix, alignment: Alignment) -> Option<Finding> {
    let raw = prefix.raw();
    match prefix.problem()? {
        PrefixProblem::Syntax => Some(
            Finding::error(CheckId::PlanAddress, field, raw)
                .problem("not an IPv4 CIDR prefix")
                .expected("a prefix such as 10.0.0.0/16"),
        ),
        PrefixProblem::Ipv6 => Some(
            Finding::error(CheckId::PlanAddress, field, raw)
                .problem("an IPv6 prefix; preflight plans cover IPv4 only")
                .expected("an IPv4 prefix such as 10.0.0.0/16"),
        ),
        PrefixProblem::HostBitsSet { network } => {
            let f = match alignment {
                Alignment::Required => Finding::error(CheckId::PlanAddress, field, raw).problem(
                    "host bits are set; Azure accepts only the network address of a prefix",
                ),
                Alignment::Tolerated => Finding::warning(CheckId::PlanAddress, field, raw)
                    .problem(format!("host bits are set; the network used is {network}")),
            };
            Some(f.expected(network.to_string()))
        }
    }
}

pub fn check_address(field: &str, address: &Address) -> Option<Finding> {
    address.ip().is_none().then(|| {
        Finding::error(CheckId::PlanAddress, field, address.raw())
            .problem("not an IPv4 address")
            .expected("an address such as 10.0.0.10")
    })
}

pub fn check_range(field: &str, range: &AddressRange) -> Option<Finding> {
    range.span().is_none().then(|| {
        Finding::error(CheckId::PlanAddress, field, range.raw())
            .problem("not an IPv4 address, prefix or range")
            .expected("10.0.0.5, 10.0.0.0/28, 10.0.0.5-10.0.0.9 or *")
    })
}

pub fn check_port(field: &str, port: &PortRange) -> Option<Finding> {
    port.bounds().is_none().then(|| {
        Finding::error(CheckId::PlanAddress, field, port.raw())
            .problem("not a port or port range")
            .expected("a port 0-65535, a range such as 40000-60000, or *")
    })
}

/// Walk every address field of the plan.
pub fn check_plan_addresses(plan: &NetworkPlan) -> Vec<Finding> {
    let mut out: Vec<Option<Finding>> = Vec::new();
    let strict = Alignment::Required;
    for (v, vnet) in plan.vnets.iter().enumerate() {
        for (a, p) in vnet.address_space.iter().enumerate() {
            out.push(check_prefix(
                &format!("vnets[{v}].addressSpace[{a}]"),
                p,
                strict,
            ));
        }
        for (s, subnet) in vnet.subnets.iter().enumerate() {
            out.push(check_prefix(
                &format!("vnets[{v}].subnets[{s}].addressPrefix"),
                &subnet.address_prefix,
                strict,
            ));
        }
    }
    for (t, table) in plan.route_tables.iter().enumerate() {
        for (r, route) in table.routes.iter().enumerate() {
            let base = format!("routeTables[{t}].routes[{r}]");
            out.push(check_prefix(
                &format!("{base}.addressPrefix"),
                &route.address_prefix,
                strict,
            ));
            if let Some(ip) = &route.next_hop_ip_address {
                out.push(check_address(&format!("{base}.nextHopIpAddress"), ip));
            }
        }
    }
    for (o, range) in plan.on_premises.iter().enumerate() {
        out.push(check_prefix(
            &format!("onPremises[{o}].addressPrefix"),
            &range.address_prefix,
            strict,
        ));
    }
    for (c, cluster) in plan.clusters.iter().enumerate() {
        if let Some(p) = &cluster.pod_cidr {
            out.push(check_prefix(&format!("clusters[{c}].podCidr"), p, strict));
        }
        if let Some(p) = &cluster.service_cidr {
            out.push(check_prefix(
                &format!("clusters[{c}].serviceCidr"),
                p,
                strict,
            ));
        }
        if let Some(a) = &cluster.dns_service_ip {
            out.push(check_address(&format!("clusters[{c}].dnsServiceIp"), a));
        }
    }
    if let Some(arc) = &plan.arc {
        let lnet = &arc.logical_network;
        let tolerant = Alignment::Tolerated;
        out.push(check_prefix(
            "arc.logicalNetwork.addressPrefix",
            &lnet.address_prefix,
            tolerant,
        ));
        out.push(check_address("arc.logicalNetwork.gateway", &lnet.gateway));
        for (i, d) in lnet.dns_servers.iter().enumerate() {
            out.push(check_address(
                &format!("arc.logicalNetwork.dnsServers[{i}]"),
                d,
            ));
        }
        out.push(check_address(
            "arc.logicalNetwork.ipPool.start",
            &lnet.ip_pool.start,
        ));
        out.push(check_address(
            "arc.logicalNetwork.ipPool.end",
            &lnet.ip_pool.end,
        ));
        if let Some(m) = &arc.management_network {
            out.push(check_prefix(
                "arc.managementNetwork.addressPrefix",
                &m.address_prefix,
                tolerant,
            ));
            if let Some(r) = &m.infrastructure_ips {
                out.push(check_range("arc.managementNetwork.infrastructureIps", r));
            }
        }
        for (c, cluster) in arc.clusters.iter().enumerate() {
            out.push(check_address(
                &format!("arc.clusters[{c}].controlPlaneIp"),
                &cluster.control_plane_ip,
            ));
            for (i, r) in cluster.load_balancer_ips.iter().enumerate() {
                out.push(check_range(
                    &format!("arc.clusters[{c}].loadBalancerIps[{i}]"),
                    r,
                ));
            }
        }
        for (r, rule) in arc.allow_rules.iter().enumerate() {
            let base = format!("arc.allowRules[{r}]");
            for (i, s) in rule.sources.iter().enumerate() {
                out.push(check_range(&format!("{base}.sources[{i}]"), s));
            }
            for (i, d) in rule.destinations.iter().enumerate() {
                out.push(check_range(&format!("{base}.destinations[{i}]"), d));
            }
            for (i, p) in rule.ports.iter().enumerate() {
                out.push(check_port(&format!("{base}.ports[{i}]"), p));
            }
        }
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;

    #[test]
    fn bad_prefixes_name_the_field_and_the_fix() {
        let ok = Prefix::from("10.0.0.0/16");
        assert!(check_prefix("f", &ok, Alignment::Required).is_none());
        let bad = check_prefix(
            "vnets[0].addressSpace[0]",
            &Prefix::from("10.0.0.0/33"),
            Alignment::Required,
        )
        .expect("finding");
        assert_eq!(bad.field, "vnets[0].addressSpace[0]");
        assert_eq!(bad.value, "10.0.0.0/33");
        let misaligned = check_prefix("f", &Prefix::from("192.168.1.7/24"), Alignment::Required)
            .expect("finding");
        assert_eq!(misaligned.severity, Severity::Error);
        assert_eq!(misaligned.expected, "192.168.1.0/24");
        let arc = check_prefix("f", &Prefix::from("10.220.32.16/24"), Alignment::Tolerated)
            .expect("finding");
        assert_eq!(arc.severity, Severity::Warning);
        assert!(check_prefix("f", &Prefix::from("fd00::/64"), Alignment::Required).is_some());
    }

    #[test]
    fn bad_addresses_ranges_and_ports() {
        assert!(check_address("f", &Address::from("10.0.0.10")).is_none());
        assert_eq!(
            check_address("clusters[0].dnsServiceIp", &Address::from("10.0.0.300"))
                .expect("finding")
                .field,
            "clusters[0].dnsServiceIp"
        );
        assert!(check_range("f", &AddressRange::from("10.0.0.1-10.0.0.3")).is_none());
        assert!(check_range("f", &AddressRange::from("10.0.0.3-10.0.0.1")).is_some());
        assert!(check_port("f", &PortRange::from("6443")).is_none());
        assert!(check_port("f", &PortRange::from("http")).is_some());
    }

    #[test]
    fn the_walk_reaches_nested_fields() {
        let plan: NetworkPlan = serde_yaml::from_str(
            "
vnets:
  - name: v
    addressSpace: [10.0.0.0/16]
    subnets:
      - name: s
        addressPrefix: 10.0.1.0/33
clusters:
  - name: c
    networkPlugin: kubenet
    subnet: v/s
    nodeCount: 3
    dnsServiceIp: nope
",
        )
        .expect("yaml");
        let f = check_plan_addresses(&plan);
        let fields: Vec<&str> = f.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "vnets[0].subnets[0].addressPrefix",
                "clusters[0].dnsServiceIp"
            ]
        );
    }
}
