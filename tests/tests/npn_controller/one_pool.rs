//! One agent pool, one NodePoolNetwork: with the webhook off (as here), a second object on a
//! pool is refused by the controller, writes nothing to Azure, and takes over once the first
//! is gone.

use super::support::*;
use poolnet_api::v1alpha1::AsgSpec;

/// A second object on the game pool (spelled in another case: ARM IDs compare
/// case-insensitively) with other host ports, a custom ASG only, its own rules in the game
/// pool's NSG and a route in the kubenet pool's table: were it acting, it would rewrite the
/// pool, and its rules and route would join the shared NSG's and table's writes.
fn rival() -> Result<NodePoolNetwork> {
    let mut npn = sample("game-pool.yaml")?;
    npn.metadata.name = Some("game-rival".into());
    npn.spec.node_pool.agent_pool_id = npn
        .spec
        .node_pool
        .agent_pool_id
        .replace("Microsoft.ContainerService", "microsoft.containerservice");
    npn.spec.node_public_ip = None;
    npn.spec.allowed_host_ports = vec!["7000-7100/udp".into()];
    npn.spec.application_security_groups = Some(AsgSpec {
        managed: Some(false),
        custom_ids: vec![network_id(
            RG,
            "applicationSecurityGroups",
            "asg-game-custom",
        )],
    });
    npn.spec.network_security_groups[0].priorities.from = 300;
    npn.spec.network_security_groups[0].priorities.to = 399;
    npn.spec.host_port_policies = None;
    npn.spec.route_table = Some(serde_json::from_value(json!({
        "id": route_table_id(),
        "routes": [{"name": "rival", "addressPrefix": "10.99.0.0/16", "nextHopType": "VnetLocal"}],
    }))?);
    Ok(npn)
}

async fn wait_conflict(h: &Harness, name: &str) -> Result<NodePoolNetwork> {
    let st = h.wait_npn(name, "reconciled", current).await?;
    let accepted = condition(&st, "Accepted").context("an Accepted condition")?;
    ensure!(
        accepted.status == "False" && accepted.reason == "Conflict",
        "{:#?}",
        st.status
    );
    ensure!(
        accepted.message.contains("spec.nodePool.agentPoolId")
            && accepted.message.contains("\"game\"")
            && accepted
                .message
                .contains("One NodePoolNetwork per agent pool"),
        "{}",
        accepted.message
    );
    ensure!(
        condition(&st, "Ready").is_some_and(|c| c.status == "False" && c.reason == "Conflict"),
        "{:#?}",
        st.status
    );
    Ok(st)
}

#[tokio::test]
async fn a_younger_object_on_the_same_agent_pool_is_refused_and_writes_nothing() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    h.wait_ready("kubenet").await?;
    let before = comparable_state(&h.sim.snapshot()?);
    let game_ports = pool_ports(&pool(&h, "game")?);
    h.sim.reset_counters();

    h.apply(&rival()?).await?;
    wait_conflict(&h, "game-rival").await?;
    let events = summary(&h.events("game-rival").await?);
    ensure!(
        events
            .iter()
            .any(|e| e.starts_with("Warning Conflict") && e.contains("\"game\"")),
        "{events:#?}"
    );
    // Through a few drift checks of the others: nothing written on the rival's behalf.
    let c = h
        .wait_counters("three drift checks of the NSG and the route table", |c| {
            c.get("GET", NSG_TYPE) >= 3 && c.get("GET", ROUTE_TABLE_TYPE) >= 3
        })
        .await?;
    assert_eq!(writes(&c), 0, "{c:#?}");
    assert_eq!(pool_ports(&pool(&h, "game")?), game_ports);
    assert_eq!(
        json_diff(&before, &comparable_state(&h.sim.snapshot()?)),
        Vec::<String>::new()
    );
    h.wait_ready("game").await?;

    // Deleting it leaves the pool, the NSG and everything else as the older object keeps them.
    h.delete("game-rival").await?;
    h.wait_gone("game-rival").await?;
    let c = h.sim.counters();
    assert_eq!(writes(&c), 0, "{c:#?}");
    assert_eq!(
        json_diff(&before, &comparable_state(&h.sim.snapshot()?)),
        Vec::<String>::new()
    );
    h.wait_ready("game").await?;
    h.wait_ready("kubenet").await?;
    Ok(())
}

#[tokio::test]
async fn the_younger_object_takes_over_once_the_older_is_gone() -> Result<()> {
    let h = Harness::start().await?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    h.apply(&rival()?).await?;
    wait_conflict(&h, "game-rival").await?;

    h.delete("game").await?;
    h.wait_gone("game").await?;
    h.wait_ready("game-rival").await?;
    assert_eq!(
        pool_ports(&pool(&h, "game")?),
        ports(&[(7000, 7100, "UDP")])
    );
    let mine = named(&rules(&h, &byo_nsg_id())?, OWNED)
        .iter()
        .map(|r| r["properties"]["priority"].as_i64().unwrap_or_default())
        .collect::<Vec<_>>();
    ensure!(
        !mine.is_empty() && mine.iter().all(|p| (300..=399).contains(p)),
        "only the rival's rules are left: {mine:?}"
    );
    ensure!(
        routes(&h, &route_table_id())?
            .iter()
            .any(|r| r["properties"]["addressPrefix"] == "10.99.0.0/16"),
        "the rival's route is written"
    );
    Ok(())
}
