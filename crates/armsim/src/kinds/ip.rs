//! Public IP prefixes and public IP addresses, both drawn from the simulated address pool;
//! prefix length, version, IP tags and zones are fixed at creation as on Azure.

use super::{Built, Cx, resource_guid};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::state::{Kind, Resource, State};
use ipnet::IpNet;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub fn build_prefix(
    st: &mut State,
    cx: &Cx,
    existing: Option<&Resource>,
    req: &Obj,
) -> CloudResult<Built> {
    let p = json::props(req)?;
    let what = "publicIPPrefix";
    let sku = sku(req, &["Standard"], &["Regional", "Global"])?;
    let zones = zones(req)?;
    let version = version(&p, what)?;
    let length = json::opt_i64(&p, "prefixLength", what)?.ok_or_else(|| {
        CloudError::bad_request(
            "PublicIpPrefixLengthNotSpecified",
            format!("Public IP prefix {} must specify prefixLength.", cx.id),
        )
    })?;
    let (min, max) = if version == "IPv6" {
        (
            cx.limits.ipv6_prefix_min_length,
            cx.limits.ipv6_prefix_max_length,
        )
    } else {
        (
            cx.limits.ipv4_prefix_min_length,
            cx.limits.ipv4_prefix_max_length,
        )
    };
    if length < i64::from(min) || length > i64::from(max) {
        return Err(CloudError::bad_request(
            "SpecifiedPrefixLengthNotSupported",
            format!(
                "Specified PrefixLength {length} for PublicIpPrefix {} is outside limits. Minimum PrefixLength {min} Maximum PrefixLength {max}.",
                cx.id
            ),
        ));
    }
    let tags = ip_tags(&p, what)?;
    let mut out = Obj::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    out.insert("resourceGuid".into(), json!(resource_guid(existing)));
    out.insert("prefixLength".into(), json!(length));
    out.insert("publicIPAddressVersion".into(), json!(version));
    out.insert("ipTags".into(), tags.clone());
    match existing {
        Some(old) => {
            let op = old.props();
            immutable(cx, "prefixLength", op.get("prefixLength"), &json!(length))?;
            fixed_at_creation(cx, old, version, &tags, &zones, &sku)?;
            if let Some(prefix) = op.get("ipPrefix") {
                out.insert("ipPrefix".into(), prefix.clone());
            }
        }
        None => {
            let net = st
                .pool
                .allocate(version == "IPv6", length as u8)
                .ok_or_else(|| {
                    CloudError::bad_request(
                        "PublicIpPrefixCannotBeAllocated",
                        format!("No /{length} {version} prefix is left in the simulated public address pool for {}.", cx.id),
                    )
                })?;
            out.insert("ipPrefix".into(), json!(net.to_string()));
        }
    }
    let mut extra = Obj::new();
    extra.insert("sku".into(), sku);
    if !zones.is_empty() {
        extra.insert("zones".into(), json!(zones));
    }
    Ok(Built { props: out, extra })
}

