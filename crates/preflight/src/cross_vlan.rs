//! Ports AKS Arc needs between the management VLAN (Azure Stack HCI, Arc resource bridge)
//! and the logical network of the AKS Arc VMs when the two are on different VLANs (seed 004):
//! 22 and 6443 from the management IPs to the VMs, 55000 and 65000 from the VMs back to the
//! management IPs (cloud agent). All are TCP.

use serde::Serialize;

use super::finding::{CheckId, Finding};
use super::model::{AllowRule, Protocol};
use super::net::{Span, covers};

/// Which way a required port is opened between the two VLANs (not an NSG rule direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VlanDirection {
    ManagementToLogical,
    LogicalToManagement,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RequiredPort {
    pub port: u16,
    pub protocol: Protocol,
    pub direction: VlanDirection,
    pub purpose: &'static str,
}

pub const ARC_CROSS_VLAN_PORTS: [RequiredPort; 4] = [
    RequiredPort {
        port: 22,
        protocol: Protocol::Tcp,
        direction: VlanDirection::ManagementToLogical,
        purpose: "log collection for troubleshooting",
    },
    RequiredPort {
        port: 6443,
        protocol: Protocol::Tcp,
        direction: VlanDirection::ManagementToLogical,
        purpose: "Kubernetes API",
    },
    RequiredPort {
        port: 55000,
        protocol: Protocol::Tcp,
        direction: VlanDirection::LogicalToManagement,
        purpose: "cloud agent gRPC server",
    },
    RequiredPort {
        port: 65000,
        protocol: Protocol::Tcp,
        direction: VlanDirection::LogicalToManagement,
        purpose: "cloud agent gRPC authentication",
    },
];

fn spans(list: &[super::net::AddressRange]) -> Vec<Span> {
    list.iter().filter_map(|r| r.span()).collect()
}

/// Whether one rule lets `protocol/port` through from all of `from` to all of `to`.
pub fn rule_allows(rule: &AllowRule, protocol: Protocol, port: u16, from: Span, to: Span) -> bool {
    rule.protocol.allows(protocol)
        && rule.ports.iter().any(|p| p.contains(port))
        && covers(&spans(&rule.sources), from)
        && covers(&spans(&rule.destinations), to)
}

/// Each required port must be allowed, in its direction, by a single rule covering the whole
/// source and destination. `management` is the management IPs (the infrastructure block when
/// known), `logical` the logical network's prefix.
pub fn check_cross_vlan(
    rules_field: &str,
    management: Span,
    logical: Span,
    rules: &[AllowRule],
) -> Vec<Finding> {
    ARC_CROSS_VLAN_PORTS
        .iter()
        .filter_map(|req| {
            let (from, to, way) = match req.direction {
                VlanDirection::ManagementToLogical => {
                    (management, logical, "from the management network to the AKS Arc VMs")
                }
                VlanDirection::LogicalToManagement => {
                    (logical, management, "from the AKS Arc VMs to the management network")
                }
            };
            if rules
                .iter()
                .any(|r| rule_allows(r, req.protocol, req.port, from, to))
            {
                return None;
            }
            let near: Vec<&str> = rules
                .iter()
                .filter(|r| r.protocol.allows(req.protocol) && r.ports.iter().any(|p| p.contains(req.port)))
                .map(|r| r.name.as_str())
                .collect();
            let near = if near.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} allow(s) the port but not from all of {from} to all of {to}",
                    near.join(", ")
                )
            };
            let proto = req.protocol.as_str();
            Some(
                Finding::error(
                    CheckId::ArcCrossVlan,
                    rules_field,
                    format!("no rule allows {proto}/{} {from} -> {to}", req.port),
                )
                .problem(format!(
                    "AKS Arc needs {proto}/{} {way} ({}){near}",
                    req.port, req.purpose
                ))
                .expected(format!(
                    "an allow rule with protocol {proto}, sources [{from}], destinations [{to}], ports [{}]",
                    req.port
                )),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RuleProtocol;
    use crate::net::{AddressRange, PortRange};

    fn span(s: &str) -> Span {
        AddressRange::from(s).span().expect("test span")
    }

    fn rule(name: &str, from: &str, to: &str, ports: &[&str]) -> AllowRule {
        AllowRule {
            name: name.into(),
            protocol: RuleProtocol::Tcp,
            sources: vec![AddressRange::from(from)],
            destinations: vec![AddressRange::from(to)],
            ports: ports.iter().map(|p| PortRange::from(*p)).collect(),
        }
    }

    const MGMT: &str = "10.220.0.20-10.220.0.25";
    const LNET: &str = "10.220.32.0/24";

    fn complete() -> Vec<AllowRule> {
        vec![
            rule("mgmt-to-aks", "10.220.0.0/24", LNET, &["22", "6443"]),
            rule("aks-to-cloudagent", LNET, MGMT, &["55000", "65000"]),
        ]
    }

    #[test]
    fn seed_004_ports_all_allowed() {
        assert!(check_cross_vlan("arc.allowRules", span(MGMT), span(LNET), &complete()).is_empty());
    }

    #[test]
    fn a_missing_port_names_the_rule_to_add() {
        let mut rules = complete();
        rules[1] = rule("aks-to-cloudagent", LNET, MGMT, &["55000"]);
        let f = check_cross_vlan("arc.allowRules", span(MGMT), span(LNET), &rules);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field, "arc.allowRules");
        assert!(f[0].value.contains("tcp/65000"), "{}", f[0]);
        assert!(f[0].expected.contains("ports [65000]"), "{}", f[0]);
        assert!(f[0].expected.contains(LNET), "{}", f[0]);
    }

    #[test]
    fn direction_and_coverage_matter() {
        // Rules in the wrong direction allow nothing.
        let reversed = vec![
            rule("r1", LNET, "10.220.0.0/24", &["22", "6443"]),
            rule("r2", MGMT, LNET, &["55000", "65000"]),
        ];
        assert_eq!(
            check_cross_vlan("f", span(MGMT), span(LNET), &reversed).len(),
            4
        );
        // Half the logical network is not enough.
        let mut partial = complete();
        partial[0] = rule("mgmt-to-aks", MGMT, "10.220.32.0/25", &["22", "6443"]);
        let f = check_cross_vlan("f", span(MGMT), span(LNET), &partial);
        assert_eq!(f.len(), 2);
        assert!(
            f[0].problem.contains("mgmt-to-aks allow(s) the port"),
            "{}",
            f[0]
        );
    }

    #[test]
    fn any_protocol_and_port_ranges_count() {
        let mut wide = rule("any", "*", "*", &["1-65535"]);
        wide.protocol = RuleProtocol::Any;
        assert!(check_cross_vlan("f", span(MGMT), span(LNET), &[wide.clone()]).is_empty());
        wide.protocol = RuleProtocol::Udp;
        assert_eq!(
            check_cross_vlan("f", span(MGMT), span(LNET), &[wide]).len(),
            4
        );
    }
}
