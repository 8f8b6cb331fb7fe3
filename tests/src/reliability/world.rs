//! The workload every run starts from: one kubenet cluster with 20 user pools, whose
//! NodePoolNetworks share 4 NSGs and 2 route tables that hold other writers' rules and routes,
//! with mixed reconcile policies; 50 HostPortPolicies in 10 namespaces; pods with host ports.

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use serde_json::{Value, json};

use super::schedule::{ForeignChange, Shape, SharedResource};

pub const SUB: &str = "00000000-aaaa-bbbb-cccc-000000000013";
pub const RG: &str = "rg-reliability";
pub const CLUSTER: &str = "aks-reliability";
pub const OBJECTS: usize = 20;
pub const NSGS: usize = 4;
pub const ROUTE_TABLES: usize = 2;
pub const POLICIES: usize = 50;
pub const NAMESPACES: usize = 10;
/// Ports each HostPortPolicy hands out.
pub const POLICY_PORTS: u16 = 48;

/// The workload's reconcile policy of object `i`: mostly Manage, some DetachOnDelete, and
/// Observe objects that only read (their pools and rules are foreign to poolnet).
pub fn policy_of(i: usize) -> &'static str {
    match i % 10 {
        4 => "DetachOnDelete",
        9 => "Observe",
        _ => "Manage",
    }
}

/// Objects that write and may serve HostPortPolicies.
pub fn writing_objects() -> Vec<usize> {
    (0..OBJECTS)
        .filter(|i| policy_of(*i) != "Observe")
        .collect()
}

/// Objects with a route in a route table.
pub fn routed(i: usize) -> bool {
    i.is_multiple_of(3)
}

/// Objects the workload deletes for good: a DetachOnDelete object, whose Azure parts stay.
pub const DELETED_FOR_GOOD: &[usize] = &[4];
/// Objects the workload deletes and creates again: a Manage object.
pub const RECREATED: &[usize] = &[13];
/// No policy names these, so deleting them leaves every policy Ready.
pub const DELETABLE: &[usize] = &[4, 13];

pub fn shape(burst_pods: usize) -> Shape {
    Shape {
        objects: OBJECTS,
        nsgs: NSGS,
        route_tables: ROUTE_TABLES,
        replicas: 2,
        deleted_for_good: DELETED_FOR_GOOD,
        recreated: RECREATED,
        burst_pods,
    }
}

pub fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}"
    )
}

pub fn pool_id(i: usize) -> String {
    format!("{}/agentPools/p{i:02}", cluster_id())
}

fn network_id(kind: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/{kind}/{name}")
}

pub fn nsg_id(n: usize) -> String {
    network_id("networkSecurityGroups", &format!("nsg-shared-{n}"))
}

/// The ASG another team keeps for Observe object `i`.
pub fn observed_asg_id(i: usize) -> String {
    network_id("applicationSecurityGroups", &format!("asg-observed-{i:02}"))
}

pub fn route_table_id(n: usize) -> String {
    network_id("routeTables", &format!("rt-shared-{n}"))
}

/// The shared resource a foreign-writer fault names.
pub fn resource_id(r: SharedResource) -> String {
    match r {
        SharedResource::Nsg(n) => nsg_id(n),
        SharedResource::RouteTable(n) => route_table_id(n),
        SharedResource::AgentPool(i) => pool_id(i),
    }
}

/// A rule of another tool (far from poolnet's bands).
pub fn foreign_rule(name: &str, priority: u32, port: u32) -> Value {
    json!({"name": name, "properties": {
        "priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "10.250.0.0/24", "sourcePortRange": "*",
        "destinationAddressPrefix": "VirtualNetwork", "destinationPortRange": port.to_string()}})
}

/// A route of another writer (the cloud controller's pod routes look like these).
pub fn foreign_route(name: &str, octet: u32) -> Value {
    json!({"name": name, "properties": {
        "addressPrefix": format!("10.244.{octet}.0/24"), "nextHopType": "VirtualAppliance",
        "nextHopIpAddress": format!("10.240.0.{}", 4 + octet % 200)}})
}

