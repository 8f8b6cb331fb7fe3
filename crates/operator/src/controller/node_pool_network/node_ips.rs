//! Part 6: the node public IPs, read (never written): each node of the pool maps to a VMSS
//! instance through its provider ID, and the VMSS's public IP listing gives its address.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use poolnet_api::v1alpha1::NodeAddress;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::{ResourceId, VmssInstance};

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
    let mut problems = Vec::new();
    // Keyed by the scale set's ID as text: one listing per scale set, in a stable order.
    let mut by_vmss: BTreeMap<String, (ResourceId, Vec<(String, String)>)> = BTreeMap::new();
    for n in &nodes {
        let Some(pid) = n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) else {
            continue;
        };
        match VmssInstance::from_provider_id(pid) {
            None => {}
            Some(Err(e)) => {
                problems.push(fx.arm_failure(cond::NODE_IPS_READY, "node provider ID", &e.into()))
            }
            Some(Ok(v)) => by_vmss
                .entry(v.vmss.to_string().to_ascii_lowercase())
                .or_insert_with(|| (v.vmss.clone(), Vec::new()))
                .1
                .push((n.name_any(), v.instance)),
        }
    }
    let mut addresses = Vec::new();
    for (id, members) in by_vmss.values() {
        match pass.ctx.arm.list_vmss_public_ips(id).await {
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
                        Some((VmssInstance::instance_of(cfg)?, props.ip_address.clone()?))
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
                &format!("listing public IPs of {id}"),
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
