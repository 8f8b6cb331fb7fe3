//! Each resource kind through the trait: read-modify-write with If-Match, create-only,
//! deletes, agent pools and the VMSS public IP pager.

use super::support::*;

#[tokio::test]
async fn nsg_read_modify_write_with_if_match() {
    let Env { sim, arm } = env();
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let etag = read.etag.clone().expect("armsim returns an etag");
    let mut nsg = read.resource.clone();
    nsg.properties.as_mut().unwrap().security_rules.push(rule(
        "poolnet-games-tcp",
        100,
        "40000-60000",
    ));
    let written = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap();
    settle(&arm, written).await;

    let after = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_ne!(after.etag.as_deref(), Some(etag.as_str()));
    let names = rule_names(&after.resource);
    assert!(
        names.contains(&"poolnet-games-tcp".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"k8s-azure-lb_allow_IPv4_80".to_string()),
        "the foreign rule survives: {names:?}"
    );

    let ours = arm.stats().snapshot();
    assert_eq!(
        ours.count(CallMethod::Get, ResourceKind::NetworkSecurityGroup),
        2
    );
    assert_eq!(
        ours.count(CallMethod::Put, ResourceKind::NetworkSecurityGroup),
        1
    );
    let theirs = sim.counters();
    assert_eq!(
        theirs.get("PUT", "Microsoft.Network/networkSecurityGroups"),
        1
    );
    assert_eq!(
        theirs.get("GET", "Microsoft.Network/networkSecurityGroups"),
        2
    );
}

#[tokio::test]
async fn stale_etag_is_a_retryable_precondition_failure() {
    let Env { sim, arm } = env();
    // Another writer (AKS, the cloud controller) changes the NSG right after our read.
    sim.faults().add_other_writer(OtherWriter::new(
        &nsg_id().to_string(),
        1,
        OtherWriterAction::Touch,
    ));
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let nsg = with_rule(&read.resource, rule("poolnet-a", 101, "443"));
    let err = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArmError::PreconditionFailed { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.status(), Some(412));
    assert_eq!(err.metric_label(), "precondition_failed");
    assert!(err.resource_id().ends_with("/byo-nsg"));
    assert_eq!(arm.stats().snapshot().precondition_failed, 1);

    // Re-read and retry succeeds, and the other writer's change is kept.
    let reread = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_ne!(reread.etag, read.etag);
    let nsg = with_rule(&reread.resource, rule("poolnet-a", 101, "443"));
    let lro = arm
        .put_nsg(&nsg_id(), &nsg, reread.precondition())
        .await
        .unwrap();
    settle(&arm, lro).await;
    assert!(
        rule_names(&arm.get_nsg(&nsg_id()).await.unwrap().resource).contains(&"poolnet-a".into())
    );
}

#[tokio::test]
async fn asg_lifecycle_with_tags_and_create_only() {
    let Env { sim: _sim, arm } = env();
    let id = ResourceId::network(SUB, RG, "applicationSecurityGroups", "poolnet-games").unwrap();
    assert!(arm.get_asg(&id).await.optional().unwrap().is_none());

    let mut asg = ApplicationSecurityGroup::new();
    asg.resource.location = Some("westeurope".into());
    asg.resource.tags = Some(serde_json::json!({"poolnet.io/owner": "default/games"}));
    let lro = arm
        .put_asg(&id, &asg, Precondition::IfNoneMatch)
        .await
        .unwrap();
    settle(&arm, lro).await;

    let read = arm.get_asg(&id).await.unwrap();
    assert_eq!(
        read.resource.resource.tags.as_ref().unwrap()["poolnet.io/owner"],
        "default/games"
    );
    // Create-only on an existing resource is refused.
    let err = arm
        .put_asg(&id, &asg, Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArmError::PreconditionFailed { .. }),
        "{err:?}"
    );

    settle(&arm, arm.delete_asg(&id).await.unwrap()).await;
    assert!(matches!(
        arm.get_asg(&id).await,
        Err(ArmError::NotFound { .. })
    ));
    // Deleting what is gone is a success.
    assert_eq!(arm.delete_asg(&id).await.unwrap(), Lro::Done(()));
}

