//! Unit and property tests of the core: a world settled by the operator's own planner and
//! writers' conversions (so it satisfies every invariant), then broken one way at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use poolnet_api::portspec;
use poolnet_api::v1alpha1::{
    AsgStatus, BoundPod, ClaimOwner, HostPortBlock, HostPortClaim, HostPortClaimSpec,
    HostPortClaimStatus, HostPortPolicy, HostPortPolicySpec, HostPortSource, NodePoolNetwork,
    NodePoolNetworkSpec, Owned, PortProtocol, ReconcilePolicy,
};
use poolnet_arm::models::{NetworkSecurityGroup, RouteTable};
use poolnet_operator::writers::convert::{
    apply_nsg_plan, apply_route_plan, existing_rules, route_table_view,
};
use poolnet_plan::agent_pool::{ObservedPool, plan_agent_pool};
use poolnet_plan::desired::{
    cluster_of, nsg_union, policy_rules, pool_routes, pool_rules, route_union,
};
use poolnet_plan::hostports::Key;
use poolnet_plan::nsg::plan_nsg;
use poolnet_plan::routes::plan_routes;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::attribution::admitted;
use crate::model::*;
use crate::{baseline, check};

const SUB: &str = "00000000-1111-2222-3333-444444444444";

fn rg_id(kind: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/{kind}/{name}")
}

fn nsg_id() -> String {
    rg_id("networkSecurityGroups", "nsg")
}

fn rt_id() -> String {
    rg_id("routeTables", "rt")
}

fn asg_id() -> String {
    rg_id("applicationSecurityGroups", "asg-custom")
}

fn pool_id(pool: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/{pool}"
    )
}

fn cluster() -> String {
    cluster_of(&pool_id("game")).unwrap()
}

fn ready() -> Vec<Condition> {
    vec![Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "Reconciled".into(),
        message: "ok".into(),
        observed_generation: Some(1),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }]
}

/// What a world holds besides the fixed parts.
#[derive(Debug, Clone)]
struct Params {
    game_ports: String,
    watch_observe: bool,
    policy_sources: Vec<String>,
    foreign_rules: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            game_ports: "80/tcp,53/udp,40000-40999/tcp".into(),
            watch_observe: true,
            policy_sources: vec!["203.0.113.0/24".into()],
            foreign_rules: 2,
        }
    }
}

