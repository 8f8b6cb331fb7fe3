//! Per-type validation and canonicalisation of PUT bodies, in-use checks for DELETE, and the
//! fields ARM computes at read time (back-references such as an NSG's `subnets`).

pub mod aks;
pub mod ip;
pub mod nsg;
pub mod route_table;
pub mod vmss;
pub mod vnet;

use crate::config::Limits;
use crate::error::{CloudError, CloudResult};
use crate::json::Obj;
use crate::state::{Kind, Resource, State};
use serde_json::{Value, json};

/// What a PUT is about: the resource's identity and the limits in force.
pub struct Cx<'a> {
    pub limits: &'a Limits,
    pub id: &'a str,
    pub name: &'a str,
    pub sub: &'a str,
    pub rg: &'a str,
    pub location: &'a str,
}

/// A validated PUT: the new `properties` and top-level extras (`sku`, `zones`).
pub struct Built {
    pub props: Obj,
    pub extra: Obj,
}

impl Built {
    pub fn props(props: Obj) -> Self {
        Built {
            props,
            extra: Obj::new(),
        }
    }
}

/// Validates a PUT of `kind` and returns its canonical form. May allocate addresses or nodes
/// in `st`, but only once every check has passed, so a refused PUT changes nothing.
pub fn build(
    kind: Kind,
    st: &mut State,
    cx: &Cx,
    existing: Option<&Resource>,
    req: &Obj,
) -> CloudResult<Built> {
    match kind {
        Kind::Nsg => nsg::build(st, cx, existing, req).map(Built::props),
        Kind::Asg => Ok(Built::props(simple_props(existing))),
        Kind::RouteTable => route_table::build(st, cx, existing, req).map(Built::props),
        Kind::VirtualNetwork => vnet::build(st, cx, existing, req).map(Built::props),
        Kind::PublicIpPrefix => ip::build_prefix(st, cx, existing, req),
        Kind::PublicIp => ip::build_public_ip(st, cx, existing, req),
        Kind::ManagedCluster => aks::build_cluster(st, cx, existing, req).map(Built::props),
        Kind::AgentPool => aks::build_pool(st, cx, existing, req).map(Built::props),
    }
}

/// `provisioningState` + `resourceGuid`, the properties every Network resource has.
pub fn simple_props(existing: Option<&Resource>) -> Obj {
    let mut p = Obj::new();
    p.insert("provisioningState".into(), json!("Succeeded"));
    p.insert("resourceGuid".into(), json!(resource_guid(existing)));
    p
}

