//! Virtual networks and subnets: address space containment and overlap, NSG / route table
//! association, delegations, and the in-use checks that protect subnets AKS uses.

use super::{Cx, check_ref, resource_guid};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::state::{Kind, Resource, State};
use ipnet::IpNet;
use serde_json::{Value, json};
use std::collections::HashMap;

const SUBNET_TYPE: &str = "Microsoft.Network/virtualNetworks/subnets";
const DELEGATION_TYPE: &str = "Microsoft.Network/virtualNetworks/subnets/delegations";

pub fn build(st: &State, cx: &Cx, existing: Option<&Resource>, req: &Obj) -> CloudResult<Obj> {
    let p = json::props(req)?;
    let space = json::opt_obj(&p, "addressSpace", "virtualNetwork")?.ok_or_else(|| {
        CloudError::bad_request(
            "InvalidAddressSpace",
            format!(
                "Virtual network {} must specify addressSpace.addressPrefixes.",
                cx.id
            ),
        )
    })?;
    let prefixes = json::string_list(space, "addressPrefixes", "addressSpace")?;
    if prefixes.is_empty() {
        return Err(CloudError::bad_request(
            "InvalidAddressSpace",
            format!(
                "Virtual network {} must have at least one address prefix.",
                cx.id
            ),
        ));
    }
    let mut nets = Vec::new();
    for prefix in &prefixes {
        nets.push(parse_cidr(prefix).ok_or_else(|| {
            CloudError::bad_request(
                "InvalidAddressPrefixFormat",
                format!(
                    "Address prefix {prefix} of virtual network {} is not a valid CIDR.",
                    cx.id
                ),
            )
        })?);
    }
    let mut subnets = Vec::new();
    for raw in json::opt_array(&p, "subnets", "virtualNetwork")? {
        subnets.push(canonical_subnet(st, cx, raw)?);
    }
    check_subnets(cx, &nets, &subnets)?;
    // Removing a subnet in the same PUT is a delete of that subnet: it must be unused.
    if let Some(old) = existing {
        for old_id in subnet_ids(old) {
            let kept = subnets.iter().any(|s| {
                s["id"]
                    .as_str()
                    .is_some_and(|id| id.eq_ignore_ascii_case(&old_id))
            });
            if !kept {
                check_subnet_unused(st, &old_id)?;
            }
        }
    }
    let mut out = Obj::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    out.insert("resourceGuid".into(), json!(resource_guid(existing)));
    out.insert("addressSpace".into(), json!({"addressPrefixes": prefixes}));
    if let Some(dhcp) = json::opt_obj(&p, "dhcpOptions", "virtualNetwork")? {
        out.insert("dhcpOptions".into(), Value::Object(dhcp.clone()));
    }
    out.insert("subnets".into(), Value::Array(subnets));
    out.insert("virtualNetworkPeerings".into(), json!([]));
    out.insert(
        "enableDdosProtection".into(),
        json!(json::opt_bool(&p, "enableDdosProtection", "virtualNetwork")?.unwrap_or(false)),
    );
    Ok(out)
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    let net: IpNet = s.parse().ok()?;
    // Azure refuses prefixes with host bits set (10.0.0.1/16).
    (net.network() == net.addr()).then_some(net)
}

pub fn canonical_subnet(st: &State, cx: &Cx, raw: &Value) -> CloudResult<Value> {
    let s = json::as_obj(raw, "a subnet")?;
    let name = json::opt_str(s, "name", "subnet")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CloudError::invalid_format("Subnet name is missing."))?;
    let subnet_id = format!("{}/subnets/{name}", cx.id);
    let what = format!("subnet {name}");
    let p = json::props(s)?;
    let single = json::opt_str(&p, "addressPrefix", &what)?;
    let list = json::string_list(&p, "addressPrefixes", &what)?;
    if single.is_none() && list.is_empty() {
        return Err(CloudError::bad_request(
            "NetcfgInvalidSubnet",
            format!("Subnet {subnet_id} must specify addressPrefix or addressPrefixes."),
        ));
    }
    for prefix in single
        .iter()
        .copied()
        .chain(list.iter().map(String::as_str))
    {
        if parse_cidr(prefix).is_none() {
            return Err(CloudError::bad_request(
                "NetcfgInvalidSubnet",
                format!(
                    "Subnet '{name}' is not valid in virtual network '{}': address prefix {prefix} is not a valid CIDR.",
                    cx.name
                ),
            ));
        }
    }
    let mut props = Obj::new();
    props.insert("provisioningState".into(), json!("Succeeded"));
    if let Some(prefix) = single {
        props.insert("addressPrefix".into(), json!(prefix));
    }
    if !list.is_empty() {
        props.insert("addressPrefixes".into(), json!(list));
    }
    if let Some(nsg) = json::opt_ref(&p, "networkSecurityGroup", &what)? {
        check_ref(st, &nsg, Kind::Nsg, &subnet_id)?;
        props.insert("networkSecurityGroup".into(), json!({"id": nsg}));
    }
    if let Some(rt) = json::opt_ref(&p, "routeTable", &what)? {
        check_ref(st, &rt, Kind::RouteTable, &subnet_id)?;
        props.insert("routeTable".into(), json!({"id": rt}));
    }
    let mut delegations = Vec::new();
    for d in json::opt_array(&p, "delegations", &what)? {
        let d = json::as_obj(d, "a delegation")?;
        let dname = json::opt_str(d, "name", "delegation")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| CloudError::invalid_format("Delegation name is missing."))?;
        let dp = json::props(d)?;
        let service = json::opt_str(&dp, "serviceName", "delegation")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                CloudError::bad_request(
                    "InvalidServiceNameOnDelegation",
                    format!("Delegation {dname} of subnet {subnet_id} must name a service."),
                )
            })?;
        delegations.push(json!({
            "name": dname,
            "id": format!("{subnet_id}/delegations/{dname}"),
            "type": DELEGATION_TYPE,
            "properties": {
                "provisioningState": "Succeeded",
                "serviceName": service,
                "actions": ["Microsoft.Network/virtualNetworks/subnets/join/action"],
            }
        }));
    }
    props.insert("delegations".into(), Value::Array(delegations));
    if let Some(se) = p.get("serviceEndpoints").filter(|v| v.is_array()) {
        props.insert("serviceEndpoints".into(), se.clone());
    }
    props.insert(
        "privateEndpointNetworkPolicies".into(),
        json!(json::opt_str(&p, "privateEndpointNetworkPolicies", &what)?.unwrap_or("Disabled")),
    );
    props.insert(
        "privateLinkServiceNetworkPolicies".into(),
        json!(json::opt_str(&p, "privateLinkServiceNetworkPolicies", &what)?.unwrap_or("Enabled")),
    );
    Ok(json!({"name": name, "id": subnet_id, "type": SUBNET_TYPE, "properties": props}))
}