fn npn(name: &str, pool: &str, ports: &str, band: (u16, u16), route: bool) -> NodePoolNetwork {
    let mut spec = json!({
        "nodePool": {"agentPoolId": pool_id(pool)},
        "allowedHostPorts": [ports],
        "applicationSecurityGroups": {"managed": false, "customIds": [asg_id()]},
        "networkSecurityGroups": [{"id": nsg_id(), "sourceAddressPrefixes": ["*"],
            "priorities": {"from": band.0, "to": band.1}}],
        "hostPortPolicies": {"from": "All"},
    });
    if route {
        spec["routeTable"] = json!({"id": rt_id(), "routes": [
            {"name": "default", "addressPrefix": "0.0.0.0/0", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.0.2.4"}]});
    }
    let spec: NodePoolNetworkSpec = serde_json::from_value(spec).unwrap();
    let mut n = NodePoolNetwork::new(name, spec);
    n.metadata.uid = Some(format!("uid-{name}"));
    n.metadata.generation = Some(1);
    let status = n.status.get_or_insert_with(Default::default);
    status.observed_generation = Some(1);
    status.conditions = ready();
    status.application_security_groups = vec![AsgStatus {
        id: asg_id(),
        managed: false,
    }];
    n
}

fn hpp(ns: &str, name: &str, pool: &str, sources: &[String]) -> HostPortPolicy {
    let spec: HostPortPolicySpec = serde_json::from_value(json!({
        "nodePoolNetwork": pool,
        "podSelector": {"matchLabels": {"app": name}},
        "ports": [{"containerPort": 8080}, {"containerPort": 9000, "protocol": "UDP", "hostPort": 53}],
        "hostPortRange": {"start": 40000, "end": 40100},
        "sourceAddressPrefixes": sources,
    }))
    .unwrap();
    let mut h = HostPortPolicy::new(name, spec);
    h.metadata.namespace = Some(ns.into());
    h.metadata.uid = Some(format!("uid-{ns}-{name}"));
    h.metadata.generation = Some(1);
    let status = h.status.get_or_insert_with(Default::default);
    status.observed_generation = Some(1);
    status.conditions = ready();
    h
}

fn foreign_rule(i: usize) -> Value {
    json!({"name": format!("foreign-{i}"), "id": format!("{}/securityRules/foreign-{i}", nsg_id()),
        "etag": "W/\"1\"", "properties": {
        "priority": 100 + i, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": format!("10.{i}.0.0/16"), "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "22",
        "description": "hand-made", "provisioningState": "Succeeded"}})
}

fn arm_pool(ports: &str, asgs: &[String]) -> Value {
    let ranges: Vec<Value> = portspec::parse_list(ports)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            json!({"portStart": s.range.start(), "portEnd": s.range.end(),
            "protocol": s.protocol.as_str().to_ascii_uppercase()})
        })
        .collect();
    json!({"name": "pool", "properties": {"count": 3, "vmSize": "Standard_D4s_v5", "mode": "User",
        "provisioningState": "Succeeded", "eTag": "e1",
        "networkProfile": {"allowedHostPorts": ranges, "applicationSecurityGroups": asgs}}})
}

/// A world in which poolnet converged: every object recorded its entries, and ARM holds the
/// union the operator's planner computes, written by the operator's conversions.
fn world(p: &Params) -> Snapshot {
    let c = cluster();
    let mut pools = vec![
        npn("game", "game", &p.game_ports, (200, 299), true),
        npn("watch", "kubenet", "8000-8100/tcp", (300, 399), false),
    ];
    let mut policies = vec![hpp("games", "echo", "game", &p.policy_sources)];
    // Intent recorded for everything, as the operator does before writing.
    for pool in &mut pools {
        let mut owned = Owned::default();
        for t in &pool.spec.network_security_groups {
            Owned::record(
                &mut owned.security_rules,
                &t.id,
                pool_rules(&c, pool, t).into_iter().map(|r| r.name),
            );
        }
        if let Some(rt) = &pool.spec.route_table {
            Owned::record(
                &mut owned.routes,
                &rt.id,
                pool_routes(pool).into_iter().map(|r| r.route.name),
            );
        }
        pool.status.as_mut().unwrap().owned = Some(owned);
    }
    for h in &mut policies {
        let mut owned = Owned {
            cluster: Some(c.clone()),
            ..Owned::default()
        };
        let pool = pools
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(h.spec.node_pool_network.as_str()))
            .unwrap();
        for t in &pool.spec.network_security_groups {
            Owned::record(
                &mut owned.security_rules,
                &t.id,
                policy_rules(&c, pool, t, h).into_iter().map(|r| r.name),
            );
        }
        h.status.as_mut().unwrap().owned = Some(owned);
    }
    let mut snap = Snapshot {
        pools,
        policies,
        namespaces: BTreeMap::from([("games".to_string(), BTreeMap::new())]),
        claims: Vec::new(),
        blocks: Vec::new(),
        pods: Vec::new(),
        arm: ArmView::default(),
        now: Timestamp::from_second(1_800_000_000).unwrap(),
    };
    // The NSG: foreign rules, then the union written.
    let foreign: Vec<Value> = (0..p.foreign_rules).map(foreign_rule).collect();
    let read: NetworkSecurityGroup = serde_json::from_value(json!({
        "id": nsg_id(), "name": "nsg", "location": "westeurope", "etag": "W/\"1\"",
        "tags": {"team": "net"},
        "properties": {"securityRules": foreign, "provisioningState": "Succeeded"}}))
    .unwrap();
    let union = nsg_union(&c, &nsg_id(), &snap.pools, &snap.policies, &admitted(&snap));
    let plan = plan_nsg(
        &existing_rules(&read, union.scope.prefix()),
        &union.wanted,
        &union.scope,
    );
    assert!(plan.unplaced.is_empty(), "{plan:?}");
    snap.arm.insert(
        &nsg_id(),
        serde_json::to_value(apply_nsg_plan(&read, &plan)).unwrap(),
    );
    // The route table: AKS's node routes and a hand-made one, then poolnet's.
    let table: RouteTable = serde_json::from_value(json!({
        "id": rt_id(), "name": "rt", "location": "westeurope",
        "properties": {"routes": [
            {"name": "aks-node-0", "properties": {"addressPrefix": "10.244.0.0/24", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.240.0.4"}},
            {"name": "to-onprem", "properties": {"addressPrefix": "192.168.0.0/16", "nextHopType": "VirtualNetworkGateway"}}]}}))
    .unwrap();
    let union = route_union(&c, &rt_id(), &snap.pools);
    let plan = plan_routes(
        &route_table_view(&table),
        &union.wanted,
        &union.scope,
        &c,
        1,
        400,
    );
    assert!(plan.problems.is_empty(), "{plan:?}");
    snap.arm.insert(
        &rt_id(),
        serde_json::to_value(apply_route_plan(&table, &plan, &c)).unwrap(),
    );
    // Agent pools as poolnet left them.
    for pool in &snap.pools {
        let want = plan_agent_pool(pool, &ObservedPool::default(), &[asg_id()]);
        snap.arm.insert(
            &pool.spec.node_pool.agent_pool_id,
            arm_pool(&want.want_ports, &want.want_asgs),
        );
    }
    snap.arm.insert(
        &asg_id(),
        json!({"id": asg_id(), "name": "asg-custom", "location": "westeurope", "properties": {}}),
    );
    // `watch` switched to Observe after its rules were written: they stay, recorded.
    if p.watch_observe {
        snap.pools[1].spec.reconcile_policy = ReconcilePolicy::Observe;
    }
    snap
}

fn options() -> Options {
    Options {
        writes: Some(BTreeMap::new()),
        ..Options::default()
    }
}

fn kinds(r: &Report) -> Vec<(char, Kind, Option<String>)> {
    r.violations
        .iter()
        .map(|v| (v.invariant.letter(), v.kind, v.entry.clone()))
        .collect()
}

/// The record of the world's first NodePoolNetwork (game).
fn first_owned(snap: &mut Snapshot) -> &mut Owned {
    snap.pools[0]
        .status
        .as_mut()
        .unwrap()
        .owned
        .as_mut()
        .unwrap()
}

fn rules_mut(snap: &mut Snapshot) -> &mut Vec<Value> {
    snap.arm
        .resources
        .get_mut(&nsg_id().to_ascii_lowercase())
        .unwrap()
        .pointer_mut("/properties/securityRules")
        .unwrap()
        .as_array_mut()
        .unwrap()
}

fn routes_mut(snap: &mut Snapshot) -> &mut Vec<Value> {
    snap.arm
        .resources
        .get_mut(&rt_id().to_ascii_lowercase())
        .unwrap()
        .pointer_mut("/properties/routes")
        .unwrap()
        .as_array_mut()
        .unwrap()
}

fn rule_named<'a>(snap: &'a mut Snapshot, needle: &str) -> &'a mut Value {
    rules_mut(snap)
        .iter_mut()
        .find(|r| r["name"].as_str().unwrap().contains(needle))
        .unwrap()
}

fn name_of(snap: &Snapshot, needle: &str) -> String {
    snap.arm.get(&nsg_id()).unwrap()["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .find(|n| n.contains(needle))
        .unwrap()
}

#[test]
fn a_converged_world_holds_every_invariant() {
    let snap = world(&Params::default());
    let b = baseline(&snap, Some(BTreeMap::new()));
    // Foreign: the two hand-made rules and the Observe object's (tcp) rule.
    let nsg = b.resources.iter().find(|r| r.id == nsg_id()).unwrap();
    let foreign: Vec<&String> = nsg.entries.keys().collect();
    assert_eq!(foreign.len(), 3, "{foreign:?}");
    assert!(foreign.iter().any(|n| n.contains("-watch-tcp-")));
    let report = check(&snap, Some(&b), &options());
    assert!(report.violations.is_empty(), "{report:#?}");
    assert_eq!(report.exit_code(), 0);
    let a = report.amplification.unwrap();
    assert_eq!((a.writes, a.changed, a.ratio), (0, 0, None));
}

#[test]
fn a_missing_poolnet_rule_is_reported_under_b() {
    let mut snap = world(&Params::default());
    let name = name_of(&snap, "-game-udp-");
    rules_mut(&mut snap).retain(|r| r["name"] != name.as_str());
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Missing, Some(name))], "{r:#?}");
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn an_edited_poolnet_rule_differs() {
    let mut snap = world(&Params::default());
    let name = name_of(&snap, "-game-tcp-");
    rule_named(&mut snap, "-game-tcp-")["properties"]["destinationPortRanges"] = json!(["22"]);
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Differs, Some(name.clone()))]);
    assert_eq!(
        r.violations[0].found.as_ref().unwrap()["properties"]["destinationPortRanges"],
        json!(["22"])
    );
    let mut snap = world(&Params::default());
    rule_named(&mut snap, "-game-tcp-")["properties"]["description"] = json!("edited");
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Differs, Some(name))]);
}

