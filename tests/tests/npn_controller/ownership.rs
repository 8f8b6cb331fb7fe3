//! Ownership is recorded, not inferred (issue 12, docs/ownership.md): Observe objects
//! contribute nothing, detached entries are never touched again, spec edits strand nothing,
//! and a foreign change of the agent pool between poolnet's read and write survives.

use super::support::*;

/// A second object on the `kubenet` agent pool sharing the game sample's NSG, its rules
/// aimed at an ASG that exists (no managed ASG to create first).
fn neighbour(name: &str, policy: ReconcilePolicy) -> Result<NodePoolNetwork> {
    let mut n = sample("game-pool.yaml")?;
    n.metadata.name = Some(name.into());
    n.spec.node_pool.agent_pool_id = poolnet_tests::operator::agent_pool_id("kubenet");
    n.spec.node_public_ip = None;
    n.spec.allowed_host_ports = vec!["8000-8100/tcp".into()];
    let asgs = n
        .spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?;
    asgs.managed = Some(false);
    asgs.custom_ids.truncate(1);
    n.spec.network_security_groups[0].priorities.from = 300;
    n.spec.network_security_groups[0].priorities.to = 399;
    n.spec.reconcile_policy = policy;
    Ok(n)
}

/// The NSG's rules whose name carries `label` (an object's name).
fn rules_of(h: &Harness, nsg: &str, label: &str) -> Result<Vec<Value>> {
    let needle = format!("-{label}-");
    Ok(rules(h, nsg)?
        .into_iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(OWNED) && n.contains(&needle))
        })
        .collect())
}

/// Edits the game sample's ports and waits until the NSG shows the edit: a write of the
/// shared NSG by a neighbour.
async fn neighbour_writes(h: &Harness, ports: &str) -> Result<()> {
    let mut game = sample("game-pool.yaml")?;
    game.spec.allowed_host_ports = vec![ports.into()];
    h.apply(&game).await?;
    let wanted = ports.split('/').next().unwrap_or_default().to_string();
    h.wait_resource(&byo_nsg_id(), "holding game's edited rule", |nsg| {
        nsg.and_then(|n| n["properties"]["securityRules"].as_array())
            .into_iter()
            .flatten()
            .any(|r| {
                r["name"].as_str().is_some_and(|n| n.contains("-game-"))
                    && r["properties"]["destinationPortRanges"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(wanted.as_str())))
            })
    })
    .await?;
    h.wait_ready("game").await?;
    Ok(())
}

/// Item 1: an Observe object never causes a write, also not through a neighbour's write of
/// the NSG they share.
#[tokio::test]
async fn an_observe_object_gets_no_rule_when_a_neighbour_writes_the_shared_nsg() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&neighbour("watch", ReconcilePolicy::Observe)?)
        .await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    h.wait_npn("watch", "reported (Observe)", |n| {
        current(n) && condition(n, "SecurityRulesReady").is_some_and(|c| c.reason == "ObserveOnly")
    })
    .await?;
    neighbour_writes(&h, "7000-7010/tcp").await?;
    let theirs = rules_of(&h, &byo_nsg_id(), "watch")?;
    assert!(
        theirs.is_empty(),
        "the Observe object's rules were written: {theirs:#?}"
    );
    let watch = h.npns().get("watch").await?;
    let msg = &condition(&watch, "SecurityRulesReady")
        .context("SecurityRulesReady")?
        .message;
    assert!(msg.contains("would add"), "{msg}");
    Ok(())
}

/// Item 6: what a DetachOnDelete object left is foreign from its deletion on: a neighbour's
/// later writes of the NSG keep it byte-for-byte.
#[tokio::test]
async fn detached_rules_stay_exactly_as_they_were_when_a_neighbour_writes() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&neighbour("old", ReconcilePolicy::DetachOnDelete)?)
        .await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("old").await?;
    h.wait_ready("game").await?;
    let left = rules_of(&h, &byo_nsg_id(), "old")?;
    ensure!(!left.is_empty(), "old has rules to leave");
    h.delete("old").await?;
    h.wait_gone("old").await?;
    neighbour_writes(&h, "7000-7010/tcp").await?;
    neighbour_writes(&h, "7100/tcp").await?;
    assert_eq!(rules_of(&h, &byo_nsg_id(), "old")?, left);
    // Reported, never taken over.
    let game = h.npns().get("game").await?;
    let unrecorded = &game.status.context("status")?.security_groups[0].unrecorded_rules;
    let names: Vec<&str> = left.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(unrecorded, &names);
    Ok(())
}