fn subnet_nets(subnet: &Value) -> Vec<IpNet> {
    let p = &subnet["properties"];
    p["addressPrefix"]
        .as_str()
        .into_iter()
        .chain(
            p["addressPrefixes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        .filter_map(parse_cidr)
        .collect()
}

fn check_subnets(cx: &Cx, space: &[IpNet], subnets: &[Value]) -> CloudResult<()> {
    let mut names: HashMap<String, &str> = HashMap::new();
    let mut seen: Vec<(IpNet, &str)> = Vec::new();
    for s in subnets {
        let name = s["name"].as_str().unwrap_or("");
        if names.insert(name.to_ascii_lowercase(), name).is_some() {
            return Err(CloudError::bad_request(
                "DuplicateResourceName",
                format!(
                    "Resource {} has two child resources with the same name ({name}).",
                    cx.id
                ),
            ));
        }
        for net in subnet_nets(s) {
            if !space.iter().any(|v| v.contains(&net)) {
                return Err(CloudError::bad_request(
                    "NetcfgSubnetRangeOutsideVnet",
                    format!(
                        "Subnet '{name}' is not valid because its IP address range is outside the IP address range of virtual network '{}'.",
                        cx.name
                    ),
                ));
            }
            if let Some((_, other)) = seen
                .iter()
                .find(|(o, _)| o.contains(&net) || net.contains(o))
            {
                return Err(CloudError::bad_request(
                    "NetcfgSubnetRangesOverlap",
                    format!(
                        "Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet '{other}' in virtual network '{}'.",
                        cx.name
                    ),
                ));
            }
            seen.push((net, name));
        }
    }
    Ok(())
}

pub fn subnet_ids(vnet: &Resource) -> Vec<String> {
    vnet.props()
        .get("subnets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

/// IDs of subnets whose `property` (`networkSecurityGroup` / `routeTable`) points at `id`.
pub fn subnets_referencing(st: &State, property: &str, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for vnet in st.of_kind(Kind::VirtualNetwork) {
        for s in vnet
            .props()
            .get("subnets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s["properties"][property]["id"]
                .as_str()
                .is_some_and(|r| r.eq_ignore_ascii_case(id))
                && let Some(sid) = s["id"].as_str()
            {
                out.push(sid.to_string());
            }
        }
    }
    out
}

/// Refuses to remove a subnet an AKS agent pool runs in.
pub fn check_subnet_unused(st: &State, subnet_id: &str) -> CloudResult<()> {
    let users: Vec<String> = st
        .of_kind(Kind::AgentPool)
        .filter(|p| {
            p.props()
                .get("vnetSubnetID")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(subnet_id))
        })
        .map(|p| p.id.clone())
        .collect();
    if users.is_empty() {
        Ok(())
    } else {
        Err(CloudError::bad_request(
            "InUseSubnetCannotBeDeleted",
            format!(
                "Subnet {subnet_id} is in use by {} and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet.",
                users.join(", ")
            ),
        ))
    }
}

/// The subnet body with `id` inside a VNet, if present.
pub fn find_subnet<'a>(st: &'a State, subnet_id: &str) -> Option<&'a Value> {
    let (vnet_id, _) = subnet_id.rsplit_once("/subnets/")?;
    let vnet = st.get_kind(vnet_id, Kind::VirtualNetwork)?;
    vnet.props().get("subnets")?.as_array()?.iter().find(|s| {
        s["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(subnet_id))
    })
}