#[test]
fn an_unrecorded_poolnet_named_rule_is_stranded_unless_detached_is_allowed() {
    let mut snap = world(&Params::default());
    let mut copy = rule_named(&mut snap, "-game-tcp-").clone();
    let name = format!(
        "{}gone-tcp-abcdef",
        poolnet_api::ownership::cluster_rule_prefix(&cluster())
    );
    copy["name"] = json!(name);
    copy["properties"]["priority"] = json!(250);
    copy["properties"]["description"] =
        json!("Managed by poolnet for NodePoolNetwork gone (uid uid-gone); do not edit");
    rules_mut(&mut snap).push(copy);
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Unrecorded, Some(name.clone()))]);
    let r = check(
        &snap,
        None,
        &Options {
            allow_detached: true,
            ..options()
        },
    );
    assert!(r.violations.is_empty(), "{r:#?}");
    assert!(r.notes.iter().any(|n| n.contains(&name)), "{:?}", r.notes);
    // A copy naming a live owner is stranded whatever the flag says.
    let last = rules_mut(&mut snap).last_mut().unwrap();
    last["properties"]["description"] =
        json!("Managed by poolnet for NodePoolNetwork game (uid uid-game); do not edit");
    let r = check(
        &snap,
        None,
        &Options {
            allow_detached: true,
            ..options()
        },
    );
    assert_eq!(kinds(&r), [('b', Kind::Unrecorded, Some(name))]);
}

#[test]
fn records_must_match_what_arm_holds() {
    // A rule wanted but not recorded.
    let mut snap = world(&Params::default());
    let name = name_of(&snap, "-game-udp-");
    let owned = first_owned(&mut snap);
    owned.security_rules[0].names.retain(|n| *n != name);
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::NotRecorded, Some(name.clone()))]);
    assert_eq!(r.violations[0].subject, "NodePoolNetwork game");
    // A recorded rule ARM does not hold (and nothing wants).
    let mut snap = world(&Params::default());
    let owned = first_owned(&mut snap);
    owned.security_rules[0].names.push("poolnet-old".into());
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [('b', Kind::RecordedAbsent, Some("poolnet-old".into()))]
    );
    // A recorded rule ARM holds that nothing wants: the game pool no longer opens UDP.
    let mut snap = world(&Params::default());
    snap.pools[0].spec.allowed_host_ports = vec!["80/tcp,40000-40999/tcp".into()];
    snap.policies[0].spec.ports.pop();
    let r = check(&snap, None, &options());
    let agent_pool = pool_id("game");
    assert_eq!(
        kinds(&r),
        [
            ('b', Kind::Differs, Some("properties.networkProfile".into())),
            ('b', Kind::Stale, Some(name)),
            (
                'b',
                Kind::Stale,
                Some(name_of(&world(&Params::default()), "-games.echo-udp-"))
            ),
        ],
        "{r:#?}"
    );
    assert_eq!(r.violations[0].subject, agent_pool);
}

