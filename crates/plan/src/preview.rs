//! The exact changes a plan makes, entry by entry and field by field, for Observe objects'
//! `status.pendingChanges` and `kubectl poolnet diff` (like `terraform plan`). Pure: built
//! from what the planners already decided and what was read from Azure.

use poolnet_api::v1alpha1::{ChangeAction, ChangeTarget, FieldChange, PendingChange};

use crate::agent_pool::{ObservedPool, PoolPlan};
use crate::nsg::{ExistingRule, NsgPlan, RuleContent};
use crate::routes::{Route, RoutePlan, RouteTableView};

fn rule_fields(priority: u16, content: &RuleContent) -> Vec<(&'static str, String)> {
    vec![
        ("priority", priority.to_string()),
        ("protocol", content.protocol.to_string().to_uppercase()),
        ("destinationPortRanges", content.port_strings().join(",")),
        ("sourceAddressPrefixes", content.sources.join(",")),
        (
            "destinationApplicationSecurityGroups",
            content.destination_asgs.join(","),
        ),
    ]
}

fn route_fields(route: &Route) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("addressPrefix", route.address_prefix.clone()),
        ("nextHopType", route.next_hop_type.to_string()),
    ];
    if let Some(ip) = &route.next_hop_ip {
        fields.push(("nextHopIpAddress", ip.clone()));
    }
    fields
}

/// Field changes from `old` to `new` (either may be missing: add or remove), only the fields
/// that differ.
fn diff(old: &[(&'static str, String)], new: &[(&'static str, String)]) -> Vec<FieldChange> {
    let mut names: Vec<&'static str> = old.iter().map(|(n, _)| *n).collect();
    for (n, _) in new {
        if !names.contains(n) {
            names.push(n);
        }
    }
    let get = |list: &[(&'static str, String)], name: &str| {
        list.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (o, n) = (get(old, name), get(new, name));
            (o != n).then(|| FieldChange {
                field: name.to_string(),
                old: o,
                new: n,
            })
        })
        .collect()
}

fn change(
    resource_id: &str,
    target: ChangeTarget,
    name: &str,
    action: ChangeAction,
    fields: Vec<FieldChange>,
) -> PendingChange {
    PendingChange {
        resource_id: resource_id.to_string(),
        target,
        name: name.to_string(),
        action,
        fields,
    }
}

fn find<'a, T>(items: &'a [T], name: &str, name_of: impl Fn(&T) -> &str) -> Option<&'a T> {
    items.iter().find(|i| name_of(i).eq_ignore_ascii_case(name))
}

/// What applying `plan` to NSG `nsg_id`, which holds `existing`, changes.
pub fn nsg_changes(nsg_id: &str, existing: &[ExistingRule], plan: &NsgPlan) -> Vec<PendingChange> {
    let mut out = Vec::new();
    let planned = |name: &str| find(&plan.rules, name, |r| &r.rule.name);
    let current = |name: &str| find(existing, name, |r| &r.name);
    let current_fields = |r: &ExistingRule| {
        r.content
            .as_ref()
            .map(|c| rule_fields(r.priority, c))
            .unwrap_or_else(|| vec![("priority", r.priority.to_string())])
    };
    for name in &plan.added {
        if let Some(p) = planned(name) {
            let new = rule_fields(p.priority, &p.rule.content);
            out.push(change(
                nsg_id,
                ChangeTarget::SecurityRule,
                name,
                ChangeAction::Add,
                diff(&[], &new),
            ));
        }
    }
    for name in &plan.changed {
        let (Some(p), Some(c)) = (planned(name), current(name)) else {
            continue;
        };
        let mut fields = diff(
            &current_fields(c),
            &rule_fields(p.priority, &p.rule.content),
        );
        let written = crate::nsg::written_description(&p.rule);
        if let Some(now) = c.description.as_ref().filter(|d| **d != written) {
            fields.push(FieldChange {
                field: "description".into(),
                old: Some(now.clone()).filter(|d| !d.is_empty()),
                new: Some(written),
            });
        }
        if !c.canonical {
            fields.push(FieldChange {
                field: "access, direction, sourcePortRange, description".into(),
                old: Some("edited outside poolnet".into()),
                new: Some("Allow, Inbound, *, poolnet's description".into()),
            });
        }
        out.push(change(
            nsg_id,
            ChangeTarget::SecurityRule,
            name,
            ChangeAction::Change,
            fields,
        ));
    }
    for name in &plan.removed {
        let old = current(name).map(current_fields).unwrap_or_default();
        out.push(change(
            nsg_id,
            ChangeTarget::SecurityRule,
            name,
            ChangeAction::Remove,
            diff(&old, &[]),
        ));
    }
    out
}

