//! The real client against armsim over HTTPS on 127.0.0.1: every trait method, If-Match, LROs,
//! throttling and error classification.

use std::time::Duration;

use armsim::{
    FaultAction, FaultRule, Fixture, LroConfig, OtherWriter, OtherWriterAction, RunningSim,
    SimConfig, ThrottleConfig,
};
use poolnet_arm::models::{
    ApplicationSecurityGroup, IpTag, PublicIpPrefix, PublicIpPrefixPropertiesFormat,
    PublicIpPrefixSku, Route, RouteNextHopType, RoutePropertiesFormat, RouteTable, SecurityRule,
    SecurityRuleAccess, SecurityRuleDirection, SecurityRulePropertiesFormat, public_ip_prefix_sku,
    security_rule_properties_format::Protocol,
};
use poolnet_arm::{
    ArmClient, ArmConfig, ArmError, ArmNetwork, BudgetConfig, CallMethod, CredentialConfig, Lro,
    NotFoundExt, OperationHandle, PortRange, Precondition, ResourceId, ResourceKind, Secret,
    ThrottleSource, Url,
};

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const RG: &str = "rg-poolnet";
const NODE_RG: &str = "MC_rg-poolnet_aks_westeurope";

fn fixture() -> Fixture {
    let yaml = format!(
        r#"
subscriptions:
  - id: {SUB}
    resourceGroups:
      - name: {RG}
        location: westeurope
resources:
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks
    location: westeurope
    properties:
      kubernetesVersion: "1.30.3"
      agentPoolProfiles:
        - name: system
          count: 1
          vmSize: Standard_D2s_v5
          osType: Linux
          mode: System
        - name: games
          count: 3
          vmSize: Standard_D4s_v5
          osType: Linux
          mode: User
          enableNodePublicIP: true
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/byo-nsg
    location: westeurope
    properties:
      securityRules:
        - name: k8s-azure-lb_allow_IPv4_80
          properties:
            protocol: Tcp
            access: Allow
            direction: Inbound
            priority: 500
            sourceAddressPrefix: Internet
            sourcePortRange: "*"
            destinationAddressPrefix: "*"
            destinationPortRange: "80"
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/routeTables/byo-rt
    location: westeurope
    properties:
      routes:
        - name: default
          properties:
            addressPrefix: 0.0.0.0/0
            nextHopType: Internet
"#
    );
    Fixture::from_yaml(&yaml).expect("test fixture parses")
}

struct Env {
    sim: RunningSim,
    arm: ArmClient,
}

fn env_with(config: SimConfig, budget: BudgetConfig) -> Env {
    let sim = armsim::start(
        SimConfig {
            seed: Some(fixture()),
            tls: true,
            ..config
        },
        "127.0.0.1:0".parse().expect("loopback address"),
    )
    .expect("armsim starts");
    let mut config = ArmConfig::new(Url::parse(&sim.base_url()).expect("armsim URL"));
    config.transport.extra_ca_pem = sim.ca_pem();
    config.budget = budget;
    let arm = ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("armsim-token")),
    )
    .expect("client builds");
    Env { sim, arm }
}

fn env() -> Env {
    env_with(SimConfig::default(), BudgetConfig::default())
}

fn nsg_id() -> ResourceId {
    ResourceId::network(SUB, RG, "networkSecurityGroups", "byo-nsg").unwrap()
}

fn rt_id() -> ResourceId {
    ResourceId::network(SUB, RG, "routeTables", "byo-rt").unwrap()
}

fn pool_id(pool: &str) -> ResourceId {
    ResourceId::agent_pool(SUB, RG, "aks", pool).unwrap()
}

/// AKS names a pool's scale set `aks-<pool>-<8 digits>-vmss`, the digits a hash of the cluster
/// ID; armsim uses FNV-1a of the lower-cased ID so fixtures can name it.
fn vmss_name(pool: &str) -> String {
    let cluster = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks"
    );
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster.to_ascii_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("aks-{pool}-{:08}-vmss", h % 100_000_000)
}

