//! Request counters, readable by tests and benchmarks (library API and `/_armsim/counters`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A snapshot of everything the simulator has counted since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Every ARM request received (control API excluded).
    pub total: u64,
    /// method → resource type (e.g. `Microsoft.Network/networkSecurityGroups`) → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// HTTP status → count of responses sent.
    pub responses: BTreeMap<u16, u64>,
    /// 429s from the token buckets (injected 429s are counted in `faults_injected`).
    pub throttled: u64,
    pub faults_injected: u64,
    pub dropped_connections: u64,
    pub other_writer_mutations: u64,
    /// Writes that ARM accepted (PUT/PATCH/DELETE answered 2xx).
    pub accepted_writes: u64,
    /// Accepted writes per resource: lower-cased ARM ID of the resource the request addressed
    /// (a child such as a security rule counts under its own ID) → count. What the invariant
    /// checker (`poolnet-check`) divides by the resources that changed.
    pub accepted_writes_by_resource: BTreeMap<String, u64>,
}

impl Counters {
    /// Requests with this method on this resource type (type compared case-insensitively).
    pub fn get(&self, method: &str, resource_type: &str) -> u64 {
        self.requests
            .get(&method.to_ascii_uppercase())
            .map(|by_type| {
                by_type
                    .iter()
                    .filter(|(t, _)| t.eq_ignore_ascii_case(resource_type))
                    .map(|(_, n)| *n)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Requests with this method on any resource type.
    pub fn method_total(&self, method: &str) -> u64 {
        self.requests
            .get(&method.to_ascii_uppercase())
            .map(|by_type| by_type.values().sum())
            .unwrap_or(0)
    }

    /// PUT + PATCH + DELETE + POST requests on this resource type.
    pub fn writes(&self, resource_type: &str) -> u64 {
        ["PUT", "PATCH", "DELETE", "POST"]
            .iter()
            .map(|m| self.get(m, resource_type))
            .sum()
    }

    /// Accepted writes of the resource `id` (compared case-insensitively).
    pub fn accepted_writes_of(&self, id: &str) -> u64 {
        self.accepted_writes_by_resource
            .get(&id.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn record_accepted_write(&mut self, resource_id: Option<String>) {
        self.accepted_writes += 1;
        if let Some(id) = resource_id {
            *self
                .accepted_writes_by_resource
                .entry(id.to_ascii_lowercase())
                .or_default() += 1;
        }
    }

    pub(crate) fn record_request(&mut self, method: &str, resource_type: &str) {
        self.total += 1;
        *self
            .requests
            .entry(method.to_string())
            .or_default()
            .entry(resource_type.to_string())
            .or_default() += 1;
    }
}

/// One write request as armsim received it: the record a fencing check compares with the
/// history of a leader-election Lease (`/_armsim/writes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRecord {
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub received_unix_ms: u64,
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The request's `User-Agent` (clients name themselves there), empty when absent.
    pub user_agent: String,
    /// The status armsim answered.
    pub status: u16,
}

/// Every write request received since start (or the last clear), oldest first; after
/// [`WriteLog::CAPACITY`] records, newer ones are only counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteLog {
    pub records: Vec<WriteRecord>,
    /// Writes received after the log was full.
    pub dropped: u64,
}

impl WriteLog {
    pub const CAPACITY: usize = 200_000;

    pub(crate) fn push(&mut self, record: WriteRecord) {
        if self.records.len() < Self::CAPACITY {
            self.records.push(record);
        } else {
            self.dropped += 1;
        }
    }
}
