//! The scale set behind each agent pool, as AKS lays it out in the node resource group: where it
//! lives, the IDs of its instances' NICs and public IPs, and the read-only
//! `Microsoft.Compute/virtualMachineScaleSets` views (the scale set, its public IPs, its NICs).
//! Every lookup of a pool's scale set goes through [`Vmss::of_pool`].

use super::aks::{DEFAULT_K8S_VERSION, cluster_of_pool, nic_asgs, node_resource_group, vmss_name};
use crate::state::{Kind, Resource, State, key};
use serde_json::{Value, json};

/// Where a pool's VMSS lives.
pub struct Vmss {
    sub: String,
    /// The node resource group.
    rg: String,
    name: String,
    id: String,
}

impl Vmss {
    /// `None` when the pool's cluster is gone or names no node resource group.
    pub fn of_pool(st: &State, pool: &Resource) -> Option<Vmss> {
        let cluster_id = cluster_of_pool(&pool.id);
        let rg = node_resource_group(st, cluster_id)?;
        let p = crate::path::parse_id(&pool.id)?;
        let name = vmss_name(cluster_id, pool.name());
        let id = format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}",
            p.sub
        );
        Some(Vmss {
            sub: p.sub.clone(),
            rg,
            name,
            id,
        })
    }

    fn in_rg(&self, sub: &str, rg: &str) -> bool {
        self.sub.eq_ignore_ascii_case(sub) && self.rg.eq_ignore_ascii_case(rg)
    }

    /// The NIC of one instance; AKS names it after the scale set.
    fn nic_id(&self, instance: u32) -> String {
        format!(
            "{}/virtualMachines/{instance}/networkInterfaces/{}",
            self.id, self.name
        )
    }

    /// The one IP configuration of an instance's NIC.
    fn ip_config_id(&self, instance: u32) -> String {
        format!("{}/ipConfigurations/ipconfig1", self.nic_id(instance))
    }

    /// The public IP of an instance, in VMSS instance form.
    fn public_ip_id(&self, instance: u32) -> String {
        format!("{}/publicIPAddresses/pub1", self.ip_config_id(instance))
    }
}

/// IDs of the public IPs of a pool's nodes, in VMSS instance form.
pub fn node_ip_ids(st: &State, pool: &Resource) -> Vec<String> {
    let Some(vmss) = Vmss::of_pool(st, pool) else {
        return Vec::new();
    };
    st.nodes
        .get(&key(&pool.id))
        .into_iter()
        .flatten()
        .filter(|n| n.public_ip.is_some())
        .map(|n| vmss.public_ip_id(n.instance_id))
        .collect()
}

/// NIC IP configurations (by ID) that are members of the ASG.
pub fn ip_configs_in_asg(st: &State, asg_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pool in st.of_kind(Kind::AgentPool) {
        if !nic_asgs(st, pool)
            .iter()
            .any(|a| a.eq_ignore_ascii_case(asg_id))
        {
            continue;
        }
        // The managed ASG belongs to its pool: deleting the pool removes it, not the client.
        let Some(vmss) = Vmss::of_pool(st, pool) else {
            continue;
        };
        for n in st.nodes.get(&key(&pool.id)).into_iter().flatten() {
            out.push(vmss.ip_config_id(n.instance_id));
        }
    }
    out
}

/// The agent pool whose VMSS is `name` in resource group `rg`.
pub fn pool_named<'a>(st: &'a State, sub: &str, rg: &str, name: &str) -> Option<&'a Resource> {
    st.of_kind(Kind::AgentPool).find(|pool| {
        Vmss::of_pool(st, pool)
            .is_some_and(|v| v.in_rg(sub, rg) && v.name.eq_ignore_ascii_case(name))
    })
}

/// The agent pools whose VMSS is in resource group `rg`.
pub fn pools_in_rg<'a>(st: &'a State, sub: &str, rg: &str) -> Vec<&'a Resource> {
    st.of_kind(Kind::AgentPool)
        .filter(|pool| Vmss::of_pool(st, pool).is_some_and(|v| v.in_rg(sub, rg)))
        .collect()
}

fn node_ip_tags(st: &State, pool: &Resource) -> Value {
    let own = pool
        .props()
        .get("networkProfile")
        .and_then(|n| n.get("nodePublicIPTags"))
        .cloned();
    if let Some(tags) = own.filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        return tags;
    }
    pool.props()
        .get("nodePublicIPPrefixID")
        .and_then(Value::as_str)
        .and_then(|p| st.get_kind(p, Kind::PublicIpPrefix))
        .and_then(|p| p.props().get("ipTags").cloned())
        .unwrap_or_else(|| json!([]))
}

