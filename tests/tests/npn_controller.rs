//! The NodePoolNetwork controller end to end: a real API server, armsim seeded with the AKS demo
//! world (`crates/armsim/fixtures/aks-demo.yaml`), and the real operator embedded in-process
//! (`poolnet_tests::operator`). Each test has its own control plane, armsim and operator:
//! NodePoolNetworks are cluster-scoped and an operator reconciles all of them.
//!
//! What the ARM side looks like is read from armsim's state directly (no request counted);
//! what poolnet did is read from armsim's request counters.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use armsim::{FaultAction, FaultRule, OtherWriter, OtherWriterAction};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use poolnet_api::v1alpha1::{
    ManagedPrefix, NodePoolNetwork, NodePublicIp, NsgTarget, PrefixSource, ReconcilePolicy,
};
use poolnet_arm::ArmNetwork;
use poolnet_tests::operator::{
    Harness, RG, WAIT, aks_nsg_id, byo_nsg_id, comparable_state, condition, current, is_ready,
    json_diff, network_id, route_table_id, sample, strip_etags,
};
use serde_json::{Value, json};

const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";
const ROUTE_TABLE_TYPE: &str = "Microsoft.Network/routeTables";
const PREFIX_TYPE: &str = "Microsoft.Network/publicIPPrefixes";
const AGENT_POOL_TYPE: &str = "Microsoft.ContainerService/managedClusters/agentPools";

/// Every write armsim received (whatever the resource type).
fn writes(c: &armsim::Counters) -> u64 {
    ["PUT", "PATCH", "DELETE", "POST"]
        .iter()
        .map(|m| c.method_total(m))
        .sum()
}

