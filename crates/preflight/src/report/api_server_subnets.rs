//! Checks on the subnets of API Server VNet Integration (seed 002).

use std::collections::BTreeMap;

use crate::apiserver;
use crate::finding::CheckId;
use crate::model::NetworkPlan;

use super::{Collector, SubnetAt, find_subnet, subnet_reference_finding};

pub(super) fn check_api_server_subnets(plan: &NetworkPlan, c: &mut Collector) {
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
