//! `kubectl poolnet status [NAME]`: one screen per node pool for cluster admins, joined across
//! the NodePoolNetwork and the HostPortPolicies attached to it, in the style of
//! `kubectl describe`: exposure (prefix, node IPs, IP tags), allowed host ports and the ports
//! in use, NSG rules and routes, conditions.
//!
//! [`gather`] reads the objects (the thin shell); [`render`] is pure.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use serde::Serialize;

/// One node pool: its NodePoolNetwork and the HostPortPolicies that name it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    pub node_pool_network: NodePoolNetwork,
    pub host_port_policies: Vec<HostPortPolicy>,
}

/// Reads the NodePoolNetwork `name` (every one when `None`) and the HostPortPolicies of all
/// namespaces that name it.
pub async fn gather(client: &Client, name: Option<&str>) -> Result<Vec<PoolView>> {
    let npns: Api<NodePoolNetwork> = Api::all(client.clone());
    let mut pools = match name {
        Some(n) => vec![
            npns.get(n)
                .await
                .with_context(|| format!("reading NodePoolNetwork {n}"))?,
        ],
        None => {
            npns.list(&ListParams::default())
                .await
                .context("listing NodePoolNetworks")?
                .items
        }
    };
    pools.sort_by_key(|p| p.name_any());
    let policies = Api::<HostPortPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing HostPortPolicies")?
        .items;
    Ok(pools
        .into_iter()
        .map(|npn| {
            let name = npn.name_any();
            let mut mine: Vec<HostPortPolicy> = policies
                .iter()
                .filter(|p| p.spec.node_pool_network == name)
                .cloned()
                .collect();
            mine.sort_by_key(|p| (p.namespace().unwrap_or_default(), p.name_any()));
            PoolView {
                node_pool_network: npn,
                host_port_policies: mine,
            }
        })
        .collect())
}

