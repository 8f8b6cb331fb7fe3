//! AKS managed clusters and agent pools: creation-only fields, node scaling with one public IP
//! per node (from the pool's prefix, carrying its IP tags) and NIC membership of ASGs. The scale
//! set behind each pool is in `vmss`.

use super::{Cx, ip};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::state::{self, Kind, Node, Resource, State, key};
use serde_json::{Value, json};
use std::net::IpAddr;

pub const DEFAULT_K8S_VERSION: &str = "1.29.2";

fn invalid(message: String) -> CloudError {
    CloudError::bad_request("InvalidParameter", message)
}

fn change_not_allowed(field: &str, pool: &str) -> CloudError {
    CloudError::bad_request(
        "PropertyChangeNotAllowed",
        format!(
            "Changing property '{field}' is not allowed (agent pool {pool}): it can only be set when the pool is created."
        ),
    )
}

pub fn cluster_of_pool(pool_id: &str) -> &str {
    pool_id
        .rsplit_once("/agentPools/")
        .or_else(|| pool_id.rsplit_once("/agentpools/"))
        .map(|(c, _)| c)
        .unwrap_or(pool_id)
}

fn short_hash(s: &str) -> u32 {
    // FNV-1a: stable across runs, so VMSS names in a fixture are predictable.
    let mut h: u32 = 0x811c_9dc5;
    for b in s.to_ascii_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 100_000_000
}

/// `aks-<pool>-<8 digits>-vmss`, the digits derived from the cluster as AKS does per cluster.
pub fn vmss_name(cluster_id: &str, pool_name: &str) -> String {
    format!("aks-{pool_name}-{:08}-vmss", short_hash(cluster_id))
}

pub fn node_resource_group(st: &State, cluster_id: &str) -> Option<String> {
    st.get_kind(cluster_id, Kind::ManagedCluster)?
        .props()
        .get("nodeResourceGroup")?
        .as_str()
        .map(str::to_string)
}

