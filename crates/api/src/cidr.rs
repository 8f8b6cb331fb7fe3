//! CIDRs, IP addresses and Azure service tags as users write them in NSG sources and routes,
//! plus the address ranges AKS reserves.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::FieldError;

/// Ranges AKS reserves: they must not be used for VNet, subnet, pod or service ranges, nor as
/// a next hop. `(cidr, why)`.
pub const RESERVED_RANGES: [(&str, &str); 4] = [
    (
        "169.254.0.0/16",
        "link-local addresses used by the Azure platform",
    ),
    ("172.30.0.0/16", "reserved by AKS"),
    ("172.31.0.0/16", "reserved by AKS"),
    (
        "192.0.2.0/24",
        "reserved by AKS (documentation range TEST-NET-1)",
    ),
];

/// Azure service tags accepted as NSG sources or route prefixes. Regional variants
/// (`Storage.WestEurope`) are accepted for the tags that have them ([`REGIONAL_SERVICE_TAGS`]).
pub const SERVICE_TAGS: [&str; 16] = [
    "Internet",
    "VirtualNetwork",
    "AzureLoadBalancer",
    "AzureCloud",
    "AzureTrafficManager",
    "AzureFrontDoor.Backend",
    "AzureFrontDoor.Frontend",
    "GatewayManager",
    "AzureMonitor",
    "Storage",
    "Sql",
    "AzureKubernetesService",
    "AzureContainerRegistry",
    "AzureActiveDirectory",
    "EventHub",
    "ServiceBus",
];

/// The tags of [`SERVICE_TAGS`] that have regional variants (`<tag>.<region>`). ARM refuses a
/// region suffix on any other tag (`Internet.WestEurope` does not exist), and one refused rule
/// fails the whole NSG write, so admission refuses it first.
pub const REGIONAL_SERVICE_TAGS: [&str; 8] = [
    "AzureCloud",
    "AzureMonitor",
    "Storage",
    "Sql",
    "AzureKubernetesService",
    "AzureContainerRegistry",
    "EventHub",
    "ServiceBus",
];

/// A strict CIDR: the address must be the network address (no host bits set), because ARM
/// rejects such prefixes in routes and silently rewrites them in NSG rules.
pub fn parse_cidr(raw: &str) -> Result<IpNet, FieldError> {
    let s = raw.trim();
    let net = IpNet::from_str(s).map_err(|_| {
        FieldError::new(
            "",
            raw,
            "not a CIDR",
            "an address prefix such as 10.0.0.0/16 or fd00::/64",
        )
    })?;
    if net.trunc() != net {
        return Err(FieldError::new(
            "",
            raw,
            format!("host bits are set (the network address is {})", net.trunc()),
            format!("the network address, {}", net.trunc()),
        ));
    }
    Ok(net)
}

/// A plain IP address (next hops, DNS service IP).
pub fn parse_ip(raw: &str) -> Result<IpAddr, FieldError> {
    IpAddr::from_str(raw.trim())
        .map_err(|_| FieldError::new("", raw, "not an IP address", "an address such as 10.0.1.4"))
}

/// The reserved range `net` overlaps, if any, with its reason.
pub fn reserved_overlap(net: &IpNet) -> Option<(IpNet, &'static str)> {
    RESERVED_RANGES.iter().find_map(|(r, why)| {
        let r = IpNet::from_str(r).ok()?;
        overlaps(&r, net).then_some((r, *why))
    })
}

/// The reserved range containing `ip`, if any.
pub fn reserved_containing(ip: IpAddr) -> Option<(IpNet, &'static str)> {
    RESERVED_RANGES.iter().find_map(|(r, why)| {
        let r = IpNet::from_str(r).ok()?;
        r.contains(&ip).then_some((r, *why))
    })
}

/// Two prefixes overlap when one contains the other's network address (prefixes are aligned).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What may stand in an NSG rule's source or a route's address prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressPrefix {
    /// `*`: any address.
    Any,
    Cidr(IpNet),
    Ip(IpAddr),
    ServiceTag(String),
}