#[test]
fn routes_and_the_cluster_tag() {
    let mut snap = world(&Params::default());
    routes_mut(&mut snap).retain(|r| r["name"] != "poolnet-default");
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [('b', Kind::Missing, Some("poolnet-default".into()))]
    );

    let mut snap = world(&Params::default());
    routes_mut(&mut snap).push(json!({"name": "poolnet-copy", "properties": {"addressPrefix": "10.9.0.0/16", "nextHopType": "VnetLocal"}}));
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [('b', Kind::Unrecorded, Some("poolnet-copy".into()))]
    );

    let mut snap = world(&Params::default());
    routes_mut(&mut snap)
        .iter_mut()
        .find(|r| r["name"] == "poolnet-default")
        .unwrap()["properties"]["nextHopIpAddress"] = json!("10.0.2.5");
    snap.arm
        .resources
        .get_mut(&rt_id().to_ascii_lowercase())
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("tags");
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [
            ('b', Kind::Differs, Some("poolnet-default".into())),
            ('b', Kind::Differs, Some("tags/poolnet.dev/cluster".into()))
        ]
    );
}

#[test]
fn foreign_changes_are_reported_under_a() {
    let base = world(&Params::default());
    let b = baseline(&base, None);
    // A hand-made rule edited, another removed, the NSG's own tags changed.
    let mut snap = base.clone();
    rule_named(&mut snap, "foreign-0")["properties"]["destinationPortRange"] = json!("2222");
    rules_mut(&mut snap).retain(|r| r["name"] != "foreign-1");
    snap.arm
        .resources
        .get_mut(&nsg_id().to_ascii_lowercase())
        .unwrap()["tags"]["team"] = json!("other");
    let r = check(&snap, Some(&b), &options());
    assert_eq!(
        kinds(&r),
        [
            ('a', Kind::ForeignFieldChanged, Some("/tags/team".into())),
            ('a', Kind::ForeignEntryChanged, Some("foreign-0".into())),
            ('a', Kind::ForeignEntryRemoved, Some("foreign-1".into())),
        ],
        "{r:#?}"
    );
    assert!(
        r.violations[1]
            .message
            .contains("/properties/destinationPortRange")
    );
    // The Observe object's recorded rule is foreign to the writer: byte for byte too.
    let mut snap = base.clone();
    rule_named(&mut snap, "-watch-tcp-")["properties"]["priority"] = json!(399);
    let watch = name_of(&snap, "-watch-tcp-");
    let r = check(&snap, Some(&b), &options());
    assert_eq!(kinds(&r), [('a', Kind::ForeignEntryChanged, Some(watch))]);
    // An Observe pool's fields are foreign; a writing pool's host ports are poolnet's (b).
    let mut snap = base.clone();
    for pool in ["kubenet", "game"] {
        snap.arm
            .resources
            .get_mut(&pool_id(pool).to_ascii_lowercase())
            .unwrap()["properties"]["networkProfile"]["allowedHostPorts"] = json!([]);
    }
    let r = check(&snap, Some(&b), &options());
    assert_eq!(
        kinds(&r),
        [
            (
                'a',
                Kind::ForeignFieldChanged,
                Some("/properties/networkProfile/allowedHostPorts".into())
            ),
            ('b', Kind::Differs, Some("properties.networkProfile".into())),
        ],
        "{r:#?}"
    );
    assert_eq!(r.violations[0].subject, pool_id("kubenet"));
    assert_eq!(r.violations[1].subject, pool_id("game"));
    // Read-only fields say nothing.
    let mut snap = base.clone();
    rule_named(&mut snap, "foreign-0")["etag"] = json!("W/\"9\"");
    assert!(check(&snap, Some(&b), &options()).violations.is_empty());
    // A resource gone.
    let mut snap = base;
    snap.arm.resources.remove(&rt_id().to_ascii_lowercase());
    snap.arm.insert_absent(&rt_id());
    let r = check(&snap, Some(&b), &options());
    assert!(
        kinds(&r).contains(&('a', Kind::ResourceGone, None)),
        "{r:#?}"
    );
}

#[test]
fn stranded_created_resources() {
    let mut snap = world(&Params::default());
    let id = rg_id("applicationSecurityGroups", "poolnet-gone");
    snap.arm.insert(
        &id,
        json!({"id": id, "name": "poolnet-gone", "location": "westeurope", "properties": {},
            "tags": {"poolnet.dev/owner": "NodePoolNetwork/gone", "poolnet.dev/cluster": cluster(),
                     "poolnet.dev/owner-uid": "uid-gone"}}),
    );
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Unrecorded, Some("tags".into()))]);
    assert_eq!(r.violations[0].subject, id);
    let r = check(
        &snap,
        None,
        &Options {
            allow_detached: true,
            ..options()
        },
    );
    assert!(r.violations.is_empty());
    // Recorded as game's managed ASG: then it must be game's by its tags.
    first_owned(&mut snap).application_security_group = Some(id.clone());
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Differs, Some("tags".into()))]);
}

#[test]
fn a_created_agent_pool_must_be_recorded_and_never_left_behind() {
    let mut snap = world(&Params::default());
    let id = pool_id("arena");
    let tags = |uid: &str| {
        json!({"poolnet.dev/owner": "NodePoolNetwork/arena", "poolnet.dev/cluster": cluster(),
               "poolnet.dev/owner-uid": uid})
    };
    // A pool poolnet created for an object that is gone: stranded (it carries its tags in
    // properties.tags, as AKS keeps them).
    snap.arm.insert(
        &id,
        json!({"id": id, "name": "arena", "properties": {"count": 2, "tags": tags("uid-gone")}}),
    );
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Unrecorded, Some("tags".into()))]);
    assert_eq!(r.violations[0].subject, id);
    let lenient = Options {
        allow_detached: true,
        ..options()
    };
    assert!(check(&snap, None, &lenient).violations.is_empty());
    // A record of a pool without this object's tags: not its own.
    first_owned(&mut snap).agent_pool = Some(id.clone());
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::Differs, Some("tags".into()))]);
    // A recorded pool that is gone is reported too.
    snap.arm.resources.remove(&id.to_ascii_lowercase());
    snap.arm.insert_absent(&id);
    let r = check(&snap, None, &options());
    assert_eq!(kinds(&r), [('b', Kind::RecordedAbsent, Some(id.clone()))]);
}

