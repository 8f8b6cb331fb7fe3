//! User-defined routes merged into a bring-your-own route table (kubenet).

use std::fmt;
use std::str::FromStr;

use crate::armid::{RESOURCE_NAME_RULE, valid_resource_name};
use crate::cidr::{AddressPrefix, parse_address_prefix, parse_ip, reserved_containing};
use crate::error::{FieldError, FieldErrors};

use crate::ownership::ROUTE_PREFIX;

/// Whether a route named `name` is poolnet's (ARM compares route names case-insensitively).
pub fn is_owned_route_name(name: &str) -> bool {
    // Bytes, not a string slice: a name with a multi-byte character across the prefix's
    // length must not panic.
    name.as_bytes()
        .get(..ROUTE_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(ROUTE_PREFIX.as_bytes()))
}

/// ARM `nextHopType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHopKind {
    VirtualNetworkGateway,
    VnetLocal,
    Internet,
    VirtualAppliance,
    None,
}

impl NextHopKind {
    pub const ALL: [NextHopKind; 5] = [
        NextHopKind::VirtualNetworkGateway,
        NextHopKind::VnetLocal,
        NextHopKind::Internet,
        NextHopKind::VirtualAppliance,
        NextHopKind::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NextHopKind::VirtualNetworkGateway => "VirtualNetworkGateway",
            NextHopKind::VnetLocal => "VnetLocal",
            NextHopKind::Internet => "Internet",
            NextHopKind::VirtualAppliance => "VirtualAppliance",
            NextHopKind::None => "None",
        }
    }
}

impl fmt::Display for NextHopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NextHopKind {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NextHopKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                FieldError::new(
                    "",
                    s,
                    "unknown next hop type",
                    "one of VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance, None",
                )
            })
    }
}

/// Validate one route as the user wrote it; errors are anchored under `path`
/// (e.g. `spec.routeTable.routes[1]`).
pub fn validate_route(
    path: &str,
    name: &str,
    address_prefix: &str,
    next_hop: NextHopKind,
    next_hop_ip: Option<&str>,
) -> FieldErrors {
    let mut errs = FieldErrors::new();
    if !valid_resource_name(name) {
        errs.push(FieldError::new(
            format!("{path}.name"),
            name,
            "not a valid route name",
            RESOURCE_NAME_RULE,
        ));
    } else if name.len() + ROUTE_PREFIX.len() > 80 {
        errs.push(FieldError::new(
            format!("{path}.name"),
            name,
            format!(
                "too long once poolnet prefixes it with {ROUTE_PREFIX:?} (ARM allows 80 characters)"
            ),
            format!("at most {} characters", 80 - ROUTE_PREFIX.len()),
        ));
    }
    match parse_address_prefix(address_prefix) {
        Ok(AddressPrefix::Any) | Ok(AddressPrefix::Ip(_)) => errs.push(FieldError::new(
            format!("{path}.addressPrefix"),
            address_prefix,
            "a route needs a prefix, not '*' or a bare address",
            "a CIDR such as 0.0.0.0/0 or 10.20.0.0/16, or a service tag",
        )),
        Ok(_) => {}
        Err(e) => errs.push(e.at(format!("{path}.addressPrefix"))),
    }
    match (next_hop, next_hop_ip) {
        (NextHopKind::VirtualAppliance, None) => errs.push(FieldError::new(
            format!("{path}.nextHopIpAddress"),
            "",
            "a VirtualAppliance route needs the appliance's address",
            "the private IP of the appliance, e.g. 10.0.2.4",
        )),
        (NextHopKind::VirtualAppliance, Some(ip)) => match parse_ip(ip) {
            Ok(addr) => {
                if let Some((range, why)) = reserved_containing(addr) {
                    errs.push(FieldError::new(
                        format!("{path}.nextHopIpAddress"),
                        ip,
                        format!("{addr} is inside {range} ({why})"),
                        "an appliance address outside the reserved ranges",
                    ));
                }
            }
            Err(e) => errs.push(e.at(format!("{path}.nextHopIpAddress"))),
        },
        (kind, Some(ip)) => errs.push(FieldError::new(
            format!("{path}.nextHopIpAddress"),
            ip,
            format!("nextHopIpAddress is only used with VirtualAppliance, not {kind}"),
            "no nextHopIpAddress, or nextHopType VirtualAppliance",
        )),
        (_, None) => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn owned_route_names_ignore_case_and_never_panic() {
        assert!(is_owned_route_name("poolnet-onprem"));
        assert!(is_owned_route_name("PoolNet-onprem"));
        assert!(!is_owned_route_name("aks-node-0"));
        assert!(!is_owned_route_name("poolnet"));
        assert!(!is_owned_route_name("poolnet\u{e9}x"));
    }

    #[test]
    fn default_route_to_appliance_is_valid() {
        let errs = validate_route(
            "r",
            "default",
            "0.0.0.0/0",
            NextHopKind::VirtualAppliance,
            Some("10.0.2.4"),
        );
        assert!(errs.is_empty(), "{errs}");
        assert!(
            validate_route(
                "r",
                "onprem",
                "192.168.0.0/16",
                NextHopKind::VirtualNetworkGateway,
                None
            )
            .is_empty()
        );
        assert_eq!(
            "virtualappliance".parse::<NextHopKind>().unwrap(),
            NextHopKind::VirtualAppliance
        );
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases: [(&str, &str, NextHopKind, Option<&str>, &str); 6] = [
            ("-x", "0.0.0.0/0", NextHopKind::Internet, None, "r.name"),
            (
                "a",
                "10.0.0.1/8",
                NextHopKind::Internet,
                None,
                "r.addressPrefix",
            ),
            ("a", "*", NextHopKind::Internet, None, "r.addressPrefix"),
            (
                "a",
                "0.0.0.0/0",
                NextHopKind::VirtualAppliance,
                None,
                "r.nextHopIpAddress",
            ),
            (
                "a",
                "0.0.0.0/0",
                NextHopKind::Internet,
                Some("10.0.0.4"),
                "r.nextHopIpAddress",
            ),
            (
                "a",
                "0.0.0.0/0",
                NextHopKind::VirtualAppliance,
                Some("169.254.0.9"),
                "r.nextHopIpAddress",
            ),
        ];
        for (name, prefix, hop, ip, path) in cases {
            let errs = validate_route("r", name, prefix, hop, ip);
            assert_eq!(errs.len(), 1, "{name} {prefix}: {errs}");
            assert_eq!(errs.0[0].path, path);
        }
        assert!("Gateway".parse::<NextHopKind>().is_err());
    }

    proptest! {
        #[test]
        fn validator_never_panics(name in ".{0,20}", prefix in "[0-9./*a-zA-Z]{0,20}", ip in proptest::option::of("[0-9.]{0,16}"), k in 0usize..5) {
            let _ = validate_route("r", &name, &prefix, NextHopKind::ALL[k], ip.as_deref());
        }
    }
}