pub fn build_cluster(
    st: &mut State,
    cx: &Cx,
    existing: Option<&Resource>,
    req: &Obj,
) -> CloudResult<Obj> {
    let p = json::props(req)?;
    let what = "managedCluster";
    let mut out = p.clone();
    out.remove("agentPoolProfiles");
    let version = json::opt_str(&p, "kubernetesVersion", what)?.unwrap_or(DEFAULT_K8S_VERSION);
    out.insert("kubernetesVersion".into(), json!(version));
    out.insert("currentKubernetesVersion".into(), json!(version));
    let dns = json::opt_str(&p, "dnsPrefix", what)?.unwrap_or(cx.name);
    out.insert("dnsPrefix".into(), json!(dns));
    let default_node_rg = format!("MC_{}_{}_{}", cx.rg, cx.name, cx.location);
    let node_rg = json::opt_str(&p, "nodeResourceGroup", what)?
        .map(str::to_string)
        .unwrap_or_else(|| {
            existing
                .and_then(|e| e.props().get("nodeResourceGroup"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or(default_node_rg)
        });
    if let Some(old) = existing
        .and_then(|e| e.props().get("nodeResourceGroup"))
        .and_then(Value::as_str)
        && !old.eq_ignore_ascii_case(&node_rg)
    {
        return Err(CloudError::bad_request(
            "PropertyChangeNotAllowed",
            format!(
                "Changing property 'nodeResourceGroup' of {} is not allowed.",
                cx.id
            ),
        ));
    }
    out.insert("nodeResourceGroup".into(), json!(node_rg));
    let mut net = json::opt_obj(&p, "networkProfile", what)?
        .cloned()
        .unwrap_or_default();
    for (k, v) in [
        ("networkPlugin", "kubenet"),
        ("loadBalancerSku", "standard"),
        ("outboundType", "loadBalancer"),
        ("serviceCidr", "10.0.0.0/16"),
        ("dnsServiceIP", "10.0.0.10"),
    ] {
        net.entry(k).or_insert_with(|| json!(v));
    }
    if net.get("networkPlugin").and_then(Value::as_str) == Some("kubenet") {
        net.entry("podCidr")
            .or_insert_with(|| json!("10.244.0.0/16"));
    }
    out.insert("networkProfile".into(), Value::Object(net));
    out.insert("powerState".into(), json!({"code": "Running"}));
    out.insert("provisioningState".into(), json!("Succeeded"));
    // The node resource group is AKS's: created with the cluster, managed by it.
    let sub_key = key(cx.sub);
    if let Some(sub) = st.subscriptions.get_mut(&sub_key) {
        sub.resource_groups
            .entry(key(&node_rg))
            .or_insert_with(|| state::ResourceGroup {
                name: node_rg.clone(),
                location: cx.location.to_string(),
                tags: Obj::new(),
                managed_by: Some(cx.id.to_string()),
                deleting: false,
            });
    }
    Ok(out)
}

/// An agent pool as AKS answers it at `api_version`. AKS models agent pools as proxy resources:
/// no top-level `etag` in any version. Up to 2024-09-01 there is no ETag at all; from
/// [`state::AGENT_POOL_ETAG_SINCE`] on it is the read-only `properties.eTag`, a bare token as in
/// the spec's examples (`"eTag": "ebwiyfneowv"`), which `If-Match` is compared with. `etag` is
/// the stored concurrency token (`W/"uuid"`).
pub fn shape_pool(body: &mut Value, etag: &str, api_version: &str) {
    let Value::Object(b) = body else {
        return;
    };
    b.remove("etag");
    let bare = etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"');
    if state::agent_pool_etags(api_version)
        && !bare.is_empty()
        && let Some(Value::Object(p)) = b.get_mut("properties")
    {
        p.insert("eTag".into(), json!(bare));
    }
}

/// Creation-only agent pool fields: AKS refuses to change them afterwards.
const CREATION_ONLY: &[&str] = &[
    "enableNodePublicIP",
    "nodePublicIPPrefixID",
    "vmSize",
    "osType",
    "vnetSubnetID",
    "maxPods",
    "osDiskSizeGB",
    "availabilityZones",
];

pub fn build_pool(
    st: &mut State,
    cx: &Cx,
    existing: Option<&Resource>,
    req: &Obj,
) -> CloudResult<Obj> {
    let req_props = json::props(req)?;
    let what = "agentPool";
    let cluster_id = cluster_of_pool(cx.id).to_string();
    let cluster_version = st
        .get_kind(&cluster_id, Kind::ManagedCluster)
        .and_then(|c| c.props().get("kubernetesVersion"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_K8S_VERSION)
        .to_string();

    // Start from the stored pool so fields a client leaves out keep their value.
    let mut out = existing.map(|e| e.props().clone()).unwrap_or_default();
    if let Some(old) = existing {
        for field in CREATION_ONLY {
            if let Some(new) = req_props.get(*field).filter(|v| !v.is_null()) {
                let old_v = old.props().get(*field).cloned().unwrap_or(Value::Null);
                let same = match (&old_v, new) {
                    (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                    (Value::Null, Value::Bool(false)) => true,
                    (a, b) => a == b,
                };
                if !same {
                    return Err(change_not_allowed(field, cx.id));
                }
            }
        }
    }
    // `eTag` is read-only: a client that sends back the body it read (with a possibly stale
    // eTag) is not refused for it, the value is ignored; `If-Match` is the precondition.
    for (k, v) in &req_props {
        if !v.is_null() && k != "eTag" {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in [
        ("vmSize", json!("Standard_DS2_v2")),
        ("osDiskSizeGB", json!(128)),
        ("osDiskType", json!("Managed")),
        ("kubeletDiskType", json!("OS")),
        ("maxPods", json!(110)),
        ("type", json!("VirtualMachineScaleSets")),
        ("mode", json!("User")),
        ("osType", json!("Linux")),
        ("osSKU", json!("Ubuntu")),
        ("enableNodePublicIP", json!(false)),
        ("enableFIPS", json!(false)),
        ("enableEncryptionAtHost", json!(false)),
        ("enableUltraSSD", json!(false)),
        ("count", json!(1)),
        ("orchestratorVersion", json!(cluster_version.clone())),
        (
            "nodeImageVersion",
            json!("AKSUbuntu-2204gen2containerd-202402.07.0"),
        ),
        ("upgradeSettings", json!({"maxSurge": "10%"})),
    ] {
        out.entry(k).or_insert(v);
    }
    out.insert(
        "currentOrchestratorVersion".into(),
        out["orchestratorVersion"].clone(),
    );
    out.insert("powerState".into(), json!({"code": "Running"}));

    let count = json::opt_i64(&out, "count", what)?.unwrap_or(1);
    if count < 0 || count > i64::from(cx.limits.nodes_per_pool) {
        return Err(invalid(format!(
            "The value of parameter agentPoolProfile.count is invalid: {count} (allowed 0-{}).",
            cx.limits.nodes_per_pool
        )));
    }
    if json::opt_bool(&out, "enableAutoScaling", what)? == Some(true) {
        let min = json::opt_i64(&out, "minCount", what)?;
        let max = json::opt_i64(&out, "maxCount", what)?;
        let (Some(min), Some(max)) = (min, max) else {
            return Err(invalid(format!(
                "Agent pool {} enables autoscaling: minCount and maxCount are required.",
                cx.id
            )));
        };
        if min < 0 || max < 1 || min > max || max > i64::from(cx.limits.nodes_per_pool) {
            return Err(invalid(format!(
                "Agent pool {}: minCount {min} and maxCount {max} must satisfy 0 <= minCount <= maxCount <= {}.",
                cx.id, cx.limits.nodes_per_pool
            )));
        }
        if count < min || count > max {
            return Err(invalid(format!(
                "Agent pool {}: count {count} must be between minCount {min} and maxCount {max} when autoscaling is enabled.",
                cx.id
            )));
        }
    }
    let public_ip = json::opt_bool(&out, "enableNodePublicIP", what)?.unwrap_or(false);
    let prefix = json::opt_str(&out, "nodePublicIPPrefixID", what)?.map(str::to_string);
    if let Some(prefix_id) = &prefix {
        if !public_ip {
            return Err(invalid(format!(
                "nodePublicIPPrefixID of agent pool {} requires enableNodePublicIP to be true.",
                cx.id
            )));
        }
        let pre = st.get_kind(prefix_id, Kind::PublicIpPrefix).ok_or_else(|| {
            invalid(format!(
                "Public IP prefix {prefix_id} given as nodePublicIPPrefixID of agent pool {} was not found.",
                cx.id
            ))
        })?;
        if pre
            .props()
            .get("publicIPAddressVersion")
            .and_then(Value::as_str)
            != Some("IPv4")
        {
            return Err(invalid(format!(
                "Public IP prefix {prefix_id} of agent pool {} must be IPv4.",
                cx.id
            )));
        }
    }
    if let Some(subnet) = json::opt_str(&out, "vnetSubnetID", what)?
        && super::vnet::find_subnet(st, subnet).is_none()
    {
        return Err(invalid(format!(
            "Subnet {subnet} given as vnetSubnetID of agent pool {} was not found.",
            cx.id
        )));
    }

    let req_net = json::opt_obj(&req_props, "networkProfile", what)?;
    let old_net = existing
        .and_then(|e| e.props().get("networkProfile"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut net = old_net.clone();
    if let Some(n) = req_net {
        if n.get("nodePublicIPTags").is_some_and(|v| !v.is_null()) {
            let new_tags = ip::ip_tags_at(n, "nodePublicIPTags", "networkProfile")?;
            if existing.is_some()
                && old_net
                    .get("nodePublicIPTags")
                    .cloned()
                    .unwrap_or(json!([]))
                    != new_tags
            {
                return Err(change_not_allowed("networkProfile.nodePublicIPTags", cx.id));
            }
            net.insert("nodePublicIPTags".into(), new_tags);
        }
        if n.contains_key("allowedHostPorts") {
            net.insert("allowedHostPorts".into(), canonical_ports(n, cx.id)?);
        }
        if n.contains_key("applicationSecurityGroups") {
            let asgs = json::string_list(n, "applicationSecurityGroups", "networkProfile")?;
            net.insert("applicationSecurityGroups".into(), json!(asgs));
        }
    }
    let node_tags = net
        .get("nodePublicIPTags")
        .and_then(Value::as_array)
        .map(Vec::len)
        .unwrap_or(0);
    if node_tags > 0 && !public_ip {
        return Err(invalid(format!(
            "networkProfile.nodePublicIPTags of agent pool {} requires enableNodePublicIP to be true.",
            cx.id
        )));
    }
    let asgs: Vec<String> = net
        .get("applicationSecurityGroups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for asg in &asgs {
        if st.get_kind(asg, Kind::Asg).is_none() {
            return Err(invalid(format!(
                "Application security group {asg} of agent pool {} was not found.",
                cx.id
            )));
        }
    }
    let wants_managed_asg = has_host_ports(&net) && asgs.is_empty();
    let nic_asgs = asgs.len() + usize::from(wants_managed_asg);
    if nic_asgs > cx.limits.asgs_per_nic {
        return Err(invalid(format!(
            "Agent pool {} would put its NICs in {nic_asgs} application security groups; the limit is {} per NIC.",
            cx.id, cx.limits.asgs_per_nic
        )));
    }
    if !net.is_empty() {
        out.insert("networkProfile".into(), Value::Object(net));
    }

    // Capacity for one public IP per node, checked before anything changes.
    let pool_key = key(cx.id);
    let current: Vec<Node> = st.nodes.get(&pool_key).cloned().unwrap_or_default();
    let count = count as usize;
    let kept_with_ip = current
        .iter()
        .take(count)
        .filter(|n| n.public_ip.is_some())
        .count();
    let needed = if public_ip {
        count.saturating_sub(kept_with_ip)
    } else {
        0
    };
    let fresh: Vec<IpAddr> = match (&prefix, needed) {
        (_, 0) => Vec::new(),
        (Some(prefix_id), n) => {
            let free = ip::free_in_prefix(st, prefix_id, n);
            if free.len() < n {
                return Err(CloudError::bad_request(
                    "PublicIpPrefixOutOfIpAddressesForPublicIp",
                    format!(
                        "Public IP prefix {prefix_id} has {} free addresses but agent pool {} needs {n} more for its nodes.",
                        free.len(),
                        cx.id
                    ),
                ));
            }
            free
        }
        (None, n) => {
            let mut got = Vec::new();
            for _ in 0..n {
                match st.pool.allocate(false, 32) {
                    Some(net) => got.push(net.addr()),
                    None => {
                        for ip in &got {
                            st.pool.release(&ipnet::IpNet::from(*ip));
                        }
                        return Err(CloudError::bad_request(
                            "PublicIpAddressCannotBeAllocated",
                            format!(
                                "The simulated public address pool is exhausted; agent pool {} needs {n} node IPs.",
                                cx.id
                            ),
                        ));
                    }
                }
            }
            got
        }
    };

    // Every check passed: scale the VMSS.
    let mut nodes = current;
    while nodes.len() > count {
        if let Some(gone) = nodes.pop() {
            release_node_ip(st, &prefix, &gone);
        }
    }
    let mut fresh = fresh.into_iter();
    for node in nodes.iter_mut() {
        if public_ip && node.public_ip.is_none() {
            node.public_ip = fresh.next();
        }
    }
    let mut next_id = nodes.iter().map(|n| n.instance_id + 1).max().unwrap_or(0);
    while nodes.len() < count {
        nodes.push(Node {
            instance_id: next_id,
            public_ip: if public_ip { fresh.next() } else { None },
        });
        next_id += 1;
    }
    st.nodes.insert(pool_key, nodes);
    sync_managed_asg(st, cx, &cluster_id, wants_managed_asg);
    Ok(out)
}

fn canonical_ports(n: &Obj, pool: &str) -> CloudResult<Value> {
    let mut out = Vec::new();
    for r in json::opt_array(n, "allowedHostPorts", "networkProfile")? {
        let r = json::as_obj(r, "a port range")?;
        let start = json::opt_i64(r, "portStart", "allowedHostPorts")?;
        let end = json::opt_i64(r, "portEnd", "allowedHostPorts")?;
        let proto = json::opt_str(r, "protocol", "allowedHostPorts")?;
        let (Some(start), Some(end), Some(proto)) = (start, end, proto) else {
            return Err(invalid(format!(
                "allowedHostPorts of agent pool {pool} need portStart, portEnd and protocol."
            )));
        };
        if !(1..=65535).contains(&start) || !(1..=65535).contains(&end) || start > end {
            return Err(invalid(format!(
                "allowedHostPorts range {start}-{end} of agent pool {pool} is invalid: ports are 1-65535 and portStart <= portEnd."
            )));
        }
        let proto = json::canonical_enum(proto, &["TCP", "UDP"], "protocol", "allowedHostPorts")
            .map_err(|_| {
                invalid(format!(
                    "allowedHostPorts protocol '{proto}' of agent pool {pool} must be TCP or UDP."
                ))
            })?;
        out.push(json!({"portStart": start, "portEnd": end, "protocol": proto}));
    }
    Ok(Value::Array(out))
}

fn has_host_ports(net: &Obj) -> bool {
    net.get("allowedHostPorts")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn managed_asg_id(st: &State, cluster_id: &str, pool_id: &str) -> Option<String> {
    let node_rg = node_resource_group(st, cluster_id)?;
    let p = crate::path::parse_id(pool_id)?;
    let pool_name = &p.segs.get(1)?.1;
    let vmss = vmss_name(cluster_id, pool_name);
    let base = vmss.trim_end_matches("-vmss");
    Some(format!(
        "/subscriptions/{}/resourceGroups/{node_rg}/providers/Microsoft.Network/applicationSecurityGroups/{base}-asg",
        p.sub
    ))
}

/// AKS creates a managed ASG in the node resource group when a pool allows host ports and
/// names no ASG of its own; it goes away when no longer needed.
fn sync_managed_asg(st: &mut State, cx: &Cx, cluster_id: &str, wanted: bool) {
    let Some(id) = managed_asg_id(st, cluster_id, cx.id) else {
        return;
    };
    let k = key(&id);
    if wanted && !st.resources.contains_key(&k) {
        let name = id.rsplit('/').next().unwrap_or_default().to_string();
        let etag = state::new_etag();
        st.resources.insert(
            k,
            Resource {
                id: id.clone(),
                kind: Kind::Asg,
                body: json!({
                    "id": id,
                    "name": name,
                    "type": Kind::Asg.type_name(),
                    "location": cx.location,
                    "etag": etag,
                    "tags": {"aks-managed-poolName": cx.name},
                    "properties": {"provisioningState": "Succeeded", "resourceGuid": state::new_guid()},
                }),
                op: None,
            },
        );
    } else if !wanted
        && st.resources.contains_key(&k)
        && super::nsg::rules_referencing_asg(st, &id).is_empty()
    {
        st.resources.remove(&k);
    }
}

fn release_node_ip(st: &mut State, prefix: &Option<String>, node: &Node) {
    if prefix.is_none()
        && let Some(ip) = node.public_ip
    {
        st.pool.release(&ipnet::IpNet::from(ip));
    }
}

pub fn release_pool(st: &mut State, res: &Resource) {
    let prefix = res
        .props()
        .get("nodePublicIPPrefixID")
        .and_then(Value::as_str)
        .map(str::to_string);
    for node in st.nodes.remove(&key(&res.id)).unwrap_or_default() {
        release_node_ip(st, &prefix, &node);
    }
    if let Some(asg) = managed_asg_id(st, cluster_of_pool(&res.id), &res.id) {
        st.resources.remove(&key(&asg));
    }
}

/// Removes the cluster's pools and its node resource group with everything in it.
pub fn release_cluster(st: &mut State, res: &Resource) {
    let pools: Vec<Resource> = st
        .under(&res.id)
        .filter(|r| r.kind == Kind::AgentPool)
        .cloned()
        .collect();
    for pool in pools {
        release_pool(st, &pool);
        st.resources.remove(&key(&pool.id));
    }
    let Some(node_rg) = res.props().get("nodeResourceGroup").and_then(Value::as_str) else {
        return;
    };
    let Some(p) = crate::path::parse_id(&res.id) else {
        return;
    };
    let rg_prefix = key(&format!(
        "/subscriptions/{}/resourceGroups/{node_rg}/",
        p.sub
    ));
    let doomed: Vec<Resource> = st
        .resources
        .iter()
        .filter(|(k, _)| k.starts_with(&rg_prefix))
        .map(|(_, r)| r.clone())
        .collect();
    for r in doomed {
        super::on_removed(st, &r);
        st.resources.remove(&key(&r.id));
    }
    if let Some(sub) = st.subscriptions.get_mut(&key(&p.sub)) {
        let managed = sub.resource_groups.get(&key(node_rg)).is_some_and(|g| {
            g.managed_by
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(&res.id))
        });
        if managed {
            sub.resource_groups.remove(&key(node_rg));
        }
    }
}

pub fn pools_using_prefix_res<'a>(
    st: &'a State,
    prefix_id: &'a str,
) -> impl Iterator<Item = &'a Resource> + 'a {
    st.of_kind(Kind::AgentPool).filter(move |p| {
        p.props()
            .get("nodePublicIPPrefixID")
            .and_then(Value::as_str)
            .is_some_and(|id| id.eq_ignore_ascii_case(prefix_id))
    })
}

pub fn pools_using_prefix(st: &State, prefix_id: &str) -> Vec<String> {
    pools_using_prefix_res(st, prefix_id)
        .map(|p| p.id.clone())
        .collect()
}

/// The ASGs a pool's NICs belong to: its own list, or the managed one for host ports.
pub fn nic_asgs(st: &State, pool: &Resource) -> Vec<String> {
    let net = pool
        .props()
        .get("networkProfile")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut asgs: Vec<String> = net
        .get("applicationSecurityGroups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if asgs.is_empty()
        && has_host_ports(&net)
        && let Some(id) = managed_asg_id(st, cluster_of_pool(&pool.id), &pool.id)
        && let Some(asg) = st.get(&id)
    {
        asgs.push(asg.id.clone());
    }
    asgs
}

/// `agentPoolProfiles` of a cluster GET, from its agent pool resources.
pub fn pool_profiles(st: &State, cluster: &Resource) -> Value {
    let profiles: Vec<Value> = st
        .under(&cluster.id)
        .filter(|r| r.kind == Kind::AgentPool)
        .map(|pool| {
            let mut p = pool.props().clone();
            p.insert("name".into(), json!(pool.name()));
            Value::Object(p)
        })
        .collect();
    Value::Array(profiles)
}