impl AddressPrefix {
    /// The CIDR this prefix stands for, when it is an address (a single IP is a /32 or /128).
    pub fn as_net(&self) -> Option<IpNet> {
        match self {
            AddressPrefix::Cidr(n) => Some(*n),
            AddressPrefix::Ip(ip) => Some(IpNet::from(*ip)),
            AddressPrefix::Any | AddressPrefix::ServiceTag(_) => None,
        }
    }
}

impl fmt::Display for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPrefix::Any => f.write_str("*"),
            AddressPrefix::Cidr(n) => write!(f, "{n}"),
            AddressPrefix::Ip(ip) => write!(f, "{ip}"),
            AddressPrefix::ServiceTag(t) => f.write_str(t),
        }
    }
}

/// Whether source `wanted` (of a HostPortPolicy) lies inside source `allowed` (of its pool):
/// `*` covers everything, an address prefix covers the addresses inside it (same family), and
/// a service tag covers only itself. Deliberately strict: `Internet` does not cover a CIDR
/// (which may be private), so a pool that means "anything" says `*`.
pub fn covers(allowed: &str, wanted: &str) -> bool {
    let (Ok(a), Ok(w)) = (parse_address_prefix(allowed), parse_address_prefix(wanted)) else {
        return false;
    };
    match (&a, &w) {
        (AddressPrefix::Any, _) => true,
        (AddressPrefix::ServiceTag(x), AddressPrefix::ServiceTag(y)) => x == y,
        _ => match (a.as_net(), w.as_net()) {
            (Some(an), Some(wn)) => an.contains(&wn),
            _ => false,
        },
    }
}

/// The region of `<tag>.<region>`, if `s` has that shape for `tag`.
fn region_of<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    s.strip_prefix(tag)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|region| !region.is_empty() && region.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn known_service_tag(s: &str) -> Option<&'static str> {
    SERVICE_TAGS
        .iter()
        .copied()
        .find(|t| s == *t || (REGIONAL_SERVICE_TAGS.contains(t) && region_of(s, t).is_some()))
}

