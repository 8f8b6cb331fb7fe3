//! Declarative node pools (issue 16 item 1, docs/node-pools.md): a pool that does not exist is
//! created from `spec.nodePool.template` with its node public IP settings, and deleted with
//! its object; a pool poolnet found is never deleted, and what AKS fixed at its creation is
//! reported with the command that would recreate it.

use super::support::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::PostParams;
use poolnet_tests::operator::{agent_pool_id, pool_node};

fn template_npn(
    name: &str,
    pool: &str,
    template: Value,
    public_ip: Value,
) -> Result<NodePoolNetwork> {
    let mut npn = sample("game-pool.yaml")?;
    npn.metadata.name = Some(name.into());
    npn.spec.node_pool.agent_pool_id = agent_pool_id(pool);
    npn.spec.node_pool.template = Some(serde_json::from_value(template)?);
    npn.spec.node_public_ip = Some(serde_json::from_value(public_ip)?);
    npn.spec.allowed_host_ports = vec!["7000-7100/udp".into()];
    npn.spec.application_security_groups = None;
    npn.spec.network_security_groups[0].priorities.from = 300;
    npn.spec.network_security_groups[0].priorities.to = 399;
    npn.spec.host_port_policies = None;
    Ok(npn)
}

fn prefix_id(name: &str) -> String {
    network_id(RG, "publicIPPrefixes", name)
}

