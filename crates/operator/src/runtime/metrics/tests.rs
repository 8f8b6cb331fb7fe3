use poolnet_arm::{CallMethod, ResourceKind};

use super::*;

/// The value of the sample line that starts with `series` (name plus labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

#[test]
fn reconcile_results_errors_and_durations() {
    let m = Metrics::new();
    m.reconcile_started("nodepoolnetwork").ok();
    m.reconcile_started("nodepoolnetwork").ok();
    m.reconcile_started("nodepoolnetwork")
        .error("arm_throttled");
    drop(m.reconcile_started("hostportpolicy"));
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_total{controller="nodepoolnetwork",result="ok"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_total{controller="nodepoolnetwork",result="error"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_errors_total{controller="nodepoolnetwork",error="arm_throttled"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_total{controller="hostportpolicy",result="cancelled"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_duration_seconds_count{controller="nodepoolnetwork"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_reconcile_duration_seconds_bucket{le="+Inf",controller="nodepoolnetwork"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains("# TYPE poolnet_reconcile_duration_seconds histogram"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn leader_gauge_follows_set_leader() {
    let m = Metrics::new();
    assert_eq!(sample(&m.render(), "poolnet_leader"), Some(0.0));
    m.set_leader(true);
    assert_eq!(sample(&m.render(), "poolnet_leader"), Some(1.0));
    m.set_leader(false);
    assert_eq!(sample(&m.render(), "poolnet_leader"), Some(0.0));
    m.lease_conflict();
    assert_eq!(
        sample(&m.render(), "poolnet_leader_lease_conflicts_total"),
        Some(1.0)
    );
}

#[test]
fn admissions_by_webhook_and_result() {
    let m = Metrics::new();
    m.admission("pods-hostports", true, Duration::from_millis(3));
    m.admission("pods-hostports", false, Duration::from_millis(2));
    m.admission("pods-hostports", true, Duration::from_millis(20));
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            r#"poolnet_webhook_admissions_total{webhook="pods-hostports",result="allowed"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_webhook_admissions_total{webhook="pods-hostports",result="denied"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"poolnet_webhook_admission_duration_seconds_count{webhook="pods-hostports"}"#
        ),
        Some(3.0)
    );
    // 2 ms and 3 ms fall in the 4 ms bucket; 20 ms does not.
    assert_eq!(
        sample(
            &text,
            r#"poolnet_webhook_admission_duration_seconds_bucket{le="0.004",webhook="pods-hostports"}"#
        ),
        Some(2.0)
    );
    let sum = sample(
        &text,
        r#"poolnet_webhook_admission_duration_seconds_sum{webhook="pods-hostports"}"#,
    )
    .expect("sum");
    assert!((sum - 0.025).abs() < 1e-9, "{sum}");
}

#[derive(Debug)]
struct Fixed(StatsSnapshot);

impl ArmStatsSource for Fixed {
    fn snapshot(&self) -> StatsSnapshot {
        self.0.clone()
    }
}

#[test]
fn arm_counters_are_read_at_scrape_time() {
    let snap = StatsSnapshot {
        sent: vec![
            (CallMethod::Get, ResourceKind::NetworkSecurityGroup, 7),
            (CallMethod::Put, ResourceKind::NetworkSecurityGroup, 2),
            (CallMethod::Put, ResourceKind::RouteTable, 1),
        ],
        precondition_failed: 3,
        throttled: 4,
        throttled_by_budget: 5,
        budget_waits: 10,
        server_errors: 6,
        transport_errors: 8,
        lro_pending: 9,
        subscriptions: vec![poolnet_arm::SubscriptionSnapshot {
            subscription: "sub-a".into(),
            reads: 7,
            writes: 3,
            throttled: 4,
            throttled_by_budget: 5,
            budget_waits: 10,
            budget_wait_seconds: 2.5,
            remaining_reads: Some(240.0),
            remaining_writes: None,
            retry_after_seconds: 1.5,
        }],
    };
    let m = Metrics::with_arm_source(Arc::new(Fixed(snap)));
    let text = m.render();
    for (series, value) in [
        (
            r#"poolnet_arm_requests_total{method="GET",resource_type="network_security_group"}"#,
            7.0,
        ),
        (
            r#"poolnet_arm_requests_total{method="PUT",resource_type="network_security_group"}"#,
            2.0,
        ),
        (
            r#"poolnet_arm_requests_total{method="PUT",resource_type="route_table"}"#,
            1.0,
        ),
        ("poolnet_arm_precondition_failed_total", 3.0),
        (r#"poolnet_arm_throttled_total{source="arm"}"#, 4.0),
        (r#"poolnet_arm_throttled_total{source="budget"}"#, 5.0),
        ("poolnet_arm_budget_waits_total", 10.0),
        ("poolnet_arm_server_errors_total", 6.0),
        ("poolnet_arm_transport_errors_total", 8.0),
        ("poolnet_arm_lro_pending_total", 9.0),
        (
            r#"poolnet_arm_subscription_requests_total{subscription="sub-a",class="read"}"#,
            7.0,
        ),
        (
            r#"poolnet_arm_subscription_requests_total{subscription="sub-a",class="write"}"#,
            3.0,
        ),
        (
            r#"poolnet_arm_subscription_throttled_total{subscription="sub-a",source="arm"}"#,
            4.0,
        ),
        (
            r#"poolnet_arm_subscription_throttled_total{subscription="sub-a",source="budget"}"#,
            5.0,
        ),
        (
            r#"poolnet_arm_budget_wait_seconds_total{subscription="sub-a"}"#,
            2.5,
        ),
        (
            r#"poolnet_arm_budget_remaining{subscription="sub-a",class="read"}"#,
            240.0,
        ),
        (
            r#"poolnet_arm_retry_after_seconds{subscription="sub-a"}"#,
            1.5,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(text.contains("# TYPE poolnet_arm_requests counter"));
    assert!(
        !text.contains(r#"poolnet_arm_budget_remaining{subscription="sub-a",class="write"}"#),
        "no estimate is exported before ARM reported a count"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[derive(Debug)]
struct Ranges(Vec<RangeSample>);

impl HostPortRanges for Ranges {
    fn ranges(&self) -> Vec<RangeSample> {
        self.0.clone()
    }
}

fn range(ns: &str, policy: &str, protocol: &str, used: i64, size: i64) -> RangeSample {
    RangeSample {
        namespace: ns.into(),
        policy: policy.into(),
        node_pool_network: "game".into(),
        protocol: protocol.into(),
        used,
        size,
    }
}

#[test]
fn host_port_ranges_are_read_at_scrape_time() {
    let m = Metrics::new().with_host_port_ranges(Arc::new(Ranges(vec![
        range("team-a", "udp-game", "UDP", 120, 1000),
        range("team-b", "tcp", "TCP", 0, 20000),
    ])));
    let text = m.render();
    for (series, value) in [
        (
            r#"poolnet_hostport_range_used_ports{policy_namespace="team-a",policy="udp-game",node_pool_network="game",protocol="UDP"}"#,
            120.0,
        ),
        (
            r#"poolnet_hostport_range_size_ports{policy_namespace="team-a",policy="udp-game",node_pool_network="game",protocol="UDP"}"#,
            1000.0,
        ),
        (
            r#"poolnet_hostport_range_used_ports{policy_namespace="team-b",policy="tcp",node_pool_network="game",protocol="TCP"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
}

/// A registry with every family populated: what a scrape of a busy operator shows.
pub(super) fn busy_metrics() -> Metrics {
    let snap = StatsSnapshot {
        sent: vec![(CallMethod::Get, ResourceKind::NetworkSecurityGroup, 1)],
        subscriptions: vec![poolnet_arm::SubscriptionSnapshot {
            subscription: "sub-a".into(),
            reads: 1,
            remaining_reads: Some(200.0),
            remaining_writes: Some(150.0),
            ..Default::default()
        }],
        ..StatsSnapshot::default()
    };
    let m = Metrics::with_arm_source(Arc::new(Fixed(snap))).with_host_port_ranges(Arc::new(
        Ranges(vec![range("team-a", "udp-game", "UDP", 1, 10)]),
    ));
    m.reconcile_started("nodepoolnetwork").ok();
    m.reconcile_started("nodepoolnetwork")
        .error("arm_throttled");
    m.admission("pods-hostports", true, Duration::from_millis(2));
    m.set_leader(true);
    m.lease_conflict();
    m
}

/// `# TYPE name type` of every family in `text`.
pub(super) fn families(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}

#[test]
fn every_listed_metric_is_rendered_and_nothing_else() {
    let rendered = families(&busy_metrics().render());
    let listed: std::collections::BTreeMap<String, String> = EXPORTED
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(
        rendered, listed,
        "EXPORTED must list exactly what /metrics serves"
    );
}

#[test]
fn real_arm_stats_export_zeroes_before_any_call() {
    let m = Metrics::with_arm_stats(Arc::new(ArmStats::default()));
    let text = m.render();
    assert_eq!(
        sample(&text, "poolnet_arm_precondition_failed_total"),
        Some(0.0)
    );
    assert!(text.contains("# TYPE poolnet_arm_requests counter"));
    assert!(!text.contains("poolnet_arm_requests_total{"));
}

#[tokio::test]
async fn counters_of_a_shared_arm_client_are_exported() {
    // A closed port: the call fails in transport, and is still counted.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let client = poolnet_arm::ArmClient::new(
        poolnet_arm::ArmConfig::new(endpoint.parse().expect("url")),
        poolnet_arm::CredentialConfig::Static(poolnet_arm::Secret::new("token")),
    )
    .expect("client");
    let arm: Arc<dyn ArmNetwork> = Arc::new(client);
    let m = Metrics::with_arm(arm.clone());
    let nsg = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/\
               providers/Microsoft.Network/networkSecurityGroups/nsg"
        .parse()
        .expect("id");
    assert!(arm.get_nsg(&nsg).await.is_err());
    let text = m.render();
    assert_eq!(
        sample(
            &text,
            r#"poolnet_arm_requests_total{method="GET",resource_type="network_security_group"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "poolnet_arm_transport_errors_total"),
        Some(1.0)
    );
}

#[test]
fn no_arm_metrics_without_arm_stats() {
    assert!(!Metrics::new().render().contains("poolnet_arm_"));
}