#[test]
fn objects_must_be_ready_at_their_generation() {
    let mut snap = world(&Params::default());
    snap.pools[0].metadata.generation = Some(2);
    let c = &mut snap.policies[0].status.as_mut().unwrap().conditions[0];
    c.status = "False".into();
    c.reason = "NamespaceNotAdmitted".into();
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [
            ('d', Kind::NotReady, Some("Ready".into())),
            (
                'd',
                Kind::StaleGeneration,
                Some("status.observedGeneration".into())
            ),
        ],
        "{r:#?}"
    );
    assert_eq!(r.violations[0].subject, "HostPortPolicy games/echo");
    assert_eq!(r.violations[1].found, Some(json!(1)));
}

fn pod(name: &str, keys: &[Key], token: Option<&str>, ds: Option<&str>) -> PodHold {
    PodHold {
        namespace: "games".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        token: token.map(String::from),
        keys: keys.to_vec(),
        assigned: Vec::new(),
        daemon_set: ds.map(String::from),
    }
}

/// A pod the webhook admitted from a block: it records its keys in its
/// `poolnet.dev/host-ports` annotation and carries its reservation token, no claim.
fn block_pod(name: &str, keys: &[Key]) -> PodHold {
    PodHold {
        assigned: keys.to_vec(),
        ..pod(name, keys, Some(&format!("t-{name}")), None)
    }
}

/// The block of `key`, held by replica `webhook-0`.
fn block(key: Key) -> HostPortBlock {
    let mut b = HostPortBlock::draft(key.protocol, key.port, "webhook-0/1", "poolnet/webhook-0");
    b.spec.taken_at = Time(Timestamp::from_second(1_799_999_000).unwrap());
    b
}

fn claim(key: Key, token: &str, created: i64) -> HostPortClaim {
    let mut c = HostPortClaim::for_spec(HostPortClaimSpec {
        protocol: PortProtocol::from(key.protocol),
        port: key.port,
        container_port: Some(8080),
        source: HostPortSource::Automatic,
        pod_namespace: "games".into(),
        pod_name: None,
        pod_generate_name: Some("echo-".into()),
        policy: Some("echo".into()),
        request_uid: token.into(),
        daemon_set: None,
        created_at: Time(Timestamp::from_second(created).unwrap()),
    });
    c.metadata.creation_timestamp = Some(c.spec.created_at.clone());
    c
}

fn bind(mut c: HostPortClaim, pod: &str) -> HostPortClaim {
    c.status = Some(HostPortClaimStatus {
        pod: Some(BoundPod {
            name: pod.into(),
            uid: format!("uid-{pod}"),
        }),
        ..HostPortClaimStatus::default()
    });
    c
}

#[test]
fn host_ports_unique_and_held() {
    let now = world(&Params::default()).now.as_second();
    let mut snap = world(&Params::default());
    let k1 = Key::tcp(40001);
    // Bound and held; and a DaemonSet's two pods sharing one claim.
    snap.pods = vec![
        pod("a", &[k1], Some("t1"), None),
        pod("ds-1", &[Key::udp(53)], None, Some("ds")),
        pod("ds-2", &[Key::udp(53)], None, Some("ds")),
        // Outside every reserved range and unclaimed: nobody's business.
        pod("web-1", &[Key::tcp(8080)], None, None),
        pod("web-2", &[Key::tcp(8080)], None, None),
    ];
    let mut shared = claim(Key::udp(53), "t2", now - 3600);
    shared.spec.daemon_set = Some(ClaimOwner {
        name: "agent".into(),
        uid: "ds".into(),
    });
    // Unbound and young: inside its grace.
    snap.claims = vec![
        bind(claim(k1, "t1", now - 3600), "a"),
        shared,
        claim(Key::tcp(40002), "t3", now - 10),
    ];
    let r = check(&snap, None, &options());
    assert!(r.violations.is_empty(), "{r:#?}");

    // Unbound, past grace (39 s) + confirmation (2 s) + slack (5 s).
    let mut late = snap.clone();
    late.claims[2] = claim(Key::tcp(40002), "t3", now - 47);
    let r = check(&late, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::OrphanClaim, Some("tcp-40002".into()))]
    );
    let mut edge = snap.clone();
    edge.claims[2] = claim(Key::tcp(40002), "t3", now - 45);
    assert!(check(&edge, None, &options()).violations.is_empty());

    // Two pods on one key; a bound claim whose pod is gone; a reserved key nobody claimed;
    // a key held by another pod than its claim's.
    let mut bad = snap.clone();
    bad.pods.push(pod("b", &[k1], None, None));
    bad.pods.push(pod("c", &[Key::tcp(40500)], None, None));
    bad.pods
        .push(pod("d", &[Key::tcp(40002)], Some("other"), None));
    bad.claims
        .push(bind(claim(Key::tcp(40003), "t4", now - 3600), "gone"));
    let r = check(&bad, None, &options());
    assert_eq!(
        kinds(&r),
        [
            ('c', Kind::ClaimPodGone, Some("tcp-40003".into())),
            ('c', Kind::Unclaimed, Some("tcp-40500".into())),
            ('c', Kind::ForeignHolder, Some("tcp-40002".into())),
            ('c', Kind::Duplicate, Some("tcp-40001".into())),
        ],
        "{r:#?}"
    );
    // A DaemonSet pod of another DaemonSet on the shared key is a second holder.
    let mut other = snap;
    other
        .pods
        .push(pod("x", &[Key::udp(53)], None, Some("other-ds")));
    let r = check(&other, None, &options());
    assert_eq!(kinds(&r), [('c', Kind::Duplicate, Some("udp-53".into()))]);
}

