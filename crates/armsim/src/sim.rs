//! The shared simulator: state, configuration in force, faults, counters and buckets.

use crate::config::{AuthConfig, Limits, LroConfig, PagingConfig, ThrottleConfig};
use crate::counters::{Counters, WriteLog};
use crate::faults::FaultState;
use crate::state::State;
use crate::throttle::Throttle;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// The part of the configuration that can change while running (`/_armsim/config`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    pub auth: AuthConfig,
    pub throttling: ThrottleConfig,
    pub lro: LroConfig,
    pub limits: Limits,
    pub paging: PagingConfig,
}

pub struct Sim {
    pub live: Mutex<LiveConfig>,
    pub state: Mutex<State>,
    pub faults: Mutex<FaultState>,
    pub counters: Mutex<Counters>,
    pub writes: Mutex<WriteLog>,
    pub throttle: Mutex<Throttle>,
    pub base_url: String,
    pub ca_pem: Option<String>,
    pub snapshot_path: Option<PathBuf>,
}

/// Locks a mutex, recovering from poisoning: a panicked request must not wedge the simulator.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sim {
    pub fn live(&self) -> LiveConfig {
        lock(&self.live).clone()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn counters(&self) -> MutexGuard<'_, Counters> {
        lock(&self.counters)
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }
}
