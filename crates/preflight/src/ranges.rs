//! Address-range hygiene for AKS (seed 001): ranges AKS reserves, overlaps between the VNet,
//! its subnets, the pod and service CIDRs and on-premises networks, subnets outside their
//! VNet, and the cluster DNS service IP.

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use poolnet_api::cidr::RESERVED_RANGES;

use super::finding::{CheckId, Finding, Severity};
use super::net::{AZURE_SMALLEST_SUBNET_LEN, overlaps};

/// Ranges AKS uses itself; a cluster may not put its VNet, pod or service range on them.
/// The list lives in `poolnet_api::cidr` so admission and preflight agree; entries that do
/// not parse as IPv4 prefixes cannot be checked here and are skipped.
pub fn aks_reserved_ranges() -> impl Iterator<Item = (Ipv4Net, &'static str)> {
    RESERVED_RANGES
        .iter()
        .filter_map(|(cidr, why)| Ipv4Net::from_str(cidr).ok().map(|n| (n, *why)))
}

pub(crate) fn reserved_list() -> String {
    let names: Vec<String> = aks_reserved_ranges().map(|(r, _)| r.to_string()).collect();
    names.join(", ")
}

/// The reserved ranges `net` touches.
pub fn reserved_overlaps(net: Ipv4Net) -> Vec<Ipv4Net> {
    aks_reserved_ranges()
        .map(|(r, _)| r)
        .filter(|r| overlaps(net, *r))
        .collect()
}

/// The reserved range that wholly holds `net`, with why it is reserved: a route or rule
/// aimed inside it.
pub fn reserved_containing(net: Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    aks_reserved_ranges().find(|(r, _)| r.contains(&net))
}

/// `what` names the role of the range in the problem text, e.g. "service CIDR".
pub fn check_reserved(
    check: CheckId,
    severity: Severity,
    field: &str,
    value: &str,
    what: &str,
    net: Ipv4Net,
) -> Vec<Finding> {
    let hit = reserved_overlaps(net);
    if hit.is_empty() {
        return Vec::new();
    }
    let hit: Vec<String> = hit.iter().map(|r| r.to_string()).collect();
    let finding = match severity {
        Severity::Error => Finding::error(check, field, value),
        Severity::Warning => Finding::warning(check, field, value),
    };
    vec![
        finding
            .problem(format!(
                "{what} overlaps {} which AKS reserves",
                hit.join(" and ")
            ))
            .expected(format!("a range outside {}", reserved_list())),
    ]
}

/// `ranges.reserved` on a range of the plan (VNet address space, pod or service CIDR).
pub fn check_named_reserved(range: &NamedRange, what: &str) -> Vec<Finding> {
    check_reserved(
        CheckId::RangesReserved,
        Severity::Error,
        &range.field,
        &range.value,
        what,
        range.net,
    )
}

/// A range with where it came from, for overlap reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRange {
    pub field: String,
    pub value: String,
    /// Human name, e.g. "service CIDR of cluster prod".
    pub label: String,
    pub net: Ipv4Net,
}

impl NamedRange {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        label: impl Into<String>,
        net: Ipv4Net,
    ) -> NamedRange {
        NamedRange {
            field: field.into(),
            value: value.into(),
            label: label.into(),
            net,
        }
    }
}

/// Report every range in `others` that `subject` overlaps; the finding points at `subject`.
pub fn check_overlaps(
    severity: Severity,
    subject: &NamedRange,
    others: &[NamedRange],
    consequence: &str,
) -> Vec<Finding> {
    others
        .iter()
        .filter(|o| overlaps(subject.net, o.net))
        .map(|o| {
            let f = match severity {
                Severity::Error => {
                    Finding::error(CheckId::RangesOverlap, &subject.field, &subject.value)
                }
                Severity::Warning => {
                    Finding::warning(CheckId::RangesOverlap, &subject.field, &subject.value)
                }
            };
            f.problem(format!(
                "{} {} overlaps {} {} ({}){consequence}",
                subject.label, subject.net, o.label, o.net, o.field
            ))
            .expected(format!("a range that shares no address with {}", o.net))
        })
        .collect()
}

/// Every pair within `ranges` that overlaps, reported on the later one.
pub fn check_pairwise(
    severity: Severity,
    ranges: &[NamedRange],
    consequence: &str,
) -> Vec<Finding> {
    ranges
        .iter()
        .enumerate()
        .flat_map(|(i, r)| check_overlaps(severity, r, &ranges[..i], consequence))
        .collect()
}