#[test]
fn a_block_key_recorded_by_its_pod_needs_no_claim() {
    let now = world(&Params::default()).now.as_second();
    let mut snap = world(&Params::default());
    snap.blocks = vec![block(Key::tcp(40000)), block(Key::udp(50000))];
    snap.pods = vec![
        block_pod("a", &[Key::tcp(40010), Key::tcp(40063)]),
        block_pod("b", &[Key::udp(50001)]),
        // A static port claimed before the block existed: its claim is legal inside the span.
        pod("s", &[Key::tcp(40020)], Some("t-s"), None),
    ];
    snap.claims = vec![bind(claim(Key::tcp(40020), "t-s", now - 3600), "s")];
    let r = check(&snap, None, &options());
    assert!(r.violations.is_empty(), "{r:#?}");
    assert!(r.errors.is_empty(), "{r:#?}");
    assert_eq!(r.checked.host_port_blocks, 2);
    // The claim inside the span is judged like any other: bound to a pod that is gone.
    let mut gone = snap.clone();
    gone.pods.retain(|p| p.name != "s");
    let r = check(&gone, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::ClaimPodGone, Some("tcp-40020".into()))]
    );
}

#[test]
fn two_pods_on_one_block_key_are_a_duplicate() {
    let mut snap = world(&Params::default());
    snap.blocks = vec![block(Key::tcp(40000))];
    snap.pods = vec![
        block_pod("a", &[Key::tcp(40010)]),
        block_pod("b", &[Key::tcp(40010)]),
    ];
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-40010".into()))],
        "{r:#?}"
    );
    assert_eq!(r.violations[0].found, Some(json!(["games/a", "games/b"])));
    // As strict when only one of them records it, and outside every reserved range too
    // (60010 lies in tcp-59968, past the default range's end): poolnet gave it from a block.
    let mut half = snap.clone();
    half.pods[1].assigned.clear();
    let r = check(&half, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-40010".into()))]
    );
    let mut past = world(&Params::default());
    past.blocks = vec![block(Key::tcp(60010))];
    past.pods = vec![
        block_pod("a", &[Key::tcp(60010)]),
        pod("b", &[Key::tcp(60010)], None, None),
    ];
    let r = check(&past, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-60010".into()))]
    );
    // Nobody records it there: not poolnet's port, as before blocks.
    past.pods[0].assigned.clear();
    assert!(check(&past, None, &options()).violations.is_empty());

    // The pods of one DaemonSet share its static key inside a block (no claim), as they
    // share a claim: one holder while each records it; a pod of another DaemonSet, or one
    // that does not record it, is a second holder.
    let ds_pod = |name: &str, ds: &str| PodHold {
        daemon_set: Some(ds.into()),
        ..block_pod(name, &[Key::tcp(40010)])
    };
    let mut shared = snap.clone();
    shared.pods = vec![ds_pod("ds-1", "ds"), ds_pod("ds-2", "ds")];
    let r = check(&shared, None, &options());
    assert!(r.violations.is_empty(), "{r:#?}");
    let mut other = shared.clone();
    other.pods.push(ds_pod("x", "other-ds"));
    let r = check(&other, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-40010".into()))]
    );
    let mut unrecorded = shared.clone();
    unrecorded.pods[1].assigned.clear();
    let r = check(&unrecorded, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-40010".into()))]
    );
    // Without the block, nothing records that they share it.
    let mut no_block = shared;
    no_block.blocks.clear();
    let r = check(&no_block, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Duplicate, Some("tcp-40010".into()))]
    );
}

#[test]
fn a_block_key_its_pod_does_not_record_is_flagged_naming_the_block() {
    let mut snap = world(&Params::default());
    snap.blocks = vec![block(Key::tcp(40000))];
    // No annotation at all; and an annotation that lists another of its ports only.
    let mut partial = block_pod("b", &[Key::tcp(40012), Key::tcp(40013)]);
    partial.assigned = vec![Key::tcp(40012)];
    snap.pods = vec![pod("a", &[Key::tcp(40011)], None, None), partial];
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [
            ('c', Kind::Unclaimed, Some("tcp-40011".into())),
            ('c', Kind::Unclaimed, Some("tcp-40013".into())),
        ],
        "{r:#?}"
    );
    let v = &r.violations[0];
    assert_eq!(v.subject, "games/a");
    assert!(
        v.message
            .contains("HostPortBlock tcp-40000 (40000-40063, holder webhook-0/1)"),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("poolnet.dev/host-ports"),
        "{}",
        v.message
    );
    assert_eq!(
        r.violations[1].found,
        Some(json!({"poolnet.dev/host-ports": [["tcp-40012"]]}))
    );
    // A block of the other protocol covers nothing of TCP.
    let mut udp = snap.clone();
    udp.blocks = vec![block(Key::udp(40000))];
    udp.pods = vec![block_pod("a", &[Key::tcp(40011)])];
    let r = check(&udp, None, &options());
    assert_eq!(
        kinds(&r),
        [('c', Kind::Unclaimed, Some("tcp-40011".into()))]
    );
}

