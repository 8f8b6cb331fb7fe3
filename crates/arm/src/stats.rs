//! Call counters the operator exports as metrics and benchmarks read.
//!
//! Fixed arrays of atomics indexed by (method, resource kind): recording a call is a relaxed
//! increment with no lock and no allocation, which matters because every ARM request passes here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::budget::{CallClass, ThrottleBudget};
use crate::id::ResourceKind;
use crate::permissions::{PERMISSIONS, Permission};

/// HTTP methods ARM calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallMethod {
    Get,
    Put,
    Patch,
    Delete,
    Post,
    Other,
}

impl CallMethod {
    pub const ALL: [CallMethod; 6] = [
        CallMethod::Get,
        CallMethod::Put,
        CallMethod::Patch,
        CallMethod::Delete,
        CallMethod::Post,
        CallMethod::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CallMethod::Get => "GET",
            CallMethod::Put => "PUT",
            CallMethod::Patch => "PATCH",
            CallMethod::Delete => "DELETE",
            CallMethod::Post => "POST",
            CallMethod::Other => "OTHER",
        }
    }

    pub(crate) fn of(method: &azure_core::Method) -> CallMethod {
        match method {
            azure_core::Method::Get => CallMethod::Get,
            azure_core::Method::Put => CallMethod::Put,
            azure_core::Method::Patch => CallMethod::Patch,
            azure_core::Method::Delete => CallMethod::Delete,
            azure_core::Method::Post => CallMethod::Post,
            _ => CallMethod::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const METHODS: usize = CallMethod::ALL.len();
const KINDS: usize = ResourceKind::ALL.len();

fn kind_index(kind: ResourceKind) -> usize {
    kind as usize
}

/// Atomic counters of ARM traffic.
#[derive(Debug)]
pub struct ArmStats {
    /// Requests sent to ARM (answered or not), by method and resource kind.
    sent: [[AtomicU64; KINDS]; METHODS],
    precondition_failed: AtomicU64,
    throttled: AtomicU64,
    throttled_by_budget: AtomicU64,
    budget_waits: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    lro_pending: AtomicU64,
    /// Requests by row of the permission table (`permissions::PERMISSIONS`).
    by_permission: [AtomicU64; PERMISSIONS.len()],
    /// Requests the permission table has no row for.
    unclassified: AtomicU64,
    /// Per-subscription counters (ARM throttles per subscription). A read lock and relaxed
    /// increments per call; the write lock only when a subscription is first seen.
    subscriptions: RwLock<HashMap<String, Arc<SubscriptionCounters>>>,
    /// The client's throttle budget, read at snapshot time for the remaining-request gauges.
    budget: OnceLock<Arc<ThrottleBudget>>,
}

/// Counters of one subscription.
#[derive(Debug, Default)]
struct SubscriptionCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    throttled: AtomicU64,
    throttled_by_budget: AtomicU64,
    budget_waits: AtomicU64,
    /// Time spent waiting for the budget to refill, in microseconds.
    budget_wait_micros: AtomicU64,
}

/// One subscription's traffic and budget, as of a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionSnapshot {
    /// Lower-cased subscription ID.
    pub subscription: String,
    /// GET requests sent.
    pub reads: u64,
    /// Requests sent that change state.
    pub writes: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Calls refused locally by the budget (never sent).
    pub throttled_by_budget: u64,
    /// Times a call waited for the budget to refill.
    pub budget_waits: u64,
    /// Seconds spent in those waits, summed over calls.
    pub budget_wait_seconds: f64,
    /// The budget's estimate of reads left (`None` until ARM reported a count).
    pub remaining_reads: Option<f64>,
    /// The budget's estimate of writes left.
    pub remaining_writes: Option<f64>,
    /// Seconds a `Retry-After` from ARM still keeps calls away (0 when none is pending).
    pub retry_after_seconds: f64,
}

impl Default for ArmStats {
    fn default() -> Self {
        ArmStats {
            sent: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            precondition_failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            throttled_by_budget: AtomicU64::new(0),
            budget_waits: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            transport_errors: AtomicU64::new(0),
            lro_pending: AtomicU64::new(0),
            by_permission: std::array::from_fn(|_| AtomicU64::new(0)),
            unclassified: AtomicU64::new(0),
            subscriptions: RwLock::new(HashMap::new()),
            budget: OnceLock::new(),
        }
    }
}

/// A consistent-enough copy of the counters (each read individually).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Non-zero request counts, by method and resource kind.
    pub sent: Vec<(CallMethod, ResourceKind, u64)>,
    /// Answers 412 (stale `If-Match`).
    pub precondition_failed: u64,
    /// Answers 429.
    pub throttled: u64,
    /// Calls refused locally by the throttle budget (never sent).
    pub throttled_by_budget: u64,
    /// Times a call waited for the budget to refill before it was sent.
    pub budget_waits: u64,
    /// Answers 5xx.
    pub server_errors: u64,
    /// Requests that got no HTTP answer.
    pub transport_errors: u64,
    /// Writes that returned a pending long-running operation.
    pub lro_pending: u64,
    /// Per subscription, sorted by subscription.
    pub subscriptions: Vec<SubscriptionSnapshot>,
}

impl StatsSnapshot {
    /// Requests of `method` on `kind`.
    pub fn count(&self, method: CallMethod, kind: ResourceKind) -> u64 {
        self.sent
            .iter()
            .filter(|(m, k, _)| *m == method && *k == kind)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// All requests sent.
    pub fn total(&self) -> u64 {
        self.sent.iter().map(|(_, _, n)| n).sum()
    }

    /// Requests that change state (everything but GET).
    pub fn writes(&self) -> u64 {
        self.sent
            .iter()
            .filter(|(m, _, _)| *m != CallMethod::Get)
            .map(|(_, _, n)| n)
            .sum()
    }
}

impl ArmStats {
    /// Lets snapshots report the remaining budget `budget` estimates (set once, by the client).
    pub(crate) fn attach_budget(&self, budget: Arc<ThrottleBudget>) {
        // A second attach would be a bug in the client's construction; the first one stays.
        let _ = self.budget.set(budget);
    }