#[tokio::test]
async fn public_ip_prefix_lifecycle() {
    let Env { sim: _sim, arm } = env();
    let id = ResourceId::network(SUB, RG, "publicIPPrefixes", "poolnet-games").unwrap();
    let mut prefix = PublicIpPrefix::new();
    prefix.resource.location = Some("westeurope".into());
    prefix.sku = Some(PublicIpPrefixSku {
        name: Some(public_ip_prefix_sku::Name::Standard),
        tier: None,
    });
    let mut props = PublicIpPrefixPropertiesFormat::new();
    props.prefix_length = Some(30);
    props.ip_tags = vec![IpTag {
        ip_tag_type: Some("RoutingPreference".into()),
        tag: Some("Internet".into()),
    }];
    prefix.properties = Some(props);
    let lro = arm
        .put_public_ip_prefix(&id, &prefix, Precondition::IfNoneMatch)
        .await
        .unwrap();
    settle(&arm, lro).await;

    let read = arm.get_public_ip_prefix(&id).await.unwrap();
    let props = read.resource.properties.as_ref().unwrap();
    assert_eq!(props.prefix_length, Some(30));
    assert!(
        props
            .ip_prefix
            .as_deref()
            .is_some_and(|p| p.ends_with("/30"))
    );
    assert_eq!(props.ip_tags[0].tag.as_deref(), Some("Internet"));

    settle(&arm, arm.delete_public_ip_prefix(&id).await.unwrap()).await;
    assert!(
        arm.get_public_ip_prefix(&id)
            .await
            .optional()
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn route_table_read_modify_write() {
    let Env { sim, arm } = env();
    let read = arm.get_route_table(&rt_id()).await.unwrap();
    let mut table: RouteTable = read.resource.clone();
    let mut route = Route::new();
    route.name = Some("poolnet-onprem".into());
    let mut props = RoutePropertiesFormat::new(RouteNextHopType::VirtualAppliance);
    props.address_prefix = Some("192.168.0.0/16".into());
    props.next_hop_ip_address = Some("10.240.0.4".into());
    route.properties = Some(props);
    table.properties.as_mut().unwrap().routes.push(route);
    settle(
        &arm,
        arm.put_route_table(&rt_id(), &table, read.precondition())
            .await
            .unwrap(),
    )
    .await;
    let after = arm.get_route_table(&rt_id()).await.unwrap();
    let names: Vec<_> = after
        .resource
        .properties
        .as_ref()
        .unwrap()
        .routes
        .iter()
        .filter_map(|r| r.name.clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The stale etag from before is refused.
    let err = arm
        .put_route_table(&rt_id(), &table, read.precondition())
        .await
        .unwrap_err();
    assert!(matches!(err, ArmError::PreconditionFailed { .. }));
    assert_eq!(
        sim.counters().get("PUT", "Microsoft.Network/routeTables"),
        2
    );
}

#[tokio::test]
async fn agent_pool_put_keeps_fields_poolnet_does_not_model() {
    let Env { sim, arm } = env();
    let read = arm.get_agent_pool(&pool_id("games")).await.unwrap();
    let props = &read.resource.properties;
    assert_eq!(props.count, Some(3));
    assert_eq!(props.enable_node_public_ip, Some(true));
    assert_eq!(props.mode.as_deref(), Some("User"));
    let unknown_before: Vec<String> = props.extra.keys().cloned().collect();
    assert!(
        unknown_before.iter().any(|k| k == "nodeImageVersion"),
        "{unknown_before:?}"
    );

    let mut pool = read.resource.clone();
    pool.network_profile_mut().allowed_host_ports = Some(vec![PortRange {
        port_start: Some(40000),
        port_end: Some(40100),
        protocol: Some("TCP".into()),
        extra: Default::default(),
    }]);
    let lro = arm
        .put_agent_pool(&pool_id("games"), &pool, read.precondition())
        .await
        .unwrap();
    settle(&arm, lro).await;

    let after = arm.get_agent_pool(&pool_id("games")).await.unwrap();
    let ports = after
        .resource
        .properties
        .network_profile
        .as_ref()
        .and_then(|n| n.allowed_host_ports.clone())
        .unwrap();
    assert_eq!(ports[0].port_start, Some(40000));
    assert_eq!(ports[0].port_end, Some(40100));
    assert_eq!(
        after.resource.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    for k in &unknown_before {
        assert!(after.resource.properties.extra.contains_key(k), "lost {k}");
    }
    let raw = sim.resource(&pool_id("games").to_string()).unwrap();
    assert_eq!(raw["properties"]["orchestratorVersion"], "1.30.3");

    let err = arm
        .put_agent_pool(&pool_id("games"), &pool, read.precondition())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArmError::PreconditionFailed { .. }),
        "{err:?}"
    );
    assert_eq!(
        arm.stats()
            .snapshot()
            .count(CallMethod::Put, ResourceKind::AgentPool),
        2
    );
}

fn host_ports(pool: &poolnet_arm::AgentPool) -> Option<Vec<PortRange>> {
    pool.properties
        .network_profile
        .as_ref()
        .and_then(|n| n.allowed_host_ports.clone())
}

/// The pool's eTag is the body's `properties.eTag` (AKS from 2024-10-01, which armsim answers as
/// AKS does): poolnet's read-modify-write PUT after someone else scaled the pool is refused with
/// `PreconditionFailed` instead of setting the count back, and the re-read retry keeps it.
#[tokio::test]
async fn agent_pool_put_after_a_foreign_change_is_precondition_failed() {
    let Env { sim, arm } = env();
    let id = pool_id("games");
    let read = arm.get_agent_pool(&id).await.unwrap();

    // Someone else (the portal, the cluster autoscaler, another tool) scales the pool.
    let theirs = client_for(&sim, BudgetConfig::default());
    let mut scaled = theirs.get_agent_pool(&id).await.unwrap();
    scaled.resource.properties.count = Some(5);
    let lro = theirs
        .put_agent_pool(&id, &scaled.resource, scaled.precondition())
        .await
        .unwrap();
    settle(&theirs, lro).await;

    // poolnet's write built on its earlier read: refused, the foreign change stays.
    let ports = vec![PortRange {
        port_start: Some(40000),
        port_end: Some(40100),
        protocol: Some("TCP".into()),
        extra: Default::default(),
    }];
    let mut mine = read.resource.clone();
    mine.network_profile_mut().allowed_host_ports = Some(ports.clone());
    let err = arm
        .put_agent_pool(&id, &mine, read.precondition())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArmError::PreconditionFailed { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let now = arm.get_agent_pool(&id).await.unwrap();
    assert_eq!(now.resource.properties.count, Some(5));
    assert_eq!(host_ports(&now.resource), None);

    // What the If-Match carried: the body's properties.eTag, which moved with the foreign write.
    let etag = read.etag.clone().expect("AKS returns the pool's eTag");
    assert_eq!(
        read.resource.properties.e_tag.as_deref(),
        Some(etag.as_str())
    );
    assert_eq!(read.precondition(), Precondition::IfMatch(etag.clone()));
    assert_ne!(now.etag.as_deref(), Some(etag.as_str()));

    // Re-read and retry, as the callers do: both changes hold.
    let mut retry = now.resource.clone();
    retry.network_profile_mut().allowed_host_ports = Some(ports.clone());
    let lro = arm
        .put_agent_pool(&id, &retry, now.precondition())
        .await
        .unwrap();
    settle(&arm, lro).await;
    let done = arm.get_agent_pool(&id).await.unwrap();
    assert_eq!(done.resource.properties.count, Some(5));
    assert_eq!(host_ports(&done.resource), Some(ports));
}

#[tokio::test]
async fn vmss_public_ips_follow_next_link() {
    let Env { sim, arm } = env_with(
        SimConfig {
            paging: armsim::PagingConfig { page_size: 2 },
            ..SimConfig::default()
        },
        BudgetConfig::default(),
    );
    let vmss = ResourceId::vmss(SUB, NODE_RG, vmss_name("games")).unwrap();
    let ips = arm.list_vmss_public_ips(&vmss).await.unwrap();
    assert_eq!(ips.len(), 3);
    assert!(ips.iter().all(|ip| {
        ip.properties
            .as_ref()
            .and_then(|p| p.ip_address.as_ref())
            .is_some()
    }));
    assert_eq!(
        arm.stats()
            .snapshot()
            .count(CallMethod::Get, ResourceKind::VmssPublicIps),
        2,
        "3 IPs in pages of 2"
    );
    assert_eq!(sim.counters().method_total("GET"), 2);
}