#[test]
fn a_key_outside_every_block_still_needs_a_claim() {
    let mut snap = world(&Params::default());
    snap.blocks = vec![block(Key::tcp(40000))];
    // tcp-40064 is the next block, which does not exist; 40500 lies in no block either.
    snap.pods = vec![
        block_pod("a", &[Key::tcp(40064)]),
        pod("b", &[Key::tcp(40500)], None, None),
    ];
    let r = check(&snap, None, &options());
    assert_eq!(
        kinds(&r),
        [
            ('c', Kind::Unclaimed, Some("tcp-40064".into())),
            ('c', Kind::Unclaimed, Some("tcp-40500".into())),
        ],
        "{r:#?}"
    );
    assert!(
        r.violations[0]
            .message
            .contains("neither a HostPortClaim nor a HostPortBlock (tcp-40064)"),
        "{}",
        r.violations[0].message
    );
    assert_eq!(
        r.violations[1].message,
        "tcp-40500 lies in a reserved range but no HostPortClaim records its holder"
    );
}

#[test]
fn a_block_unlike_its_name_is_an_input_error_and_spans_nothing() {
    let mut snap = world(&Params::default());
    let mut misnamed = block(Key::tcp(40000));
    misnamed.metadata.name = Some("tcp-40064".into());
    let mut unaligned = block(Key::tcp(41000));
    unaligned.spec.start = 41001;
    unaligned.metadata.name = Some("tcp-41001".into());
    snap.blocks = vec![misnamed, unaligned];
    snap.pods = vec![block_pod("a", &[Key::tcp(40010)])];
    let r = check(&snap, None, &options());
    assert_eq!(r.errors.len(), 2, "{r:#?}");
    assert!(
        r.errors[0].starts_with("HostPortBlock tcp-40064:"),
        "{r:#?}"
    );
    assert!(
        r.errors[1].starts_with("HostPortBlock tcp-41001:"),
        "{r:#?}"
    );
    assert_eq!(
        kinds(&r),
        [('c', Kind::Unclaimed, Some("tcp-40010".into()))]
    );
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn write_amplification_counts_writes_over_changed_resources() {
    let base = world(&Params::default());
    let nsg = nsg_id().to_ascii_lowercase();
    let b = baseline(&base, Some(BTreeMap::from([(nsg.clone(), 5)])));
    let mut snap = base.clone();
    rule_named(&mut snap, "-game-tcp-")["properties"]["priority"] = json!(201);
    let end = BTreeMap::from([
        (nsg.clone(), 7),
        // A rule written on its own counts for its NSG.
        (format!("{nsg}/securityrules/x"), 1),
        (pool_id("game").to_ascii_lowercase(), 1),
    ]);
    let a = crate::amplification::compute(&snap, &b, &end).unwrap();
    assert_eq!((a.writes, a.changed), (4, 1));
    assert_eq!(a.ratio, Some(4.0));
    assert!(a.resources.contains(&ResourceWrites {
        id: nsg,
        writes: 3,
        changed: true
    }));
    assert!(a.resources.contains(&ResourceWrites {
        id: pool_id("game").to_ascii_lowercase(),
        writes: 1,
        changed: false
    }));
    // Reordering rules is no change.
    let mut snap = base;
    rules_mut(&mut snap).reverse();
    let a = crate::amplification::compute(&snap, &b, &BTreeMap::new()).unwrap();
    assert_eq!((a.writes, a.changed, a.ratio), (0, 0, None));
}

#[test]
fn baselines_round_trip_through_json() {
    let snap = world(&Params::default());
    let b = baseline(&snap, Some(BTreeMap::from([("x".into(), 1)])));
    let text = serde_json::to_string(&b).unwrap();
    let back: Baseline = serde_json::from_str(&text).unwrap();
    assert_eq!(back, b);
    assert!(check(&snap, Some(&back), &options()).violations.is_empty());
}

#[test]
fn grace_defaults_are_the_operators() {
    assert_eq!(Options::default().release.grace, Duration::from_secs(39));
    assert_eq!(
        Options::default().release.confirm_after,
        Duration::from_secs(2)
    );
}

fn arb_params() -> impl Strategy<Value = Params> {
    (
        prop::sample::subsequence(vec!["80/tcp", "443/tcp", "53/udp", "8080/udp"], 0..4),
        prop::bool::ANY,
        prop::sample::subsequence(vec!["203.0.113.0/24", "198.51.100.0/24"], 0..2),
        0usize..4,
    )
        .prop_map(|(extra, watch_observe, sources, foreign_rules)| {
            let mut ports: Vec<&str> = extra;
            ports.push("40000-40999/tcp");
            if !ports.contains(&"53/udp") {
                ports.push("53/udp");
            }
            Params {
                game_ports: ports.join(","),
                watch_observe,
                policy_sources: sources.into_iter().map(String::from).collect(),
                foreign_rules,
            }
        })
}

/// One way to break a converged world (one NSG rule), and where it must show up.
#[derive(Debug, Clone, Copy)]
enum Break {
    RemovePoolnet,
    AddPoolnet,
    ChangePoolnet,
    RemoveForeign,
    ChangeForeign,
    AddForeign,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn planner_output_holds_and_every_single_break_is_detected(
        p in arb_params(),
        brk in prop::sample::select(vec![
            Break::RemovePoolnet, Break::AddPoolnet, Break::ChangePoolnet,
            Break::RemoveForeign, Break::ChangeForeign, Break::AddForeign,
        ]),
        pick in 0usize..16,
    ) {
        let snap = world(&p);
        let b = baseline(&snap, Some(BTreeMap::new()));
        let clean = check(&snap, Some(&b), &options());
        prop_assert!(clean.violations.is_empty(), "{:#?}", clean);

        let prefix = poolnet_api::ownership::cluster_rule_prefix(&cluster());
        let writable: Vec<String> = rules_mut(&mut snap.clone())
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with(&prefix) && !n.contains("-watch-"))
            .collect();
        let foreign: Vec<String> = b.resources.iter()
            .find(|r| r.id == nsg_id()).unwrap().entries.keys().cloned().collect();
        let mut broken = snap.clone();
        let expect: (char, Kind, String) = match brk {
            Break::RemovePoolnet => {
                let name = writable[pick % writable.len()].clone();
                rules_mut(&mut broken).retain(|r| r["name"] != name.as_str());
                ('b', Kind::Missing, name)
            }
            Break::AddPoolnet => {
                let name = format!("{prefix}stray-tcp-{pick:06}");
                rules_mut(&mut broken).push(json!({"name": name, "properties": {
                    "priority": 450, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                    "sourceAddressPrefix": "*", "sourcePortRange": "*",
                    "destinationAddressPrefix": "*", "destinationPortRange": "1"}}));
                ('b', Kind::Unrecorded, name)
            }
            Break::ChangePoolnet => {
                let name = writable[pick % writable.len()].clone();
                let r = rules_mut(&mut broken).iter_mut().find(|r| r["name"] == name.as_str()).unwrap();
                r["properties"]["sourceAddressPrefixes"] = json!(["10.99.0.0/16"]);
                ('b', Kind::Differs, name)
            }
            Break::RemoveForeign | Break::ChangeForeign if foreign.is_empty() => {
                return Ok(());
            }
            Break::RemoveForeign => {
                let name = foreign[pick % foreign.len()].clone();
                rules_mut(&mut broken).retain(|r| r["name"] != name.as_str());
                ('a', Kind::ForeignEntryRemoved, name)
            }
            Break::ChangeForeign => {
                let name = foreign[pick % foreign.len()].clone();
                let r = rules_mut(&mut broken).iter_mut().find(|r| r["name"] == name.as_str()).unwrap();
                r["properties"]["priority"] = json!(4000 + pick);
                ('a', Kind::ForeignEntryChanged, name)
            }
            Break::AddForeign => {
                // A new foreign rule breaks nothing: poolnet never removes what is not its own.
                rules_mut(&mut broken).push(foreign_rule(9));
                let r = check(&broken, Some(&b), &options());
                prop_assert!(r.violations.is_empty(), "{:#?}", r);
                return Ok(());
            }
        };
        let r = check(&broken, Some(&b), &options());
        prop_assert_eq!(kinds(&r), vec![(expect.0, expect.1, Some(expect.2))], "{:#?}", r);
    }
}