/// The armsim world: the cluster, its pools, the shared NSGs and route tables with their
/// foreign entries.
pub fn fixture() -> Result<armsim::Fixture> {
    let mut resources = vec![json!({
        "id": cluster_id(),
        "location": "westeurope",
        "properties": {
            "kubernetesVersion": "1.30.3",
            "dnsPrefix": CLUSTER,
            "networkProfile": {"networkPlugin": "kubenet", "podCidr": "10.244.0.0/16"},
            "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}]
        }
    })];
    for i in (0..OBJECTS).filter(|i| policy_of(*i) == "Observe") {
        resources.push(json!({"id": observed_asg_id(i), "location": "westeurope"}));
    }
    for i in 0..OBJECTS {
        let mut pool = json!({
            "id": pool_id(i),
            "properties": {"count": 2, "vmSize": "Standard_D2s_v5", "mode": "User"}
        });
        if policy_of(i) == "Observe" {
            // Another team set the pool up as the Observe object describes it.
            pool["properties"]["networkProfile"] = json!({
                "allowedHostPorts": [{"portStart": range_start(i), "portEnd": range_start(i) + RANGE_PORTS - 1, "protocol": "TCP"}],
                "applicationSecurityGroups": [observed_asg_id(i)],
            });
        }
        resources.push(pool);
    }
    for n in 0..NSGS {
        resources.push(json!({
            "id": nsg_id(n), "location": "westeurope",
            "tags": {"owner": "network-team"},
            "properties": {"securityRules": [
                foreign_rule("allow-bastion-ssh", 4000, 22),
                foreign_rule(&format!("allow-monitoring-{n}"), 4001, 9100),
            ]}
        }));
    }
    for n in 0..ROUTE_TABLES {
        resources.push(json!({
            "id": route_table_id(n), "location": "westeurope",
            "properties": {"disableBgpRoutePropagation": false, "routes": [
                {"name": "default-via-firewall", "properties": {"addressPrefix": "0.0.0.0/0",
                    "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.241.1.4"}},
                foreign_route(&format!("aks-node-{n}-0"), (n * 10) as u32),
                foreign_route(&format!("aks-node-{n}-1"), (n * 10 + 1) as u32),
            ]}
        }));
    }
    Ok(serde_json::from_value(json!({
        "subscriptions": [{"id": SUB, "resourceGroups": [{"name": RG, "location": "westeurope"}]}],
        "resources": resources,
    }))?)
}

/// Host ports each object allows.
pub const RANGE_PORTS: u16 = 200;

/// The first host port of object `i`'s range.
pub fn range_start(i: usize) -> u16 {
    30000 + RANGE_PORTS * i as u16
}

/// NodePoolNetwork `i` as first applied; `edited` adds one more allowed port (the workload's
/// edit toggles it).
pub fn npn(i: usize, edited: bool) -> Result<NodePoolNetwork> {
    let start = range_start(i);
    let mut ports = vec![format!("{start}-{}/tcp", start + RANGE_PORTS - 1)];
    if edited {
        ports.push(format!("{}/udp", 20000 + i));
    }
    // Five objects per NSG, 60 priorities each, inside 100-499 (AKS keeps 500 and up).
    let band = 100 + 60 * (i / NSGS) as u32;
    let mut spec = json!({
        "nodePool": {"agentPoolId": pool_id(i)},
        "allowedHostPorts": ports,
        "applicationSecurityGroups": {"managed": true},
        "networkSecurityGroups": [{
            "id": nsg_id(i % NSGS),
            "sourceAddressPrefixes": ["Internet"],
            "priorities": {"from": band, "to": band + 59},
        }],
        "hostPortPolicies": {"from": "All"},
        "reconcilePolicy": policy_of(i),
    });
    if routed(i) {
        spec["routeTable"] = json!({
            "id": route_table_id(i % ROUTE_TABLES),
            "routes": [{
                "name": format!("egress-{i:02}"),
                "addressPrefix": format!("10.{}.0.0/16", 100 + i),
                "nextHopType": "VirtualAppliance",
                "nextHopIpAddress": "10.241.1.4",
            }],
        });
    }
    if policy_of(i) == "Observe" {
        // Nothing of an Observe object's is ever written: it watches a pool another team
        // set up (host ports and an ASG of theirs), and would report any difference.
        spec["applicationSecurityGroups"] =
            json!({"managed": false, "customIds": [observed_asg_id(i)]});
        if let Some(o) = spec.as_object_mut() {
            o.remove("hostPortPolicies");
            o.remove("routeTable");
            o.remove("networkSecurityGroups");
        }
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "NodePoolNetwork",
        "metadata": {"name": npn_name(i)},
        "spec": spec,
    }))?)
}