    fn subscription(&self, subscription: &str) -> Arc<SubscriptionCounters> {
        let key = subscription.to_ascii_lowercase();
        if let Some(c) = self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return c.clone();
        }
        self.subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }

    pub(crate) fn record_sent(&self, method: CallMethod, kind: ResourceKind) {
        self.sent[method.index()][kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// One request of `class` sent to `subscription`.
    pub(crate) fn record_subscription_sent(&self, subscription: &str, class: CallClass) {
        let c = self.subscription(subscription);
        let counter = match class {
            CallClass::Read => &c.reads,
            CallClass::Write => &c.writes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `subscription` answered 429.
    pub(crate) fn record_subscription_throttled(&self, subscription: &str) {
        self.subscription(subscription)
            .throttled
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The budget refused a call to `subscription`.
    pub(crate) fn record_subscription_budget_refusal(&self, subscription: &str) {
        self.record_budget_refusal();
        self.subscription(subscription)
            .throttled_by_budget
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A call to `subscription` is about to wait `wait` for the budget to refill.
    pub(crate) fn record_subscription_budget_wait(&self, subscription: &str, wait: Duration) {
        self.record_budget_wait();
        let c = self.subscription(subscription);
        c.budget_waits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        c.budget_wait_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn record_status(&self, status: u16) {
        let counter = match status {
            412 => &self.precondition_failed,
            429 => &self.throttled,
            500..=599 => &self.server_errors,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_budget_refusal(&self) {
        self.throttled_by_budget.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_budget_wait(&self) {
        self.budget_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_transport_error(&self) {
        self.transport_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_lro_pending(&self) {
        self.lro_pending.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_permission(&self, row: Option<usize>) {
        let counter = row
            .and_then(|i| self.by_permission.get(i))
            .unwrap_or(&self.unclassified);
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent per row of the permission table, every row (zero included).
    pub fn by_permission(&self) -> Vec<(&'static Permission, u64)> {
        PERMISSIONS
            .iter()
            .zip(&self.by_permission)
            .map(|(p, n)| (p, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Requests the permission table has no row for: a call added to the client without its
    /// RBAC action (the armsim tests require zero).
    pub fn unclassified(&self) -> u64 {
        self.unclassified.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut sent = Vec::new();
        for method in CallMethod::ALL {
            for kind in ResourceKind::ALL {
                let n = self.sent[method.index()][kind_index(kind)].load(Ordering::Relaxed);
                if n > 0 {
                    sent.push((method, kind, n));
                }
            }
        }
        StatsSnapshot {
            sent,
            precondition_failed: self.precondition_failed.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            throttled_by_budget: self.throttled_by_budget.load(Ordering::Relaxed),
            budget_waits: self.budget_waits.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            lro_pending: self.lro_pending.load(Ordering::Relaxed),
            subscriptions: self.subscription_snapshots(Instant::now()),
        }
    }

    fn subscription_snapshots(&self, now: Instant) -> Vec<SubscriptionSnapshot> {
        let mut out: Vec<SubscriptionSnapshot> = self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(sub, c)| SubscriptionSnapshot {
                subscription: sub.clone(),
                reads: c.reads.load(Ordering::Relaxed),
                writes: c.writes.load(Ordering::Relaxed),
                throttled: c.throttled.load(Ordering::Relaxed),
                throttled_by_budget: c.throttled_by_budget.load(Ordering::Relaxed),
                budget_waits: c.budget_waits.load(Ordering::Relaxed),
                budget_wait_seconds: c.budget_wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
                ..SubscriptionSnapshot::default()
            })
            .collect();
        if let Some(budget) = self.budget.get() {
            for e in budget.estimates(now) {
                let i = match out.iter().position(|s| s.subscription == e.subscription) {
                    Some(i) => i,
                    None => {
                        out.push(SubscriptionSnapshot {
                            subscription: e.subscription.clone(),
                            ..SubscriptionSnapshot::default()
                        });
                        out.len() - 1
                    }
                };
                out[i].remaining_reads = e.reads;
                out[i].remaining_writes = e.writes;
                out[i].retry_after_seconds = e.blocked_for.map_or(0.0, |d| d.as_secs_f64());
            }
        }
        out.sort_by(|a, b| a.subscription.cmp(&b.subscription));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_method_and_kind() {
        let s = ArmStats::default();
        s.record_sent(CallMethod::Get, ResourceKind::NetworkSecurityGroup);
        s.record_sent(CallMethod::Get, ResourceKind::NetworkSecurityGroup);
        s.record_sent(CallMethod::Put, ResourceKind::RouteTable);
        s.record_status(412);
        s.record_status(429);
        s.record_status(503);
        s.record_status(200);
        let snap = s.snapshot();
        assert_eq!(
            snap.count(CallMethod::Get, ResourceKind::NetworkSecurityGroup),
            2
        );
        assert_eq!(snap.count(CallMethod::Put, ResourceKind::RouteTable), 1);
        assert_eq!(snap.count(CallMethod::Delete, ResourceKind::RouteTable), 0);
        assert_eq!(snap.total(), 3);
        assert_eq!(snap.writes(), 1);
        assert_eq!(
            (snap.precondition_failed, snap.throttled, snap.server_errors),
            (1, 1, 1)
        );
    }
}
