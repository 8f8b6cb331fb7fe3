//! Runs every check that applies to a `NetworkPlan` and gathers the outcome: findings, the
//! per-check status, and the figures behind them (subnet capacity, route budgets, Arc
//! address breakdown) for display.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::finding::{CheckId, Finding, Severity};
use super::model::{AksCluster, NetworkPlan, NetworkPlugin, Subnet, VirtualNetwork};
use super::net::Span;
use super::ranges::NamedRange;
use super::routes::{RouteBudget, RouteTableUse, RouteView};
use super::{addresses, apiserver, arc, capacity, cross_vlan, ranges, routes};

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
    pub route_budgets: Vec<RouteBudget>,
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

/// A node subnet with the clusters placed in it (by index) and their demand.
type Placed<'a> = (SubnetAt<'a>, Vec<(usize, capacity::NodeDemand)>);

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

fn finish(
    c: Collector,
    capacity: Vec<capacity::SubnetCapacity>,
    route_budgets: Vec<RouteBudget>,
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

/// VNet-level hygiene: reserved ranges, subnets inside their VNet and disjoint, VNets clear of
/// on-premises ranges and of each other.
fn check_vnets(plan: &NetworkPlan, c: &mut Collector) {
    if plan.vnets.is_empty() {
        return;
    }
    let on_prem = on_premises_ranges(plan);
    let mut all_spaces: Vec<NamedRange> = Vec::new();
    for (v, vnet) in plan.vnets.iter().enumerate() {
        let spaces = vnet_space_ranges(v, vnet);
        for s in &spaces {
            c.ran(
                &[CheckId::RangesReserved],
                ranges::check_named_reserved(s, "VNet address space"),
            );
            c.ran(
                &[CheckId::RangesOverlap],
                ranges::check_overlaps(
                    Severity::Error,
                    s,
                    &on_prem,
                    "; traffic for the overlap is misrouted between Azure and on-premises",
                ),
            );
            c.ran(
                &[CheckId::RangesOverlap],
                ranges::check_overlaps(
                    Severity::Warning,
                    s,
                    &all_spaces,
                    "; the two VNets cannot be peered",
                ),
            );
        }
        all_spaces.extend(spaces.iter().cloned());
        let space_nets: Vec<_> = spaces.iter().map(|s| s.net).collect();
        let mut subnets = Vec::new();
        for (s, subnet) in vnet.subnets.iter().enumerate() {
            let Some(net) = subnet.address_prefix.net() else {
                continue;
            };
            let field = format!("vnets[{v}].subnets[{s}].addressPrefix");
            c.ran(
                &[CheckId::RangesSubnetInVnet],
                ranges::check_subnet_in_vnet(
                    &field,
                    subnet.address_prefix.raw(),
                    net,
                    &vnet.name,
                    &space_nets,
                ),
            );
            subnets.push(NamedRange::new(
                field,
                subnet.address_prefix.raw(),
                format!("subnet {}", subnet.name),
                net,
            ));
        }
        c.ran(
            &[CheckId::RangesOverlap],
            ranges::check_pairwise(
                Severity::Error,
                &subnets,
                "; Azure rejects overlapping subnets",
            ),
        );
    }
}

/// Per-cluster capacity, pod/service ranges, DNS service IP and subnet sharing.
fn check_clusters(plan: &NetworkPlan, c: &mut Collector) -> Vec<capacity::SubnetCapacity> {
    if plan.clusters.is_empty() {
        return Vec::new();
    }
    c.ran(
        &[
            CheckId::PlanReference,
            CheckId::CapacityMaxPods,
            CheckId::CapacitySubnet,
            CheckId::RangesDnsServiceIp,
            CheckId::SubnetShared,
        ],
        [],
    );
    let on_prem = on_premises_ranges(plan);

    let mut rows = Vec::new();
    // (vnet, subnet) -> (subnet, clusters placed there with their demand)
    let mut by_subnet: BTreeMap<(usize, usize), Placed<'_>> = BTreeMap::new();
    for (i, cluster) in plan.clusters.iter().enumerate() {
        let surge = cluster.surge(&plan.settings);
        let max_pods = cluster
            .max_pods
            .unwrap_or(capacity::default_max_pods(cluster.network_plugin));
        c.ran(
            &[],
            capacity::check_max_pods(
                &format!("clusters[{i}].maxPods"),
                cluster.network_plugin,
                max_pods,
            ),
        );
        check_cluster_ranges(plan, i, cluster, &on_prem, c);

        let Some(at) = find_subnet(plan, &cluster.subnet) else {
            c.ran(
                &[],
                [subnet_reference_finding(
                    plan,
                    format!("clusters[{i}].subnet"),
                    &cluster.subnet,
                )],
            );
            continue;
        };
        let Some(prefix) = at.subnet.address_prefix.net() else {
            continue;
        };
        rows.push(capacity::SubnetCapacity::new(
            &cluster.name,
            &at.label(),
            prefix,
            cluster.network_plugin,
            max_pods,
            cluster.node_count,
            surge,
        ));
        by_subnet
            .entry((at.v, at.s))
            .or_insert((at, Vec::new()))
            .1
            .push((
                i,
                capacity::NodeDemand {
                    field: format!("clusters[{i}].nodeCount"),
                    cluster: cluster.name.clone(),
                    nodes: cluster.node_count,
                    surge,
                    addresses_per_node: capacity::addresses_per_node(
                        cluster.network_plugin,
                        max_pods,
                    ),
                },
            ));
    }

    for (at, placed) in by_subnet.values() {
        let Some(prefix) = at.subnet.address_prefix.net() else {
            continue;
        };
        let demands: Vec<_> = placed.iter().map(|(_, d)| d.clone()).collect();
        c.ran(
            &[],
            capacity::check_subnet_capacity(
                &format!("{}.addressPrefix", at.field()),
                prefix,
                at.subnet.used_addresses,
                &demands,
            ),
        );
        // kubenet clusters cannot share a node subnet with any other cluster.
        if placed.len() > 1 {
            let kubenet: Vec<&(usize, capacity::NodeDemand)> = placed
                .iter()
                .filter(|(i, _)| plan.clusters[*i].network_plugin == NetworkPlugin::Kubenet)
                .collect();
            if let Some((first_i, _)) = placed.first() {
                for (i, _) in placed.iter().skip(1) {
                    let involved = kubenet.iter().any(|(k, _)| k == i || k == first_i);
                    if involved {
                        c.ran(
                            &[],
                            [Finding::error(
                                CheckId::SubnetShared,
                                format!("clusters[{i}].subnet"),
                                &plan.clusters[*i].subnet,
                            )
                            .problem(format!(
                                "subnet {} already holds cluster {}; a kubenet cluster needs a subnet of its own",
                                at.label(),
                                plan.clusters[*first_i].name
                            ))
                            .expected("a subnet no other cluster uses")],
                        );
                    }
                }
            }
        }
    }
    rows
}

/// Pod CIDR (kubenet), service CIDR and DNS service IP of one cluster.
fn check_cluster_ranges(
    plan: &NetworkPlan,
    i: usize,
    cluster: &AksCluster,
    on_prem: &[NamedRange],
    c: &mut Collector,
) {
    let vnet_spaces = find_subnet(plan, &cluster.subnet)
        .map(|at| vnet_space_ranges(at.v, at.vnet))
        .unwrap_or_default();
    let mut against: Vec<NamedRange> = vnet_spaces;
    against.extend(on_prem.iter().cloned());

    let (service, service_default) = cluster.effective_service_cidr();
    let service_range = service.net().map(|net| {
        NamedRange::new(
            format!("clusters[{i}].serviceCidr"),
            defaulted(service.raw(), service_default),
            format!("service CIDR of cluster {}", cluster.name),
            net,
        )
    });
    if let Some(svc) = &service_range {
        c.ran(
            &[CheckId::RangesReserved],
            ranges::check_named_reserved(svc, "service CIDR"),
        );
        c.ran(
            &[CheckId::RangesOverlap],
            ranges::check_overlaps(Severity::Error, svc, &against, ""),
        );
    }

    if cluster.network_plugin == NetworkPlugin::Kubenet {
        let (pod, pod_default) = cluster.effective_pod_cidr();
        if let Some(net) = pod.net() {
            let pod_range = NamedRange::new(
                format!("clusters[{i}].podCidr"),
                defaulted(pod.raw(), pod_default),
                format!("pod CIDR of cluster {}", cluster.name),
                net,
            );
            c.ran(
                &[CheckId::RangesReserved],
                ranges::check_named_reserved(&pod_range, "pod CIDR"),
            );
            let mut pod_against = against.clone();
            pod_against.extend(service_range.iter().cloned());
            c.ran(
                &[CheckId::RangesOverlap],
                ranges::check_overlaps(Severity::Error, &pod_range, &pod_against, ""),
            );
            c.ran(
                &[CheckId::CapacityPodCidr],
                capacity::check_pod_cidr_capacity(
                    &pod_range.field,
                    &pod_range.value,
                    net,
                    cluster.node_count,
                    cluster.surge(&plan.settings),
                ),
            );
        }
    }

    let (dns, dns_default) = cluster.effective_dns_service_ip();
    if let (Some(ip), Some(svc)) = (dns.ip(), service.net()) {
        c.ran(
            &[],
            ranges::check_dns_service_ip(
                &format!("clusters[{i}].dnsServiceIp"),
                &defaulted(dns.raw(), dns_default),
                ip,
                svc,
            ),
        );
    }
}

/// kubenet route tables: limit, one cluster per table, default route; reserved destinations
/// in any described table.
fn check_routes(plan: &NetworkPlan, c: &mut Collector) -> Vec<RouteBudget> {
    for (t, table) in plan.route_tables.iter().enumerate() {
        for (r, route) in table.routes.iter().enumerate() {
            if let Some(net) = route.address_prefix.net() {
                c.ran(
                    &[CheckId::RoutesReservedPrefix],
                    routes::check_route_reserved(
                        &format!("routeTables[{t}].routes[{r}].addressPrefix"),
                        route.address_prefix.raw(),
                        net,
                    ),
                );
            }
        }
    }

    let mut budgets = Vec::new();
    let mut uses: BTreeMap<&str, Vec<RouteTableUse>> = BTreeMap::new();
    let mut kubenet_tables: BTreeSet<&str> = BTreeSet::new();
    for (i, cluster) in plan.clusters.iter().enumerate() {
        let Some(at) = find_subnet(plan, &cluster.subnet) else {
            continue;
        };
        let kubenet = cluster.network_plugin == NetworkPlugin::Kubenet;
        let table_name = at.subnet.route_table.as_deref();
        if let Some(name) = table_name {
            let field = format!("{}.routeTable", at.field());
            uses.entry(name).or_default().push(RouteTableUse {
                cluster: cluster.name.clone(),
                field: field.clone(),
            });
            if kubenet {
                kubenet_tables.insert(name);
            }
            if !plan.route_tables.iter().any(|t| t.name == name) {
                let known: Vec<&str> = plan.route_tables.iter().map(|t| t.name.as_str()).collect();
                c.ran(
                    &[CheckId::PlanReference],
                    [Finding::error(CheckId::PlanReference, field, name)
                        .problem(format!(
                            "route table {name} is not described under routeTables"
                        ))
                        .expected(if known.is_empty() {
                            "a route table described under routeTables (with its custom routes)"
                                .to_owned()
                        } else {
                            format!("one of {}", known.join(", "))
                        })],
                );
            }
        }
        if !kubenet {
            continue;
        }
        let custom = table_name
            .and_then(|n| plan.route_tables.iter().find(|t| t.name == n))
            .map(|t| t.routes.len() as u64)
            .unwrap_or(0);
        let budget = RouteBudget {
            route_table: table_name
                .map(str::to_owned)
                .unwrap_or_else(|| "(created by AKS)".to_owned()),
            cluster: cluster.name.clone(),
            nodes: u64::from(cluster.node_count),
            surge: u64::from(cluster.surge(&plan.settings)),
            custom_routes: custom,
            limit: plan.settings.route_limit,
        };
        c.ran(
            &[CheckId::RoutesLimit],
            routes::check_route_limit(
                &format!("clusters[{i}].nodeCount"),
                &cluster.node_count.to_string(),
                &budget,
            ),
        );
        budgets.push(budget);
    }

    for name in &kubenet_tables {
        c.ran(
            &[CheckId::RoutesSharedTable],
            routes::check_shared_route_table(
                name,
                uses.get(name).map(Vec::as_slice).unwrap_or(&[]),
            ),
        );
        let Some((t, table)) = plan
            .route_tables
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == *name)
        else {
            continue;
        };
        let views: Vec<RouteView> = table
            .routes
            .iter()
            .enumerate()
            .filter_map(|(r, route)| {
                Some(RouteView {
                    field: format!("routeTables[{t}].routes[{r}]"),
                    prefix: route.address_prefix.net()?,
                    next_hop_type: route.next_hop_type.clone(),
                    has_next_hop_ip: route
                        .next_hop_ip_address
                        .as_ref()
                        .is_some_and(|a| a.ip().is_some()),
                })
            })
            .collect();
        c.ran(
            &[CheckId::RoutesDefaultRoute],
            routes::check_default_route(name, &format!("routeTables[{t}].routes"), &views),
        );
    }
    budgets
}

