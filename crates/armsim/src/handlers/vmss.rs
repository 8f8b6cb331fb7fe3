//! Read-only `Microsoft.Compute/virtualMachineScaleSets` views of agent pools in the node
//! resource group: the scale sets, and their instances' public IPs and NICs.

use super::paging::page;
use super::{Reply, Request};
use crate::error::{CloudError, CloudResult};
use crate::kinds::vmss;
use crate::path::ResPath;
use crate::sim::Sim;
use crate::state::{Kind, Resource, State};
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
            vmss::pools_in_rg(&st, sub, rg)
        }
        None => st.of_kind(Kind::AgentPool).collect(),
    };
    let items = pools
        .into_iter()
        .filter_map(|p| vmss::body(&st, p))
        .collect();
    Ok(page(sim, req, items))
}

/// GET of one scale set.
pub(super) fn get(sim: &Arc<Sim>, p: &ResPath) -> CloudResult<Reply> {
    let st = sim.state();
    let pool = pool_of(&st, p)?;
    let body = vmss::body(&st, pool).unwrap_or(Value::Null);
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
    let pool = pool_of(&st, p)?;
    let items = if type_key.ends_with("publicipaddresses") {
        vmss::public_ips(&st, pool)
    } else {
        vmss::nics(&st, pool)
    };
    drop(st);
    Ok(page(sim, req, items))
}

/// The agent pool behind the scale set `p` names.
fn pool_of<'a>(st: &'a State, p: &ResPath) -> CloudResult<&'a Resource> {
    st.resource_group(&p.sub, &p.rg)?;
    vmss::pool_named(st, &p.sub, &p.rg, &p.segs[0].1).ok_or_else(|| {
        CloudError::resource_not_found(
            "Microsoft.Compute/virtualMachineScaleSets",
            &p.segs[0].1,
            &p.rg,
        )
    })
}
