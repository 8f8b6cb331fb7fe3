//! An object's life: deletion, detach, Observe, drift, resyncs, startup.

use super::support::*;

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
    // Azure differs and poolnet will not write: someone has to act, so the object is Stalled
    // (kstatus Failed, a GitOps health check stops waiting) and says what differs.
    let stalled = condition(&st, "Stalled").context("Stalled")?;
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ObserveOnly")
    );
    assert!(stalled.message.contains("would add"), "{}", stalled.message);
    assert_eq!(kstatus_of(&st), KStatus::Failed);
    let pool_msg = &condition(&st, "AgentPoolReady").context("pool")?.message;
    assert!(pool_msg.contains("40000-60000/tcp"), "{pool_msg}");
    // The exact changes (issue 16, item 4): each rule with its fields, the pool's field with
    // old and new value; nothing about anyone else's entries.
    let pending = &st.status.as_ref().context("status")?.pending_changes;
    let tcp = pending
        .iter()
        .find(|c| c.target == ChangeTarget::SecurityRule && c.name.contains("-game-tcp-"))
        .with_context(|| format!("no tcp rule in {pending:#?}"))?;
    assert_eq!(tcp.action, ChangeAction::Add);
    assert!(tcp.resource_id.eq_ignore_ascii_case(&byo_nsg_id()));
    let value = |c: &PendingChange, f: &str| {
        c.fields
            .iter()
            .find(|x| x.field == f)
            .and_then(|x| x.new.clone())
    };
    assert_eq!(
        value(tcp, "destinationPortRanges").as_deref(),
        Some("80,443,40000-60000")
    );
    let priority: u16 = value(tcp, "priority").context("priority")?.parse()?;
    assert!(
        (200..=299).contains(&priority),
        "the sample's band: {priority}"
    );
    assert_eq!(
        value(tcp, "sourceAddressPrefixes").as_deref(),
        Some("Internet")
    );
    let pool = pending
        .iter()
        .find(|c| c.target == ChangeTarget::AgentPool)
        .with_context(|| format!("no agent-pool change in {pending:#?}"))?;
    assert_eq!(pool.action, ChangeAction::Change);
    let ports = pool
        .fields
        .iter()
        .find(|f| f.field == "networkProfile.allowedHostPorts")
        .context("allowedHostPorts")?;
    assert!(
        ports
            .new
            .as_deref()
            .is_some_and(|n| n.contains("40000-60000/tcp")),
        "{ports:?}"
    );
    assert_ne!(ports.old, ports.new);
    assert!(
        pending
            .iter()
            .all(|c| c.target == ChangeTarget::AgentPool || c.name.contains("-game-")),
        "only this object's entries: {pending:#?}"
    );
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
    // One agent pool, one NodePoolNetwork: the oldest on each pool works, the others are
    // refused (created in order, or in one second and ordered by name: early-0 and early-1).
    for (i, name) in names.iter().enumerate() {
        if i < 2 {
            h.wait_ready(name).await?;
        } else {
            h.wait_npn(name, "refused (Conflict)", |n| {
                current(n)
                    && condition(n, "Accepted").is_some_and(|c| {
                        c.reason == "Conflict"
                            && c.message.contains(&format!("\"early-{}\"", i % 2))
                    })
            })
            .await?;
        }
    }
    Ok(())
}

/// An NSG of poolnet's own making for one test, in no subnet (so it can be deleted).
async fn standalone_nsg(h: &Harness, name: &str) -> Result<String> {
    let id = network_id(RG, "networkSecurityGroups", name);
    let nsg = poolnet_arm::models::NetworkSecurityGroup {
        resource: poolnet_arm::models::Resource {
            location: Some("westeurope".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let lro = h
        .arm
        .put_nsg(
            &Harness::id(&id)?,
            &nsg,
            poolnet_arm::Precondition::IfNoneMatch,
        )
        .await?;
    settle(h, lro).await?;
    Ok(id)
}

/// Issue 12 item 2: the NSG an object wrote to was deleted in Azure, then the object. A parent
/// already gone means nothing of ours is left there: deletion finishes.
#[tokio::test]
async fn deletion_finishes_when_the_nsg_is_already_gone_in_azure() -> Result<()> {
    let h = Harness::start().await?;
    let nsg = standalone_nsg(&h, "nsg-gone").await?;
    let mut game = sample("game-pool.yaml")?;
    game.spec.network_security_groups[0].id = nsg.clone();
    h.apply(&game).await?;
    h.wait_ready("game").await?;
    let lro = h.arm.delete_nsg(&Harness::id(&nsg)?).await?;
    settle(&h, lro).await?;
    ensure!(h.sim.resource(&nsg).is_none(), "the NSG is gone in armsim");

    h.delete("game").await?;
    h.wait_gone("game").await?;
    Ok(())
}

/// Issue 12 item 2: while deletion cannot finish, the object says so (a condition and an
/// Event with ARM's message) and never reads Ready/Reconciled; once ARM recovers it goes.
#[tokio::test]
async fn a_cleanup_that_cannot_finish_says_so_and_is_never_ready() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Error {
            status: 409,
            code: "InjectedDeleteRefused".into(),
            message: Some("the ASG cannot be deleted right now (injected)".into()),
        })
        .method("DELETE")
        .resource_type("applicationSecurityGroups"),
    );
    h.delete("game").await?;
    let npn = h
        .wait_npn("game", "Ready=False with the cleanup's problem", |n| {
            n.metadata.deletion_timestamp.is_some()
                && condition(n, "Ready").is_some_and(|c| {
                    c.status == "False"
                        && c.reason == "CleanupFailed"
                        && c.message.contains("InjectedDeleteRefused")
                })
        })
        .await?;
    ensure!(!is_ready(&npn), "a Terminating object is never Ready");
    let events = h.wait_event("game", &["CleanupFailed"]).await?;
    ensure!(
        events.iter().any(|e| e
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("InjectedDeleteRefused")),
        "the Event carries ARM's message: {:?}",
        summary(&events)
    );
    h.sim.faults().clear();
    h.wait_gone("game").await?;
    Ok(())
}

/// Issue 12, item 12: a part that keeps failing retryably backs off (5 s, 10 s, 20 s, ...)
/// instead of asking ARM every 5 s for as long as the failure lasts.
#[tokio::test]
async fn a_part_that_keeps_failing_backs_off() -> Result<()> {
    let h = Harness::start().await?;
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Error {
            status: 500,
            code: "InternalServerError".into(),
            message: None,
        })
        .method("PUT")
        .path_contains("applicationSecurityGroups/poolnet-game"),
    );
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_condition("game", "ASGReady", "False", "ArmError")
        .await?;
    let attempts = || {
        h.sim
            .counters()
            .get("PUT", "Microsoft.Network/applicationSecurityGroups")
    };
    let first = attempts();
    // 36 s: every 5 s would be 7 more attempts; backing off (after 5, 10 and 20 s) is 3.
    tokio::time::sleep(Duration::from_secs(36)).await;
    let more = attempts() - first;
    assert!(
        (1..=4).contains(&more),
        "{more} attempts in 36 s after the first failure"
    );
    Ok(())
}
