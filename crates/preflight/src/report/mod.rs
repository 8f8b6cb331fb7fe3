//! Runs every check that applies to a `NetworkPlan` and gathers the outcome: findings, the
//! per-check status, and the figures behind them (subnet capacity, route budgets, Arc
//! address breakdown) for display.
//!
//! One submodule per part of the plan the checks read: VNets, clusters (capacity and
//! ranges), route tables, API-server subnets and the Arc plan. This file holds the report
//! types, the subnet lookups they share and `run`, whose tests cover the whole pipeline.

mod api_server_subnets;
mod arc_plan;
mod clusters;
mod route_tables;
mod vnets;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::finding::{CheckId, Finding, Severity};
use crate::model::{NetworkPlan, Subnet, VirtualNetwork};
use crate::ranges::NamedRange;
use crate::routes::KubenetRouteBudget;
use crate::{addresses, arc, capacity};

use api_server_subnets::check_api_server_subnets;
use arc_plan::check_arc;
use clusters::check_clusters;
use route_tables::check_routes;
use vnets::check_vnets;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub check: CheckId,
    pub status: CheckStatus,
    pub errors: usize,
    pub warnings: usize,
    pub summary: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// No finding of severity error.
    pub passed: bool,
    pub checks: Vec<CheckOutcome>,
    pub findings: Vec<Finding>,
    pub capacity: Vec<capacity::SubnetCapacity>,
    pub route_budgets: Vec<KubenetRouteBudget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arc: Option<arc::ArcAddressPlan>,
}

#[derive(Default)]
struct Collector {
    applicable: BTreeSet<CheckId>,
    findings: Vec<Finding>,
}

impl Collector {
    fn ran(&mut self, checks: &[CheckId], findings: impl IntoIterator<Item = Finding>) {
        self.applicable.extend(checks.iter().copied());
        self.findings.extend(findings);
    }
}

/// A subnet found by a `<vnet>/<subnet>` reference.
#[derive(Clone, Copy)]
struct SubnetAt<'a> {
    v: usize,
    s: usize,
    vnet: &'a VirtualNetwork,
    subnet: &'a Subnet,
}

impl SubnetAt<'_> {
    fn field(&self) -> String {
        format!("vnets[{}].subnets[{}]", self.v, self.s)
    }

    fn label(&self) -> String {
        format!("{}/{}", self.vnet.name, self.subnet.name)
    }
}

/// `<vnet>/<subnet>`, or a bare subnet name when only one VNet has it.
fn find_subnet<'a>(plan: &'a NetworkPlan, reference: &str) -> Option<SubnetAt<'a>> {
    let mut all = plan.vnets.iter().enumerate().flat_map(|(v, vnet)| {
        vnet.subnets
            .iter()
            .enumerate()
            .map(move |(s, subnet)| SubnetAt { v, s, vnet, subnet })
    });
    match reference.split_once('/') {
        Some((vnet, subnet)) => all.find(|a| a.vnet.name == vnet && a.subnet.name == subnet),
        None => {
            let mut hits = all.filter(|a| a.subnet.name == reference);
            let first = hits.next()?;
            hits.next().is_none().then_some(first)
        }
    }
}

fn known_subnets(plan: &NetworkPlan) -> String {
    let names: Vec<String> = plan
        .vnets
        .iter()
        .flat_map(|v| {
            v.subnets
                .iter()
                .map(move |s| format!("{}/{}", v.name, s.name))
        })
        .collect();
    if names.is_empty() {
        "a subnet declared under vnets (none are)".to_owned()
    } else {
        format!("one of {}", names.join(", "))
    }
}

fn subnet_reference_finding(plan: &NetworkPlan, field: String, value: &str) -> Finding {
    Finding::error(CheckId::PlanReference, field, value)
        .problem(format!("no subnet {value} in the plan"))
        .expected(known_subnets(plan))
}

fn defaulted(raw: &str, is_default: bool) -> String {
    if is_default {
        format!("{raw} (AKS default)")
    } else {
        raw.to_owned()
    }
}

pub fn run(plan: &NetworkPlan) -> Report {
    let mut c = Collector::default();
    c.ran(
        &[CheckId::PlanAddress],
        addresses::check_plan_addresses(plan),
    );
    check_vnets(plan, &mut c);
    let capacity = check_clusters(plan, &mut c);
    let route_budgets = check_routes(plan, &mut c);
    check_api_server_subnets(plan, &mut c);
    let arc = plan.arc.as_ref().map(|a| check_arc(a, &mut c));
    finish(c, capacity, route_budgets, arc)
}