/// The last path segment of an ARM ID (its name).
pub(crate) fn leaf(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Rows as aligned columns, two spaces apart, indented by `indent`.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {:<20}{value}", format!("{label}:"));
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `True  Reconciled` or `False  Throttled: message`.
fn readiness(conditions: &[Condition]) -> String {
    match condition(conditions, "Ready") {
        Some(c) if c.status == "True" => format!("True  {}", c.reason),
        Some(c) => format!("{}  {}: {}", c.status, c.reason, c.message),
        None => "Unknown  (no status yet: is poolnet-operator running?)".to_string(),
    }
}

/// The view of one pool as text.
pub fn render(view: &PoolView) -> String {
    let npn = &view.node_pool_network;
    let spec = &npn.spec;
    let status = npn.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "NodePoolNetwork {}", npn.name_any());
    let pool_id = &spec.node_pool.agent_pool_id;
    let cluster = pool_id
        .split('/')
        .skip_while(|s| !s.eq_ignore_ascii_case("managedClusters"))
        .nth(1)
        .unwrap_or("?");
    let agent = status.agent_pool.as_ref();
    let origin = match agent {
        Some(a) if a.created => format!(
            "  (created by poolnet from spec.nodePool.template, {})",
            a.provisioning_state.as_deref().unwrap_or("state unknown")
        ),
        Some(a)
            if a.provisioning_state
                .as_deref()
                .is_some_and(|s| s != "Succeeded") =>
        {
            format!(
                "  ({})",
                a.provisioning_state.as_deref().unwrap_or_default()
            )
        }
        _ => String::new(),
    };
    field(
        &mut out,
        "Agent pool",
        format!("{}/{}{origin}", cluster, leaf(pool_id)),
    );
    if let Some(cmd) = agent.and_then(|a| a.recreate_command.as_deref()) {
        field(&mut out, "Recreate with", cmd);
    }
    field(
        &mut out,
        "Reconcile policy",
        format!("{:?}", spec.reconcile_policy),
    );
    field(&mut out, "Ready", readiness(&status.conditions));
    let generation = npn.metadata.generation.unwrap_or(0);
    match status.observed_generation {
        Some(g) if g == generation => field(&mut out, "Generation", g),
        Some(g) => field(
            &mut out,
            "Generation",
            format!("{generation} (status describes {g}: a reconcile is pending)"),
        ),
        None => field(
            &mut out,
            "Generation",
            format!("{generation} (not observed yet)"),
        ),
    }

    let _ = writeln!(out, "\nExposure");
    match &spec.node_public_ip {
        Some(ip) if ip.enabled => field(&mut out, "Node public IPs", "enabled"),
        Some(_) => field(&mut out, "Node public IPs", "disabled"),
        None => field(&mut out, "Node public IPs", "not declared"),
    }
    if let Some(pool) = &status.agent_pool
        && spec
            .node_public_ip
            .as_ref()
            .map(|n| n.enabled)
            .unwrap_or(false)
            != pool.enable_node_public_ip
    {
        field(
            &mut out,
            "  agent pool has",
            format!("enableNodePublicIP={}", pool.enable_node_public_ip),
        );
    }
    match &status.public_ip_prefix {
        Some(p) => field(
            &mut out,
            "Prefix",
            format!(
                "{}  {}  {}",
                p.cidr.as_deref().unwrap_or("(no CIDR yet)"),
                leaf(&p.id),
                if p.managed {
                    "(created by poolnet)"
                } else {
                    "(adopted)"
                }
            ),
        ),
        None => field(&mut out, "Prefix", "none"),
    }
    let tags: Vec<String> = status
        .public_ip_prefix
        .as_ref()
        .map(|p| p.ip_tags.clone())
        .or_else(|| spec.node_public_ip.as_ref().and_then(|n| n.ip_tags.clone()))
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}={}", t.ip_tag_type, t.tag))
        .collect();
    field(
        &mut out,
        "IP tags",
        if tags.is_empty() {
            "none".to_string()
        } else {
            tags.join(", ")
        },
    );
    let nodes = status.node_count.unwrap_or(status.nodes.len() as i32);
    field(&mut out, "Nodes", nodes);
    if !status.nodes.is_empty() {
        let mut rows = vec![vec!["NODE".to_string(), "PUBLIC IP".to_string()]];
        rows.extend(
            status
                .nodes
                .iter()
                .map(|n| vec![n.node_name.clone(), n.public_ip.clone()]),
        );
        table(&mut out, "    ", &rows);
    }

    let _ = writeln!(out, "\nHost ports");
    let declared = if spec.allowed_host_ports.is_empty() {
        "none".to_string()
    } else {
        spec.allowed_host_ports.join(",")
    };
    field(&mut out, "Allowed (spec)", declared);
    if let Some(pool) = &status.agent_pool {
        field(
            &mut out,
            "On the agent pool",
            pool.allowed_host_ports
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".to_string()),
        );
    }
    let pods: i32 = view
        .host_port_policies
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_count)
        .sum();
    let held: usize = view
        .host_port_policies
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.allocations.iter())
        .map(|a| a.ports.len())
        .sum();
    field(
        &mut out,
        "In use",
        format!(
            "{held} port(s) held by {pods} pod(s) of {} HostPortPolicy(ies)",
            view.host_port_policies.len()
        ),
    );
    if !view.host_port_policies.is_empty() {
        let mut rows = vec![vec![
            "POLICY".to_string(),
            "READY".to_string(),
            "RANGE".to_string(),
            "USED".to_string(),
            "PODS".to_string(),
        ]];
        for p in &view.host_port_policies {
            let st = p.status.clone().unwrap_or_default();
            let range = format!(
                "{}-{}",
                p.spec.host_port_range.start, p.spec.host_port_range.end
            );
            let used = if st.utilization.is_empty() {
                st.ports_in_use.clone().unwrap_or_else(|| "-".to_string())
            } else {
                st.utilization
                    .iter()
                    .map(|u| format!("{}/{} {:?}", u.used, u.total, u.protocol))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ready = condition(&st.conditions, "Ready")
                .map(|c| {
                    if c.status == "True" {
                        c.status.clone()
                    } else {
                        format!("{} ({})", c.status, c.reason)
                    }
                })
                .unwrap_or_else(|| "Unknown".to_string());
            rows.push(vec![
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
                ready,
                range,
                used,
                st.pod_count.unwrap_or(0).to_string(),
            ]);
        }
        table(&mut out, "    ", &rows);
        let mut allocations = vec![vec![
            "POD".to_string(),
            "PORTS (container → host)".to_string(),
        ]];
        for p in &view.host_port_policies {
            let ns = p.namespace().unwrap_or_default();
            for a in p.status.iter().flat_map(|s| s.allocations.iter()) {
                let ports: Vec<String> = a
                    .ports
                    .iter()
                    .map(|port| {
                        format!(
                            "{}/{:?} → {}",
                            port.container_port, port.protocol, port.host_port
                        )
                    })
                    .collect();
                allocations.push(vec![format!("{ns}/{}", a.pod), ports.join(", ")]);
            }
        }
        if allocations.len() > 1 {
            table(&mut out, "    ", &allocations);
        }
    }

    let _ = writeln!(out, "\nSecurity");
    if status.application_security_groups.is_empty() {
        field(&mut out, "ASGs", "none");
    } else {
        let asgs: Vec<String> = status
            .application_security_groups
            .iter()
            .map(|a| {
                if a.managed {
                    format!("{} (managed)", leaf(&a.id))
                } else {
                    leaf(&a.id).to_string()
                }
            })
            .collect();
        field(&mut out, "ASGs", asgs.join(", "));
    }
    if status.security_groups.is_empty() {
        field(&mut out, "NSG rules", "none");
    }
    for nsg in &status.security_groups {
        let _ = writeln!(
            out,
            "  NSG {} ({} rule(s) of this pool)",
            leaf(&nsg.id),
            nsg.rules.len()
        );
        if !nsg.rules.is_empty() {
            let mut rows = vec![vec![
                "RULE".to_string(),
                "PRIORITY".to_string(),
                "PROTOCOL".to_string(),
                "PORTS".to_string(),
                "SOURCES".to_string(),
            ]];
            rows.extend(nsg.rules.iter().map(|r| {
                vec![
                    r.name.clone(),
                    r.priority.to_string(),
                    r.protocol.clone(),
                    r.destination_port_ranges.join(","),
                    r.source_address_prefixes.join(","),
                ]
            }));
            table(&mut out, "    ", &rows);
        }
        let policy_rules: Vec<String> = view
            .host_port_policies
            .iter()
            .flat_map(|p| {
                let owner = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                p.status
                    .iter()
                    .flat_map(|s| s.security_rules.iter())
                    .filter(|r| r.nsg_id.eq_ignore_ascii_case(&nsg.id))
                    .map(move |r| format!("{} ({}, HostPortPolicy {owner})", r.name, r.priority))
                    .collect::<Vec<_>>()
            })
            .collect();
        for rule in &policy_rules {
            let _ = writeln!(out, "    + {rule}");
        }
        if !nsg.unrecorded_rules.is_empty() {
            let _ = writeln!(
                out,
                "    not recorded by any object (left alone): {}",
                nsg.unrecorded_rules.join(", ")
            );
        }
    }
    for target in &spec.network_security_groups {
        if !status
            .security_groups
            .iter()
            .any(|n| n.id.eq_ignore_ascii_case(&target.id))
        {
            let _ = writeln!(
                out,
                "  NSG {} (declared, nothing written yet)",
                leaf(&target.id)
            );
        }
    }

    let _ = writeln!(out, "\nRoutes");
    match (&status.route_table, &spec.route_table) {
        (Some(rt), _) => {
            field(
                &mut out,
                "Route table",
                format!(
                    "{}  {}/{} routes in the table",
                    leaf(&rt.id),
                    rt.route_count,
                    rt.route_limit
                ),
            );
            field(
                &mut out,
                "poolnet's",
                if rt.owned_routes.is_empty() {
                    "none".to_string()
                } else {
                    rt.owned_routes.join(", ")
                },
            );
            if !rt.unrecorded_routes.is_empty() {
                field(
                    &mut out,
                    "Not recorded",
                    format!("{} (left alone)", rt.unrecorded_routes.join(", ")),
                );
            }
        }
        (None, Some(rt)) => field(
            &mut out,
            "Route table",
            format!("{} (declared, not read yet)", leaf(&rt.id)),
        ),
        (None, None) => field(&mut out, "Route table", "none"),
    }

    let _ = writeln!(out, "\nConditions");
    if status.conditions.is_empty() {
        let _ = writeln!(out, "  none yet");
    } else {
        let mut rows = vec![vec![
            "TYPE".to_string(),
            "STATUS".to_string(),
            "REASON".to_string(),
            "MESSAGE".to_string(),
        ]];
        rows.extend(status.conditions.iter().map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        }));
        table(&mut out, "  ", &rows);
    }
    out
}

/// Every view, separated by a blank line.
pub fn render_all(views: &[PoolView]) -> String {
    views.iter().map(render).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests;
