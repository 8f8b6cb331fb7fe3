//! The permission table (`poolnet_arm::permissions`, the source of docs/azure-role.json) covers
//! exactly what the client sends: every trait method is driven against armsim, long-running
//! operations included, and each request must have found its row, and each row a request.

use poolnet_arm::Monitor;
use poolnet_arm::permissions::PERMISSIONS;

use super::support::*;

/// Waits for a pending operation, and also asks its `Location` monitor (the fallback when ARM
/// sends no `Azure-AsyncOperation`), so both monitor kinds are sent.
async fn settle_both_monitors<T>(arm: &ArmClient, lro: Lro<T>) {
    let Lro::Pending(handle) = lro else {
        panic!("armsim was set to answer writes with a long-running operation");
    };
    let by_location = OperationHandle {
        monitor: Monitor::Location,
        url: handle.url.replace("/operations/", "/operationResults/"),
        ..handle.clone()
    };
    arm.wait(handle, Duration::from_secs(10)).await.unwrap();
    arm.poll(&by_location).await.unwrap();
}

#[tokio::test]
async fn every_request_has_its_permission_and_every_permission_a_request() {
    let Env { sim, arm } = env();
    sim.set_lro(LroConfig {
        network_ms: 300,
        aks_ms: 300,
        retry_after_secs: 0,
    });

    let nsg = arm.get_nsg(&nsg_id()).await.unwrap();
    let lro = arm
        .put_nsg(
            &nsg_id(),
            &with_rule(&nsg.resource, rule("poolnet-perm", 110, "443")),
            nsg.precondition(),
        )
        .await
        .unwrap();
    settle_both_monitors(&arm, lro).await;

    let asg_id = ResourceId::network(SUB, RG, "applicationSecurityGroups", "poolnet-perm").unwrap();
    let mut asg = ApplicationSecurityGroup::new();
    asg.resource.location = Some("westeurope".into());
    settle(
        &arm,
        arm.put_asg(&asg_id, &asg, Precondition::IfNoneMatch)
            .await
            .unwrap(),
    )
    .await;
    arm.get_asg(&asg_id).await.unwrap();
    settle(&arm, arm.delete_asg(&asg_id).await.unwrap()).await;

    let prefix_id = ResourceId::network(SUB, RG, "publicIPPrefixes", "poolnet-perm").unwrap();
    let mut prefix = PublicIpPrefix::new();
    prefix.resource.location = Some("westeurope".into());
    prefix.sku = Some(PublicIpPrefixSku {
        name: Some(public_ip_prefix_sku::Name::Standard),
        tier: None,
    });
    let mut props = PublicIpPrefixPropertiesFormat::new();
    props.prefix_length = Some(31);
    prefix.properties = Some(props);
    let lro = arm
        .put_public_ip_prefix(&prefix_id, &prefix, Precondition::IfNoneMatch)
        .await
        .unwrap();
    settle(&arm, lro).await;
    arm.get_public_ip_prefix(&prefix_id).await.unwrap();
    settle(&arm, arm.delete_public_ip_prefix(&prefix_id).await.unwrap()).await;

    let table = arm.get_route_table(&rt_id()).await.unwrap();
    let lro = arm
        .put_route_table(&rt_id(), &table.resource, table.precondition())
        .await
        .unwrap();
    settle(&arm, lro).await;

    let vmss = ResourceId::vmss(SUB, NODE_RG, vmss_name("games")).unwrap();
    arm.list_vmss_public_ips(&vmss).await.unwrap();
    let cluster = pool_id("games").parent().unwrap();
    let read = arm.get_managed_cluster(&cluster).await.unwrap().resource;
    let profiles = read.properties.agent_pool_profiles.unwrap_or_default();
    assert!(
        profiles
            .iter()
            .any(|p| p.name.as_deref() == Some("games") && p.properties.count == Some(3)),
        "{profiles:?}"
    );
    let vnet = ResourceId::network(SUB, RG, "virtualNetworks", "byo-vnet").unwrap();
    let vnet = arm.get_virtual_network(&vnet).await.unwrap().resource;
    let space = vnet.properties.and_then(|p| p.address_space);
    assert_eq!(
        space.map(|a| a.address_prefixes),
        Some(vec!["10.224.0.0/12".to_string()])
    );
    let pool = arm.get_agent_pool(&pool_id("games")).await.unwrap();
    let lro = arm
        .put_agent_pool(&pool_id("games"), &pool.resource, pool.precondition())
        .await
        .unwrap();
    settle_both_monitors(&arm, lro).await;
    // A pool created from a template, then deleted (poolnet deletes only pools it created).
    let fresh: poolnet_arm::AgentPool = serde_json::from_value(serde_json::json!({
        "properties": {"count": 1, "vmSize": "Standard_D2s_v5", "mode": "User"}
    }))
    .unwrap();
    let lro = arm
        .put_agent_pool(&pool_id("fresh"), &fresh, Precondition::IfNoneMatch)
        .await
        .unwrap();
    settle(&arm, lro).await;
    settle(
        &arm,
        arm.delete_agent_pool(&pool_id("fresh")).await.unwrap(),
    )
    .await;

    // A preview feature's registration (the fixture registers none).
    assert_eq!(
        arm.get_feature_state(
            SUB,
            "Microsoft.ContainerService",
            "PodHostPortAutoAssignPreview"
        )
        .await
        .unwrap(),
        "NotRegistered"
    );

    // The one request the operator never sends (the role leaves it out), for completeness.
    let nsg2 = ResourceId::network(SUB, RG, "networkSecurityGroups", "poolnet-perm").unwrap();
    settle(&arm, arm.delete_nsg(&nsg2).await.unwrap()).await;

    assert_eq!(
        arm.stats().unclassified(),
        0,
        "the client sent a request poolnet_arm::permissions has no row for"
    );
    let unused: Vec<&str> = arm
        .stats()
        .by_permission()
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(p, _)| p.action)
        .collect();
    assert!(
        unused.is_empty(),
        "rows no request used (remove them, or drive the call here): {unused:?}"
    );
    assert_eq!(arm.stats().by_permission().len(), PERMISSIONS.len());
}

#[tokio::test]
async fn a_forbidden_answer_names_the_missing_action() {
    let Env { sim, arm } = env();
    sim.faults().add_rule(
        FaultRule::new(FaultAction::Error {
            status: 403,
            code: "AuthorizationFailed".into(),
            message: Some("The client does not have authorization to perform action".into()),
        })
        .method("PUT")
        .resource_type("networkSecurityGroups"),
    );
    let nsg = arm.get_nsg(&nsg_id()).await.unwrap();
    let err = arm
        .put_nsg(&nsg_id(), &nsg.resource, nsg.precondition())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Microsoft.Network/networkSecurityGroups/write")
            && text.contains("docs/azure-role.json"),
        "{text}"
    );
}