/// What applying `plan` to route table `table_id`, read as `view`, changes.
pub fn route_changes(
    table_id: &str,
    view: &RouteTableView,
    plan: &RoutePlan,
) -> Vec<PendingChange> {
    let mut out = Vec::new();
    let planned = |name: &str| find(&plan.routes, name, |r| &r.name);
    let current = |name: &str| find(&view.routes, name, |r| &r.name);
    for (names, action) in [
        (&plan.added, ChangeAction::Add),
        (&plan.changed, ChangeAction::Change),
        (&plan.removed, ChangeAction::Remove),
    ] {
        for name in names {
            let old = match action {
                ChangeAction::Add => Vec::new(),
                _ => current(name).map(route_fields).unwrap_or_default(),
            };
            let new = match action {
                ChangeAction::Remove => Vec::new(),
                _ => planned(name).map(route_fields).unwrap_or_default(),
            };
            out.push(change(
                table_id,
                ChangeTarget::Route,
                name,
                action,
                diff(&old, &new),
            ));
        }
    }
    out
}

/// What applying `plan` to agent pool `pool_id`, observed as `observed`, changes (the fields
/// poolnet manages on a live pool; creation-time fields are reported as RequiresNodePoolRecreate).
/// The agent pool poolnet would create from `spec.nodePool.template`, field by field.
pub fn new_pool_change(pool_id: &str, new: &crate::new_pool::NewPool) -> PendingChange {
    let shape = &new.shape;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields = [
        ("vmSize", opt(shape.vm_size.clone())),
        ("count", opt(shape.count.map(|c| c.to_string()))),
        (
            "minCount..maxCount",
            opt(shape.autoscaling.map(|(a, b)| format!("{a}..{b}"))),
        ),
        ("upgradeSettings.maxSurge", opt(shape.max_surge.clone())),
        ("mode", opt(shape.mode.clone())),
        ("osType", opt(shape.os_type.clone())),
        (
            "orchestratorVersion",
            opt(shape.orchestrator_version.clone()),
        ),
        ("vnetSubnetID", opt(shape.vnet_subnet_id.clone())),
        ("availabilityZones", shape.availability_zones.join(",")),
        ("maxPods", opt(shape.max_pods.map(|m| m.to_string()))),
        (
            "nodeLabels",
            shape
                .node_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("nodeTaints", shape.node_taints.join(",")),
        ("enableNodePublicIP", new.enable_node_public_ip.to_string()),
        (
            "nodePublicIPPrefixID",
            opt(new.node_public_ip_prefix_id.clone()),
        ),
        (
            "networkProfile.nodePublicIPTags",
            new.node_public_ip_tags
                .iter()
                .map(|t| format!("{}={}", t.ip_tag_type, t.tag))
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "networkProfile.allowedHostPorts",
            new.allowed_host_ports.clone(),
        ),
        (
            "networkProfile.applicationSecurityGroups",
            crate::agent_pool::sorted_ids(&new.application_security_groups).join(","),
        ),
    ];
    let name = pool_id.rsplit('/').next().unwrap_or(pool_id);
    change(
        pool_id,
        ChangeTarget::AgentPool,
        name,
        ChangeAction::Add,
        diff(&[], &fields),
    )
}

pub fn agent_pool_changes(
    pool_id: &str,
    observed: &ObservedPool,
    plan: &PoolPlan,
) -> Option<PendingChange> {
    let old = [
        (
            "networkProfile.allowedHostPorts",
            observed.allowed_host_ports.clone(),
        ),
        (
            "networkProfile.applicationSecurityGroups",
            crate::agent_pool::sorted_ids(&observed.application_security_groups).join(","),
        ),
    ];
    let new = [
        ("networkProfile.allowedHostPorts", plan.want_ports.clone()),
        (
            "networkProfile.applicationSecurityGroups",
            crate::agent_pool::sorted_ids(&plan.want_asgs).join(","),
        ),
    ];
    let mut fields = diff(&old, &new);
    // ARM IDs compare case-insensitively.
    fields.retain(|f| {
        !(f.field.ends_with("applicationSecurityGroups")
            && f.old.as_deref().map(str::to_ascii_lowercase)
                == f.new.as_deref().map(str::to_ascii_lowercase))
    });
    let name = pool_id.rsplit('/').next().unwrap_or(pool_id);
    (!fields.is_empty()).then(|| {
        change(
            pool_id,
            ChangeTarget::AgentPool,
            name,
            ChangeAction::Change,
            fields,
        )
    })
}

#[cfg(test)]
mod tests;
