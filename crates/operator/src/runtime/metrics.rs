//! Prometheus metrics of the whole operator, in one registry served at `/metrics`.
//!
//! Controllers and webhooks record through a few methods ([`Metrics::reconcile_started`],
//! [`Metrics::admission`]); ARM traffic is not double-counted here but read at scrape time
//! from the ARM client's own atomic counters ([`poolnet_arm::ArmStats`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use poolnet_arm::{ArmNetwork, ArmStats, StatsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileErrorLabels {
    controller: String,
    error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    webhook: String,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Reconciles take from milliseconds (converged, cache only) to tens of seconds (ARM
/// long-running operations): 5 ms .. ~41 s.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Admission must answer within the webhook timeout (10 s at most): 1 ms .. ~8 s.
fn admission_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// The operator's metrics. Build once, share as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    leader: Gauge,
    lease_conflicts: Counter,
    admissions: Family<AdmissionLabels, Counter>,
    admission_duration: HistogramFamily<WebhookLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics without ARM counters (e.g. a webhook-only process, or tests).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "poolnet_reconcile",
            "Reconciliations by controller and result (ok, error, cancelled)",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        registry.register(
            "poolnet_reconcile_errors",
            "Failed reconciliations by controller and error class",
            reconcile_errors.clone(),
        );
        let reconcile_duration: HistogramFamily<ControllerLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "poolnet_reconcile_duration_seconds",
            "Duration of one reconciliation",
            reconcile_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "poolnet_leader",
            "1 while this replica holds the leader Lease (runs controllers), else 0",
            leader.clone(),
        );
        let lease_conflicts = Counter::default();
        registry.register(
            "poolnet_leader_lease_conflicts",
            "Lease writes rejected with 409 Conflict (someone else changed the Lease) and retried",
            lease_conflicts.clone(),
        );
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "poolnet_webhook_admissions",
            "Admission reviews answered, by webhook and result (allowed, denied)",
            admissions.clone(),
        );
        let admission_duration: HistogramFamily<WebhookLabels> =
            Family::new_with_constructor(admission_histogram);
        registry.register(
            "poolnet_webhook_admission_duration_seconds",
            "Time to answer one admission review",
            admission_duration.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            leader,
            lease_conflicts,
            admissions,
            admission_duration,
        }
    }

    /// Metrics that also export the ARM client's call counters at every scrape.
    pub fn with_arm_stats(stats: Arc<ArmStats>) -> Self {
        Self::with_arm_source(stats)
    }

    /// Metrics that export the call counters of `arm` (any [`ArmNetwork`], e.g. the
    /// `Arc<dyn ArmNetwork>` the controllers share) at every scrape.
    pub fn with_arm(arm: Arc<dyn ArmNetwork>) -> Self {
        Self::with_arm_source(Arc::new(ArmOf(arm)))
    }

    fn with_arm_source(source: Arc<dyn ArmStatsSource>) -> Self {
        let mut metrics = Self::new();
        metrics
            .registry
            .register_collector(Box::new(ArmCollector { source }));
        metrics
    }

    /// The registry, for metrics a module owns itself. Register before sharing the
    /// `Metrics` behind an `Arc`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Starts timing one reconciliation of `controller`; finish with
    /// [`ReconcileTimer::ok`] or [`ReconcileTimer::error`]. A timer dropped unfinished (the
    /// reconcile future was cancelled, e.g. on losing leadership) counts as `cancelled`.
    pub fn reconcile_started(&self, controller: &str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            controller: controller.to_string(),
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records one answered admission review.
    pub fn admission(&self, webhook: &str, allowed: bool, duration: Duration) {
        let result = if allowed { "allowed" } else { "denied" };
        self.admissions
            .get_or_create(&AdmissionLabels {
                webhook: webhook.to_string(),
                result,
            })
            .inc();
        self.admission_duration
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_string(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Sets `poolnet_leader` (the leader elector does this).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub(crate) fn lease_conflict(&self) {
        self.lease_conflicts.inc();
    }

    /// The whole registry in the OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    fn record_reconcile(&self, controller: &str, result: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result,
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .observe(took.as_secs_f64());
    }
}

/// Times one reconciliation; see [`Metrics::reconcile_started`].
#[derive(Debug)]
#[must_use = "finish the timer with .ok() or .error(label)"]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: String,
    started: Instant,
    finished: bool,
}