fn rule(name: &str, priority: i32, port: &str) -> SecurityRule {
    let mut props = SecurityRulePropertiesFormat::new(
        Protocol::Tcp,
        SecurityRuleAccess::Allow,
        priority,
        SecurityRuleDirection::Inbound,
    );
    props.source_address_prefix = Some("Internet".into());
    props.source_port_range = Some("*".into());
    props.destination_address_prefix = Some("*".into());
    props.destination_port_range = Some(port.into());
    let mut r = SecurityRule::new();
    r.name = Some(name.into());
    r.properties = Some(props);
    r
}

/// The NSG with one more security rule.
fn with_rule(
    nsg: &poolnet_arm::models::NetworkSecurityGroup,
    rule: SecurityRule,
) -> poolnet_arm::models::NetworkSecurityGroup {
    let mut nsg = nsg.clone();
    nsg.properties
        .get_or_insert_with(Default::default)
        .security_rules
        .push(rule);
    nsg
}

/// Waits for a write that may have been accepted asynchronously.
async fn settle<T>(arm: &dyn ArmNetwork, lro: Lro<T>) {
    if let Lro::Pending(handle) = lro {
        arm.wait(handle, Duration::from_secs(10))
            .await
            .expect("operation completes");
    }
}

fn rule_names(nsg: &poolnet_arm::models::NetworkSecurityGroup) -> Vec<String> {
    nsg.properties
        .as_ref()
        .map(|p| {
            p.security_rules
                .iter()
                .filter_map(|r| r.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

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
async fn lro_pending_then_poll_then_done() {
    let Env { sim, arm } = env();
    sim.set_lro(LroConfig {
        network_ms: 1000,
        aks_ms: 1000,
        retry_after_secs: 0,
    });
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let nsg = with_rule(&read.resource, rule("poolnet-lro", 102, "8443"));
    let lro = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("a 1 s operation must come back pending");
    };
    assert_eq!(arm.stats().snapshot().lro_pending, 1);

    // The controller stores the handle and a later reconcile picks it up.
    let stored = serde_json::to_string(&handle).unwrap();
    let handle: OperationHandle = serde_json::from_str(&stored).unwrap();
    assert!(matches!(arm.poll(&handle).await.unwrap(), Lro::Pending(_)));
    let during = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_eq!(
        during
            .resource
            .properties
            .as_ref()
            .and_then(|p| p.provisioning_state.as_ref())
            .map(|s| format!("{s:?}")),
        Some("Updating".to_string())
    );

    arm.wait(handle.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(arm.poll(&handle).await.unwrap(), Lro::Done(()));
    let after = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_eq!(
        after
            .resource
            .properties
            .as_ref()
            .and_then(|p| p.provisioning_state.as_ref())
            .map(|s| format!("{s:?}")),
        Some("Succeeded".to_string())
    );

    // `wait` with too short a deadline hands the operation back instead of blocking.
    let lro = arm
        .put_nsg(&nsg_id(), &after.resource, after.precondition())
        .await
        .unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("expected pending");
    };
    let err = arm
        .wait(handle, Duration::from_millis(50))
        .await
        .unwrap_err();
    let ArmError::OperationTimeout { handle, .. } = err else {
        panic!("expected a timeout, got {err:?}");
    };
    arm.wait(*handle, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn failed_operations_carry_arm_codes() {
    let Env { sim, arm } = env();
    sim.set_lro(LroConfig {
        network_ms: 100,
        aks_ms: 100,
        retry_after_secs: 0,
    });
    sim.faults().add_rule(
        FaultRule::new(FaultAction::FailOperation {
            code: "CanceledAndSupersededDueToAnotherOperation".into(),
            message: Some("superseded".into()),
        })
        .method("PUT")
        .resource_type("applicationSecurityGroups")
        .count(1),
    );
    let id = ResourceId::network(SUB, RG, "applicationSecurityGroups", "asg-x").unwrap();
    let mut asg = ApplicationSecurityGroup::new();
    asg.resource.location = Some("westeurope".into());
    let lro = arm.put_asg(&id, &asg, Precondition::None).await.unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("expected pending");
    };
    let err = arm.wait(handle, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ArmError::OperationFailed { .. }), "{err:?}");
    assert_eq!(
        err.code(),
        Some("CanceledAndSupersededDueToAnotherOperation")
    );
    assert!(err.is_retryable());
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
        unknown_before.iter().any(|k| k == "orchestratorVersion"),
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

#[tokio::test]
async fn server_throttling_is_respected_without_resending() {
    let Env { sim, arm } = env();
    sim.faults().add_rule(
        FaultRule::new(FaultAction::Throttle {
            retry_after_secs: 1,
        })
        .method("GET")
        .count(1),
    );
    let err = arm.get_nsg(&nsg_id()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ArmError::Throttled {
                origin: ThrottleSource::Server,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retryable());
    let sent = sim.counters().total;

    // Inside Retry-After the budget answers for ARM, for reads and writes of that subscription.
    let err = arm.get_route_table(&rt_id()).await.unwrap_err();
    assert!(matches!(
        err,
        ArmError::Throttled {
            origin: ThrottleSource::Budget,
            ..
        }
    ));
    assert!(err.retry_after().unwrap() <= Duration::from_secs(1));
    assert_eq!(sim.counters().total, sent, "nothing was sent");

    tokio::time::sleep(err.retry_after().unwrap()).await;
    arm.get_nsg(&nsg_id()).await.unwrap();
    let stats = arm.stats().snapshot();
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.throttled_by_budget, 1);
}

#[tokio::test]
async fn budget_stops_before_arm_throttles() {
    let Env { sim, arm } = env_with(
        SimConfig::default(),
        BudgetConfig {
            read_capacity: 20,
            read_refill_per_sec: 1.0,
            read_reserve: 5,
            // Refuse instead of waiting for the refill.
            max_wait: Duration::ZERO,
            ..BudgetConfig::default()
        },
    );
    sim.set_throttling(ThrottleConfig {
        enabled: true,
        read_capacity: 20,
        read_refill_per_sec: 1.0,
        write_capacity: 200,
        write_refill_per_sec: 10.0,
    });
    let mut refused = None;
    for _ in 0..40 {
        match arm.get_nsg(&nsg_id()).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the budget refuses before 40 reads");
    assert!(
        matches!(
            refused,
            ArmError::Throttled {
                origin: ThrottleSource::Budget,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(sim.counters().throttled, 0, "ARM never had to throttle");
    let sent = arm.stats().snapshot().total();
    // 20 in the bucket, 5 kept in reserve; refill while the loop runs may add a few.
    assert!(
        (14..=25).contains(&sent),
        "about 20 - 5 reads went out: {sent}"
    );
}

#[tokio::test]
async fn calls_wait_for_the_budget_to_refill_instead_of_failing() {
    let Env { sim, arm } = env_with(
        SimConfig::default(),
        BudgetConfig {
            read_capacity: 20,
            read_refill_per_sec: 20.0,
            read_reserve: 5,
            max_wait: Duration::from_secs(2),
            ..BudgetConfig::default()
        },
    );
    sim.set_throttling(ThrottleConfig {
        enabled: true,
        read_capacity: 20,
        read_refill_per_sec: 20.0,
        write_capacity: 200,
        write_refill_per_sec: 10.0,
    });
    let started = std::time::Instant::now();
    for i in 0..40 {
        arm.get_nsg(&nsg_id())
            .await
            .unwrap_or_else(|e| panic!("read {i} failed instead of waiting: {e}"));
    }
    let stats = arm.stats().snapshot();
    assert_eq!(sim.counters().throttled, 0, "ARM never had to throttle");
    assert_eq!(stats.throttled_by_budget, 0, "no call gave up");
    assert!(stats.budget_waits > 0, "some calls waited: {stats:?}");
    // 15 usable at once, the other 25 at 20/s: about a second and a quarter.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the refill rate paced the reads: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn azure_error_bodies_are_classified() {
    let Env { sim, arm } = env();

    // 400 from ARM's own validation: two rules with the same priority and direction.
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let mut nsg = read.resource.clone();
    let rules = &mut nsg.properties.as_mut().unwrap().security_rules;
    rules.push(rule("poolnet-a", 200, "81"));
    rules.push(rule("poolnet-b", 200, "82"));
    let err = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    assert_eq!(err.code(), Some("SecurityRuleConflict"));
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "bad_request");

    let missing = ResourceId::network(SUB, RG, "networkSecurityGroups", "nope").unwrap();
    let err = arm.get_nsg(&missing).await.unwrap_err();
    assert!(matches!(err, ArmError::NotFound { .. }), "{err:?}");
    assert!(!err.is_retryable());

    let cases = [
        (409, "AnotherOperationInProgress", true, "another_operation"),
        (
            429,
            "RetryableErrorDueToAnotherOperation",
            true,
            "another_operation",
        ),
        (403, "AuthorizationFailed", false, "forbidden"),
        (500, "InternalServerError", true, "server_error"),
    ];
    for (status, code, retryable, label) in cases {
        sim.faults().clear();
        sim.faults().add_rule(
            FaultRule::new(FaultAction::Error {
                status,
                code: code.into(),
                message: None,
            })
            .method("GET")
            .resource_type("routeTables")
            .count(1),
        );
        let err = arm.get_route_table(&rt_id()).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err:?}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.is_retryable(), retryable, "{code}");
        assert_eq!(err.metric_label(), label, "{code}");
    }

    sim.faults().clear();
    sim.faults()
        .add_rule(FaultRule::new(FaultAction::Drop).method("GET").count(1));
    let err = arm.get_route_table(&rt_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(arm.stats().snapshot().transport_errors, 1);
}

#[tokio::test]
async fn tls_is_verified_and_tokens_are_checked() {
    let sim = armsim::start(
        SimConfig {
            seed: Some(fixture()),
            tls: true,
            auth: armsim::AuthConfig {
                static_token: Some("the-right-token".into()),
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let endpoint = Url::parse(&sim.base_url()).unwrap();

    // Without armsim's CA the server certificate is not trusted.
    let untrusting = ArmClient::new(
        ArmConfig::new(endpoint.clone()),
        CredentialConfig::Static(Secret::new("the-right-token")),
    )
    .unwrap();
    let err = untrusting.get_nsg(&nsg_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(sim.counters().total, 0);

    let mut config = ArmConfig::new(endpoint);
    config.transport.extra_ca_pem = sim.ca_pem();
    let wrong = ArmClient::new(
        config.clone(),
        CredentialConfig::Static(Secret::new("a-wrong-token")),
    )
    .unwrap();
    let err = wrong.get_nsg(&nsg_id()).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert_eq!(err.metric_label(), "unauthorized");

    let right = ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("the-right-token")),
    )
    .unwrap();
    right.get_nsg(&nsg_id()).await.unwrap();
}

#[tokio::test]
async fn wrong_ids_and_foreign_urls_are_refused_before_sending() {
    let Env { sim, arm } = env();
    let before = sim.counters().total;
    let err = arm.get_nsg(&rt_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::InvalidId(_)), "{err:?}");

    let handle = OperationHandle {
        resource_id: nsg_id().to_string(),
        method: "PUT".into(),
        monitor: poolnet_arm::Monitor::AsyncOperation,
        url: "https://127.0.0.2:9/subscriptions/x/providers/Microsoft.Network/locations/westeurope/operations/1".into(),
        retry_after_secs: 0,
    };
    let err = arm.poll(&handle).await.unwrap_err();
    assert!(err.to_string().contains("not the ARM endpoint"), "{err}");
    assert_eq!(sim.counters().total, before);
}
