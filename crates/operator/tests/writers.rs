//! The NSG and route-table writers against armsim: If-Match with a real 412 from another
//! writer, the remembered state that saves ARM calls, and foreign rules left as they were.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use armsim::{
    FaultAction, FaultRule, Fixture, LroConfig, OtherWriter, OtherWriterAction, RunningSim,
    SimConfig,
};
use poolnet_api::ownership::{cluster_rule_prefix, route_name};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_arm::{ArmClient, ArmConfig, ArmNetwork, CredentialConfig, ResourceId, Secret, Url};
use poolnet_operator::writers::{Freshness, NsgWriter, RouteBudget, RouteWriter};
use poolnet_plan::nsg::{Owner, consolidate};
use poolnet_plan::routes::{DesiredRoute, Route};

const SUB: &str = "00000000-1111-2222-3333-444444444444";
const CLUSTER: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/rg-poolnet-demo/providers/microsoft.containerservice/managedclusters/aks-demo";
const AKS_NSG: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/MC_rg-poolnet-demo_aks-demo_westeurope/providers/Microsoft.Network/networkSecurityGroups/aks-agentpool-47472799-nsg";

fn start() -> (RunningSim, Arc<ArmClient>) {
    let sim = armsim::start(
        SimConfig {
            seed: Some(Fixture::aks_demo().expect("demo fixture")),
            tls: true,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("loopback"),
    )
    .expect("armsim starts");
    let mut config = ArmConfig::new(Url::parse(&sim.base_url()).expect("URL"));
    config.transport.extra_ca_pem = sim.ca_pem();
    let arm =
        ArmClient::new(config, CredentialConfig::Static(Secret::new("test"))).expect("client");
    (sim, Arc::new(arm))
}

fn rules_json(sim: &RunningSim, id: &str) -> Vec<serde_json::Value> {
    let nsg = sim.resource(id).expect("NSG in armsim");
    nsg["properties"]["securityRules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn desired(ports: &[(Protocol, u16, u16)]) -> Vec<poolnet_plan::nsg::DesiredRule> {
    let ports: Vec<(Protocol, PortRange)> = ports
        .iter()
        .map(|&(p, a, b)| (p, PortRange::new(a, b).unwrap()))
        .collect();
    consolidate(
        CLUSTER,
        &Owner::NodePoolNetwork {
            name: "game".into(),
        },
        "uid-game",
        &ports,
        &["Internet".into()],
        &[format!(
            "/subscriptions/{SUB}/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/applicationSecurityGroups/asg-game-custom"
        )],
        (100, 499),
    )
}

/// `rules` as the union of an object that recorded both its rules (tcp and udp).
fn u(rules: Vec<poolnet_plan::nsg::DesiredRule>) -> poolnet_plan::desired::NsgUnion {
    let all = desired(&[(Protocol::Tcp, 1, 1), (Protocol::Udp, 1, 1)]);
    poolnet_plan::desired::NsgUnion {
        wanted: rules,
        scope: poolnet_plan::scope::Scope::new(
            &cluster_rule_prefix(CLUSTER),
            all.iter().map(|r| &r.name),
        ),
    }
}

/// `routes` as the union of an object that recorded them.
fn ru(routes: Vec<DesiredRoute>) -> poolnet_plan::desired::RouteUnion {
    let scope = poolnet_plan::scope::Scope::new(
        poolnet_api::ownership::ROUTE_PREFIX,
        routes.iter().map(|r| &r.route.name),
    );
    poolnet_plan::desired::RouteUnion {
        wanted: routes,
        scope,
    }
}

#[tokio::test]
async fn nsg_writer_survives_another_writer_and_keeps_foreign_rules() {
    let (sim, arm) = start();
    let writer = NsgWriter::new(arm.clone());
    let id: ResourceId = AKS_NSG.parse().unwrap();
    let prefix = cluster_rule_prefix(CLUSTER);
    let foreign_before: Vec<_> = rules_json(&sim, AKS_NSG);
    assert_eq!(foreign_before.len(), 2);

    // Someone (AKS, the cloud controller) adds a rule right after our first read.
    let theirs = serde_json::json!({"name": "k8s-azure-lb_allow_IPv4_extra", "properties": {
        "priority": 502, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
        "destinationAddressPrefix": "192.0.2.12", "destinationPortRange": "8080"}});
    sim.faults().add_other_writer(OtherWriter::new(
        AKS_NSG,
        1,
        OtherWriterAction::UpsertSecurityRule { rule: theirs },
    ));
    let before = arm.stats().snapshot();
    let want = desired(&[(Protocol::Tcp, 80, 80), (Protocol::Udp, 53, 53)]);
    let sync = writer
        .sync(&id, || u(want.clone()), Freshness::Reread)
        .await
        .expect("sync");
    assert!(sync.wrote && sync.pending.is_none());
    let after = arm.stats().snapshot();
    assert_eq!(
        after.precondition_failed - before.precondition_failed,
        1,
        "one 412, then a re-read"
    );

    let rules = rules_json(&sim, AKS_NSG);
    let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(
        names.contains(&"k8s-azure-lb_allow_IPv4_extra"),
        "the other writer's rule survives: {names:?}"
    );
    for f in &foreign_before {
        let now = rules
            .iter()
            .find(|r| r["name"] == f["name"])
            .expect("foreign rule kept");
        assert_eq!(now["properties"]["priority"], f["properties"]["priority"]);
        assert_eq!(
            now["properties"]["destinationPortRanges"],
            f["properties"]["destinationPortRanges"]
        );
    }
    let ours: Vec<_> = rules
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with(&prefix)))
        .collect();
    assert_eq!(ours.len(), 2);
    assert!(
        ours.iter()
            .all(|r| r["properties"]["priority"].as_i64().unwrap() < 500)
    );

    // Converged: a drift check reads once and writes nothing; after that, with the state
    // remembered, a sync makes no ARM call at all.
    let calls = sim.counters().total;
    let again = writer
        .sync(&id, || u(want.clone()), Freshness::Reread)
        .await
        .expect("sync");
    assert!(!again.wrote);
    assert_eq!(sim.counters().total, calls + 1, "one GET");
    let again = writer
        .sync(&id, || u(want.clone()), Freshness::Cached)
        .await
        .expect("sync");
    assert!(!again.wrote);
    assert_eq!(
        sim.counters().total,
        calls + 1,
        "no request when nothing changed"
    );

    // Nothing desired any more: only poolnet's rules go.
    let sync = writer
        .sync(&id, || u(Vec::new()), Freshness::Cached)
        .await
        .expect("sync");
    assert!(sync.wrote);
    let names: Vec<String> = rules_json(&sim, AKS_NSG)
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("k8s-azure-lb_")));
}