fn check_api_server_subnets(plan: &NetworkPlan, c: &mut Collector) {
    let mut by_subnet: BTreeMap<(usize, usize), (SubnetAt<'_>, Vec<String>)> = BTreeMap::new();
    for (i, cluster) in plan.clusters.iter().enumerate() {
        let Some(reference) = &cluster.api_server_subnet else {
            continue;
        };
        let field = format!("clusters[{i}].apiServerSubnet");
        let Some(at) = find_subnet(plan, reference) else {
            c.ran(
                &[CheckId::PlanReference],
                [subnet_reference_finding(plan, field, reference)],
            );
            continue;
        };
        if let Some(node) = find_subnet(plan, &cluster.subnet) {
            c.ran(
                &[CheckId::ApiServerVnet],
                apiserver::check_same_vnet(&field, reference, &at.vnet.name, &node.vnet.name),
            );
        }
        by_subnet
            .entry((at.v, at.s))
            .or_insert((at, Vec::new()))
            .1
            .push(cluster.name.clone());
    }
    for (at, clusters) in by_subnet.values() {
        let base = at.field();
        let prefix_field = format!("{base}.addressPrefix");
        let raw = at.subnet.address_prefix.raw();
        c.ran(
            &[CheckId::ApiServerDelegation],
            apiserver::check_delegation(&format!("{base}.delegations"), &at.subnet.delegations),
        );
        if let Some(prefix) = at.subnet.address_prefix.net() {
            c.ran(
                &[CheckId::ApiServerSize],
                apiserver::check_size(&prefix_field, raw, prefix),
            );
            c.ran(
                &[CheckId::ApiServerFreeAddresses],
                apiserver::check_free_addresses(
                    &prefix_field,
                    raw,
                    prefix,
                    at.subnet.used_addresses,
                    clusters,
                ),
            );
        }
        let node_users: Vec<String> = plan
            .clusters
            .iter()
            .filter(|k| find_subnet(plan, &k.subnet).is_some_and(|n| (n.v, n.s) == (at.v, at.s)))
            .map(|k| k.name.clone())
            .collect();
        c.ran(
            &[CheckId::ApiServerDedicated],
            apiserver::check_dedicated(&base, &at.subnet.other_workloads, &node_users),
        );
    }
}

fn check_arc(plan: &super::model::ArcPlan, c: &mut Collector) -> arc::ArcAddressPlan {
    let breakdown = arc::address_plan(plan);
    c.ran(
        &[CheckId::ArcGateway, CheckId::ArcIpPool],
        arc::check_logical_network(plan),
    );
    c.ran(
        &[CheckId::ArcPoolCapacity],
        arc::check_pool_capacity(plan, &breakdown),
    );
    c.ran(
        &[CheckId::ArcControlPlaneIp],
        arc::check_control_plane_ips(plan),
    );
    c.ran(
        &[CheckId::ArcLoadBalancerIp],
        arc::check_load_balancer_ips(plan),
    );
    c.ran(
        &[CheckId::ArcLoadBalancerCount],
        arc::check_load_balancer_count(plan),
    );
    if let Some(m) = &plan.management_network {
        let lnet = &plan.logical_network;
        let same_vlan = matches!((m.vlan, lnet.vlan), (Some(a), Some(b)) if a == b);
        let management = m
            .infrastructure_ips
            .as_ref()
            .and_then(|r| r.span())
            .or_else(|| m.address_prefix.net().map(Span::of_net));
        let logical = lnet.address_prefix.net().map(Span::of_net);
        if let (false, Some(management), Some(logical)) = (same_vlan, management, logical) {
            c.ran(
                &[CheckId::ArcCrossVlan],
                cross_vlan::check_cross_vlan(
                    "arc.allowRules",
                    management,
                    logical,
                    &plan.allow_rules,
                ),
            );
        }
    }
    breakdown
}

#[cfg(test)]
mod tests {
    use super::*;

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
        p.on_premises
            .push(crate::model::OnPremisesRange {
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
        p.on_premises
            .push(crate::model::OnPremisesRange {
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
