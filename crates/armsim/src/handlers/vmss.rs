//! Read-only `Microsoft.Compute/virtualMachineScaleSets` views of agent pools in the node
//! resource group: the scale sets, and their instances' public IPs and NICs.

use super::paging::page;
use super::{Reply, Request};
use crate::error::CloudResult;
use crate::kinds::aks;
use crate::path::ResPath;
use crate::sim::Sim;
use crate::state::{Kind, Resource};
use serde_json::Value;
use std::sync::Arc;

/// The scale sets of a subscription, or of one (node) resource group.
pub(super) fn list(
    sim: &Arc<Sim>,
    req: &Request,
    sub: &str,
    rg: Option<&str>,
) -> CloudResult<Reply> {
    let st = sim.state();
    st.subscription(sub)?;
    let pools: Vec<&Resource> = match rg {
        Some(rg) => {
            st.resource_group(sub, rg)?;
            aks::pools_in_node_rg(&st, sub, rg)
        }
        None => st.of_kind(Kind::AgentPool).collect(),
    };
    let items = pools
        .into_iter()
        .filter_map(|p| aks::vmss_body(&st, p))
        .collect();
    Ok(page(sim, req, items))
}

/// GET of one scale set.
pub(super) fn get(sim: &Arc<Sim>, p: &ResPath) -> CloudResult<Reply> {
    let st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let pool = aks::pool_for_vmss(&st, &p.sub, &p.rg, &p.segs[0].1).ok_or_else(|| {
        crate::error::CloudError::resource_not_found(
            "Microsoft.Compute/virtualMachineScaleSets",
            &p.segs[0].1,
            &p.rg,
        )
    })?;
    let body = aks::vmss_body(&st, pool).unwrap_or(Value::Null);
    Ok(Reply::json(200, body))
}

/// The public IPs or the NICs of a scale set's instances.
pub(super) fn list_instance_children(
    sim: &Arc<Sim>,
    req: &Request,
    p: &ResPath,
    type_key: &str,
) -> CloudResult<Reply> {
    let st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let pool = aks::pool_for_vmss(&st, &p.sub, &p.rg, &p.segs[0].1).ok_or_else(|| {
        crate::error::CloudError::resource_not_found(
            "Microsoft.Compute/virtualMachineScaleSets",
            &p.segs[0].1,
            &p.rg,
        )
    })?;
    let items = if type_key.ends_with("publicipaddresses") {
        aks::vmss_public_ips(&st, pool)
    } else {
        aks::vmss_nics(&st, pool)
    };
    drop(st);
    Ok(page(sim, req, items))
}