#[tokio::test]
async fn route_writer_merges_and_refuses_over_the_limit() {
    let (sim, arm) = start();
    let writer = RouteWriter::new(arm.clone());
    let table = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network/routeTables/rt-kubenet"
    );
    let id: ResourceId = table.parse().unwrap();
    let want = [DesiredRoute {
        owner: "NodePoolNetwork kubenet".into(),
        route: Route {
            name: route_name("default"),
            address_prefix: "0.0.0.0/0".into(),
            next_hop_type: poolnet_api::route::NextHopKind::VirtualAppliance,
            next_hop_ip: Some("10.241.1.4".into()),
        },
    }];
    // 5 node routes in the table already; with room for 5 nodes and a limit of 5 there is
    // no room for ours: refused, nothing written.
    let writes = sim.counters().get("PUT", "Microsoft.Network/routeTables");
    let tight = RouteBudget {
        node_routes: 5,
        limit: 5,
    };
    let sync = writer
        .sync(&id, || ru(want.to_vec()), CLUSTER, tight, Freshness::Reread)
        .await
        .expect("sync");
    assert!(!sync.wrote && !sync.plan.problems.is_empty());
    assert_eq!(
        sim.counters().get("PUT", "Microsoft.Network/routeTables"),
        writes
    );

    let room = RouteBudget {
        node_routes: 5,
        limit: 400,
    };
    let sync = writer
        .sync(&id, || ru(want.to_vec()), CLUSTER, room, Freshness::Reread)
        .await
        .expect("sync");
    assert!(sync.wrote, "{:?}", sync.plan);
    assert_eq!(sync.plan.total, 6);
    let again = writer
        .sync(&id, || ru(want.to_vec()), CLUSTER, room, Freshness::Reread)
        .await
        .expect("sync");
    assert!(!again.wrote);
}