/// Item 7: an NSG dropped from the spec (here: replaced by another) loses this object's rules.
#[tokio::test]
async fn an_nsg_dropped_from_the_spec_loses_the_objects_rules() -> Result<()> {
    let h = Harness::start().await?;
    let mut game = sample("game-pool.yaml")?;
    h.apply(&game).await?;
    h.wait_ready("game").await?;
    ensure!(!rules_of(&h, &byo_nsg_id(), "game")?.is_empty());
    game.spec.network_security_groups[0].id = aks_nsg_id();
    h.apply(&game).await?;
    h.wait_resource(&byo_nsg_id(), "without game's rules", |nsg| {
        !nsg.and_then(|n| n["properties"]["securityRules"].as_array())
            .into_iter()
            .flatten()
            .any(|r| r["name"].as_str().is_some_and(|n| n.contains("-game-")))
    })
    .await?;
    let st = h.wait_ready("game").await?.status.context("status")?;
    ensure!(!rules_of(&h, &aks_nsg_id(), "game")?.is_empty());
    let owned = st.owned.context("status.owned")?;
    let recorded: Vec<&str> = owned.security_rules.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(recorded, [aks_nsg_id().as_str()], "the record follows");
    Ok(())
}

/// Item 7: a route table dropped from the spec loses this object's routes, and only those.
#[tokio::test]
async fn a_route_table_dropped_from_the_spec_loses_the_objects_routes() -> Result<()> {
    let h = Harness::start().await?;
    let before = routes(&h, &route_table_id())?;
    let mut kubenet = sample("kubenet-pool.yaml")?;
    h.apply(&kubenet).await?;
    h.wait_ready("kubenet").await?;
    ensure!(routes(&h, &route_table_id())?.len() > before.len());
    kubenet.spec.route_table = None;
    h.apply(&kubenet).await?;
    h.wait_resource(&route_table_id(), "without kubenet's routes", |t| {
        !t.and_then(|t| t["properties"]["routes"].as_array())
            .into_iter()
            .flatten()
            .any(|r| r["name"].as_str().is_some_and(|n| n.starts_with(OWNED)))
    })
    .await?;
    let after = h.wait_ready("kubenet").await?;
    assert_eq!(routes(&h, &route_table_id())?, before);
    let owned = after.status.context("status")?.owned.unwrap_or_default();
    assert!(owned.routes.is_empty(), "{owned:?}");
    Ok(())
}

/// Item 7: the managed ASG turned off is deleted once the pool and the rules left it.
#[tokio::test]
async fn a_managed_asg_turned_off_is_deleted_once_unused() -> Result<()> {
    let h = Harness::start().await?;
    let mut game = sample("game-pool.yaml")?;
    h.apply(&game).await?;
    let st = h.wait_ready("game").await?.status.context("status")?;
    let asg = st
        .application_security_groups
        .iter()
        .find(|a| a.managed)
        .context("a managed ASG")?
        .id
        .clone();
    ensure!(h.sim.resource(&asg).is_some());
    game.spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?
        .managed = Some(false);
    h.apply(&game).await?;
    h.wait_resource(&asg, "deleted", |a| a.is_none()).await?;
    let after = h.wait_ready("game").await?;
    let p = pool(&h, "game")?;
    assert!(!pool_asgs(&p).contains(&asg.to_ascii_lowercase()));
    for r in rules_of(&h, &byo_nsg_id(), "game")? {
        let targets = r["properties"]["destinationApplicationSecurityGroups"].to_string();
        assert!(
            !targets.to_ascii_lowercase().contains("poolnet-game"),
            "{r:#}"
        );
    }
    let owned = after.status.context("status")?.owned.unwrap_or_default();
    assert_eq!(owned.application_security_group, None);
    Ok(())
}

/// Item 11: someone scales the agent pool between poolnet's read and its write: the write is
/// conditional (If-Match on the pool's eTag), so the scale survives next to poolnet's ports.
#[tokio::test]
async fn a_foreign_scale_between_read_and_write_of_the_agent_pool_is_kept() -> Result<()> {
    let h = Harness::start().await?;
    let id = poolnet_tests::operator::agent_pool_id("game");
    h.sim.faults().add_other_writer(OtherWriter::new(
        &id,
        1,
        OtherWriterAction::SetProperty {
            name: "count".into(),
            value: json!(5),
        },
    ));
    // Custom ASGs only: the first reconcile reads the pool and writes it (with a managed ASG
    // to create first, the write may come a reconcile later, after a fresh read).
    let mut game = sample("game-pool.yaml")?;
    game.spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?
        .managed = Some(false);
    h.apply(&game).await?;
    h.wait_ready("game").await?;
    let c = h.sim.counters();
    assert_eq!(c.other_writer_mutations, 1, "{c:#?}");
    assert!(
        c.responses.get(&412).copied().unwrap_or(0) >= 1,
        "the stale write was refused: {c:#?}"
    );
    let p = pool(&h, "game")?;
    assert_eq!(p["properties"]["count"], json!(5), "{p:#}");
    assert!(
        pool_ports(&p).contains(&(40000, 60000, "TCP".to_string())),
        "{p:#}"
    );
    Ok(())
}