/// The NSG's security rules as ARM returns them (ETags stripped: children carry the parent's,
/// which moves on every write of any rule).
fn rules(h: &Harness, nsg: &str) -> Result<Vec<Value>> {
    let mut nsg = h.sim.resource(nsg).context("the NSG exists")?;
    strip_etags(&mut nsg);
    Ok(nsg["properties"]["securityRules"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn named<'a>(rules: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    rules
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

fn routes(h: &Harness, table: &str) -> Result<Vec<Value>> {
    let mut t = h.sim.resource(table).context("the route table exists")?;
    strip_etags(&mut t);
    Ok(t["properties"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Type, reason and note of each event.
fn summary(events: &[k8s_openapi::api::events::v1::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.note.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Rules poolnet owns: named `poolnet-…`.
const OWNED: &str = "poolnet-";

fn pool(h: &Harness, name: &str) -> Result<Value> {
    h.sim
        .resource(&poolnet_tests::operator::agent_pool_id(name))
        .context("the agent pool exists")
}

fn pool_ports(pool: &Value) -> BTreeSet<(i64, i64, String)> {
    pool["properties"]["networkProfile"]["allowedHostPorts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["portStart"].as_i64().unwrap_or_default(),
                r["portEnd"].as_i64().unwrap_or_default(),
                r["protocol"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            )
        })
        .collect()
}

fn pool_asgs(pool: &Value) -> BTreeSet<String> {
    pool["properties"]["networkProfile"]["applicationSecurityGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
        .collect()
}

fn ports(list: &[(i64, i64, &str)]) -> BTreeSet<(i64, i64, String)> {
    list.iter()
        .map(|(a, b, p)| (*a, *b, p.to_string()))
        .collect()
}

#[tokio::test]
async fn game_sample_becomes_ready_and_arm_holds_what_status_says() -> Result<()> {
    let h = Harness::start().await?;
    let applied = h.apply(&sample("game-pool.yaml")?).await?;

    // GitOps tools wait the kstatus way.
    let out = h
        .kubectl(&[
            "wait",
            "--for=condition=Ready",
            "nodepoolnetwork/game",
            "--timeout=180s",
        ])
        .await?;
    ensure!(
        out.status.success(),
        "kubectl wait failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let game = h.wait_ready("game").await?;
    let status = game.status.clone().context("status")?;
    assert_eq!(status.observed_generation, applied.metadata.generation);
    for part in [
        "PrefixReady",
        "ASGReady",
        "AgentPoolReady",
        "SecurityRulesReady",
        "RoutesReady",
        "NodeIPsReady",
    ] {
        let c = condition(&game, part).with_context(|| format!("condition {part}"))?;
        assert_eq!(c.status, "True", "{part}: {c:?}");
        assert_eq!(c.observed_generation, applied.metadata.generation, "{part}");
    }

    // The prefix, as ARM allocated it.
    let prefix_id = network_id(RG, "publicIPPrefixes", "pipp-game");
    let prefix = h.sim.resource(&prefix_id).context("pipp-game")?;
    let cidr = prefix["properties"]["ipPrefix"]
        .as_str()
        .context("ipPrefix")?;
    let st_prefix = status
        .public_ip_prefix
        .clone()
        .context("status.publicIPPrefix")?;
    assert_eq!(st_prefix.cidr.as_deref(), Some(cidr));
    assert!(!st_prefix.managed);

    // Node → public IP, for each of the three game nodes, as the VMSS lists them.
    let net: ipnet::IpNet = cidr.parse()?;
    let names: Vec<&str> = status.nodes.iter().map(|n| n.node_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "aks-game-47472799-vmss000000",
            "aks-game-47472799-vmss000001",
            "aks-game-47472799-vmss000002"
        ]
    );
    let ips: BTreeSet<&str> = status.nodes.iter().map(|n| n.public_ip.as_str()).collect();
    assert_eq!(ips.len(), 3, "distinct addresses: {:?}", status.nodes);
    for n in &status.nodes {
        let ip: std::net::IpAddr = n.public_ip.parse()?;
        assert!(net.contains(&ip), "{} not in {cidr}", n.public_ip);
    }
    let listed = h
        .arm
        .list_vmss_public_ips(&Harness::id(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/aks-game-47472799-vmss",
            poolnet_tests::operator::SUB,
            poolnet_tests::operator::NODE_RG
        ))?)
        .await?;
    let listed: BTreeSet<String> = listed
        .iter()
        .filter_map(|ip| ip.properties.as_ref()?.ip_address.clone())
        .collect();
    assert_eq!(
        listed,
        ips.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
    assert_eq!(status.node_count, Some(3));

    // Rules: in status with their priorities, in the NSG exactly so, inside the band.
    let nsg = byo_nsg_id();
    let st_nsg = status
        .security_groups
        .iter()
        .find(|g| g.id.eq_ignore_ascii_case(&nsg))
        .context("status.securityGroups has nsg-snet-aks")?;
    ensure!(!st_nsg.rules.is_empty(), "no rules in status");
    assert_eq!(status.rule_count, Some(st_nsg.rules.len() as i32));
    let arm_rules = rules(&h, &nsg)?;
    let mine = named(&arm_rules, OWNED);
    assert_eq!(mine.len(), st_nsg.rules.len(), "{arm_rules:#?}");
    let asg_id = status
        .application_security_groups
        .iter()
        .find(|a| a.managed)
        .map(|a| a.id.clone())
        .context("a managed ASG in status")?;
    let mut tcp_ports = BTreeSet::new();
    let mut udp_ports = BTreeSet::new();
    for r in &st_nsg.rules {
        assert!((200..=299).contains(&r.priority), "{r:?} outside 200-299");
        let a = mine
            .iter()
            .find(|x| x["name"] == r.name.as_str())
            .with_context(|| format!("rule {} in ARM", r.name))?;
        let p = &a["properties"];
        assert_eq!(p["priority"], r.priority);
        assert_eq!(p["access"], "Allow");
        assert_eq!(p["direction"], "Inbound");
        assert_eq!(p["protocol"], r.protocol.as_str());
        assert_eq!(p["sourceAddressPrefixes"], json!(["Internet"]));
        assert_eq!(
            p["destinationApplicationSecurityGroups"][0]["id"]
                .as_str()
                .map(str::to_ascii_lowercase),
            Some(asg_id.to_ascii_lowercase())
        );
        let target = if r.protocol == "Tcp" {
            &mut tcp_ports
        } else {
            &mut udp_ports
        };
        target.extend(r.destination_port_ranges.iter().cloned());
    }
    assert_eq!(
        tcp_ports,
        ["80", "443", "40000-60000"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(udp_ports, BTreeSet::from(["53".to_string()]));
    let priorities: BTreeSet<i64> = arm_rules
        .iter()
        .map(|r| r["properties"]["priority"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(priorities.len(), arm_rules.len(), "unique priorities");
    assert!(
        arm_rules
            .iter()
            .any(|r| r["name"] == "allow-ssh-from-bastion"),
        "the NSG's own rule stays"
    );

    // The agent pool: host ports and ASGs (managed + the two custom ones).
    let p = pool(&h, "game")?;
    assert_eq!(
        pool_ports(&p),
        ports(&[
            (80, 80, "TCP"),
            (443, 443, "TCP"),
            (53, 53, "UDP"),
            (40000, 60000, "TCP")
        ])
    );
    let want_asgs: BTreeSet<String> = [
        asg_id.clone(),
        network_id(RG, "applicationSecurityGroups", "asg-game-custom"),
        network_id(RG, "applicationSecurityGroups", "asg-game-monitoring"),
    ]
    .iter()
    .map(|s| s.to_ascii_lowercase())
    .collect();
    assert_eq!(pool_asgs(&p), want_asgs);
    let agent = status.agent_pool.clone().context("status.agentPool")?;
    assert!(agent.requires_recreate.is_empty(), "{agent:?}");
    assert_eq!(
        agent.allowed_host_ports.as_deref(),
        Some("80/tcp,443/tcp,40000-60000/tcp,53/udp")
    );

    // The managed ASG exists and says who owns it.
    let asg = h.sim.resource(&asg_id).context("the managed ASG exists")?;
    assert_eq!(asg["tags"]["poolnet.dev/owner"], "NodePoolNetwork/game");
    Ok(())
}

#[tokio::test]
async fn managed_prefix_is_created_and_the_pool_mismatch_is_a_clear_condition() -> Result<()> {
    let h = Harness::start().await?;
    let mut npn = sample("game-pool.yaml")?;
    npn.metadata.name = Some("game-managed".into());
    npn.spec.allowed_host_ports.clear();
    npn.spec.application_security_groups = None;
    npn.spec.network_security_groups.clear();
    npn.spec.node_public_ip = Some(NodePublicIp {
        enabled: true,
        prefix: Some(PrefixSource {
            existing_id: None,
            managed: Some(ManagedPrefix {
                name: "pipp-game-managed".into(),
                resource_group: RG.into(),
                location: "westeurope".into(),
                ip_version: Default::default(),
                prefix_length: 30,
                zones: vec!["1".into(), "2".into(), "3".into()],
            }),
        }),
        ip_tags: npn
            .spec
            .node_public_ip
            .as_ref()
            .and_then(|n| n.ip_tags.clone()),
    });
    h.apply(&npn).await?;

    let st = h
        .wait_condition(
            "game-managed",
            "AgentPoolReady",
            "False",
            "RequiresNodePoolRecreate",
        )
        .await?;
    let prefix_id = network_id(RG, "publicIPPrefixes", "pipp-game-managed");
    let st = if condition(&st, "PrefixReady").is_some_and(|c| c.status == "True") {
        st
    } else {
        h.wait_condition("game-managed", "PrefixReady", "True", "Reconciled")
            .await?
    };
    let prefix = h
        .sim
        .resource(&prefix_id)
        .context("the managed prefix exists")?;
    let props = &prefix["properties"];
    assert_eq!(props["prefixLength"], 30);
    assert_eq!(props["publicIPAddressVersion"], "IPv4");
    assert_eq!(
        props["ipTags"],
        json!([{"ipTagType": "RoutingPreference", "tag": "Internet"}])
    );
    assert_eq!(prefix["zones"], json!(["1", "2", "3"]));
    assert_eq!(prefix["location"], "westeurope");
    assert_eq!(
        prefix["tags"]["poolnet.dev/owner"],
        "NodePoolNetwork/game-managed"
    );
    let cidr: ipnet::IpNet = props["ipPrefix"].as_str().context("ipPrefix")?.parse()?;
    assert_eq!(cidr.prefix_len(), 30);

    let status = st.status.clone().context("status")?;
    let sp = status.public_ip_prefix.context("status.publicIPPrefix")?;
    assert!(sp.managed);
    assert_eq!(sp.cidr, Some(cidr.to_string()));
    let ready = condition(&st, "Ready").context("Ready")?;
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "RequiresNodePoolRecreate");
    let msg = &condition(&st, "AgentPoolReady")
        .context("AgentPoolReady")?
        .message;
    assert!(
        msg.contains("pipp-game-managed") && msg.contains("recreate the node pool"),
        "the message names the prefix and what to do: {msg}"
    );
    let recreate = status
        .agent_pool
        .context("status.agentPool")?
        .requires_recreate;
    ensure!(!recreate.is_empty(), "requiresRecreate lists the fields");

    // One creation: one PUT (answered 201, the operation finishing later: `PrefixCreating`).
    let c = h.sim.counters();
    assert_eq!(c.get("PUT", PREFIX_TYPE), 1, "{c:#?}");
    let events = h
        .wait_event("game-managed", &["PrefixCreated", "PrefixCreating"])
        .await?;
    let created: Vec<_> = events
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .is_some_and(|r| r == "PrefixCreated" || r == "PrefixCreating")
        })
        .collect();
    assert_eq!(created.len(), 1, "{:#?}", summary(&events));

    // A clear condition, not a failure loop: later reconciles (a drift check every resync)
    // write nothing, neither the prefix again nor the pool.
    h.sim.reset_counters();
    let c = h
        .wait_counters("two more drift checks", |c| {
            c.get("GET", PREFIX_TYPE) >= 2 && c.get("GET", AGENT_POOL_TYPE) >= 2
        })
        .await?;
    assert_eq!(writes(&c), 0, "{c:#?}");
    let again = h.npns().get("game-managed").await?;
    assert_eq!(
        condition(&again, "AgentPoolReady").map(|c| c.reason.as_str()),
        Some("RequiresNodePoolRecreate")
    );
    Ok(())
}

/// Waits for a write the test made by hand.
async fn settle<T>(h: &Harness, lro: poolnet_arm::Lro<T>) -> Result<()> {
    if let poolnet_arm::Lro::Pending(handle) = lro {
        h.arm.wait(handle, WAIT_ARM).await?;
    }
    Ok(())
}

const WAIT_ARM: Duration = Duration::from_secs(60);

/// Every condition `Type=Status/Reason` an object showed, from a watch started before it
/// existed (a poll could miss a short-lived state).
struct SeenReasons {
    seen: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SeenReasons {
    fn watch(h: &Harness, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let api: Api<NodePoolNetwork> = h.npns();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(npn) = item else { continue };
                let mut seen = sink.lock().unwrap_or_else(|e| e.into_inner());
                for c in npn.status.iter().flat_map(|s| s.conditions.iter()) {
                    seen.insert(format!("{}={}/{}", c.type_, c.status, c.reason));
                }
            }
        });
        Self { seen, task }
    }

    fn get(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for SeenReasons {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn kubenet_sample_merges_routes_next_to_the_node_routes() -> Result<()> {
    let h = Harness::start().await?;
    let rt = route_table_id();
    let before = routes(&h, &rt)?;
    assert_eq!(before.len(), 5, "the fixture's node routes: {before:#?}");
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    let kubenet = h.wait_ready("kubenet").await?;

    let after = routes(&h, &rt)?;
    for r in &before {
        assert!(after.contains(r), "node route changed or gone: {r:#}");
    }
    let mine = named(&after, OWNED);
    assert_eq!(mine.len(), 2, "{after:#?}");
    let by_name = |n: &str| {
        mine.iter()
            .find(|r| r["name"] == n)
            .map(|r| r["properties"].clone())
            .with_context(|| format!("route {n}"))
    };
    let fw = by_name("poolnet-default-via-firewall")?;
    assert_eq!(fw["addressPrefix"], "0.0.0.0/0");
    assert_eq!(fw["nextHopType"], "VirtualAppliance");
    assert_eq!(fw["nextHopIpAddress"], "10.241.1.4");
    let onprem = by_name("poolnet-on-premises")?;
    assert_eq!(onprem["addressPrefix"], "192.168.0.0/16");
    assert_eq!(onprem["nextHopType"], "VirtualNetworkGateway");
    assert_eq!(after.len(), before.len() + 2);

    let table = h.sim.resource(&rt).context("rt-kubenet")?;
    assert_eq!(
        table["tags"]["poolnet.dev/cluster"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(poolnet_tests::operator::cluster_id().to_ascii_lowercase()),
        "the table is marked as this cluster's"
    );
    let st = kubenet
        .status
        .and_then(|s| s.route_table)
        .context("status.routeTable")?;
    assert_eq!(
        st.owned_routes,
        ["poolnet-default-via-firewall", "poolnet-on-premises"]
    );
    assert_eq!(st.route_count, 7);
    assert_eq!(st.route_limit, 400);
    Ok(())
}

#[tokio::test]
async fn route_limit_is_refused_with_a_condition_and_an_event_and_nothing_written() -> Result<()> {
    let h = Harness::start().await?;
    let rt = route_table_id();
    let before = h.sim.resource(&rt).context("rt-kubenet")?;
    let mut npn = sample("kubenet-pool.yaml")?;
    // 5 node routes + 2 of poolnet's do not fit in 6.
    npn.spec
        .route_table
        .as_mut()
        .context("routeTable")?
        .route_limit = 6;
    h.apply(&npn).await?;

    let st = h
        .wait_condition("kubenet", "RoutesReady", "False", "RouteLimitExceeded")
        .await?;
    let msg = &condition(&st, "RoutesReady")
        .context("RoutesReady")?
        .message;
    assert!(msg.contains("at most 6"), "{msg}");
    let ready = condition(&st, "Ready").context("Ready")?;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RouteLimitExceeded")
    );
    let events = h.wait_event("kubenet", &["RouteLimitExceeded"]).await?;
    assert!(
        events.iter().any(|e| e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("RouteLimitExceeded")),
        "{:#?}",
        summary(&events)
    );
    let c = h.sim.counters();
    assert_eq!(c.writes(ROUTE_TABLE_TYPE), 0, "{c:#?}");
    assert_eq!(
        c.writes("Microsoft.Network/routeTables/routes"),
        0,
        "{c:#?}"
    );
    assert_eq!(h.sim.resource(&rt), Some(before), "the table is untouched");

    // Raising the limit (as after an Azure quota raise) lets it through.
    npn.spec
        .route_table
        .as_mut()
        .context("routeTable")?
        .route_limit = 400;
    h.apply(&npn).await?;
    h.wait_ready("kubenet").await?;
    assert_eq!(named(&routes(&h, &rt)?, OWNED).len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_route_table_of_another_cluster_is_refused() -> Result<()> {
    let h = Harness::start().await?;
    let other = network_id(RG, "routeTables", "rt-other-cluster");
    let table: poolnet_arm::models::RouteTable = serde_json::from_value(json!({
        "location": "westeurope",
        "tags": {"poolnet.dev/cluster": format!("/subscriptions/{}/resourcegroups/rg-other/providers/microsoft.containerservice/managedclusters/aks-other", poolnet_tests::operator::SUB)},
        "properties": {"routes": [
            {"name": "default", "properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": "Internet"}}
        ]}
    }))?;
    let created = h
        .arm
        .put_route_table(
            &Harness::id(&other)?,
            &table,
            poolnet_arm::Precondition::IfNoneMatch,
        )
        .await?;
    settle(&h, created).await?;
    let before = h
        .sim
        .resource(&other)
        .context("the other cluster's table")?;
    h.sim.reset_counters();

    let mut npn = sample("kubenet-pool.yaml")?;
    npn.spec.route_table.as_mut().context("routeTable")?.id = other.clone();
    h.apply(&npn).await?;
    let st = h
        .wait_condition(
            "kubenet",
            "RoutesReady",
            "False",
            "RouteTableOwnedByAnotherCluster",
        )
        .await?;
    let msg = &condition(&st, "RoutesReady")
        .context("RoutesReady")?
        .message;
    assert!(msg.contains("aks-other"), "{msg}");
    let c = h.sim.counters();
    assert_eq!(c.writes(ROUTE_TABLE_TYPE), 0, "{c:#?}");
    assert_eq!(h.sim.resource(&other), Some(before));
    Ok(())
}

/// The cloud controller's rules in the AKS NSG, as ARM returns them.
fn lb_rules(h: &Harness) -> Result<Vec<Value>> {
    Ok(named(&rules(h, &aks_nsg_id())?, "k8s-azure-lb_")
        .into_iter()
        .cloned()
        .collect())
}

fn assert_priorities_apart(h: &Harness) -> Result<()> {
    let all = rules(h, &aks_nsg_id())?;
    let foreign: BTreeSet<i64> = named(&all, "k8s-azure-lb_")
        .iter()
        .map(|r| r["properties"]["priority"].as_i64().unwrap_or_default())
        .collect();
    for r in named(&all, OWNED) {
        let p = r["properties"]["priority"].as_i64().unwrap_or_default();
        assert!((100..=499).contains(&p), "{r:#}");
        assert!(
            !foreign.contains(&p),
            "poolnet took a foreign priority: {r:#}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn foreign_rules_in_the_aks_nsg_survive_create_update_and_delete() -> Result<()> {
    let h = Harness::start().await?;
    let nsg = aks_nsg_id();
    let foreign = lb_rules(&h)?;
    assert_eq!(foreign.len(), 2, "the fixture's cloud-controller rules");
    let mut whole_before = h.sim.resource(&nsg).context("the AKS NSG")?;
    strip_etags(&mut whole_before);

    let mut npn = sample("game-pool.yaml")?;
    npn.spec.network_security_groups = vec![NsgTarget {
        id: nsg.clone(),
        source_address_prefixes: vec!["Internet".into()],
        priorities: Default::default(),
    }];
    h.apply(&npn).await?;
    h.wait_ready("game").await?;
    assert_eq!(lb_rules(&h)?, foreign, "after create");
    ensure!(
        !named(&rules(&h, &nsg)?, OWNED).is_empty(),
        "poolnet's rules are in"
    );
    assert_priorities_apart(&h)?;

    npn.spec.allowed_host_ports = vec!["443/tcp,3478/udp,30000-31000/tcp".into()];
    let updated = h.apply(&npn).await?;
    let st = h
        .wait_npn("game", "Ready with the new ports", |n| {
            is_ready(n) && n.metadata.generation == updated.metadata.generation
        })
        .await?;
    let in_arm: BTreeSet<String> = named(&rules(&h, &nsg)?, OWNED)
        .iter()
        .flat_map(|r| {
            r["properties"]["destinationPortRanges"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p.as_str().map(String::from))
        .collect();
    assert_eq!(
        in_arm,
        ["443", "3478", "30000-31000"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        st.status.and_then(|s| s.host_ports).as_deref(),
        Some("443/tcp,30000-31000/tcp,3478/udp")
    );
    assert_eq!(lb_rules(&h)?, foreign, "after update");
    assert_priorities_apart(&h)?;

    h.delete("game").await?;
    h.wait_gone("game").await?;
    assert_eq!(lb_rules(&h)?, foreign, "after delete");
    let mut whole_after = h.sim.resource(&nsg).context("the AKS NSG")?;
    strip_etags(&mut whole_after);
    assert_eq!(
        json_diff(&whole_before, &whole_after),
        Vec::<String>::new(),
        "the NSG is back as it was"
    );
    Ok(())
}

#[tokio::test]
async fn another_writer_between_read_and_write_is_retried_and_its_change_kept() -> Result<()> {
    let h = Harness::start().await?;
    let nsg = byo_nsg_id();
    // Someone takes priority 200, the first of the game sample's band, right after poolnet's
    // first read: poolnet's write built on that read must fail (412) and be redone.
    let theirs = json!({
        "name": "allow-node-exporter",
        "properties": {
            "priority": 200, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": "10.250.0.0/27", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "9100"
        }
    });
    h.sim.faults().add_other_writer(OtherWriter::new(
        &nsg,
        1,
        OtherWriterAction::UpsertSecurityRule {
            rule: theirs.clone(),
        },
    ));
    h.apply(&sample("game-pool.yaml")?).await?;
    let game = h.wait_ready("game").await?;

    let c = h.sim.counters();
    assert_eq!(c.other_writer_mutations, 1, "{c:#?}");
    assert!(c.responses.get(&412).copied().unwrap_or(0) >= 1, "{c:#?}");
    let all = rules(&h, &nsg)?;
    let kept = all
        .iter()
        .find(|r| r["name"] == "allow-node-exporter")
        .context("the other writer's rule survives")?;
    for (k, v) in theirs["properties"].as_object().context("properties")? {
        assert_eq!(&kept["properties"][k], v, "{k} of {kept:#}");
    }
    let st = game.status.context("status")?;
    let mine = named(&all, OWNED);
    assert_eq!(mine.len(), st.security_groups[0].rules.len());
    for r in mine {
        let p = r["properties"]["priority"].as_i64().unwrap_or_default();
        assert!((201..=299).contains(&p), "{r:#}");
    }
    Ok(())
}

#[tokio::test]
async fn a_throttling_burst_shows_in_conditions_and_then_converges() -> Result<()> {
    let h = Harness::start().await?;
    let seen = SeenReasons::watch(&h, "game");
    const BURST: u64 = 12;
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Throttle {
            retry_after_secs: 1,
        })
        .count(BURST),
    );
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    let injected = h.sim.faults().config().rules[0].injected;
    assert_eq!(injected, BURST, "the whole burst was answered");
    // The watch may lag the last status a little.
    let deadline = tokio::time::Instant::now() + WAIT_ARM;
    while !seen.get().contains("Ready=True/Reconciled") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.get();
    assert!(
        seen.iter().any(|s| s.starts_with("Ready=False/Throttled")),
        "Ready showed the throttling: {seen:#?}"
    );
    assert!(seen.contains("Ready=True/Reconciled"), "{seen:#?}");
    Ok(())
}

#[tokio::test]
async fn a_crash_mid_reconcile_then_a_new_operator_converges_without_duplicates() -> Result<()> {
    let mut h = Harness::start().await?;
    let initial = comparable_state(&h.sim.snapshot()?);
    // The agent-pool write hangs long enough to kill the operator in the middle of it.
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Latency { ms: 5000 })
            .method("PUT")
            .resource_type("agentPools")
            .count(1),
    );
    h.apply(&sample("game-pool.yaml")?).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.sim.faults().config().rules[0].injected == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the operator never wrote the agent pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.crash_operator();
    h.start_operator()?;
    let game = h.wait_ready("game").await?;

    let st = game.status.context("status")?;
    let all = rules(&h, &byo_nsg_id())?;
    let mine = named(&all, OWNED);
    let names: BTreeSet<&str> = mine.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names.len(), mine.len(), "no rule twice: {all:#?}");
    assert_eq!(mine.len(), st.security_groups[0].rules.len(), "{all:#?}");
    let priorities: BTreeSet<i64> = all
        .iter()
        .map(|r| r["properties"]["priority"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(priorities.len(), all.len());
    let state = h.sim.snapshot()?;
    let owned_asgs: Vec<&String> = state["resources"]
        .as_object()
        .context("resources")?
        .iter()
        .filter(|(_, r)| r["body"]["tags"]["poolnet.dev/owner"].is_string())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(owned_asgs.len(), 1, "one managed ASG: {owned_asgs:?}");
    assert_eq!(
        pool_ports(&pool(&h, "game")?),
        ports(&[
            (80, 80, "TCP"),
            (443, 443, "TCP"),
            (53, 53, "UDP"),
            (40000, 60000, "TCP")
        ])
    );

    // Nothing stranded: deleting leaves Azure as it was before the crash.
    h.delete("game").await?;
    h.wait_gone("game").await?;
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&initial, &after), Vec::<String>::new());
    Ok(())
}

/// A third pool, created through ARM as `az aks nodepool add` would, without node public IPs.
async fn add_pool(h: &Harness, name: &str) -> Result<()> {
    let pool: poolnet_arm::AgentPool = serde_json::from_value(json!({
        "properties": {"count": 1, "vmSize": "Standard_D2s_v5", "mode": "User"}
    }))?;
    let lro = h
        .arm
        .put_agent_pool(
            &Harness::id(&poolnet_tests::operator::agent_pool_id(name))?,
            &pool,
            poolnet_arm::Precondition::IfNoneMatch,
        )
        .await?;
    settle(h, lro).await
}

#[tokio::test]
async fn deletion_leaves_azure_exactly_as_it_was() -> Result<()> {
    let h = Harness::start().await?;
    add_pool(&h, "extra").await?;
    let initial = comparable_state(&h.sim.snapshot()?);

    // Managed prefix, managed ASG and rules of a pool that cannot use the prefix yet.
    let mut extra = sample("game-pool.yaml")?;
    extra.metadata.name = Some("extra".into());
    extra.spec.node_pool.agent_pool_id = poolnet_tests::operator::agent_pool_id("extra");
    extra.spec.allowed_host_ports = vec!["7000-7100/udp".into()];
    extra.spec.application_security_groups = None;
    extra.spec.network_security_groups[0].priorities.from = 300;
    extra.spec.network_security_groups[0].priorities.to = 399;
    extra.spec.node_public_ip = Some(NodePublicIp {
        enabled: true,
        prefix: Some(PrefixSource {
            existing_id: None,
            managed: Some(ManagedPrefix {
                name: "pipp-extra".into(),
                resource_group: RG.into(),
                location: "westeurope".into(),
                ip_version: Default::default(),
                prefix_length: 31,
                zones: vec![],
            }),
        }),
        ip_tags: None,
    });
    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    h.apply(&extra).await?;
    h.wait_ready("game").await?;
    h.wait_ready("kubenet").await?;
    h.wait_npn("extra", "settled (everything but the pool's prefix)", |n| {
        current(n)
            && ["PrefixReady", "ASGReady", "SecurityRulesReady"]
                .iter()
                .all(|t| condition(n, t).is_some_and(|c| c.status == "True"))
            && condition(n, "AgentPoolReady")
                .is_some_and(|c| c.reason == "RequiresNodePoolRecreate")
            && pool_ports(&pool(&h, "extra").unwrap_or_default()) == ports(&[(7000, 7100, "UDP")])
    })
    .await?;
    let during = h.sim.snapshot()?;
    let owned = |state: &Value| -> Vec<String> {
        state["resources"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, r)| r["body"]["tags"]["poolnet.dev/owner"].is_string())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        owned(&during).len(),
        3,
        "two managed ASGs and a prefix: {:?}",
        owned(&during)
    );

    for name in ["game", "kubenet", "extra"] {
        h.delete(name).await?;
    }
    for name in ["game", "kubenet", "extra"] {
        h.wait_gone(name).await?;
    }
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&initial, &after), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn detach_on_delete_leaves_everything_in_place() -> Result<()> {
    let h = Harness::start().await?;
    let mut npn = sample("game-pool.yaml")?;
    npn.spec.reconcile_policy = ReconcilePolicy::DetachOnDelete;
    h.apply(&npn).await?;
    h.wait_ready("game").await?;
    let converged = comparable_state(&h.sim.snapshot()?);
    h.sim.reset_counters();
    h.delete("game").await?;
    h.wait_gone("game").await?;
    let c = h.sim.counters();
    assert_eq!(writes(&c), 0, "{c:#?}");
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&converged, &after), Vec::<String>::new());
    ensure!(
        !named(&rules(&h, &byo_nsg_id())?, OWNED).is_empty(),
        "rules stay"
    );
    Ok(())
}

#[tokio::test]
async fn observe_reads_and_reports_but_never_writes() -> Result<()> {
    let h = Harness::start().await?;
    let initial = comparable_state(&h.sim.snapshot()?);
    let mut npn = sample("game-pool.yaml")?;
    npn.spec.reconcile_policy = ReconcilePolicy::Observe;
    // Custom ASGs only (they exist): Observe can then say what it would do to the pool and
    // the NSG (with a managed ASG it would first need to create that).
    npn.spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?
        .managed = Some(false);
    h.apply(&npn).await?;
    let st = h
        .wait_npn("game", "reported (Observe)", |n| {
            current(n)
                && ["AgentPoolReady", "SecurityRulesReady"].iter().all(|t| {
                    condition(n, t)
                        .is_some_and(|c| c.status == "False" && c.reason == "ObserveOnly")
                })
        })
        .await?;
    let rules_msg = &condition(&st, "SecurityRulesReady")
        .context("rules")?
        .message;
    assert!(rules_msg.contains("would add"), "{rules_msg}");
    let pool_msg = &condition(&st, "AgentPoolReady").context("pool")?.message;
    assert!(pool_msg.contains("40000-60000/tcp"), "{pool_msg}");
    assert_eq!(
        condition(&st, "Accepted").map(|c| c.reason.as_str()),
        Some("ObserveOnly")
    );
    assert_eq!(
        condition(&st, "ASGReady").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(
        condition(&st, "NodeIPsReady").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(
        st.status.as_ref().map(|s| s.nodes.len()),
        Some(3),
        "it reads and reports"
    );
    // Keep observing through a few drift checks, then delete.
    h.wait_counters("three reads of the agent pool", |c| {
        c.get("GET", AGENT_POOL_TYPE) >= 3
    })
    .await?;
    h.delete("game").await?;
    h.wait_gone("game").await?;
    let c = h.sim.counters();
    assert_eq!(writes(&c), 0, "{c:#?}");
    assert!(c.get("GET", NSG_TYPE) >= 1, "{c:#?}");
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&initial, &after), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_rule_changed_by_hand_is_restored_at_the_next_drift_check() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    let nsg = byo_nsg_id();
    let original = rules(&h, &nsg)?;
    let victim = named(&original, OWNED)[0].clone();
    let name = victim["name"].as_str().context("rule name")?.to_string();

    // By hand: open the rule to every port, the way someone in the portal would.
    let id = Harness::id(&nsg)?;
    let read = h.arm.get_nsg(&id).await?;
    let mut edited = read.resource.clone();
    for r in edited
        .properties
        .as_mut()
        .context("NSG properties")?
        .security_rules
        .iter_mut()
        .filter(|r| r.name.as_deref() == Some(name.as_str()))
    {
        let p = r.properties.as_mut().context("rule properties")?;
        p.destination_port_ranges = vec!["0-65535".into()];
    }
    let lro = h.arm.put_nsg(&id, &edited, read.precondition()).await?;
    settle(&h, lro).await?;
    let changed = rules(&h, &nsg)?;
    let now = changed
        .iter()
        .find(|r| r["name"] == name.as_str())
        .context("rule")?;
    assert_eq!(
        now["properties"]["destinationPortRanges"],
        json!(["0-65535"])
    );

    h.wait_resource(&nsg, "restored", |r| {
        r.is_some_and(|r| {
            let mut r = r.clone();
            strip_etags(&mut r);
            r["properties"]["securityRules"].as_array() == Some(&original)
        })
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn converged_objects_make_no_arm_writes_across_resyncs() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    h.wait_ready("kubenet").await?;
    h.sim.reset_counters();
    // Three drift checks of each shared resource: every one re-reads, none writes.
    let c = h
        .wait_counters("three drift checks of the NSG and the route table", |c| {
            c.get("GET", NSG_TYPE) >= 3 && c.get("GET", ROUTE_TABLE_TYPE) >= 3
        })
        .await?;
    assert_eq!(writes(&c), 0, "{c:#?}");
    assert_eq!(c.accepted_writes, 0);
    Ok(())
}

#[tokio::test]
async fn an_object_whose_asg_is_missing_does_not_block_others_in_a_shared_nsg() -> Result<()> {
    let h = Harness::start().await?;
    // The kubenet pool's object shares the game pool's NSG, but its managed ASG cannot be
    // created (ARM keeps failing): its rules would name an ASG that does not exist, which ARM
    // refuses for the whole NSG.
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Error {
            status: 500,
            code: "InternalServerError".into(),
            message: None,
        })
        .method("PUT")
        .path_contains("applicationSecurityGroups/poolnet-kubenet"),
    );
    let mut other = sample("game-pool.yaml")?;
    other.metadata.name = Some("kubenet".into());
    other.spec.node_pool.agent_pool_id = poolnet_tests::operator::agent_pool_id("kubenet");
    other.spec.node_public_ip = None;
    other.spec.allowed_host_ports = vec!["8000-8100/tcp".into()];
    other.spec.application_security_groups = None;
    other.spec.network_security_groups[0].priorities.from = 300;
    other.spec.network_security_groups[0].priorities.to = 399;
    h.apply(&other).await?;
    h.wait_condition("kubenet", "ASGReady", "False", "ArmError")
        .await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    let all = rules(&h, &byo_nsg_id())?;
    assert!(
        named(&all, OWNED)
            .iter()
            .all(|r| !r["name"].as_str().unwrap_or_default().contains("kubenet")),
        "{all:#?}"
    );

    // Once the ASG can be created, the other object's rules join.
    h.sim.faults().clear();
    h.wait_ready("kubenet").await?;
    h.wait_resource(&byo_nsg_id(), "holding both objects' rules", |nsg| {
        let names: Vec<&str> = nsg
            .and_then(|n| n["properties"]["securityRules"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        names.iter().any(|n| n.contains("-kubenet-")) && names.iter().any(|n| n.contains("-game-"))
    })
    .await?;
    assert!(is_ready(&h.npns().get("game").await?));
    Ok(())
}

#[tokio::test]
async fn objects_that_exist_when_the_operator_starts_are_all_reconciled() -> Result<()> {
    let mut options = poolnet_tests::operator::HarnessOptions::demo()?;
    options.operator = false;
    let mut h = Harness::start_with(options).await?;
    // Minimal objects (nothing to write in Azure): several of them wait for the caches at once
    // in their first reconcile, which is where they used to hang.
    let names: Vec<String> = (0..8).map(|i| format!("early-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let pool = if i % 2 == 0 { "game" } else { "kubenet" };
        let npn: NodePoolNetwork = serde_json::from_value(json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": name},
            "spec": {"nodePool": {"agentPoolId": poolnet_tests::operator::agent_pool_id(pool)}}
        }))?;
        h.apply(&npn).await?;
    }
    h.start_operator()?;
    for name in &names {
        h.wait_ready(name).await?;
    }
    Ok(())
}
