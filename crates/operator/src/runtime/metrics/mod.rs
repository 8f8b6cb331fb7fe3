//! Prometheus metrics of the whole operator, in one registry served at `/metrics`.
//!
//! Controllers and webhooks record through a few methods ([`Metrics::reconcile_started`],
//! [`Metrics::admission`]); ARM traffic is not double-counted here but read at scrape time
//! from the ARM client's own atomic counters ([`poolnet_arm::ArmStats`]), with the throttle
//! budget's estimates per subscription. Host-port range utilisation is read at scrape time
//! from the HostPortPolicy cache ([`HostPortRanges`]).
//!
//! Every metric a dashboard may query is listed in [`EXPORTED`]; a test renders them all and
//! checks the Grafana dashboard the chart ships against that list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poolnet_arm::{ArmNetwork, ArmStats, StatsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
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

    /// Also export the host-port range utilisation `source` reports, at every scrape.
    pub fn with_host_port_ranges(mut self, source: Arc<dyn HostPortRanges>) -> Self {
        self.registry
            .register_collector(Box::new(HostPortCollector { source }));
        self
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionClassLabels {
    subscription: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionSourceLabels {
    subscription: String,
    source: &'static str,
}

/// Starts a metric family; the caller encodes its samples.
fn family<'a, 'b>(
    encoder: &'a mut DescriptorEncoder<'b>,
    name: &'a str,
    help: &'a str,
    kind: prometheus_client::metrics::MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

impl ArmCollector {
    /// ARM throttles per subscription: traffic, throttling and the budget left, per
    /// subscription.
    fn encode_subscriptions(
        encoder: &mut DescriptorEncoder,
        snap: &StatsSnapshot,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        let subs = &snap.subscriptions;
        {
            let mut f = family(
                encoder,
                "poolnet_arm_subscription_requests",
                "Requests sent to ARM, by subscription and throttling class (read: GET, write: the rest)",
                Counter,
            )?;
            for s in subs {
                for (class, n) in [("read", s.reads), ("write", s.writes)] {
                    let labels = SubscriptionClassLabels {
                        subscription: s.subscription.clone(),
                        class,
                    };
                    ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut f = family(
                encoder,
                "poolnet_arm_subscription_throttled",
                "Throttled ARM calls by subscription: answered 429 by ARM, or held back by the local budget",
                Counter,
            )?;
            for s in subs {
                for (source, n) in [("arm", s.throttled), ("budget", s.throttled_by_budget)] {
                    let labels = SubscriptionSourceLabels {
                        subscription: s.subscription.clone(),
                        source,
                    };
                    ConstCounter::new(n).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut f = family(
                encoder,
                "poolnet_arm_budget_wait_seconds",
                "Time ARM calls spent waiting for the subscription's throttle budget to refill",
                Counter,
            )?;
            for s in subs {
                let labels = SubscriptionLabels {
                    subscription: s.subscription.clone(),
                };
                ConstCounter::new(s.budget_wait_seconds).encode(f.encode_family(&labels)?)?;
            }
        }
        {
            let mut f = family(
                encoder,
                "poolnet_arm_budget_remaining",
                "Requests left in the subscription's ARM throttle bucket, as estimated from ARM's x-ms-ratelimit-remaining headers and the refill rate (absent until ARM reported one)",
                Gauge,
            )?;
            for s in subs {
                for (class, left) in [("read", s.remaining_reads), ("write", s.remaining_writes)] {
                    let Some(left) = left else { continue };
                    let labels = SubscriptionClassLabels {
                        subscription: s.subscription.clone(),
                        class,
                    };
                    ConstGauge::new(left).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        let mut f = family(
            encoder,
            "poolnet_arm_retry_after_seconds",
            "Seconds a Retry-After from ARM still keeps every call to the subscription away (0: none pending)",
            Gauge,
        )?;
        for s in subs {
            let labels = SubscriptionLabels {
                subscription: s.subscription.clone(),
            };
            ConstGauge::new(s.retry_after_seconds).encode(f.encode_family(&labels)?)?;
        }
        Ok(())
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
        )?;
        Self::encode_subscriptions(&mut encoder, &snap)
    }
}

/// Utilisation of one HostPortPolicy's automatic range for one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSample {
    pub namespace: String,
    pub policy: String,
    pub node_pool_network: String,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Ports held.
    pub used: i64,
    /// Ports in the range.
    pub size: i64,
}

/// Where host-port range utilisation comes from at scrape time (the operator: its
/// HostPortPolicy cache, whose status the leader keeps current).
pub trait HostPortRanges: std::fmt::Debug + Send + Sync + 'static {
    fn ranges(&self) -> Vec<RangeSample>;
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RangeLabels {
    /// Not `namespace`: Prometheus sets that label to the scraped pod's namespace.
    policy_namespace: String,
    policy: String,
    node_pool_network: String,
    protocol: String,
}

#[derive(Debug)]
struct HostPortCollector {
    source: Arc<dyn HostPortRanges>,
}

impl Collector for HostPortCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType::Gauge;
        let ranges = self.source.ranges();
        let labels = |r: &RangeSample| RangeLabels {
            policy_namespace: r.namespace.clone(),
            policy: r.policy.clone(),
            node_pool_network: r.node_pool_network.clone(),
            protocol: r.protocol.clone(),
        };
        {
            let mut f = family(
                &mut encoder,
                "poolnet_hostport_range_used_ports",
                "Host ports held in a HostPortPolicy's automatic range, by protocol",
                Gauge,
            )?;
            for r in &ranges {
                ConstGauge::new(r.used).encode(f.encode_family(&labels(r))?)?;
            }
        }
        let mut f = family(
            &mut encoder,
            "poolnet_hostport_range_size_ports",
            "Ports in a HostPortPolicy's automatic range, by protocol",
            Gauge,
        )?;
        for r in &ranges {
            ConstGauge::new(r.size).encode(f.encode_family(&labels(r))?)?;
        }
        Ok(())
    }
}

/// Every metric family the operator exports, with its type: what a dashboard may query.
/// A test renders each one (`tests::every_listed_metric_is_rendered`), so the list cannot
/// drift from the code.
pub const EXPORTED: &[(&str, &str)] = &[
    ("poolnet_reconcile", "counter"),
    ("poolnet_reconcile_errors", "counter"),
    ("poolnet_reconcile_duration_seconds", "histogram"),
    ("poolnet_leader", "gauge"),
    ("poolnet_leader_lease_conflicts", "counter"),
    ("poolnet_webhook_admissions", "counter"),
    ("poolnet_webhook_admission_duration_seconds", "histogram"),
    ("poolnet_arm_requests", "counter"),
    ("poolnet_arm_precondition_failed", "counter"),
    ("poolnet_arm_throttled", "counter"),
    ("poolnet_arm_budget_waits", "counter"),
    ("poolnet_arm_server_errors", "counter"),
    ("poolnet_arm_transport_errors", "counter"),
    ("poolnet_arm_lro_pending", "counter"),
    ("poolnet_arm_subscription_requests", "counter"),
    ("poolnet_arm_subscription_throttled", "counter"),
    ("poolnet_arm_budget_wait_seconds", "counter"),
    ("poolnet_arm_budget_remaining", "gauge"),
    ("poolnet_arm_retry_after_seconds", "gauge"),
    ("poolnet_hostport_range_used_ports", "gauge"),
    ("poolnet_hostport_range_size_ports", "gauge"),
];

#[cfg(test)]
mod tests;

#[cfg(test)]
mod dashboard_tests;