pub fn build_public_ip(
    st: &mut State,
    cx: &Cx,
    existing: Option<&Resource>,
    req: &Obj,
) -> CloudResult<Built> {
    let p = json::props(req)?;
    let what = "publicIPAddress";
    let sku = sku(req, &["Standard", "Basic"], &["Regional", "Global"])?;
    let standard = sku["name"] == "Standard";
    let zones = zones(req)?;
    let version = version(&p, what)?;
    let method = match json::opt_str(&p, "publicIPAllocationMethod", what)? {
        Some(m) => {
            json::canonical_enum(m, &["Static", "Dynamic"], "publicIPAllocationMethod", what)?
        }
        None if standard => "Static",
        None => "Dynamic",
    };
    if standard && method != "Static" {
        return Err(CloudError::bad_request(
            "StandardSkuPublicIPAddressesMustBeStatic",
            format!(
                "Standard sku publicIp {} must have AllocationMethod set to Static.",
                cx.id
            ),
        ));
    }
    let idle = json::opt_i64(&p, "idleTimeoutInMinutes", what)?.unwrap_or(4);
    if !(4..=30).contains(&idle) {
        return Err(CloudError::bad_request(
            "PublicIPIdleTimeoutIsOutOfRange",
            format!(
                "IdleTimeoutInMinutes {idle} of public IP {} is out of range 4-30.",
                cx.id
            ),
        ));
    }
    let tags = ip_tags(&p, what)?;
    let prefix = json::opt_ref(&p, "publicIPPrefix", what)?;
    let mut out = Obj::new();
    out.insert("provisioningState".into(), json!("Succeeded"));
    out.insert("resourceGuid".into(), json!(resource_guid(existing)));
    out.insert("publicIPAddressVersion".into(), json!(version));
    out.insert("publicIPAllocationMethod".into(), json!(method));
    out.insert("idleTimeoutInMinutes".into(), json!(idle));
    out.insert("ipTags".into(), tags.clone());
    if let Some(dns) = json::opt_obj(&p, "dnsSettings", what)? {
        out.insert("dnsSettings".into(), Value::Object(dns.clone()));
    }
    if let Some(prefix_id) = &prefix {
        out.insert("publicIPPrefix".into(), json!({"id": prefix_id}));
    }
    match existing {
        Some(old) => {
            let op = old.props();
            let old_prefix = op
                .get("publicIPPrefix")
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str);
            if !old_prefix
                .map(str::to_ascii_lowercase)
                .eq(&prefix.as_deref().map(str::to_ascii_lowercase))
            {
                return Err(CloudError::bad_request(
                    "PropertyChangeNotAllowed",
                    format!(
                        "Changing property 'publicIPPrefix' of {} is not allowed.",
                        cx.id
                    ),
                ));
            }
            fixed_at_creation(cx, old, version, &tags, &zones, &sku)?;
            if let Some(ip) = op.get("ipAddress") {
                out.insert("ipAddress".into(), ip.clone());
            }
        }
        None => {
            let address = match &prefix {
                Some(prefix_id) => {
                    let pre = st
                        .get_kind(prefix_id, Kind::PublicIpPrefix)
                        .ok_or_else(|| CloudError::invalid_reference(prefix_id, cx.id))?;
                    if pre
                        .props()
                        .get("publicIPAddressVersion")
                        .and_then(Value::as_str)
                        != Some(version)
                    {
                        return Err(CloudError::bad_request(
                            "PublicIpAddressVersionDoesNotMatchPrefix",
                            format!(
                                "Public IP {} is {version} but prefix {prefix_id} is not.",
                                cx.id
                            ),
                        ));
                    }
                    Some(free_in_prefix(st, prefix_id, 1).into_iter().next().ok_or_else(|| {
                        CloudError::bad_request(
                            "PublicIpPrefixOutOfIpAddressesForPublicIp",
                            format!("Public IP prefix {prefix_id} has no free address left for {}.", cx.id),
                        )
                    })?)
                }
                None if method == "Static" => {
                    let bits = if version == "IPv6" { 128 } else { 32 };
                    let net = st.pool.allocate(version == "IPv6", bits).ok_or_else(|| {
                        CloudError::bad_request(
                            "PublicIpAddressCannotBeAllocated",
                            format!("The simulated public address pool is exhausted; cannot allocate {}.", cx.id),
                        )
                    })?;
                    Some(net.addr())
                }
                None => None,
            };
            if let Some(ip) = address {
                out.insert("ipAddress".into(), json!(ip.to_string()));
            }
        }
    }
    let mut extra = Obj::new();
    extra.insert("sku".into(), sku);
    if !zones.is_empty() {
        extra.insert("zones".into(), json!(zones));
    }
    Ok(Built { props: out, extra })
}

