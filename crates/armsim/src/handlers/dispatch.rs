//! Routing: which handler answers a parsed request, after the api-version and method checks
//! ARM does first. The order of the checks decides which error a bad request gets.

use super::{Reply, Request, child_resources, operations, resource_groups, resources, vmss};
use crate::error::{CloudError, CloudResult};
use crate::path::{ResPath, Route};
use crate::sim::Sim;
use crate::state::{
    COMPUTE_API_VERSIONS, ChildKind, FEATURES_API_VERSIONS, Kind, RESOURCES_API_VERSIONS,
    SUBSCRIPTION_API_VERSIONS, VMSS_NETWORK_API_VERSIONS,
};
use std::sync::Arc;

pub fn handle(sim: &Arc<Sim>, req: &Request) -> Reply {
    match dispatch(sim, req) {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    }
}

pub(super) fn method_not_allowed(req: &Request) -> CloudError {
    CloudError::new(
        405,
        "MethodNotAllowed",
        format!(
            "The HTTP method '{}' is not supported for path '{}'.",
            req.method, req.path
        ),
    )
}

fn unknown_type(req: &Request) -> CloudError {
    CloudError::new(
        404,
        "InvalidResourceType",
        format!(
            "The resource type of path '{}' could not be found in the namespaces armsim serves.",
            req.path
        ),
    )
}

fn well_formed_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || (b[10] == b'-' && b.len() > 11))
}

fn check_api_version(req: &Request, allowed: &[&str], rtype: &str) -> CloudResult<()> {
    let Some(v) = req.query("api-version") else {
        return Err(CloudError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if !well_formed_version(v) {
        return Err(CloudError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                allowed.join(",")
            ),
        ));
    }
    if !allowed.contains(&v) {
        return Err(CloudError::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location and API version '{v}' for type '{rtype}'. The supported api-versions are '{}'.",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

fn dispatch(sim: &Arc<Sim>, req: &Request) -> CloudResult<Reply> {
    match req.route {
        Route::Subscription { sub } => {
            check_api_version(req, SUBSCRIPTION_API_VERSIONS, "subscriptions")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            resource_groups::get_subscription(sim, sub)
        }
        Route::ResourceGroups { sub } => {
            check_api_version(req, RESOURCES_API_VERSIONS, "resourceGroups")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            resource_groups::list(sim, req, sub)
        }
        Route::ResourceGroup { sub, rg } => {
            check_api_version(req, RESOURCES_API_VERSIONS, "resourceGroups")?;
            resource_groups::resource_group(sim, req, sub, rg)
        }
        Route::Collection { sub, rg, ns, rtype } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            collection(sim, req, sub, rg.as_deref(), ns, rtype)
        }
        Route::Resource(p) => resource(sim, req, p),
        Route::AsyncOperation { op_id, .. } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            operations::op_status(sim, req, op_id)
        }
        Route::OperationResult { op_id, .. } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            operations::op_result(sim, req, op_id)
        }
        Route::Feature { sub, ns, name } => {
            check_api_version(req, FEATURES_API_VERSIONS, "features")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            resource_groups::get_feature(sim, sub, ns, name)
        }
        Route::Unknown => Err(unknown_type(req)),
    }
}

/// A list of top-level resources (or of scale sets) in a subscription or resource group.
fn collection(
    sim: &Arc<Sim>,
    req: &Request,
    sub: &str,
    rg: Option<&str>,
    ns: &str,
    rtype: &str,
) -> CloudResult<Reply> {
    let type_key = format!("{}/{}", ns.to_ascii_lowercase(), rtype.to_ascii_lowercase());
    if type_key == "microsoft.compute/virtualmachinescalesets" {
        check_api_version(req, COMPUTE_API_VERSIONS, "virtualMachineScaleSets")?;
        return vmss::list(sim, req, sub, rg);
    }
    let kind = Kind::from_type_key(&type_key)
        .filter(|k| *k != Kind::AgentPool)
        .ok_or_else(|| unknown_type(req))?;
    check_api_version(req, kind.api_versions(), kind.type_name())?;
    resources::list(sim, req, sub, rg, kind)
}

/// A path below a resource group's provider: a resource, a child, or a list under a resource.
fn resource(sim: &Arc<Sim>, req: &Request, p: &ResPath) -> CloudResult<Reply> {
    let type_key = p.type_key();
    // VMSS views of agent pools.
    match type_key.as_str() {
        "microsoft.compute/virtualmachinescalesets" => {
            check_api_version(req, COMPUTE_API_VERSIONS, "virtualMachineScaleSets")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            return vmss::get(sim, p);
        }
        "microsoft.compute/virtualmachinescalesets/publicipaddresses"
        | "microsoft.compute/virtualmachinescalesets/networkinterfaces" => {
            check_api_version(
                req,
                VMSS_NETWORK_API_VERSIONS,
                "virtualMachineScaleSets/publicIPAddresses",
            )?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            return vmss::list_instance_children(sim, req, p, &type_key);
        }
        _ => {}
    }
    if p.collection.is_some() {
        if req.method != "GET" {
            return Err(method_not_allowed(req));
        }
        if type_key == "microsoft.containerservice/managedclusters/agentpools" {
            check_api_version(
                req,
                Kind::AgentPool.api_versions(),
                Kind::AgentPool.type_name(),
            )?;
            return resources::list_agent_pools(sim, req, p);
        }
        let ck = ChildKind::from_key(&type_key).ok_or_else(|| unknown_type(req))?;
        check_api_version(req, ck.parent().api_versions(), ck.type_name())?;
        return child_resources::list(sim, req, ck, p);
    }
    if p.segs.len() == 2
        && let Some(ck) = ChildKind::from_key(&type_key)
    {
        check_api_version(req, ck.parent().api_versions(), ck.type_name())?;
        return match req.method {
            "GET" => child_resources::get(sim, p, ck),
            "PUT" if ck.writable() => child_resources::put(sim, req, p, ck),
            "DELETE" if ck.writable() => child_resources::delete(sim, req, p, ck),
            _ => Err(method_not_allowed(req)),
        };
    }
    let kind = Kind::from_type_key(&type_key)
        .filter(|k| p.segs.len() == if *k == Kind::AgentPool { 2 } else { 1 })
        .ok_or_else(|| unknown_type(req))?;
    check_api_version(req, kind.api_versions(), kind.type_name())?;
    match req.method {
        "GET" => resources::get(sim, req, p, kind),
        "PUT" => resources::put(sim, req, p, kind),
        "PATCH" if kind != Kind::AgentPool => resources::patch(sim, req, p, kind),
        "DELETE" => resources::delete(sim, req, p, kind),
        _ => Err(method_not_allowed(req)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_shapes() {
        assert!(well_formed_version("2024-03-01"));
        assert!(well_formed_version("2024-02-02-preview"));
        assert!(!well_formed_version("2024-3-01"));
        assert!(!well_formed_version("latest"));
        assert!(!well_formed_version("2024-03-01-"));
    }
}
