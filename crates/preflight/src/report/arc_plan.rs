//! Checks on the AKS Arc plan (seed 004): static IPs and the ports between VLANs.

use crate::finding::CheckId;
use crate::model::ArcPlan;
use crate::net::Span;
use crate::{arc, cross_vlan};

use super::Collector;

pub(super) fn check_arc(plan: &ArcPlan, c: &mut Collector) -> arc::ArcAddressPlan {
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
