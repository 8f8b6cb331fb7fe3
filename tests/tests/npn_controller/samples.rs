//! The shipped samples and what each part reports: prefix, ASGs, agent pool, rules, routes.

use super::support::*;

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
