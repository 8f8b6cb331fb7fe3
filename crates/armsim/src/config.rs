//! Start-up configuration of a simulator: everything is optional and defaults to Azure's values.

use crate::faults::FaultConfig;
use crate::fixture::Fixture;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Configuration of one simulator instance. Deserialisable from YAML or JSON (snake_case keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Initial state; `None` starts with no subscription at all.
    pub seed: Option<Fixture>,
    /// Serve HTTPS with a CA generated at start instead of plain HTTP.
    pub tls: bool,
    pub auth: AuthConfig,
    pub throttling: ThrottleConfig,
    pub lro: LroConfig,
    pub limits: Limits,
    pub faults: FaultConfig,
    pub paging: PagingConfig,
    /// Where `POST /_armsim/snapshot` (and shutdown, when set) writes the state as JSON.
    pub snapshot_path: Option<PathBuf>,
    /// Start from a snapshot written earlier instead of `seed`.
    pub restore_from: Option<PathBuf>,
}

/// Bearer-token check: any non-empty token, or exactly `static_token` when set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub static_token: Option<String>,
}

/// Per-subscription token buckets, as ARM applies them per subscription and principal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub read_capacity: u32,
    pub read_refill_per_sec: f64,
    pub write_capacity: u32,
    pub write_refill_per_sec: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            read_capacity: 250,
            read_refill_per_sec: 25.0,
            write_capacity: 200,
            write_refill_per_sec: 10.0,
        }
    }
}

/// Long-running operations: how long a PUT/DELETE stays `Updating`/`Deleting`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LroConfig {
    /// Duration of Microsoft.Network operations, in milliseconds.
    pub network_ms: u64,
    /// Duration of Microsoft.ContainerService operations (agent pools, clusters), in milliseconds.
    pub aks_ms: u64,
    /// Value of the `Retry-After` header on LRO responses and polls, in seconds.
    /// Azure sends 10 for Network; 0 keeps tests fast (clients then use their own interval).
    pub retry_after_secs: u64,
}

impl Default for LroConfig {
    fn default() -> Self {
        LroConfig {
            network_ms: 20,
            aks_ms: 50,
            retry_after_secs: 0,
        }
    }
}

/// List paging: how many items one page holds before a `nextLink`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagingConfig {
    pub page_size: usize,
}

impl Default for PagingConfig {
    fn default() -> Self {
        PagingConfig { page_size: 50 }
    }
}

/// Azure's limits (subscription defaults); each can be raised as a support ticket would.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub rules_per_nsg: usize,
    pub source_addresses_per_nsg: usize,
    pub destination_addresses_per_nsg: usize,
    pub asgs_per_rule_side: usize,
    pub asgs_per_nsg: usize,
    pub asgs_per_nic: usize,
    pub routes_per_table: usize,
    pub ipv4_prefix_min_length: u8,
    pub ipv4_prefix_max_length: u8,
    pub ipv6_prefix_min_length: u8,
    pub ipv6_prefix_max_length: u8,
    pub nodes_per_pool: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rules_per_nsg: 1000,
            source_addresses_per_nsg: 4000,
            destination_addresses_per_nsg: 4000,
            asgs_per_rule_side: 10,
            asgs_per_nsg: 100,
            asgs_per_nic: 20,
            routes_per_table: 400,
            ipv4_prefix_min_length: 28,
            ipv4_prefix_max_length: 31,
            ipv6_prefix_min_length: 124,
            ipv6_prefix_max_length: 127,
            nodes_per_pool: 1000,
        }
    }
}

impl SimConfig {
    /// Reads a YAML (or JSON) configuration file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
        serde_yaml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing config {}: {e}", path.display()))
    }
}
