//! Route tables: route validation (prefix, next hop), one route per prefix, the route limit.

use super::{Cx, resource_guid};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::state::{Resource, State};
use serde_json::{Value, json};
use std::collections::HashMap;

const ROUTE_TYPE: &str = "Microsoft.Network/routeTables/routes";
const NEXT_HOPS: &[&str] = &[
    "VirtualNetworkGateway",
    "VnetLocal",
    "Internet",
    "VirtualAppliance",
    "None",
];

pub fn build(_st: &State, cx: &Cx, existing: Option<&Resource>, req: &Obj) -> CloudResult<Obj> {
    let p = json::props(req)?;
    let mut routes = Vec::new();
    for raw in json::opt_array(&p, "routes", "routeTable")? {
        routes.push(canonical_route(cx, raw)?);
    }
    if routes.len() > cx.limits.routes_per_table {
        return Err(CloudError::bad_request(
            "RouteTableRoutesLimitReached",
            format!(
                "Route table {} has {} routes, which exceeds the limit of {} routes per route table.",
                cx.id,
                routes.len(),
                cx.limits.routes_per_table
            ),
        ));
    }
    let mut names: HashMap<String, &str> = HashMap::new();
    let mut prefixes: HashMap<String, &str> = HashMap::new();
    for r in &routes {
        let name = r["name"].as_str().unwrap_or("");
        if names.insert(name.to_ascii_lowercase(), name).is_some() {
            return Err(CloudError::bad_request(
                "DuplicateResourceName",
                format!(
                    "Resource {} has two child resources with the same name ({name}).",
                    cx.id
                ),
            ));
        }
        let prefix = r["properties"]["addressPrefix"].as_str().unwrap_or("");
        if let Some(other) = prefixes.insert(prefix.to_ascii_lowercase(), name) {
            return Err(CloudError::bad_request(
                "RouteConflict",
                format!(
                    "Route {name} conflicts with Route {other}. Routes cannot have the same AddressPrefix."
                ),
            ));
        }
    }
    let mut out = Obj::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    out.insert("resourceGuid".into(), json!(resource_guid(existing)));
    out.insert(
        "disableBgpRoutePropagation".into(),
        json!(json::opt_bool(&p, "disableBgpRoutePropagation", "routeTable")?.unwrap_or(false)),
    );
    out.insert("routes".into(), Value::Array(routes));
    Ok(out)
}

pub fn canonical_route(cx: &Cx, raw: &Value) -> CloudResult<Value> {
    let r = json::as_obj(raw, "a route")?;
    let name = json::opt_str(r, "name", "route")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CloudError::invalid_format("Route name is missing."))?;
    let route_id = format!("{}/routes/{name}", cx.id);
    let what = format!("route {name}");
    let p = json::props(r)?;
    let prefix = json::opt_str(&p, "addressPrefix", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "RouteParameterMissing",
            format!("Route {route_id} is missing required property 'addressPrefix'."),
        )
    })?;
    let prefix_ok = if prefix.contains('/') {
        prefix.parse::<ipnet::IpNet>().is_ok()
    } else {
        super::nsg::valid_address_prefix(prefix) && !prefix.contains('.') && prefix != "*"
    };
    if !prefix_ok {
        return Err(CloudError::bad_request(
            "InvalidRouteAddressPrefix",
            format!(
                "Route {route_id} has invalid AddressPrefix {prefix}. It must be a CIDR or a service tag."
            ),
        ));
    }
    let hop = json::opt_str(&p, "nextHopType", &what)?.ok_or_else(|| {
        CloudError::bad_request(
            "RouteParameterMissing",
            format!("Route {route_id} is missing required property 'nextHopType'."),
        )
    })?;
    let hop = json::canonical_enum(hop, NEXT_HOPS, "nextHopType", &what)?;
    let hop_ip = json::opt_str(&p, "nextHopIpAddress", &what)?.filter(|s| !s.is_empty());
    match (hop, hop_ip) {
        ("VirtualAppliance", None) => {
            return Err(CloudError::bad_request(
                "InvalidNextHopIpAddress",
                format!(
                    "Route {route_id} has next hop type VirtualAppliance and needs a nextHopIpAddress."
                ),
            ));
        }
        ("VirtualAppliance", Some(ip)) if ip.parse::<std::net::IpAddr>().is_err() => {
            return Err(CloudError::bad_request(
                "InvalidNextHopIpAddress",
                format!("Route {route_id} has invalid nextHopIpAddress {ip}."),
            ));
        }
        (other, Some(ip)) if other != "VirtualAppliance" => {
            return Err(CloudError::bad_request(
                "NextHopIpAddressNotAllowed",
                format!(
                    "Route {route_id} has next hop type {other}; nextHopIpAddress {ip} is only allowed with VirtualAppliance."
                ),
            ));
        }
        _ => {}
    }
    let mut props = Obj::new();
    props.insert("provisioningState".into(), json!("Succeeded"));
    props.insert("addressPrefix".into(), json!(prefix));
    props.insert("nextHopType".into(), json!(hop));
    if let Some(ip) = hop_ip {
        props.insert("nextHopIpAddress".into(), json!(ip));
    }
    props.insert("hasBgpOverride".into(), json!(false));
    Ok(json!({"name": name, "id": route_id, "type": ROUTE_TYPE, "properties": props}))
}