pub fn resource_guid(existing: Option<&Resource>) -> String {
    existing
        .and_then(|r| r.props().get("resourceGuid"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(crate::state::new_guid)
}

/// Refuses a DELETE while other resources still use this one, with Azure's codes.
pub fn check_delete(st: &State, res: &Resource) -> CloudResult<()> {
    match res.kind {
        Kind::Nsg => {
            let users = vnet::subnets_referencing(st, "networkSecurityGroup", &res.id);
            if !users.is_empty() {
                return Err(CloudError::bad_request(
                    "InUseNetworkSecurityGroupCannotBeDeleted",
                    format!(
                        "Network security group {} cannot be deleted because it is in use by the following resources: {}. In order to delete the Network security group, remove the association with the resource(s).",
                        res.id,
                        users.join(", ")
                    ),
                ));
            }
        }
        Kind::RouteTable => {
            let users = vnet::subnets_referencing(st, "routeTable", &res.id);
            if !users.is_empty() {
                return Err(CloudError::bad_request(
                    "InUseRouteTableCannotBeDeleted",
                    format!(
                        "Route table {} is in use and cannot be deleted. In order to delete the route table, remove the association with the resource(s): {}.",
                        res.id,
                        users.join(", ")
                    ),
                ));
            }
        }
        Kind::Asg => {
            let mut users = vmss::ip_configs_in_asg(st, &res.id);
            users.extend(nsg::rules_referencing_asg(st, &res.id));
            if !users.is_empty() {
                return Err(CloudError::bad_request(
                    "InUseApplicationSecurityGroupCannotBeDeleted",
                    format!(
                        "Application Security Group {} cannot be deleted because it is referenced by: {}.",
                        res.id,
                        users.join(", ")
                    ),
                ));
            }
        }
        Kind::PublicIpPrefix => {
            let users = ip::addresses_from_prefix(st, &res.id);
            if !users.is_empty() {
                return Err(CloudError::bad_request(
                    "InUsePublicIpPrefixCannotBeDeleted",
                    format!(
                        "Public IP prefix {} cannot be deleted since it is in use by public IP addresses: {}. Delete the public IP addresses first.",
                        res.id,
                        users.join(", ")
                    ),
                ));
            }
            let pools = aks::pools_using_prefix(st, &res.id);
            if !pools.is_empty() {
                return Err(CloudError::bad_request(
                    "InUsePublicIpPrefixCannotBeDeleted",
                    format!(
                        "Public IP prefix {} cannot be deleted since it is referenced by agent pools: {}.",
                        res.id,
                        pools.join(", ")
                    ),
                ));
            }
        }
        Kind::VirtualNetwork => {
            for subnet in vnet::subnet_ids(res) {
                vnet::check_subnet_unused(st, &subnet)?;
            }
        }
        Kind::PublicIp | Kind::ManagedCluster | Kind::AgentPool => {}
    }
    Ok(())
}

/// Releases what a removed resource held (addresses, nodes, managed ASGs).
pub fn on_removed(st: &mut State, res: &Resource) {
    match res.kind {
        Kind::PublicIpPrefix | Kind::PublicIp => ip::release(st, res),
        Kind::AgentPool => aks::release_pool(st, res),
        Kind::ManagedCluster => aks::release_cluster(st, res),
        _ => {}
    }
}

/// The body a GET returns: the stored body plus fields computed from other resources.
pub fn render(st: &State, res: &Resource) -> Value {
    let mut body = res.body.clone();
    let extra: Vec<(&str, Value)> = match res.kind {
        Kind::Nsg => refs(
            "subnets",
            vnet::subnets_referencing(st, "networkSecurityGroup", &res.id),
        ),
        Kind::RouteTable => refs(
            "subnets",
            vnet::subnets_referencing(st, "routeTable", &res.id),
        ),
        Kind::PublicIpPrefix => refs("publicIPAddresses", ip::addresses_from_prefix(st, &res.id)),
        Kind::ManagedCluster => vec![("agentPoolProfiles", aks::pool_profiles(st, res))],
        _ => Vec::new(),
    };
    if let Some(Value::Object(p)) = body.get_mut("properties") {
        for (k, v) in extra {
            p.insert(k.to_string(), v);
        }
    }
    body
}

/// The body a request at `api_version` gets: [`render`], shaped as that api-version documents
/// the type. Only agent pools differ between the versions armsim serves (see [`aks::shape_pool`]).
pub fn render_at(st: &State, res: &Resource, api_version: &str) -> Value {
    let mut body = render(st, res);
    if res.kind == Kind::AgentPool {
        aks::shape_pool(&mut body, res.etag(), api_version);
    }
    body
}

/// The `ETag` response header of a single-resource answer: none for agent pools, for which the
/// spec documents no such header (their ETag is in the body, from 2024-10-01).
pub fn etag_header(res: &Resource) -> &str {
    if res.kind == Kind::AgentPool {
        ""
    } else {
        res.etag()
    }
}

fn refs(key: &str, ids: Vec<String>) -> Vec<(&str, Value)> {
    if ids.is_empty() {
        Vec::new()
    } else {
        vec![(
            key,
            Value::Array(ids.into_iter().map(|id| json!({"id": id})).collect()),
        )]
    }
}

/// Checks that `id` names an existing resource of `kind`, for references in a body.
pub fn check_ref(st: &State, id: &str, kind: Kind, by: &str) -> CloudResult<()> {
    if st.get_kind(id, kind).is_some() {
        Ok(())
    } else {
        Err(CloudError::invalid_reference(id, by))
    }
}

/// Copies ETag into every child of `props[array]` (children share their parent's ETag).
pub fn stamp_children(props: &mut Obj, arrays: &[&str], etag: &str) {
    for a in arrays {
        if let Some(Value::Array(items)) = props.get_mut(*a) {
            for item in items {
                if let Some(o) = item.as_object_mut() {
                    o.insert("etag".into(), Value::String(etag.to_string()));
                }
            }
        }
    }
}