/// Item 14: with `--allowed-scope`, an object naming an Azure resource outside it is refused
/// by the controller too (the webhook may be down, or was not there): it writes nothing and
/// says which field is outside.
#[tokio::test]
async fn an_object_outside_the_allowed_scopes_writes_nothing() -> Result<()> {
    let mut options = poolnet_tests::operator::HarnessOptions::demo()?;
    options.flags.push(format!(
        "--allowed-scope=/subscriptions/{}/resourceGroups/{RG}",
        poolnet_tests::operator::SUB
    ));
    let h = Harness::start_with(options).await?;
    let before = comparable_state(&h.sim.snapshot()?);
    let mut game = sample("game-pool.yaml")?;
    game.spec.network_security_groups[0].id =
        network_id("rg-network-team", "networkSecurityGroups", "nsg-hub");
    h.apply(&game).await?;
    let refused = h
        .wait_condition("game", "Accepted", "False", "OutOfScope")
        .await?;
    let msg = &condition(&refused, "Accepted").context("Accepted")?.message;
    assert!(msg.contains("spec.networkSecurityGroups[0].id"), "{msg}");
    assert_eq!(writes(&h.sim.counters()), 0, "{:#?}", h.sim.counters());
    assert_eq!(
        json_diff(&before, &comparable_state(&h.sim.snapshot()?)),
        Vec::<String>::new()
    );
    // Inside the scope again, it proceeds.
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    Ok(())
}

/// Item 10: one contribution ARM refuses (a regional service tag with a region that does not
/// exist passes every check poolnet can make) does not stall the NSG for everyone: the writer
/// leaves that rule out, writes the others, and the owner's condition carries ARM's message.
#[tokio::test]
async fn a_rule_arm_refuses_is_left_out_and_reported_and_the_others_are_written() -> Result<()> {
    let h = Harness::start().await?;
    let mut bad = neighbour("bad", ReconcilePolicy::Manage)?;
    bad.spec.network_security_groups[0].source_address_prefixes = vec!["Storage.Nowhere".into()];
    h.apply(&bad).await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    let refused = h
        .wait_condition("bad", "SecurityRulesReady", "False", "ArmRefused")
        .await?;
    let msg = &condition(&refused, "SecurityRulesReady")
        .context("SecurityRulesReady")?
        .message;
    assert!(msg.contains("Storage.Nowhere"), "ARM's message: {msg}");
    h.wait_ready("game").await?;
    ensure!(!rules_of(&h, &byo_nsg_id(), "game")?.is_empty());
    assert!(rules_of(&h, &byo_nsg_id(), "bad")?.is_empty());
    // Fixed in the spec: written at the next reconcile.
    let mut fixed = neighbour("bad", ReconcilePolicy::Manage)?;
    fixed.spec.network_security_groups[0].source_address_prefixes =
        vec!["Storage.WestEurope".into()];
    h.apply(&fixed).await?;
    h.wait_ready("bad").await?;
    ensure!(!rules_of(&h, &byo_nsg_id(), "bad")?.is_empty());
    Ok(())
}

/// Item 6, routes: routes a DetachOnDelete object left are never taken over, not even by a
/// later object of the same name asking for the same route names; it is told why.
#[tokio::test]
async fn detached_routes_are_not_taken_over_by_a_later_object() -> Result<()> {
    let h = Harness::start().await?;
    let mut kubenet = sample("kubenet-pool.yaml")?;
    kubenet.spec.reconcile_policy = ReconcilePolicy::DetachOnDelete;
    h.apply(&kubenet).await?;
    h.wait_ready("kubenet").await?;
    let left = routes(&h, &route_table_id())?;
    h.delete("kubenet").await?;
    h.wait_gone("kubenet").await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    let refused = h
        .wait_condition("kubenet", "RoutesReady", "False", "RouteConflict")
        .await?;
    let msg = &condition(&refused, "RoutesReady")
        .context("RoutesReady")?
        .message;
    assert!(
        msg.contains("poolnet-default-via-firewall") && msg.contains("no NodePoolNetwork records"),
        "{msg}"
    );
    assert_eq!(
        routes(&h, &route_table_id())?,
        left,
        "the table is as the detached object left it"
    );
    Ok(())
}