fn sku(req: &Obj, names: &[&'static str], tiers: &[&'static str]) -> CloudResult<Value> {
    let s = json::opt_obj(req, "sku", "resource")?;
    let name = match s.and_then(|s| s.get("name")).and_then(Value::as_str) {
        Some(n) => json::canonical_enum(n, names, "sku.name", "resource")?,
        None => "Standard",
    };
    let tier = match s.and_then(|s| s.get("tier")).and_then(Value::as_str) {
        Some(t) => json::canonical_enum(t, tiers, "sku.tier", "resource")?,
        None => "Regional",
    };
    Ok(json!({"name": name, "tier": tier}))
}

fn zones(req: &Obj) -> CloudResult<Vec<String>> {
    json::string_list(req, "zones", "resource")
}

fn version(p: &Obj, what: &str) -> CloudResult<&'static str> {
    match json::opt_str(p, "publicIPAddressVersion", what)? {
        Some(v) => json::canonical_enum(v, &["IPv4", "IPv6"], "publicIPAddressVersion", what),
        None => Ok("IPv4"),
    }
}

/// `ipTags`: `[{ipTagType, tag}]`, both non-empty.
pub fn ip_tags(p: &Obj, what: &str) -> CloudResult<Value> {
    ip_tags_at(p, "ipTags", what)
}

/// An IP tag list under `key` (`ipTags`, or `nodePublicIPTags` of an agent pool).
pub fn ip_tags_at(p: &Obj, key: &str, what: &str) -> CloudResult<Value> {
    let mut out = Vec::new();
    for t in json::opt_array(p, key, what)? {
        let t = json::as_obj(t, "an IP tag")?;
        let ty = json::opt_str(t, "ipTagType", "ipTag")?.unwrap_or("");
        let tag = json::opt_str(t, "tag", "ipTag")?.unwrap_or("");
        if ty.is_empty() || tag.is_empty() {
            return Err(CloudError::bad_request(
                "InvalidIpTag",
                format!("IP tags of {what} need both ipTagType and tag; got '{ty}' / '{tag}'."),
            ));
        }
        out.push(json!({"ipTagType": ty, "tag": tag}));
    }
    Ok(Value::Array(out))
}

fn tag_set(v: Option<&Value>) -> BTreeSet<(String, String)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["ipTagType"].as_str().unwrap_or("").to_ascii_lowercase(),
                t["tag"].as_str().unwrap_or("").to_ascii_lowercase(),
            )
        })
        .collect()
}

/// Version, IP tags, zones and SKU of prefixes and addresses are fixed at creation.
fn fixed_at_creation(
    cx: &Cx,
    old: &Resource,
    version: &str,
    tags: &Value,
    zones: &[String],
    sku: &Value,
) -> CloudResult<()> {
    let op = old.props();
    immutable(
        cx,
        "publicIPAddressVersion",
        op.get("publicIPAddressVersion"),
        &json!(version),
    )?;
    immutable_tags(cx, op.get("ipTags"), tags)?;
    immutable_zones(cx, old, zones)?;
    immutable(
        cx,
        "sku.name",
        old.body.get("sku").and_then(|s| s.get("name")),
        &sku["name"],
    )
}

fn immutable(cx: &Cx, field: &str, old: Option<&Value>, new: &Value) -> CloudResult<()> {
    if old.is_some_and(|o| o != new) {
        return Err(CloudError::bad_request(
            "PropertyChangeNotAllowed",
            format!(
                "Changing property '{field}' of {} is not allowed: it is fixed at creation (was {}, requested {new}).",
                cx.id,
                old.unwrap_or(&Value::Null)
            ),
        ));
    }
    Ok(())
}

fn immutable_tags(cx: &Cx, old: Option<&Value>, new: &Value) -> CloudResult<()> {
    if tag_set(old) != tag_set(Some(new)) {
        return Err(CloudError::bad_request(
            "PropertyChangeNotAllowed",
            format!(
                "Changing property 'ipTags' of {} is not allowed: IP tags are fixed at creation.",
                cx.id
            ),
        ));
    }
    Ok(())
}