/// `Microsoft.Compute/virtualMachineScaleSets` body of a pool's VMSS.
pub fn body(st: &State, pool: &Resource) -> Option<Value> {
    let vmss = Vmss::of_pool(st, pool)?;
    let props = pool.props();
    let count = st.nodes.get(&key(&pool.id)).map(Vec::len).unwrap_or(0);
    let mut ipconfig = json!({
        "name": "ipconfig1",
        "properties": {
            "primary": true,
            "applicationSecurityGroups": nic_asgs(st, pool).iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        }
    });
    if let Some(subnet) = props.get("vnetSubnetID") {
        ipconfig["properties"]["subnet"] = json!({"id": subnet});
    }
    if props.get("enableNodePublicIP").and_then(Value::as_bool) == Some(true) {
        let mut pip = json!({"name": "pub1", "properties": {"idleTimeoutInMinutes": 30, "ipTags": node_ip_tags(st, pool)}});
        if let Some(prefix) = props.get("nodePublicIPPrefixID") {
            pip["properties"]["publicIPPrefix"] = json!({"id": prefix});
        }
        ipconfig["properties"]["publicIPAddressConfiguration"] = pip;
    }
    Some(json!({
        "id": vmss.id,
        "name": vmss.name,
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": pool_location(st, pool),
        "tags": {
            "aks-managed-poolName": pool.name(),
            "aks-managed-orchestrator": format!("Kubernetes:{}", props.get("orchestratorVersion").and_then(Value::as_str).unwrap_or(DEFAULT_K8S_VERSION)),
        },
        "sku": {"name": props.get("vmSize").cloned().unwrap_or(json!("Standard_DS2_v2")), "tier": "Standard", "capacity": count},
        "properties": {
            "provisioningState": if pool.provisioning_state() == "Succeeded" { "Succeeded" } else { "Updating" },
            "virtualMachineProfile": {
                "networkProfile": {
                    "networkInterfaceConfigurations": [{
                        "name": vmss.name,
                        "properties": {"primary": true, "ipConfigurations": [ipconfig]}
                    }]
                }
            }
        }
    }))
}

fn pool_location(st: &State, pool: &Resource) -> String {
    st.get_kind(cluster_of_pool(&pool.id), Kind::ManagedCluster)
        .map(|c| c.location().to_string())
        .unwrap_or_default()
}

/// What `az vmss list-instance-public-ips` shows: one public IP per node.
pub fn public_ips(st: &State, pool: &Resource) -> Vec<Value> {
    let Some(vmss) = Vmss::of_pool(st, pool) else {
        return Vec::new();
    };
    let tags = node_ip_tags(st, pool);
    let prefix = pool.props().get("nodePublicIPPrefixID").cloned();
    let location = pool_location(st, pool);
    st.nodes
        .get(&key(&pool.id))
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let ip = n.public_ip?;
            let mut props = json!({
                "provisioningState": "Succeeded",
                "ipAddress": ip.to_string(),
                "publicIPAddressVersion": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                "publicIPAllocationMethod": "Static",
                "idleTimeoutInMinutes": 30,
                "ipTags": tags.clone(),
                "ipConfiguration": {"id": vmss.ip_config_id(n.instance_id)},
            });
            if let Some(prefix) = &prefix {
                props["publicIPPrefix"] = json!({"id": prefix});
            }
            Some(json!({
                "id": vmss.public_ip_id(n.instance_id),
                "name": "pub1",
                "location": location,
                "sku": {"name": "Standard", "tier": "Regional"},
                "properties": props,
            }))
        })
        .collect()
}

/// NICs of a pool's VMSS instances with their ASG membership and public IP reference.
pub fn nics(st: &State, pool: &Resource) -> Vec<Value> {
    let Some(vmss) = Vmss::of_pool(st, pool) else {
        return Vec::new();
    };
    let asgs: Vec<Value> = nic_asgs(st, pool)
        .iter()
        .map(|id| json!({"id": id}))
        .collect();
    let subnet = pool.props().get("vnetSubnetID").cloned();
    let location = pool_location(st, pool);
    st.nodes
        .get(&key(&pool.id))
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, n)| {
            let nic = vmss.nic_id(n.instance_id);
            let mut ipc = json!({
                "primary": true,
                "privateIPAllocationMethod": "Dynamic",
                "privateIPAddress": format!("10.224.{}.{}", (i + 4) / 256, (i + 4) % 256),
                "privateIPAddressVersion": "IPv4",
                "applicationSecurityGroups": asgs.clone(),
                "provisioningState": "Succeeded",
            });
            if let Some(s) = &subnet {
                ipc["subnet"] = json!({"id": s});
            }
            if n.public_ip.is_some() {
                ipc["publicIPAddress"] = json!({"id": vmss.public_ip_id(n.instance_id)});
            }
            json!({
                "id": nic,
                "name": vmss.name,
                "location": location,
                "properties": {
                    "provisioningState": "Succeeded",
                    "primary": true,
                    "virtualMachine": {"id": format!("{}/virtualMachines/{}", vmss.id, n.instance_id)},
                    "ipConfigurations": [{
                        "name": "ipconfig1",
                        "id": vmss.ip_config_id(n.instance_id),
                        "properties": ipc,
                    }],
                }
            })
        })
        .collect()
}
