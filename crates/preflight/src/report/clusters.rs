//! Checks per AKS cluster: node subnet capacity, pod and service ranges, DNS service IP.

use std::collections::BTreeMap;

use crate::capacity;
use crate::finding::{CheckId, Finding, Severity};
use crate::model::{AksCluster, NetworkPlan, NetworkPlugin};
use crate::ranges::{self, NamedRange};

use super::{
    Collector, SubnetAt, defaulted, find_subnet, on_premises_ranges, subnet_reference_finding,
    vnet_space_ranges,
};

/// A node subnet with the clusters placed in it (by index) and their demand.
type Placed<'a> = (SubnetAt<'a>, Vec<(usize, capacity::NodeDemand)>);

/// Per-cluster capacity, pod/service ranges, DNS service IP and subnet sharing.
pub(super) fn check_clusters(
    plan: &NetworkPlan,
    c: &mut Collector,
) -> Vec<capacity::SubnetCapacity> {
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
