//! Sharing Azure resources: foreign rules, other writers, throttling and crashes.

use super::support::*;

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
    // Throttling passes by itself: Reconciling (kstatus InProgress), never Stalled.
    assert!(
        seen.contains("Reconciling=True/Throttled"),
        "Reconciling showed the throttling: {seen:#?}"
    );
    assert!(!seen.iter().any(|s| s.starts_with("Stalled=")), "{seen:#?}");
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

/// Issue 12 item 5: another cluster's poolnet in the same resource group made an ASG under the
/// name this object's managed ASG would have (a pool `game` in both clusters). Its owner tag
/// names `NodePoolNetwork/game` too, but its cluster tag names the other cluster: it is not
/// adopted, and deleting this object leaves it alone.
#[tokio::test]
async fn another_clusters_asg_of_the_same_name_is_neither_adopted_nor_deleted() -> Result<()> {
    let h = Harness::start().await?;
    let game = sample("game-pool.yaml")?;
    // The managed ASG: `poolnet-<name>` in the agent pool's resource group.
    let asg_id = network_id(RG, "applicationSecurityGroups", "poolnet-game");
    let other_cluster = poolnet_tests::operator::cluster_id().replace("aks-demo", "aks-other");
    let theirs: poolnet_arm::models::ApplicationSecurityGroup = serde_json::from_value(json!({
        "location": "westeurope",
        "tags": {
            "poolnet.dev/owner": "NodePoolNetwork/game",
            "poolnet.dev/cluster": other_cluster.to_ascii_lowercase(),
        },
    }))?;
    let lro = h
        .arm
        .put_asg(
            &Harness::id(&asg_id)?,
            &theirs,
            poolnet_arm::Precondition::IfNoneMatch,
        )
        .await?;
    settle(&h, lro).await?;

    h.apply(&game).await?;
    h.wait_npn("game", "ASGReady=False/ASGNotOwned", |n| {
        condition(n, "ASGReady").is_some_and(|c| c.status == "False" && c.reason == "ASGNotOwned")
    })
    .await?;
    h.delete("game").await?;
    h.wait_gone("game").await?;
    let left = h
        .sim
        .resource(&asg_id)
        .context("the other cluster's ASG is still there")?;
    assert_eq!(
        left["tags"]["poolnet.dev/cluster"],
        json!(other_cluster.to_ascii_lowercase()),
        "and untouched"
    );
    Ok(())
}

/// Issue 14 item 3: objects applied together, whose ASGs are created at different moments,
/// write their shared NSG once or twice, not once each: the first ones hold their write
/// while the others are on their way, the last one writes the union for all.
#[tokio::test]
async fn objects_applied_together_write_their_shared_nsg_at_most_twice() -> Result<()> {
    let h = Harness::start().await?;
    let nsg = byo_nsg_id();
    let names = ["alpha", "bravo", "charlie", "delta"];
    for name in names {
        add_pool(&h, name).await?;
    }
    // Creating the managed ASG of the i-th object takes i × 1.5 s: without batching, each
    // object wrote the NSG as soon as its own ASG existed, one write each.
    for (i, name) in names.iter().enumerate().skip(1) {
        h.sim.faults().add_rule(
            FaultRule::new(FaultAction::Latency {
                ms: 1500 * i as u64,
            })
            .method("PUT")
            .resource_type("applicationSecurityGroups")
            .path_contains(&poolnet_api::ownership::managed_asg_name(name)),
        );
    }
    // Counts the NSG's PUTs (zero latency).
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Latency { ms: 0 })
            .method("PUT")
            .resource_type("networkSecurityGroups")
            .path_contains("nsg-snet-aks"),
    );
    let counter = h.sim.faults().config().rules.len() - 1;
    for (i, name) in names.iter().enumerate() {
        let mut npn = sample("game-pool.yaml")?;
        npn.metadata.name = Some(name.to_string());
        npn.spec.node_pool.agent_pool_id = poolnet_tests::operator::agent_pool_id(name);
        npn.spec.node_public_ip = None;
        npn.spec.host_port_policies = None;
        npn.spec.application_security_groups = None;
        npn.spec.allowed_host_ports = vec![format!("{}/tcp,{}/udp", 7000 + i, 7100 + i)];
        npn.spec.network_security_groups[0].priorities.from = 300 + 10 * i as u16;
        npn.spec.network_security_groups[0].priorities.to = 309 + 10 * i as u16;
        h.apply(&npn).await?;
    }
    let mut wanted = BTreeSet::new();
    for name in names {
        let npn = h.wait_ready(name).await?;
        let st = npn.status.context("status")?;
        wanted.extend(st.security_groups[0].rules.iter().map(|r| r.name.clone()));
    }
    let present: BTreeSet<String> = rules(&h, &nsg)?
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    ensure!(
        wanted.len() == 2 * names.len() && wanted.is_subset(&present),
        "every object's rules are in the NSG: wanted {wanted:?}, present {present:?}"
    );
    let puts = h.sim.faults().config().rules[counter].injected;
    ensure!(
        puts <= 2,
        "{puts} writes of the shared NSG for {} objects applied together",
        names.len()
    );
    Ok(())
}
