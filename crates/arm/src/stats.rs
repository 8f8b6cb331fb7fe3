//! Call counters the operator exports as metrics and benchmarks read.
//!
//! Fixed arrays of atomics indexed by (method, resource kind): recording a call is a relaxed
//! increment with no lock and no allocation, which matters because every ARM request passes here.

use std::sync::atomic::{AtomicU64, Ordering};

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
        }
    }
}

/// A consistent-enough copy of the counters (each read individually).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub(crate) fn record_sent(&self, method: CallMethod, kind: ResourceKind) {
        self.sent[method.index()][kind_index(kind)].fetch_add(1, Ordering::Relaxed);
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
        }
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