impl ReconcileTimer<'_> {
    /// The reconciliation succeeded.
    pub fn ok(mut self) {
        self.finish("ok");
    }

    /// The reconciliation failed; `label` is the error's `metric_label()` (a small, fixed
    /// set of values: it becomes a label).
    pub fn error(mut self, label: &str) {
        self.metrics
            .reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller: self.controller.clone(),
                error: label.to_string(),
            })
            .inc();
        self.finish("error");
    }

    fn finish(&mut self, result: &'static str) {
        self.finished = true;
        self.metrics
            .record_reconcile(&self.controller, result, self.started.elapsed());
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish("cancelled");
        }
    }
}

/// Where the ARM collector reads counters from: the ARM client's stats, or a fixed
/// snapshot in tests (the stats' recording methods are private to `poolnet-arm`).
trait ArmStatsSource: std::fmt::Debug + Send + Sync + 'static {
    fn snapshot(&self) -> StatsSnapshot;
}

impl ArmStatsSource for ArmStats {
    fn snapshot(&self) -> StatsSnapshot {
        ArmStats::snapshot(self)
    }
}

/// The counters of whatever ARM client the controllers use.
#[derive(Debug)]
struct ArmOf(Arc<dyn ArmNetwork>);

impl ArmStatsSource for ArmOf {
    fn snapshot(&self) -> StatsSnapshot {
        self.0.stats().snapshot()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmRequestLabels {
    method: &'static str,
    resource_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    source: &'static str,
}

/// Exports [`StatsSnapshot`] as counters at scrape time.
#[derive(Debug)]
struct ArmCollector {
    source: Arc<dyn ArmStatsSource>,
}

impl ArmCollector {
    fn counter(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(value);
        let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric)
    }
}

impl Collector for ArmCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.source.snapshot();
        {
            let mut family = encoder.encode_descriptor(
                "poolnet_arm_requests",
                "Requests sent to ARM, by HTTP method and resource type",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (method, kind, n) in &snap.sent {
                let labels = ArmRequestLabels {
                    method: method.label(),
                    resource_type: kind.label(),
                };
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Self::counter(
            &mut encoder,
            "poolnet_arm_precondition_failed",
            "ARM answers 412 Precondition Failed (stale If-Match: re-read and retried)",
            snap.precondition_failed,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "poolnet_arm_throttled",
                "Throttled ARM calls: answered 429 by ARM, or held back by the local budget",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (source, n) in [
                ("arm", snap.throttled),
                ("budget", snap.throttled_by_budget),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&ThrottleLabels { source })?)?;
            }
        }
        Self::counter(
            &mut encoder,
            "poolnet_arm_budget_waits",
            "ARM calls that waited for the local throttle budget to refill before being sent",
            snap.budget_waits,
        )?;
        Self::counter(
            &mut encoder,
            "poolnet_arm_server_errors",
            "ARM answers 5xx",
            snap.server_errors,
        )?;
        Self::counter(
            &mut encoder,
            "poolnet_arm_transport_errors",
            "ARM requests that got no HTTP answer",
            snap.transport_errors,
        )?;
        Self::counter(
            &mut encoder,
            "poolnet_arm_lro_pending",
            "ARM writes answered with a pending long-running operation",
            snap.lro_pending,
        )
    }
}

#[cfg(test)]
mod tests {
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
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE poolnet_arm_requests counter"));
        assert!(text.ends_with("# EOF\n"));
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
}