/// The checks [`crate::live::check`] runs on a NodePoolNetwork against its live cluster.
pub const LIVE_CHECKS: &[CheckId] = &[
    CheckId::RoutesNeedKubenet,
    CheckId::PoolWindowsNeedsCni,
    CheckId::RoutesClusterRange,
    CheckId::RoutesReservedPrefix,
    CheckId::RoutesDefaultRoute,
    CheckId::RoutesLimit,
    CheckId::NsgReservedSource,
    CheckId::AksVersion,
    CheckId::HostPortAutoAssign,
];

/// The report of [`crate::live::check`]: a NodePoolNetwork judged against the facts read from
/// its cluster's ARM resources (`kubectl poolnet plan NAME`), in the same form as a plan
/// file's.
pub fn live(
    spec: &poolnet_api::v1alpha1::NodePoolNetworkSpec,
    facts: &crate::live::LiveFacts,
) -> Report {
    let mut c = Collector::default();
    c.ran(LIVE_CHECKS, crate::live::check(spec, facts));
    finish(c, Vec::new(), Vec::new(), None)
}

fn finish(
    c: Collector,
    capacity: Vec<capacity::SubnetCapacity>,
    route_budgets: Vec<KubenetRouteBudget>,
    arc: Option<arc::ArcAddressPlan>,
) -> Report {
    let mut applicable = c.applicable;
    applicable.extend(c.findings.iter().map(|f| f.check));
    let checks = applicable
        .into_iter()
        .map(|check| {
            let count = |sev: Severity| {
                c.findings
                    .iter()
                    .filter(|f| f.check == check && f.severity == sev)
                    .count()
            };
            let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
            let status = if errors > 0 {
                CheckStatus::Fail
            } else if warnings > 0 {
                CheckStatus::Warn
            } else {
                CheckStatus::Pass
            };
            CheckOutcome {
                check,
                status,
                errors,
                warnings,
                summary: check.summary(),
            }
        })
        .collect();
    Report {
        passed: !c.findings.iter().any(Finding::is_error),
        checks,
        findings: c.findings,
        capacity,
        route_budgets,
        arc,
    }
}

fn on_premises_ranges(plan: &NetworkPlan) -> Vec<NamedRange> {
    plan.on_premises
        .iter()
        .enumerate()
        .filter_map(|(o, r)| {
            Some(NamedRange::new(
                format!("onPremises[{o}].addressPrefix"),
                r.address_prefix.raw(),
                format!("on-premises range {}", r.name),
                r.address_prefix.net()?,
            ))
        })
        .collect()
}

