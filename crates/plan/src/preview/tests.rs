use std::collections::BTreeMap;

use poolnet_api::ownership::cluster_rule_prefix;
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::route::NextHopKind;
use proptest::prelude::*;

use super::*;
use crate::nsg::{Direction, Owner, consolidate, plan_nsg};
use crate::scope::Scope;

const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks";
const NSG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg";

fn range(a: u16, b: u16) -> PortRange {
    PortRange::new(a, b).expect("range")
}

fn game() -> Owner {
    Owner::NodePoolNetwork {
        name: "game".into(),
    }
}

fn owned(rule: &crate::nsg::PlannedRule) -> ExistingRule {
    ExistingRule {
        name: rule.rule.name.clone(),
        priority: rule.priority,
        direction: Direction::Inbound,
        content: Some(rule.rule.content.clone()),
        canonical: true,
        description: None,
    }
}

fn field<'a>(c: &'a PendingChange, name: &str) -> Option<&'a FieldChange> {
    c.fields.iter().find(|f| f.field == name)
}

#[test]
fn rules_added_changed_and_removed_field_by_field() {
    let prefix = cluster_rule_prefix(CLUSTER);
    let sources = ["Internet".to_string()];
    let before = consolidate(
        CLUSTER,
        &game(),
        "uid-1",
        &[(Protocol::Tcp, range(80, 80))],
        &sources,
        &[],
        (100, 199),
    );
    let gone = consolidate(
        CLUSTER,
        &Owner::NodePoolNetwork { name: "old".into() },
        "uid-2",
        &[(Protocol::Tcp, range(8080, 8080))],
        &sources,
        &[],
        (100, 199),
    );
    let start = plan_nsg(
        &[],
        &[before.clone(), gone].concat(),
        &Scope::prefix_only(&prefix),
    );
    let existing: Vec<ExistingRule> = start.rules.iter().map(owned).collect();
    // Now: tcp 80 and 443 (same rule, more ports) and udp 53 (a new rule); `old` is gone.
    let desired = consolidate(
        CLUSTER,
        &game(),
        "uid-1",
        &[
            (Protocol::Tcp, range(80, 80)),
            (Protocol::Tcp, range(443, 443)),
            (Protocol::Udp, range(53, 53)),
        ],
        &sources,
        &[],
        (100, 199),
    );
    let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
    let changes = nsg_changes(NSG, &existing, &plan);
    let by = |a: ChangeAction| changes.iter().filter(|c| c.action == a).collect::<Vec<_>>();

    let [changed] = by(ChangeAction::Change)[..] else {
        panic!("{changes:#?}")
    };
    assert_eq!(changed.name, before[0].name);
    assert_eq!(changed.target, ChangeTarget::SecurityRule);
    assert_eq!(changed.resource_id, NSG);
    assert_eq!(
        changed.fields.len(),
        1,
        "only the ports differ: {changed:#?}"
    );
    let ports = field(changed, "destinationPortRanges").expect("ports");
    assert_eq!(
        (ports.old.as_deref(), ports.new.as_deref()),
        (Some("80"), Some("80,443"))
    );

    let [added] = by(ChangeAction::Add)[..] else {
        panic!("{changes:#?}")
    };
    assert!(added.name.contains("-udp-"), "{added:?}");
    assert!(
        added
            .fields
            .iter()
            .all(|f| f.old.is_none() && f.new.is_some())
    );
    assert_eq!(
        field(added, "protocol").and_then(|f| f.new.as_deref()),
        Some("UDP")
    );
    assert_eq!(
        field(added, "sourceAddressPrefixes").and_then(|f| f.new.as_deref()),
        Some("Internet")
    );

    let [removed] = by(ChangeAction::Remove)[..] else {
        panic!("{changes:#?}")
    };
    assert!(removed.name.contains("-old-"), "{removed:?}");
    assert_eq!(
        field(removed, "destinationPortRanges").and_then(|f| f.old.as_deref()),
        Some("8080")
    );
    assert!(removed.fields.iter().all(|f| f.new.is_none()));
}

#[test]
fn a_hand_edited_description_is_changed_back() {
    let prefix = cluster_rule_prefix(CLUSTER);
    let desired = consolidate(
        CLUSTER,
        &game(),
        "uid-1",
        &[(Protocol::Tcp, range(80, 80))],
        &[],
        &[],
        (100, 199),
    );
    let start = plan_nsg(&[], &desired, &Scope::prefix_only(&prefix));
    let mut existing: Vec<ExistingRule> = start.rules.iter().map(owned).collect();
    existing[0].description = Some(crate::nsg::written_description(&desired[0]));
    assert!(
        !plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix)).needs_write(),
        "as written: nothing to do"
    );
    existing[0].description = Some("edited by hand".into());
    let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
    assert_eq!(plan.changed, [desired[0].name.clone()], "{plan:?}");
    let changes = nsg_changes(NSG, &existing, &plan);
    let d = field(&changes[0], "description").expect("description");
    assert_eq!(d.old.as_deref(), Some("edited by hand"));
    assert!(
        d.new
            .as_deref()
            .is_some_and(|n| n.starts_with("Managed by poolnet"))
    );
}

#[test]
fn a_rule_edited_by_hand_says_so() {
    let prefix = cluster_rule_prefix(CLUSTER);
    let desired = consolidate(
        CLUSTER,
        &game(),
        "uid-1",
        &[(Protocol::Tcp, range(80, 80))],
        &[],
        &[],
        (100, 199),
    );
    let start = plan_nsg(&[], &desired, &Scope::prefix_only(&prefix));
    let mut existing: Vec<ExistingRule> = start.rules.iter().map(owned).collect();
    existing[0].canonical = false;
    let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
    let changes = nsg_changes(NSG, &existing, &plan);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].action, ChangeAction::Change);
    assert!(
        changes[0]
            .fields
            .iter()
            .any(|f| f.old.as_deref() == Some("edited outside poolnet"))
    );
}

