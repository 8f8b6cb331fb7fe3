//! Checks on the plan's VNets alone: reserved ranges, subnets inside their VNet, overlaps.

use crate::finding::{CheckId, Severity};
use crate::model::NetworkPlan;
use crate::ranges::{self, NamedRange};

use super::{Collector, on_premises_ranges, vnet_space_ranges};

/// VNet-level hygiene: reserved ranges, subnets inside their VNet and disjoint, VNets clear of
/// on-premises ranges and of each other.
pub(super) fn check_vnets(plan: &NetworkPlan, c: &mut Collector) {
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