pub fn npn_name(i: usize) -> String {
    format!("pool-{i:02}")
}

pub fn namespace(n: usize) -> String {
    format!("team-{n}")
}

/// The object policy `j` names: a writing object no workload change deletes.
pub fn policy_object(j: usize) -> usize {
    let candidates: Vec<usize> = writing_objects()
        .into_iter()
        .filter(|i| !DELETABLE.contains(i))
        .collect();
    candidates[j % candidates.len()]
}

pub fn policy_namespace(j: usize) -> String {
    namespace(j % NAMESPACES)
}

pub fn app_label(j: usize) -> String {
    format!("app-{j:02}")
}

/// HostPortPolicy `j`: its own slice of its object's range.
pub fn policy(j: usize) -> Result<HostPortPolicy> {
    let object = policy_object(j);
    let per_object = writing_objects().len() - DELETABLE.len();
    let slot = (j / per_object) as u16;
    let start = range_start(object) + slot * POLICY_PORTS;
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "HostPortPolicy",
        "metadata": {"name": format!("policy-{j:02}"), "namespace": policy_namespace(j)},
        "spec": {
            "nodePoolNetwork": npn_name(object),
            "podSelector": {"matchLabels": {"app": app_label(j)}},
            "ports": [{"containerPort": 8080}],
            "hostPortRange": {"start": start, "end": start + POLICY_PORTS - 1},
        }
    }))?)
}

/// A pod the webhook gives a host port through policy `j`.
pub fn pod(j: usize, name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": policy_namespace(j), "labels": {"app": app_label(j)}},
        "spec": {
            "containers": [{"name": "app", "image": "example.invalid/app:1", "ports": [{"containerPort": 8080}]}],
        }
    }))?)
}

/// The other writer's change as armsim's action.
pub fn foreign_action(
    resource: SharedResource,
    change: ForeignChange,
) -> armsim::OtherWriterAction {
    use armsim::OtherWriterAction as A;
    match (resource, change) {
        (_, ForeignChange::Touch) => A::Touch,
        (SharedResource::AgentPool(_), ForeignChange::Scale(n)) => A::SetProperty {
            name: "count".into(),
            value: json!(n),
        },
        (SharedResource::Nsg(_), ForeignChange::Upsert(k)) => A::UpsertSecurityRule {
            rule: foreign_rule(&format!("other-tool-{k}"), 4010 + k, 10000 + k),
        },
        (SharedResource::Nsg(_), ForeignChange::Remove(k)) => A::RemoveChild {
            name: format!("other-tool-{k}"),
        },
        (SharedResource::RouteTable(_), ForeignChange::Upsert(k)) => A::UpsertRoute {
            route: foreign_route(&format!("other-route-{k}"), 100 + k),
        },
        (SharedResource::RouteTable(_), ForeignChange::Remove(k)) => A::RemoveChild {
            name: format!("other-route-{k}"),
        },
        // Not drawn: a count change on a rule container, an upsert on an agent pool.
        _ => A::Touch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_objects_parse_and_policies_fit_their_objects_ranges() {
        let mut taken = std::collections::BTreeSet::new();
        for i in 0..OBJECTS {
            npn(i, false).unwrap();
            npn(i, true).unwrap();
        }
        for j in 0..POLICIES {
            let p = policy(j).unwrap();
            let object = policy_object(j);
            assert_ne!(policy_of(object), "Observe");
            assert!(!DELETABLE.contains(&object));
            let r = &p.spec.host_port_range;
            assert!(r.start >= range_start(object) && r.end < range_start(object) + RANGE_PORTS);
            for port in r.start..=r.end {
                assert!(taken.insert(port), "port {port} in two policies");
            }
        }
        fixture().unwrap();
    }
}
