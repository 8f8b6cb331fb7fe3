//! Part 6: the node public IPs, read (never written): each node of the pool maps to a VMSS
//! instance through its provider ID, and the VMSS's public IP listing gives its address, its
//! IP tags and its prefix, which are compared with the spec.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{IpTag, NodeAddress};
use poolnet_arm::{ResourceId, VmssInstance};
use poolnet_plan::prefix::{spec_ip_tags, wanted_prefix_id};

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
    // Nodes whose public IP lacks the spec's IP tags or comes from another prefix: AKS set
    // them when the pool was created, so only a new pool fixes them.
    let mut mismatched = Vec::new();
    let want_tags = npn
        .spec
        .node_public_ip
        .as_ref()
        .and_then(|n| n.ip_tags.as_ref())
        .map(|_| spec_ip_tags(npn));
    let want_prefix = wanted_prefix_id(npn);
    for (id, members) in by_vmss.values() {
        match pass.ctx.arm.list_vmss_public_ips(id).await {
            Ok(ips) => {
                for ip in &ips {
                    let Some(props) = ip.properties.as_ref() else {
                        continue;
                    };
                    let Some(instance) = props
                        .ip_configuration
                        .as_ref()
                        .and_then(|c| c.sub_resource.id.as_deref())
                        .and_then(VmssInstance::instance_of)
                    else {
                        continue;
                    };
                    let Some((node, _)) = members.iter().find(|(_, i)| *i == instance) else {
                        continue;
                    };
                    let mut have_tags: Vec<IpTag> = props
                        .ip_tags
                        .iter()
                        .map(|t| IpTag {
                            ip_tag_type: t.ip_tag_type.clone().unwrap_or_default(),
                            tag: t.tag.clone().unwrap_or_default(),
                        })
                        .collect();
                    have_tags.sort();
                    let have_prefix = props
                        .public_ip_prefix
                        .as_ref()
                        .and_then(|p| p.id.as_deref());
                    if let Some(want) = &want_tags
                        && &have_tags != want
                    {
                        mismatched.push(format!(
                            "{node}: IP tags {} (spec: {})",
                            show_tags(&have_tags),
                            show_tags(want)
                        ));
                    }
                    if let Some(want) = &want_prefix
                        && !have_prefix.is_some_and(|h| h.eq_ignore_ascii_case(want))
                    {
                        mismatched.push(format!(
                            "{node}: from prefix {} (spec: {want})",
                            have_prefix.unwrap_or("none")
                        ));
                    }
                }
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
        None if !mismatched.is_empty() => PartState::failed(
            cond::NODE_IPS_READY,
            reason::NODE_IPS_MISMATCH,
            format!(
                "node public IPs differ from the spec, and AKS sets them only when a pool is created: {}",
                mismatched.join("; ")
            ),
        ),
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

fn show_tags(tags: &[IpTag]) -> String {
    if tags.is_empty() {
        return "none".into();
    }
    tags.iter()
        .map(|t| format!("{}={}", t.ip_tag_type, t.tag))
        .collect::<Vec<_>>()
        .join(",")
}