/// A subnet must sit inside one of its VNet's address prefixes and be at least Azure's minimum.
pub fn check_subnet_in_vnet(
    field: &str,
    value: &str,
    subnet: Ipv4Net,
    vnet_name: &str,
    address_space: &[Ipv4Net],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !address_space.is_empty() && !address_space.iter().any(|a| a.contains(&subnet)) {
        let space: Vec<String> = address_space.iter().map(|a| a.to_string()).collect();
        findings.push(
            Finding::error(CheckId::RangesSubnetInVnet, field, value)
                .problem(format!(
                    "subnet {subnet} is not inside the address space of VNet {vnet_name}"
                ))
                .expected(format!("a prefix inside {}", space.join(" or "))),
        );
    }
    if subnet.prefix_len() > AZURE_SMALLEST_SUBNET_LEN {
        findings.push(
            Finding::error(CheckId::RangesSubnetInVnet, field, value)
                .problem(format!(
                    "Azure's smallest IPv4 subnet is /{AZURE_SMALLEST_SUBNET_LEN}"
                ))
                .expected(format!(
                    "a prefix length of /{AZURE_SMALLEST_SUBNET_LEN} or shorter"
                )),
        );
    }
    findings
}

/// The DNS service IP must be a service address the API server will not hand to anyone else:
/// inside the service CIDR, not its network or broadcast address, and not its first host
/// address, which is `kubernetes.default`.
pub fn check_dns_service_ip(
    field: &str,
    value: &str,
    dns: Ipv4Addr,
    service_cidr: Ipv4Net,
) -> Vec<Finding> {
    let network = u32::from(service_cidr.network());
    let broadcast = u32::from(service_cidr.broadcast());
    let ip = u32::from(dns);
    let valid = || {
        if broadcast.saturating_sub(network) < 3 {
            return format!("a service CIDR of /30 or larger (now {service_cidr})");
        }
        let conventional = Ipv4Addr::from(network + 10);
        let hint = if network + 10 < broadcast {
            format!(", conventionally {conventional}")
        } else {
            String::new()
        };
        format!(
            "an address of {service_cidr} from {} to {}{hint}",
            Ipv4Addr::from(network + 2),
            Ipv4Addr::from(broadcast - 1)
        )
    };
    let problem = if !service_cidr.contains(&dns) {
        format!("DNS service IP {dns} is outside the service CIDR {service_cidr}")
    } else if ip == network {
        format!("{dns} is the network address of the service CIDR")
    } else if ip == network + 1 {
        format!(
            "{dns} is the first address of the service CIDR, taken by the kubernetes API service"
        )
    } else if ip == broadcast {
        format!("{dns} is the broadcast address of the service CIDR")
    } else {
        return Vec::new();
    };
    vec![
        Finding::error(CheckId::RangesDnsServiceIp, field, value)
            .problem(problem)
            .expected(valid()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn the_four_documented_ranges_are_reserved() {
        let all: Vec<String> = aks_reserved_ranges().map(|(r, _)| r.to_string()).collect();
        assert_eq!(
            all,
            [
                "169.254.0.0/16",
                "172.30.0.0/16",
                "172.31.0.0/16",
                "192.0.2.0/24"
            ]
        );
    }

    #[test]
    fn reserved_ranges_are_caught_and_others_pass() {
        let ok = check_reserved(
            CheckId::RangesReserved,
            Severity::Error,
            "f",
            "v",
            "service CIDR",
            net("10.0.0.0/16"),
        );
        assert!(ok.is_empty());
        for bad in [
            "172.30.0.0/16",
            "169.254.10.0/24",
            "192.0.2.0/25",
            "172.16.0.0/12",
        ] {
            let f = check_reserved(
                CheckId::RangesReserved,
                Severity::Error,
                "clusters[0].serviceCidr",
                bad,
                "service CIDR",
                net(bad),
            );
            assert_eq!(f.len(), 1, "{bad}");
            assert_eq!(f[0].value, bad);
            assert!(f[0].expected.contains("169.254.0.0/16"));
        }
    }

    #[test]
    fn overlaps_name_both_ranges() {
        let vnet = NamedRange::new(
            "vnets[0].addressSpace[0]",
            "10.0.0.0/8",
            "VNet",
            net("10.0.0.0/8"),
        );
        let svc = NamedRange::new(
            "clusters[0].serviceCidr",
            "10.0.0.0/16",
            "service CIDR",
            net("10.0.0.0/16"),
        );
        let f = check_overlaps(Severity::Error, &svc, std::slice::from_ref(&vnet), "");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "clusters[0].serviceCidr");
        assert!(f[0].problem.contains("vnets[0].addressSpace[0]"));
        let apart = NamedRange::new("f", "v", "service CIDR", net("172.16.0.0/16"));
        assert!(check_overlaps(Severity::Error, &apart, &[vnet], "").is_empty());
    }

    #[test]
    fn pairwise_reports_each_clash_once() {
        let r = |f: &str, s: &str| NamedRange::new(f, s, "subnet", net(s));
        let clash = [
            r("a", "10.0.0.0/24"),
            r("b", "10.0.1.0/24"),
            r("c", "10.0.0.128/25"),
        ];
        let f = check_pairwise(Severity::Error, &clash, "");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "c");
        assert!(check_pairwise(Severity::Error, &clash[..2], "").is_empty());
    }

    #[test]
    fn subnet_must_be_inside_its_vnet_and_big_enough() {
        let space = [net("192.168.0.0/16")];
        assert!(check_subnet_in_vnet("f", "v", net("192.168.1.0/24"), "vnet", &space).is_empty());
        let outside = check_subnet_in_vnet("f", "v", net("10.1.0.0/24"), "vnet", &space);
        assert_eq!(outside.len(), 1);
        assert!(outside[0].expected.contains("192.168.0.0/16"));
        assert_eq!(
            check_subnet_in_vnet("f", "v", net("192.168.1.0/30"), "vnet", &space).len(),
            1
        );
    }

    #[test]
    fn dns_service_ip_rules() {
        let svc = net("10.0.0.0/16");
        assert!(check_dns_service_ip("f", "v", ip("10.0.0.10"), svc).is_empty());
        for (bad, why) in [
            ("10.1.0.10", "outside"),
            ("10.0.0.0", "network address"),
            ("10.0.0.1", "first address"),
            ("10.0.255.255", "broadcast"),
        ] {
            let f = check_dns_service_ip("clusters[0].dnsServiceIp", bad, ip(bad), svc);
            assert_eq!(f.len(), 1, "{bad}");
            assert!(f[0].problem.contains(why), "{}", f[0]);
            assert!(
                f[0].expected.contains("10.0.0.2 to 10.0.255.254"),
                "{}",
                f[0]
            );
            assert!(f[0].expected.contains("10.0.0.10"), "{}", f[0]);
        }
        let tiny = check_dns_service_ip("f", "v", ip("10.0.0.1"), net("10.0.0.0/31"));
        assert!(tiny[0].expected.contains("/30"));
    }

    fn any_net() -> impl Strategy<Value = Ipv4Net> {
        (any::<u32>(), 1u8..=32)
            .prop_map(|(a, len)| Ipv4Net::new(Ipv4Addr::from(a), len).expect("len").trunc())
    }

    proptest! {
        #[test]
        fn overlap_findings_are_symmetric(a in any_net(), b in any_net()) {
            let ra = NamedRange::new("a", "a", "range", a);
            let rb = NamedRange::new("b", "b", "range", b);
            prop_assert_eq!(
                check_overlaps(Severity::Error, &ra, std::slice::from_ref(&rb), "").len(),
                check_overlaps(Severity::Error, &rb, std::slice::from_ref(&ra), "").len()
            );
        }

        #[test]
        fn every_range_overlaps_itself(a in any_net()) {
            let r = NamedRange::new("a", "a", "range", a);
            prop_assert_eq!(check_overlaps(Severity::Error, &r, std::slice::from_ref(&r), "").len(), 1);
        }

        #[test]
        fn dns_ip_is_valid_exactly_between_first_host_and_broadcast(host in any::<u32>(), len in 8u8..=29) {
            let svc = Ipv4Net::new(Ipv4Addr::new(10, 96, 0, 0), len).expect("len").trunc();
            let first = u32::from(svc.network());
            let last = u32::from(svc.broadcast());
            let candidate = first + host % (last - first + 1);
            let ok = check_dns_service_ip("f", "v", Ipv4Addr::from(candidate), svc).is_empty();
            prop_assert_eq!(ok, candidate >= first + 2 && candidate < last);
        }
    }
}