fn immutable_zones(cx: &Cx, old: &Resource, new: &[String]) -> CloudResult<()> {
    let old_zones: BTreeSet<String> = old
        .body
        .get("zones")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|z| z.as_str().map(str::to_string))
        .collect();
    let new_zones: BTreeSet<String> = new.iter().cloned().collect();
    if old_zones != new_zones {
        let show = |z: &BTreeSet<String>| {
            if z.is_empty() {
                "NoZone".to_string()
            } else {
                z.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        return Err(CloudError::bad_request(
            "ResourceAvailabilityZonesCannotBeModified",
            format!(
                "Resource {} has an existing availability zone constraint {} and the request has availability zone constraint {}, which do not match. Zones cannot be added/updated/removed once the resource is created.",
                cx.id,
                show(&old_zones),
                show(&new_zones)
            ),
        ));
    }
    Ok(())
}

/// The addresses of a prefix, as a parsed network.
pub fn prefix_net(res: &Resource) -> Option<IpNet> {
    res.props().get("ipPrefix")?.as_str()?.parse().ok()
}

/// Addresses of `prefix_id` already handed out, to standalone public IPs or to AKS nodes.
pub fn used_in_prefix(st: &State, prefix_id: &str) -> BTreeSet<IpAddr> {
    let mut used: BTreeSet<IpAddr> = st
        .of_kind(Kind::PublicIp)
        .filter(|r| from_prefix(r, prefix_id))
        .filter_map(|r| r.props().get("ipAddress")?.as_str()?.parse().ok())
        .collect();
    for pool in super::aks::pools_using_prefix_res(st, prefix_id) {
        for node in st
            .nodes
            .get(&crate::state::key(&pool.id))
            .into_iter()
            .flatten()
        {
            if let Some(ip) = node.public_ip {
                used.insert(ip);
            }
        }
    }
    used
}

/// Up to `n` free addresses of the prefix, lowest first.
pub fn free_in_prefix(st: &State, prefix_id: &str, n: usize) -> Vec<IpAddr> {
    let Some(net) = st
        .get_kind(prefix_id, Kind::PublicIpPrefix)
        .and_then(prefix_net)
    else {
        return Vec::new();
    };
    let used = used_in_prefix(st, prefix_id);
    net.hosts_all()
        .filter(|ip| !used.contains(ip))
        .take(n)
        .collect()
}

fn from_prefix(r: &Resource, prefix_id: &str) -> bool {
    r.props()
        .get("publicIPPrefix")
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .is_some_and(|id| id.eq_ignore_ascii_case(prefix_id))
}

/// IDs of every public IP allocated from the prefix (standalone and VMSS instance IPs).
pub fn addresses_from_prefix(st: &State, prefix_id: &str) -> Vec<String> {
    let mut out: Vec<String> = st
        .of_kind(Kind::PublicIp)
        .filter(|r| from_prefix(r, prefix_id))
        .map(|r| r.id.clone())
        .collect();
    for pool in super::aks::pools_using_prefix_res(st, prefix_id) {
        out.extend(super::vmss::node_ip_ids(st, pool));
    }
    out
}

/// Returns a removed prefix or standalone address to the pool.
pub fn release(st: &mut State, res: &Resource) {
    let net = match res.kind {
        Kind::PublicIpPrefix => prefix_net(res),
        Kind::PublicIp if res.props().get("publicIPPrefix").is_none() => res
            .props()
            .get("ipAddress")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(IpNet::from),
        _ => None,
    };
    if let Some(net) = net {
        st.pool.release(&net);
    }
}

trait HostsAll {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>>;
}

impl HostsAll for IpNet {
    /// Every address of the prefix: a public prefix has no network/broadcast reservation.
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>> {
        match self {
            IpNet::V4(n) => {
                let start = u32::from(n.network());
                let count = 1u64 << (32 - n.prefix_len());
                Box::new((0..count).map(move |i| IpAddr::V4((start + i as u32).into())))
            }
            IpNet::V6(n) => {
                let start = u128::from(n.network());
                let count = 1u128 << (128 - n.prefix_len()).min(64);
                Box::new((0..count).map(move |i| IpAddr::V6((start + i).into())))
            }
        }
    }
}