/// Parse an NSG source / route prefix: `*`, a CIDR, an IP, or a known service tag.
pub fn parse_address_prefix(raw: &str) -> Result<AddressPrefix, FieldError> {
    let s = raw.trim();
    if s == "*" {
        return Ok(AddressPrefix::Any);
    }
    if s.contains('/') {
        return parse_cidr(s)
            .map(AddressPrefix::Cidr)
            .map_err(|e| FieldError {
                value: raw.into(),
                ..e
            });
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(AddressPrefix::Ip(ip));
    }
    if known_service_tag(s).is_some() {
        return Ok(AddressPrefix::ServiceTag(s.to_string()));
    }
    if let Some(tag) = SERVICE_TAGS
        .iter()
        .find(|t| !t.contains('.') && region_of(s, t).is_some())
    {
        return Err(FieldError::new(
            "",
            raw,
            format!(
                "{tag} has no regional variants (only {} have them), so ARM would refuse the rule",
                REGIONAL_SERVICE_TAGS.join(", ")
            ),
            format!("{tag} without a region"),
        ));
    }
    let hint = SERVICE_TAGS
        .iter()
        .find(|t| t.eq_ignore_ascii_case(s))
        .map(|t| format!(" (service tags are case-sensitive: did you mean {t}?)"))
        .unwrap_or_default();
    Err(FieldError::new(
        "",
        raw,
        format!("not a CIDR, an IP address or a known service tag{hint}"),
        "a CIDR (203.0.113.0/24), an IP address, '*', or a service tag such as Internet or VirtualNetwork",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn covers_is_containment_and_never_widens() {
        assert!(covers("*", "Internet"));
        assert!(covers("*", "10.0.0.0/8"));
        assert!(covers("203.0.113.0/24", "203.0.113.0/25"));
        assert!(covers("203.0.113.0/24", "203.0.113.7"));
        assert!(covers("Internet", "Internet"));
        assert!(
            !covers("203.0.113.0/24", "*"),
            "a namespace user cannot widen to anything"
        );
        assert!(!covers("203.0.113.0/24", "203.0.112.0/23"));
        assert!(!covers("203.0.113.0/24", "Internet"));
        assert!(!covers("Internet", "10.0.0.0/8"));
        assert!(!covers("0.0.0.0/0", "::/0"), "families differ");
        assert!(!covers("bogus", "bogus"));
    }

    #[test]
    fn only_regional_tags_take_a_region() {
        for ok in ["Storage.WestEurope", "Sql.eastus2", "AzureCloud.westeurope"] {
            assert!(parse_address_prefix(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Internet.Bogus",
            "VirtualNetwork.WestEurope",
            "AzureLoadBalancer.x",
        ] {
            let e = parse_address_prefix(bad).unwrap_err();
            assert!(
                e.to_string().contains("has no regional variants"),
                "{bad}: {e}"
            );
        }
        assert!(
            REGIONAL_SERVICE_TAGS
                .iter()
                .all(|t| SERVICE_TAGS.contains(t))
        );
    }

    #[test]
    fn parses_prefixes_ips_and_tags() {
        assert_eq!(parse_address_prefix("*").unwrap(), AddressPrefix::Any);
        assert!(matches!(
            parse_address_prefix("203.0.113.0/24").unwrap(),
            AddressPrefix::Cidr(_)
        ));
        assert!(matches!(
            parse_address_prefix("fd00::/64").unwrap(),
            AddressPrefix::Cidr(_)
        ));
        assert!(matches!(
            parse_address_prefix("10.1.2.3").unwrap(),
            AddressPrefix::Ip(_)
        ));
        assert!(matches!(
            parse_address_prefix("Internet").unwrap(),
            AddressPrefix::ServiceTag(_)
        ));
        assert!(matches!(
            parse_address_prefix("Storage.WestEurope").unwrap(),
            AddressPrefix::ServiceTag(_)
        ));
    }

    #[test]
    fn rejections_say_what_is_valid() {
        let e = parse_address_prefix("10.0.0.1/24").unwrap_err();
        assert!(
            e.problem.contains("host bits") && e.expected.contains("10.0.0.0/24"),
            "{e}"
        );
        let e = parse_address_prefix("internet").unwrap_err();
        assert!(e.problem.contains("did you mean Internet"), "{e}");
        let e = parse_address_prefix("10.0.0.0/33").unwrap_err();
        assert_eq!(e.problem, "not a CIDR");
        assert!(parse_address_prefix("Nope").is_err());
        assert!(parse_address_prefix("AzureFrontDoor.Backend.X").is_err());
        assert!(parse_ip("10.0.0.256").is_err());
    }

    #[test]
    fn reserved_ranges_are_found() {
        let n = parse_cidr("172.31.128.0/17").unwrap();
        assert_eq!(reserved_overlap(&n).unwrap().0.to_string(), "172.31.0.0/16");
        let n = parse_cidr("172.16.0.0/12").unwrap();
        assert!(
            reserved_overlap(&n).is_some(),
            "a supernet of a reserved range overlaps it"
        );
        assert!(reserved_overlap(&parse_cidr("10.0.0.0/8").unwrap()).is_none());
        assert!(reserved_containing(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))).is_some());
    }

    proptest! {
        #[test]
        fn overlap_is_symmetric_and_reflexive(a in any::<u32>(), al in 0u8..=32, b in any::<u32>(), bl in 0u8..=32) {
            let a = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), al).unwrap().trunc();
            let b = IpNet::new(IpAddr::V4(Ipv4Addr::from(b)), bl).unwrap().trunc();
            prop_assert_eq!(overlaps(&a, &b), overlaps(&b, &a));
            prop_assert!(overlaps(&a, &a));
            // Overlap means some address is in both.
            let shared = a.contains(&b.network()) || b.contains(&a.network());
            prop_assert_eq!(overlaps(&a, &b), shared);
        }

        #[test]
        fn canonical_cidrs_round_trip(a in any::<u32>(), l in 0u8..=32) {
            let n = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), l).unwrap().trunc();
            prop_assert_eq!(parse_cidr(&n.to_string()).unwrap(), n);
        }

        #[test]
        fn parser_never_panics(s in "[0-9a-fA-Z.:/*]{0,30}") {
            let _ = parse_address_prefix(&s);
        }
    }
}