fn route(name: &str, prefix: &str, hop: NextHopKind, ip: Option<&str>) -> Route {
    Route {
        name: name.into(),
        address_prefix: prefix.into(),
        next_hop_type: hop,
        next_hop_ip: ip.map(String::from),
    }
}

#[test]
fn routes_and_agent_pool_fields() {
    let view = RouteTableView {
        routes: vec![
            route(
                "poolnet-default",
                "0.0.0.0/0",
                NextHopKind::VirtualAppliance,
                Some("10.0.0.4"),
            ),
            route("poolnet-stale", "10.9.0.0/16", NextHopKind::VnetLocal, None),
        ],
        ..RouteTableView::default()
    };
    let plan = RoutePlan {
        routes: vec![
            route(
                "poolnet-default",
                "0.0.0.0/0",
                NextHopKind::VirtualAppliance,
                Some("10.0.0.5"),
            ),
            route(
                "poolnet-onprem",
                "192.168.0.0/16",
                NextHopKind::VirtualNetworkGateway,
                None,
            ),
        ],
        added: vec!["poolnet-onprem".into()],
        changed: vec!["poolnet-default".into()],
        removed: vec!["poolnet-stale".into()],
        ..RoutePlan::default()
    };
    let changes = route_changes("rt", &view, &plan);
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0].action, ChangeAction::Add);
    assert_eq!(
        field(&changes[0], "nextHopType").and_then(|f| f.new.as_deref()),
        Some("VirtualNetworkGateway")
    );
    assert_eq!(
        changes[1].fields.len(),
        1,
        "only the next hop's address: {:?}",
        changes[1]
    );
    let ip = field(&changes[1], "nextHopIpAddress").expect("ip");
    assert_eq!(
        (ip.old.as_deref(), ip.new.as_deref()),
        (Some("10.0.0.4"), Some("10.0.0.5"))
    );
    assert_eq!(changes[2].action, ChangeAction::Remove);
    assert_eq!(
        field(&changes[2], "addressPrefix").and_then(|f| f.old.as_deref()),
        Some("10.9.0.0/16")
    );

    let observed = ObservedPool {
        allowed_host_ports: "80/tcp".into(),
        application_security_groups: vec!["/SUBSCRIPTIONS/X/asg-a".into()],
        ..ObservedPool::default()
    };
    let pool = PoolPlan {
        want_ports: "80/tcp,443/tcp".into(),
        want_asgs: vec!["/subscriptions/x/asg-a".into()],
        ..PoolPlan::default()
    };
    let c = agent_pool_changes("/x/agentPools/game", &observed, &pool).expect("a change");
    assert_eq!(c.name, "game");
    assert_eq!(c.fields.len(), 1, "ASG IDs differ only in case: {c:?}");
    assert_eq!(c.fields[0].field, "networkProfile.allowedHostPorts");
    assert_eq!(c.fields[0].new.as_deref(), Some("80/tcp,443/tcp"));
    let same = PoolPlan {
        want_ports: "80/tcp".into(),
        ..pool
    };
    assert!(agent_pool_changes("/x/agentPools/game", &observed, &same).is_none());
}

/// The rules as name → field → value, what the changes act on.
type Rules = BTreeMap<String, BTreeMap<String, String>>;

fn as_fields(priority: u16, content: &RuleContent) -> BTreeMap<String, String> {
    rule_fields(priority, content)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

proptest! {
    /// Applying the reported changes to what Azure holds gives exactly what the plan writes:
    /// the preview is complete and says nothing false.
    #[test]
    fn applying_the_preview_gives_the_planned_rules(
        before in proptest::collection::vec((any::<bool>(), 1u16..100, 0u16..5), 0..5),
        after in proptest::collection::vec((any::<bool>(), 1u16..100, 0u16..5), 0..5),
        owners in 1usize..3,
    ) {
        let prefix = cluster_rule_prefix(CLUSTER);
        let rules_of = |spec: &[(bool, u16, u16)]| -> Vec<crate::nsg::DesiredRule> {
            (0..owners).flat_map(|o| {
                let ports: Vec<(Protocol, PortRange)> = spec
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % owners == o)
                    .map(|(_, (tcp, p, len))| (if *tcp { Protocol::Tcp } else { Protocol::Udp }, range(*p, p + len)))
                    .collect();
                consolidate(CLUSTER, &Owner::NodePoolNetwork { name: format!("p{o}") }, "uid", &ports, &[], &[], (100, 199))
            }).collect()
        };
        let start = plan_nsg(&[], &rules_of(&before), &Scope::prefix_only(&prefix));
        let existing: Vec<ExistingRule> = start.rules.iter().map(owned).collect();
        let plan = plan_nsg(&existing, &rules_of(&after), &Scope::prefix_only(&prefix));
        let mut state: Rules = existing
            .iter()
            .map(|r| (r.name.clone(), as_fields(r.priority, r.content.as_ref().expect("owned"))))
            .collect();
        for c in nsg_changes(NSG, &existing, &plan) {
            match c.action {
                ChangeAction::Remove => { state.remove(&c.name); }
                _ => {
                    let entry = state.entry(c.name.clone()).or_default();
                    for f in &c.fields {
                        match &f.new {
                            Some(v) => { entry.insert(f.field.clone(), v.clone()); }
                            None => { entry.remove(&f.field); }
                        }
                    }
                }
            }
        }
        let want: Rules = plan
            .rules
            .iter()
            .map(|p| (p.rule.name.clone(), as_fields(p.priority, &p.rule.content)))
            .collect();
        prop_assert_eq!(state, want);
    }
}
