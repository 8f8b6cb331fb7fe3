//! Between the SDK's ARM models and the planners' pure types. Only the parts poolnet owns are
//! rebuilt; foreign rules and routes travel back to ARM exactly as they were read.

use poolnet_api::ownership::CLUSTER_TAG;
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::route::NextHopKind;
use poolnet_arm::models::{
    ApplicationSecurityGroup, NetworkSecurityGroup, Resource, Route as ArmRoute, RouteNextHopType,
    RoutePropertiesFormat, RouteTable, SecurityRule, SecurityRuleAccess, SecurityRuleDirection,
    SecurityRulePropertiesFormat, SubResource,
    security_rule_properties_format::Protocol as ArmProtocol,
};
use poolnet_plan::nsg::{Direction, ExistingRule, NsgPlan, PlannedRule, RuleContent};
use poolnet_plan::routes::{Route, RoutePlan, RouteTableView};

fn parse_port_range(s: &str) -> Option<PortRange> {
    match s.split_once('-') {
        Some((a, b)) => PortRange::new(a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => PortRange::single(s.trim().parse().ok()?),
    }
}

/// The content of a rule poolnet owns, as read; `None` when it is not even the shape poolnet
/// writes (then it is rewritten).
fn owned_content(p: &SecurityRulePropertiesFormat) -> Option<RuleContent> {
    let protocol = match p.protocol {
        ArmProtocol::Tcp => Protocol::Tcp,
        ArmProtocol::Udp => Protocol::Udp,
        _ => return None,
    };
    let mut sources: Vec<String> = p
        .source_address_prefixes
        .iter()
        .cloned()
        .chain(p.source_address_prefix.clone())
        .collect();
    sources.sort();
    sources.dedup();
    let mut destination_asgs: Vec<String> = p
        .destination_application_security_groups
        .iter()
        .filter_map(|a| a.resource.id.as_ref().map(|id| id.to_ascii_lowercase()))
        .collect();
    destination_asgs.sort();
    destination_asgs.dedup();
    let mut ports = Vec::new();
    for s in p
        .destination_port_ranges
        .iter()
        .chain(p.destination_port_range.as_ref())
    {
        ports.push(parse_port_range(s)?);
    }
    ports.sort();
    Some(RuleContent {
        protocol,
        sources,
        destination_asgs,
        ports,
    })
}

/// Every rule of `nsg` in planner form; content is parsed for rules named `owned_prefix…`.
pub fn existing_rules(nsg: &NetworkSecurityGroup, owned_prefix: &str) -> Vec<ExistingRule> {
    let Some(props) = &nsg.properties else {
        return Vec::new();
    };
    props
        .security_rules
        .iter()
        .filter_map(|r| {
            let name = r.name.clone()?;
            let p = r.properties.as_ref()?;
            let direction = match p.direction {
                SecurityRuleDirection::Outbound => Direction::Outbound,
                _ => Direction::Inbound,
            };
            let owned = name.starts_with(owned_prefix);
            let content = if owned { owned_content(p) } else { None };
            let canonical = owned
                && matches!(p.access, SecurityRuleAccess::Allow)
                && matches!(p.direction, SecurityRuleDirection::Inbound)
                && p.source_port_range.as_deref() == Some("*")
                && p.destination_address_prefix.is_none()
                && p.destination_address_prefixes.is_empty();
            Some(ExistingRule {
                name,
                priority: u16::try_from(p.priority).unwrap_or(u16::MAX),
                direction,
                content,
                canonical,
                description: owned.then(|| p.description.clone().unwrap_or_default()),
            })
        })
        .collect()
}

/// The ARM rule poolnet writes for a planned rule.
pub fn security_rule(planned: &PlannedRule) -> SecurityRule {
    let c = &planned.rule.content;
    let protocol = match c.protocol {
        Protocol::Tcp => ArmProtocol::Tcp,
        Protocol::Udp => ArmProtocol::Udp,
    };
    let mut p = SecurityRulePropertiesFormat::new(
        protocol,
        SecurityRuleAccess::Allow,
        i32::from(planned.priority),
        SecurityRuleDirection::Inbound,
    );
    p.description = Some(poolnet_plan::nsg::written_description(&planned.rule));
    p.source_port_range = Some("*".into());
    // ARM wants the single-value field for one entry and the list form for several; using
    // the list form only keeps what we read back comparable.
    p.source_address_prefixes = c.sources.clone();
    p.destination_application_security_groups = c
        .destination_asgs
        .iter()
        .map(|id| ApplicationSecurityGroup {
            resource: Resource {
                id: Some(id.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    p.destination_port_ranges = c.port_strings();
    SecurityRule {
        sub_resource: SubResource::default(),
        properties: Some(p),
        name: Some(planned.rule.name.clone()),
        ..Default::default()
    }
}

/// `nsg` with every rule in the plan's scope replaced by the plan's rules; every other rule
/// (foreign, unrecorded, an Observe object's) is kept exactly as read, in its order.
pub fn apply_nsg_plan(nsg: &NetworkSecurityGroup, plan: &NsgPlan) -> NetworkSecurityGroup {
    let mut out = nsg.clone();
    let props = out.properties.get_or_insert_with(Default::default);
    props
        .security_rules
        .retain(|r| !r.name.as_deref().is_some_and(|n| plan.scope.owns(n)));
    props
        .security_rules
        .extend(plan.rules.iter().map(security_rule));
    out
}

fn next_hop(t: &RouteNextHopType) -> Option<NextHopKind> {
    Some(match t {
        RouteNextHopType::VirtualNetworkGateway => NextHopKind::VirtualNetworkGateway,
        RouteNextHopType::VnetLocal => NextHopKind::VnetLocal,
        RouteNextHopType::Internet => NextHopKind::Internet,
        RouteNextHopType::VirtualAppliance => NextHopKind::VirtualAppliance,
        RouteNextHopType::None => NextHopKind::None,
        RouteNextHopType::UnknownValue(_) => return None,
    })
}

fn arm_next_hop(k: NextHopKind) -> RouteNextHopType {
    match k {
        NextHopKind::VirtualNetworkGateway => RouteNextHopType::VirtualNetworkGateway,
        NextHopKind::VnetLocal => RouteNextHopType::VnetLocal,
        NextHopKind::Internet => RouteNextHopType::Internet,
        NextHopKind::VirtualAppliance => RouteNextHopType::VirtualAppliance,
        NextHopKind::None => RouteNextHopType::None,
    }
}

/// Value of poolnet's cluster tag on a resource.
pub fn tag_value(resource: &Resource, key: &str) -> Option<String> {
    resource
        .tags
        .as_ref()
        .and_then(|t| t.get(key))
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// Set a tag, keeping the others.
pub fn set_tag(resource: &mut Resource, key: &str, value: &str) {
    let mut tags = match resource.tags.take() {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    tags.insert(key.into(), serde_json::Value::String(value.into()));
    resource.tags = Some(serde_json::Value::Object(tags));
}

/// Remove a tag, keeping the others (and no empty tag map where there was none).
pub fn remove_tag(resource: &mut Resource, key: &str) {
    if let Some(serde_json::Value::Object(m)) = resource.tags.as_mut() {
        m.remove(key);
        if m.is_empty() {
            resource.tags = None;
        }
    }
}

/// The table in planner form.
pub fn route_table_view(table: &RouteTable) -> RouteTableView {
    let routes = table
        .properties
        .as_ref()
        .map(|p| {
            p.routes
                .iter()
                .filter_map(|r| {
                    let props = r.properties.as_ref()?;
                    Some(Route {
                        name: r.name.clone()?,
                        address_prefix: props.address_prefix.clone().unwrap_or_default(),
                        // A next hop the planner does not know is kept as read: a foreign
                        // route is never rebuilt, and an owned one with it differs anyway.
                        next_hop_type: next_hop(&props.next_hop_type).unwrap_or(NextHopKind::None),
                        next_hop_ip: props.next_hop_ip_address.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    RouteTableView {
        routes,
        cluster_tag: tag_value(&table.resource, CLUSTER_TAG),
    }
}

/// `table` with the routes in the plan's scope replaced by the plan's own routes, every other
/// route as read, and the cluster tag set while poolnet keeps routes there (removed with the
/// last one, so a deletion leaves the table as it was).
pub fn apply_route_plan(table: &RouteTable, plan: &RoutePlan, cluster: &str) -> RouteTable {
    let owned: Vec<&Route> = plan
        .routes
        .iter()
        .filter(|r| plan.scope.owns(&r.name))
        .collect();
    let mut out = table.clone();
    if plan.untag {
        remove_tag(&mut out.resource, CLUSTER_TAG);
    } else if !owned.is_empty() {
        set_tag(
            &mut out.resource,
            CLUSTER_TAG,
            &cluster.to_ascii_lowercase(),
        );
    }
    let props = out.properties.get_or_insert_with(Default::default);
    props
        .routes
        .retain(|r| !r.name.as_deref().is_some_and(|n| plan.scope.owns(n)));
    props.routes.extend(owned.iter().map(|r| {
        let mut p = RoutePropertiesFormat::new(arm_next_hop(r.next_hop_type));
        p.address_prefix = Some(r.address_prefix.clone());
        p.next_hop_ip_address = r.next_hop_ip.clone();
        ArmRoute {
            sub_resource: SubResource::default(),
            properties: Some(p),
            name: Some(r.name.clone()),
            ..Default::default()
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_plan::nsg::{Owner, consolidate, plan_nsg};
    use poolnet_plan::scope::Scope;

    const CLUSTER: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks";

    #[test]
    fn nsg_round_trip_keeps_foreign_rules_and_converges() {
        let foreign: SecurityRule = serde_json::from_value(serde_json::json!({
            "name": "k8s-azure-lb_allow_IPv4_x",
            "properties": {"priority": 500, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                "destinationAddressPrefixes": ["192.0.2.10"], "destinationPortRanges": ["80", "443"]}
        }))
        .unwrap();
        let nsg: NetworkSecurityGroup = serde_json::from_value(serde_json::json!({
            "location": "westeurope",
            "properties": {"securityRules": [foreign]}
        }))
        .unwrap();
        let prefix = poolnet_api::ownership::cluster_rule_prefix(CLUSTER);
        let desired = consolidate(
            CLUSTER,
            &Owner::NodePoolNetwork { name: "game".into() },
            "uid-1",
            &[(Protocol::Tcp, PortRange::new(40000, 60000).unwrap()), (Protocol::Udp, PortRange::single(53).unwrap())],
            &["Internet".into()],
            &["/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg".into()],
            (100, 499),
        );
        let scope = Scope::new(&prefix, desired.iter().map(|d| &d.name));
        let plan = plan_nsg(&existing_rules(&nsg, &prefix), &desired, &scope);
        let written = apply_nsg_plan(&nsg, &plan);
        // Through JSON, as ARM would store and return it.
        let back: NetworkSecurityGroup =
            serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        let rules = &back.properties.as_ref().unwrap().security_rules;
        assert_eq!(rules.len(), 3);
        assert_eq!(
            serde_json::to_value(&rules[0]).unwrap(),
            serde_json::to_value(&foreign).unwrap()
        );
        let again = plan_nsg(&existing_rules(&back, &prefix), &desired, &scope);
        assert!(!again.needs_write(), "{again:?}");
    }

    #[test]
    fn route_table_round_trip() {
        let table: RouteTable = serde_json::from_value(serde_json::json!({
            "location": "westeurope",
            "tags": {"owner": "net-team"},
            "properties": {"routes": [
                {"name": "default-egress", "properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": "Internet"}},
                {"name": "poolnet-old", "properties": {"addressPrefix": "10.9.0.0/16", "nextHopType": "VnetLocal"}}
            ]}
        }))
        .unwrap();
        let view = route_table_view(&table);
        assert_eq!(view.routes.len(), 2);
        let ours = poolnet_plan::routes::DesiredRoute {
            owner: "NodePoolNetwork game".into(),
            route: Route {
                name: "poolnet-onprem".into(),
                address_prefix: "192.168.0.0/16".into(),
                next_hop_type: NextHopKind::VirtualNetworkGateway,
                next_hop_ip: None,
            },
        };
        // "poolnet-old" is recorded by no one (left by a DetachOnDelete deletion): it stays.
        let scope = Scope::new("poolnet-", ["poolnet-onprem"]);
        let plan = poolnet_plan::routes::plan_routes(&view, &[ours], &scope, CLUSTER, 0, 400);
        assert_eq!(plan.unrecorded, ["poolnet-old"]);
        let written = apply_route_plan(&table, &plan, CLUSTER);
        let back = route_table_view(&written);
        let names: Vec<&str> = back.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["default-egress", "poolnet-old", "poolnet-onprem"]);
        assert_eq!(back.cluster_tag.as_deref(), Some(CLUSTER));
        assert_eq!(
            tag_value(&written.resource, "owner").as_deref(),
            Some("net-team")
        );
    }
}
