//! Part 6: the node public IPs, read (never written): each node of the pool maps to a VMSS
//! instance through its provider ID, and the VMSS's public IP listing gives its address.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use poolnet_api::v1alpha1::NodeAddress;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::ResourceId;

use super::super::conditions::PartState;
use super::outcome::{Effects, Part, combine};
use super::{Pass, node_selector};

/// The node IPs piece of status.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeIps {
    pub addresses: Vec<NodeAddress>,
    /// Nodes the pool's selector matches.
    pub selected: usize,
}

/// `…/virtualMachineScaleSets/<vmss>/virtualMachines/<instance>` from a node's provider ID.
fn vmss_instance(provider_id: &str) -> Option<(String, String)> {
    let path = provider_id.strip_prefix("azure://")?;
    let lower = path.to_ascii_lowercase();
    let at = lower.find("/virtualmachines/")?;
    let vmss = path[..at].to_string();
    let instance = path[at + "/virtualmachines/".len()..]
        .split('/')
        .next()?
        .to_string();
    vmss.to_ascii_lowercase()
        .contains("/virtualmachinescalesets/")
        .then_some((vmss, instance))
}

/// Instance ID from a VMSS public IP's ipConfiguration ID.
fn instance_of_ip_config(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let at = lower.find("/virtualmachines/")?;
    id[at + "/virtualmachines/".len()..]
        .split('/')
        .next()
        .map(String::from)
}

/// `None` in the part when node public IPs are off.
pub(super) async fn reconcile(pass: &Pass<'_>) -> Part<Option<NodeIps>> {
    let npn = pass.npn;
    let mut fx = Effects::default();
    if !npn.spec.node_public_ip.as_ref().is_some_and(|n| n.enabled) {
        return Part::new(
            None,
            PartState::ok(
                cond::NODE_IPS_READY,
                reason::NOT_CONFIGURED,
                "node public IPs are off",
            ),
            fx,
        );
    }
    let selector = node_selector(npn);
    let nodes: Vec<Arc<Node>> = pass
        .ctx
        .stores
        .nodes
        .state()
        .into_iter()
        .filter(|n| selector.iter().all(|(k, v)| n.labels().get(k) == Some(v)))
        .collect();
    let mut by_vmss: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for n in &nodes {
        if let Some((vmss, instance)) = n
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(vmss_instance)
        {
            by_vmss
                .entry(vmss)
                .or_default()
                .push((n.name_any(), instance));
        }
    }
    let mut addresses = Vec::new();
    let mut problems = Vec::new();
    for (vmss, members) in &by_vmss {
        let id: ResourceId = match vmss.parse() {
            Ok(id) => id,
            Err(e) => {
                problems.push(fx.arm_failure(cond::NODE_IPS_READY, "node provider ID", &e.into()));
                continue;
            }
        };
        match pass.ctx.arm.list_vmss_public_ips(&id).await {
            Ok(ips) => {
                let by_instance: HashMap<String, String> = ips
                    .iter()
                    .filter_map(|ip| {
                        let props = ip.properties.as_ref()?;
                        let cfg = props
                            .ip_configuration
                            .as_ref()?
                            .sub_resource
                            .id
                            .as_deref()?;
                        Some((instance_of_ip_config(cfg)?, props.ip_address.clone()?))
                    })
                    .collect();
                for (node, instance) in members {
                    if let Some(ip) = by_instance.get(instance) {
                        addresses.push(NodeAddress {
                            node_name: node.clone(),
                            public_ip: ip.clone(),
                        });
                    }
                }
            }
            Err(e) => problems.push(fx.arm_failure(
                cond::NODE_IPS_READY,
                &format!("listing public IPs of {vmss}"),
                &e,
            )),
        }
    }
    addresses.sort_by(|a, b| a.node_name.cmp(&b.node_name));
    let missing: Vec<String> = nodes
        .iter()
        .map(|n| n.name_any())
        .filter(|n| !addresses.iter().any(|a| &a.node_name == n))
        .collect();
    // Only the first listing problem: one per VMSS would repeat the same cause.
    problems.truncate(1);
    let condition = match combine(problems) {
        Some(p) => p,
        None if !missing.is_empty() => {
            fx.soon(Duration::from_secs(30));
            PartState::failed(
                cond::NODE_IPS_READY,
                reason::PROGRESSING,
                format!("no public IP found yet for node(s) {}", missing.join(", ")),
            )
        }
        None => PartState::ok(
            cond::NODE_IPS_READY,
            reason::RECONCILED,
            format!("{} node(s) with public IPs", addresses.len()),
        ),
    };
    Part::new(
        Some(NodeIps {
            addresses,
            selected: nodes.len(),
        }),
        condition,
        fx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_map_to_vmss_instances() {
        let pid = "azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-game-1-vmss/virtualMachines/2";
        let (vmss, i) = vmss_instance(pid).unwrap();
        assert!(vmss.ends_with("virtualMachineScaleSets/aks-game-1-vmss"));
        assert_eq!(i, "2");
        assert!(vmss_instance("azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1").is_none());
        let cfg = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/7/networkInterfaces/v/ipConfigurations/ipconfig1";
        assert_eq!(instance_of_ip_config(cfg).as_deref(), Some("7"));
    }
}