/// Object A is deleted: its cleanup writes the union without A while B's reconcile, which
/// saw A in the cache, waits for the NSG. B must write the union as the cache shows it when
/// B holds the NSG, or A's rules come back after A's finalizer is gone, stranded for good.
#[tokio::test]
async fn a_sync_that_waited_for_the_lock_writes_the_union_of_that_moment() {
    let (sim, arm) = start();
    let writer = Arc::new(NsgWriter::new(arm.clone()));
    let id: ResourceId = AKS_NSG.parse().unwrap();
    let prefix = cluster_rule_prefix(CLUSTER);
    let with_a = [(Protocol::Tcp, 80, 80), (Protocol::Udp, 53, 53)];
    let without_a = [(Protocol::Tcp, 80, 80)];
    writer
        .sync(&id, || u(desired(&with_a)), Freshness::Reread)
        .await
        .expect("sync");

    // The cache B reads: it still shows A.
    let cache = Arc::new(Mutex::new(with_a.to_vec()));
    // A's cleanup holds the NSG for a while: its PUT is slow.
    sim.faults().add_rule(
        FaultRule::new(FaultAction::Latency { ms: 2_000 })
            .method("PUT")
            .resource_type("networkSecurityGroups")
            .count(1),
    );
    let gets = sim
        .counters()
        .get("GET", "Microsoft.Network/networkSecurityGroups");
    let cleanup = tokio::spawn({
        let (writer, id) = (writer.clone(), id.clone());
        async move {
            writer
                .sync(&id, || u(desired(&without_a)), Freshness::Reread)
                .await
        }
    });
    // The cleanup holds the lock once it has read the NSG.
    while sim
        .counters()
        .get("GET", "Microsoft.Network/networkSecurityGroups")
        == gets
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let b = writer.sync(
        &id,
        || u(desired(&cache.lock().unwrap_or_else(|e| e.into_inner()))),
        Freshness::Cached,
    );
    tokio::pin!(b);
    assert!(
        futures::poll!(&mut b).is_pending(),
        "B waits for the cleanup's write"
    );
    // A's deletion reaches the cache while B waits.
    *cache.lock().unwrap_or_else(|e| e.into_inner()) = without_a.to_vec();
    b.await.expect("B's sync");
    let cleaned = cleanup.await.expect("cleanup task").expect("cleanup sync");
    assert!(cleaned.wrote && cleaned.pending.is_none());

    let ours: Vec<String> = rules_json(&sim, AKS_NSG)
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with(&prefix))
        .map(String::from)
        .collect();
    let want: Vec<String> = desired(&without_a).iter().map(|r| r.name.clone()).collect();
    assert_eq!(ours, want, "A's rules are not written back");
}

/// A write whose operation stays running forever must not block the NSG until the operator
/// restarts: past the bound the writer forgets it, reads again and writes what is wanted now.
#[tokio::test]
async fn a_stuck_operation_is_forgotten_after_the_bound() {
    let (sim, arm) = start();
    let writer = NsgWriter::new(arm.clone()).with_pending_expiry(Duration::from_millis(500));
    let id: ResourceId = AKS_NSG.parse().unwrap();
    let prefix = cluster_rule_prefix(CLUSTER);
    // Operations that run for a day, and a Retry-After beyond the writer's brief wait.
    sim.set_lro(LroConfig {
        network_ms: 24 * 3600 * 1000,
        retry_after_secs: 60,
        ..LroConfig::default()
    });
    let first = desired(&[(Protocol::Tcp, 80, 80)]);
    let sync = writer
        .sync(&id, || u(first.clone()), Freshness::Reread)
        .await
        .expect("sync");
    assert!(sync.wrote && sync.pending.is_some(), "{sync:?}");

    // Within the bound the writer waits for the operation and writes nothing.
    let second = desired(&[(Protocol::Tcp, 80, 80), (Protocol::Udp, 53, 53)]);
    let puts = || {
        sim.counters()
            .get("PUT", "Microsoft.Network/networkSecurityGroups")
    };
    let before = puts();
    let waiting = writer
        .sync(&id, || u(second.clone()), Freshness::Cached)
        .await
        .expect("sync");
    assert!(!waiting.wrote && waiting.pending.is_some(), "{waiting:?}");
    assert_eq!(puts(), before);

    // Past the bound (the operation still running), the writer writes again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.set_lro(LroConfig::default());
    let recovered = writer
        .sync(&id, || u(second.clone()), Freshness::Cached)
        .await
        .expect("sync");
    assert!(
        recovered.wrote && recovered.pending.is_none(),
        "the stuck operation no longer blocks the NSG: {recovered:?}"
    );
    assert_eq!(puts(), before + 1);
    let ours: Vec<String> = rules_json(&sim, AKS_NSG)
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with(&prefix))
        .map(String::from)
        .collect();
    let want: Vec<String> = second.iter().map(|r| r.name.clone()).collect();
    assert_eq!(ours, want);
}