fn vnet_space_ranges(v: usize, vnet: &VirtualNetwork) -> Vec<NamedRange> {
    vnet.address_space
        .iter()
        .enumerate()
        .filter_map(|(a, p)| {
            Some(NamedRange::new(
                format!("vnets[{v}].addressSpace[{a}]"),
                p.raw(),
                format!("address space of VNet {}", vnet.name),
                p.net()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetworkPlugin;

    fn plan(yaml: &str) -> NetworkPlan {
        serde_yaml::from_str(yaml).expect("test plan")
    }

    const SEED_001: &str = "
vnets:
  - name: myAKSVnet
    addressSpace: [192.168.0.0/16]
    subnets:
      - name: myAKSSubnet
        addressPrefix: 192.168.1.0/24
        routeTable: myRouteTable
routeTables:
  - name: myRouteTable
    routes:
      - name: egress
        addressPrefix: 0.0.0.0/0
        nextHopType: Internet
clusters:
  - name: myAKSCluster
    networkPlugin: kubenet
    subnet: myAKSVnet/myAKSSubnet
    nodeCount: 3
";

    #[test]
    fn seed_001_plan_passes_with_the_documented_figures() {
        let r = run(&plan(SEED_001));
        assert!(r.passed, "{:#?}", r.findings);
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        let row = &r.capacity[0];
        assert_eq!((row.kubenet.max_nodes, row.kubenet.max_pods), (251, 27_610));
        assert_eq!((row.azure_cni.max_nodes, row.azure_cni.max_pods), (8, 240));
        assert_eq!(r.route_budgets[0].used(), 5);
        let ran: Vec<CheckId> = r.checks.iter().map(|c| c.check).collect();
        for id in [
            CheckId::CapacitySubnet,
            CheckId::RangesReserved,
            CheckId::RangesDnsServiceIp,
            CheckId::RoutesLimit,
            CheckId::RoutesDefaultRoute,
        ] {
            assert!(ran.contains(&id), "{id} did not run");
        }
    }

    #[test]
    fn aks_defaults_are_checked_against_on_premises() {
        let mut p = plan(SEED_001);
        p.on_premises.push(crate::model::OnPremisesRange {
            name: "corp".into(),
            address_prefix: "10.0.0.0/8".into(),
        });
        let r = run(&p);
        assert!(!r.passed);
        let svc = r
            .findings
            .iter()
            .find(|f| f.field == "clusters[0].serviceCidr")
            .expect("service CIDR overlap");
        assert_eq!(svc.value, "10.0.0.0/16 (AKS default)");
        assert!(r.findings.iter().any(|f| f.field == "clusters[0].podCidr"));
    }

    #[test]
    fn unknown_subnet_is_a_reference_error() {
        let mut p = plan(SEED_001);
        p.clusters[0].subnet = "myAKSVnet/nope".into();
        let r = run(&p);
        let f = r
            .findings
            .iter()
            .find(|f| f.check == CheckId::PlanReference)
            .expect("reference finding");
        assert_eq!(f.field, "clusters[0].subnet");
        assert!(f.expected.contains("myAKSVnet/myAKSSubnet"));
    }

    #[test]
    fn unknown_route_table_is_a_reference_error() {
        let mut p = plan(SEED_001);
        p.vnets[0].subnets[0].route_table = Some("other-rt".into());
        let r = run(&p);
        let f = r
            .findings
            .iter()
            .find(|f| f.check == CheckId::PlanReference)
            .expect("reference finding");
        assert_eq!(f.field, "vnets[0].subnets[0].routeTable");
        assert_eq!(f.value, "other-rt");
        assert_eq!(f.expected, "one of myRouteTable");
    }

    #[test]
    fn vnets_against_on_premises_and_each_other() {
        let mut p = plan(SEED_001);
        p.on_premises.push(crate::model::OnPremisesRange {
            name: "branch".into(),
            address_prefix: "192.168.0.0/20".into(),
        });
        let mut hub = p.vnets[0].clone();
        hub.name = "hub".into();
        hub.subnets.clear();
        hub.address_space = vec!["192.168.128.0/17".into()];
        p.vnets.push(hub);
        let r = run(&p);
        let overlaps: Vec<(&str, Severity)> = r
            .findings
            .iter()
            .filter(|f| f.check == CheckId::RangesOverlap)
            .map(|f| (f.field.as_str(), f.severity))
            .collect();
        assert_eq!(
            overlaps,
            [
                ("vnets[0].addressSpace[0]", Severity::Error),
                ("vnets[1].addressSpace[0]", Severity::Warning)
            ]
        );
    }

    #[test]
    fn two_clusters_on_one_kubenet_subnet_and_route_table() {
        let mut p = plan(SEED_001);
        let mut second = p.clusters[0].clone();
        second.name = "other".into();
        p.clusters.push(second);
        let r = run(&p);
        let ids: Vec<CheckId> = r.findings.iter().map(|f| f.check).collect();
        assert!(ids.contains(&CheckId::SubnetShared), "{ids:?}");
        assert!(ids.contains(&CheckId::RoutesSharedTable), "{ids:?}");
    }

    #[test]
    fn cni_clusters_may_share_a_subnet() {
        let mut p = plan(SEED_001);
        p.clusters[0].network_plugin = NetworkPlugin::Azure;
        p.clusters[0].node_count = 2;
        let mut second = p.clusters[0].clone();
        second.name = "other".into();
        p.clusters.push(second);
        let r = run(&p);
        assert!(r.passed, "{:#?}", r.findings);
    }

    #[test]
    fn checks_table_reports_status_per_check() {
        let mut p = plan(SEED_001);
        p.clusters[0].node_count = 300;
        let r = run(&p);
        let status = |id: CheckId| r.checks.iter().find(|c| c.check == id).map(|c| c.status);
        assert_eq!(status(CheckId::CapacitySubnet), Some(CheckStatus::Fail));
        assert_eq!(status(CheckId::CapacityPodCidr), Some(CheckStatus::Fail));
        assert_eq!(status(CheckId::RoutesLimit), Some(CheckStatus::Pass));
        assert_eq!(status(CheckId::ArcGateway), None);
    }
}