#[tokio::test]
async fn a_pool_is_created_from_the_template_with_its_node_public_ips_and_deleted_with_its_object()
-> Result<()> {
    let h = Harness::start().await?;
    let initial = comparable_state(&h.sim.snapshot()?);
    let seen = SeenReasons::watch(&h, "arena");
    let npn = template_npn(
        "arena",
        "arena",
        json!({"vmSize": "Standard_D4s_v5", "count": 3, "maxSurge": "1", "nodeLabels": {"team": "arena"}}),
        json!({
            "prefix": {"managed": {"name": "pipp-arena", "resourceGroup": RG, "location": "westeurope", "prefixLength": 30}},
            "ipTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}],
        }),
    )?;
    h.apply(&npn).await?;
    let created = h
        .wait_npn("arena", "the pool created", |n| {
            current(n)
                && condition(n, "AgentPoolReady").is_some_and(|c| c.status == "True")
                && n.status
                    .as_ref()
                    .and_then(|s| s.agent_pool.as_ref())
                    .is_some_and(|a| a.created)
        })
        .await?;
    let status = created.status.clone().unwrap_or_default();
    assert_eq!(
        status.owned.as_ref().and_then(|o| o.agent_pool.clone()),
        Some(agent_pool_id("arena")),
        "the record names the pool poolnet created"
    );
    assert!(
        seen.get().contains("AgentPoolReady=False/Progressing"),
        "{:?}",
        seen.get()
    );
    let pool = pool(&h, "arena")?;
    let props = &pool["properties"];
    assert_eq!(props["enableNodePublicIP"], true);
    assert_eq!(
        props["nodePublicIPPrefixID"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(prefix_id("pipp-arena").to_ascii_lowercase())
    );
    assert_eq!(
        props["networkProfile"]["nodePublicIPTags"],
        json!([{"ipTagType": "RoutingPreference", "tag": "Internet"}])
    );
    assert_eq!(pool_ports(&pool), ports(&[(7000, 7100, "UDP")]));
    assert_eq!(pool_asgs(&pool).len(), 1, "the managed ASG: {pool:#}");
    assert_eq!(props["count"], 3);
    assert_eq!(props["vmSize"], "Standard_D4s_v5");
    assert_eq!(props["upgradeSettings"]["maxSurge"], "1");
    assert_eq!(props["nodeLabels"]["team"], "arena");
    assert_eq!(props["tags"]["poolnet.dev/owner"], "NodePoolNetwork/arena");
    assert_eq!(
        props["tags"]["poolnet.dev/owner-uid"].as_str(),
        created.metadata.uid.as_deref()
    );

    // The pool's VMs join the cluster: their public IPs come from the prefix, with the tags.
    let nodes: Api<Node> = Api::all(h.env.client());
    for i in 0..3 {
        nodes
            .create(&PostParams::default(), &pool_node("arena", i))
            .await?;
    }
    let ready = h
        .wait_npn("arena", "three node IPs", |n| {
            current(n) && is_ready(n) && n.status.as_ref().is_some_and(|s| s.nodes.len() == 3)
        })
        .await?;
    let status = ready.status.clone().unwrap_or_default();
    let cidr: ipnet::Ipv4Net = status
        .public_ip_prefix
        .as_ref()
        .and_then(|p| p.cidr.as_deref())
        .context("the prefix's range")?
        .parse()?;
    assert_eq!(status.nodes.len(), 3, "{:?}", status.nodes);
    for n in &status.nodes {
        let ip: std::net::Ipv4Addr = n.public_ip.parse()?;
        assert!(cidr.contains(&ip), "{ip} outside {cidr}");
    }
    assert_eq!(
        condition(&ready, "NodeIPsReady").map(|c| c.reason.as_str()),
        Some("Reconciled")
    );
    // The invariant checker agrees: the created pool is recorded and tagged as arena's, and
    // nothing poolnet made is unrecorded.
    let snap = poolnet_check::shell::read(&h.env.client(), &h.arm, Vec::new()).await?;
    let report = poolnet_check::check(&snap, None, &poolnet_check::Options::default());
    assert!(
        report.violations.is_empty() && report.errors.is_empty(),
        "{}",
        poolnet_check::render::human(&report)
    );

    let events = summary(&h.events("arena").await?);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Normal AgentPoolCreated creating agent pool")),
        "{events:?}"
    );

    // Someone replaces the pool's tags (`az aks nodepool update --tags` replaces them all):
    // the pool stays the one poolnet made, confirmed by the earlier reads.
    let pool_arm = Harness::id(&agent_pool_id("arena"))?;
    let mut read = h.arm.get_agent_pool(&pool_arm).await?;
    read.resource
        .properties
        .extra
        .insert("tags".into(), json!({"team": "arena"}));
    let lro = h
        .arm
        .put_agent_pool(&pool_arm, &read.resource, read.precondition())
        .await?;
    settle(&h, lro).await?;
    h.npns()
        .patch(
            "arena",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_retag = h.wait_ready("arena").await?;
    assert!(
        after_retag
            .status
            .as_ref()
            .and_then(|s| s.agent_pool.as_ref())
            .is_some_and(|a| a.created),
        "still poolnet's pool: {:?}",
        after_retag.status
    );

    // Deletion removes the pool before the prefix and the ASG it uses: Azure is as before, and
    // the checker, told where the pool was (every object is gone), finds nothing stranded.
    h.delete("arena").await?;
    h.wait_gone("arena").await?;
    let snap =
        poolnet_check::shell::read(&h.env.client(), &h.arm, vec![agent_pool_id("arena")]).await?;
    let report = poolnet_check::check(&snap, None, &poolnet_check::Options::default());
    assert!(
        report.violations.is_empty(),
        "nothing stranded: {}",
        poolnet_check::render::human(&report)
    );
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&initial, &after), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn a_pool_poolnet_found_is_kept_and_what_aks_fixed_is_reported_with_the_command() -> Result<()>
{
    let h = Harness::start().await?;
    let initial = comparable_state(&h.sim.snapshot()?);

    // The fixture's pool game, with a template of another VM size and other IP tags: poolnet
    // did not create it, so it only reports what differs.
    let mut game = sample("game-pool.yaml")?;
    game.spec.node_pool.template = Some(serde_json::from_value(
        json!({"vmSize": "Standard_D8s_v5", "count": 3, "mode": "System"}),
    )?);
    if let Some(nip) = game.spec.node_public_ip.as_mut() {
        nip.ip_tags = Some(vec![poolnet_api::v1alpha1::IpTag {
            ip_tag_type: "FirstPartyUsage".into(),
            tag: "/NonProd".into(),
        }]);
    }
    // Another object whose pool would not fit in the shared prefix: pipp-game (/28) has 16
    // addresses, 3 taken by game's nodes; 12 nodes plus a 10% surge need 14.
    let tight = template_npn(
        "tight",
        "tight",
        json!({"vmSize": "Standard_D4s_v5", "autoscaling": {"minCount": 1, "maxCount": 12}}),
        json!({"prefix": {"existingId": prefix_id("pipp-game")}}),
    )?;
    // And an Observe object: it lists the pool it would create, and creates nothing.
    let mut observe = template_npn(
        "watch",
        "watch",
        json!({"vmSize": "Standard_D2s_v5", "count": 1}),
        json!({"enabled": true}),
    )?;
    observe.spec.reconcile_policy = ReconcilePolicy::Observe;
    observe.spec.network_security_groups.clear();
    h.apply(&game).await?;
    h.apply(&tight).await?;
    h.apply(&observe).await?;

    let game = h
        .wait_npn("game", "recreate reported", |n| {
            current(n)
                && condition(n, "AgentPoolReady")
                    .is_some_and(|c| c.reason == "RequiresNodePoolRecreate")
                && condition(n, "NodeIPsReady").is_some_and(|c| c.reason == "NodeIPsMismatch")
        })
        .await?;
    let agent = game
        .status
        .as_ref()
        .and_then(|s| s.agent_pool.clone())
        .context("agent pool status")?;
    assert!(!agent.created);
    assert!(
        agent
            .requires_recreate
            .iter()
            .any(|r| r == "vmSize is Standard_D4s_v5 on the pool but Standard_D8s_v5 in spec.nodePool.template"),
        "{:?}",
        agent.requires_recreate
    );
    let command = agent.recreate_command.clone().context("the command")?;
    assert!(
        command.starts_with("az aks nodepool add --subscription 00000000-1111-2222-3333-444444444444 --resource-group rg-poolnet-demo --cluster-name aks-demo --name game --mode System --os-type Linux --node-vm-size Standard_D8s_v5 --node-count 3")
            && command.contains("--enable-node-public-ip --node-public-ip-prefix-id /subscriptions/")
            && command.contains("--node-public-ip-tags FirstPartyUsage=/NonProd"),
        "{command}"
    );
    let message = &condition(&game, "AgentPoolReady")
        .context("condition")?
        .message;
    // With a template, poolnet creates the pool again itself once it is gone (owner-tagged,
    // so it deletes it later); the command stays in status for who wants another name.
    assert!(
        message.contains(
            "az aks nodepool delete; poolnet then creates it from spec.nodePool.template"
        ),
        "{message}"
    );
    let ips = &condition(&game, "NodeIPsReady")
        .context("condition")?
        .message;
    assert!(
        ips.contains("IP tags RoutingPreference=Internet (spec: FirstPartyUsage=/NonProd)"),
        "{ips}"
    );
    assert_eq!(
        kstatus_of(&game),
        KStatus::Failed,
        "Stalled: someone must act"
    );

    let tight = h
        .wait_npn("tight", "prefix too small", |n| {
            current(n)
                && condition(n, "AgentPoolReady").is_some_and(|c| c.reason == "PrefixTooSmall")
        })
        .await?;
    let message = &condition(&tight, "AgentPoolReady")
        .context("condition")?
        .message;
    assert!(
        message.contains("has 13 free address(es) (16 in all, 3 in use) but the pool needs 14: 12 node(s) at most plus 2 surge node(s)"),
        "{message}"
    );
    assert!(h.sim.resource(&agent_pool_id("tight")).is_none());

    let watch = h
        .wait_npn("watch", "observed", |n| {
            current(n) && condition(n, "AgentPoolReady").is_some_and(|c| c.reason == "ObserveOnly")
        })
        .await?;
    let pending = watch
        .status
        .as_ref()
        .map(|s| s.pending_changes.clone())
        .unwrap_or_default();
    let add = pending
        .iter()
        .find(|c| c.target == ChangeTarget::AgentPool)
        .context("the pool in pendingChanges")?;
    assert_eq!(add.action, ChangeAction::Add);
    assert!(
        add.fields
            .iter()
            .any(|f| f.field == "vmSize" && f.new.as_deref() == Some("Standard_D2s_v5")),
        "{add:?}"
    );
    assert!(h.sim.resource(&agent_pool_id("watch")).is_none());

    // Deleting them leaves Azure as it was (game's host ports and ASGs restored), and no pool
    // was ever created or deleted.
    for name in ["game", "tight", "watch"] {
        h.delete(name).await?;
    }
    for name in ["game", "tight", "watch"] {
        h.wait_gone(name).await?;
    }
    let after = comparable_state(&h.sim.snapshot()?);
    assert_eq!(json_diff(&initial, &after), Vec::<String>::new());
    assert_eq!(h.sim.counters().get("DELETE", AGENT_POOL_TYPE), 0);
    Ok(())
}