#[test]
fn a_cluster_tag_left_on_a_route_table_nobody_uses_is_a_foreign_change() {
    let world = world(&Params::default());
    // Before poolnet: no object, the table untagged.
    let mut before = world.clone();
    before.pools.clear();
    before.policies.clear();
    before
        .arm
        .resources
        .get_mut(&rt_id().to_ascii_lowercase())
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("tags");
    let b = baseline(&before, None);
    assert_eq!(
        b.resources.len(),
        4,
        "NSG, route table and both pools: {b:#?}"
    );
    // While a writing object uses the table, the tag is poolnet's.
    let r = check(&world, Some(&b), &options());
    assert!(
        !kinds(&r)
            .iter()
            .any(|(_, _, e)| e.as_deref() == Some("/tags/poolnet.dev~1cluster")),
        "{r:#?}"
    );
    // Once nothing uses it, a tag left behind is a change of the table.
    let mut after = world;
    after.pools.clear();
    after.policies.clear();
    let r = check(&after, Some(&b), &options());
    assert_eq!(
        kinds(&r),
        [('a', Kind::ForeignFieldChanged, Some("/tags".into()))],
        "{r:#?}"
    );
    assert_eq!(
        r.violations[0].found,
        Some(json!({"poolnet.dev/cluster": cluster()}))
    );
}

#[test]
fn rules_left_in_an_nsg_no_object_names_any_more_are_stranded() {
    let world = world(&Params::default());
    let before = world.clone();
    let b = baseline(&before, None);
    // Every object gone, their rules still there (the watch rule was foreign already).
    let mut after = world;
    after.pools.clear();
    after.policies.clear();
    let r = check(&after, Some(&b), &options());
    let stranded: Vec<String> = r
        .violations
        .iter()
        .filter(|v| v.kind == Kind::Unrecorded && v.subject == nsg_id())
        .filter_map(|v| v.entry.clone())
        .collect();
    let prefix = poolnet_api::ownership::cluster_rule_prefix(&cluster());
    assert!(
        stranded.len() == 4
            && stranded
                .iter()
                .all(|n| n.starts_with(&prefix) && !n.contains("-watch-")),
        "game tcp/udp and echo tcp/udp: {r:#?}"
    );
    // And the stranded route, with the route table's cluster tag left behind.
    assert!(kinds(&r).contains(&('b', Kind::Unrecorded, Some("poolnet-default".into()))));
}
