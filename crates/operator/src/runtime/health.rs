//! Liveness and readiness, as reported by the parts of the process.
//!
//! Readiness is per named component: the process is ready when every registered component
//! says so. Register each component (`set_ready(name, false)`) before the admin server
//! starts, so a probe never sees "ready" before a component has even begun. With no
//! component registered the process is not ready.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
struct State {
    ready: BTreeMap<String, bool>,
    /// Set once a component reports a failure the process cannot recover from; the kubelet
    /// then restarts the container.
    failure: Option<String>,
}

/// Shared health state; clones see the same state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    state: Arc<Mutex<State>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic while holding the lock cannot leave the map inconsistent (every update is a
    /// single insert), so a poisoned lock is still safe to use.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers or updates `component`.
    pub fn set_ready(&self, component: &str, ready: bool) {
        self.state().ready.insert(component.to_string(), ready);
    }

    /// True when at least one component is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        let state = self.state();
        !state.ready.is_empty() && state.ready.values().all(|r| *r)
    }

    /// Registered components that are not ready, in name order.
    pub fn not_ready(&self) -> Vec<String> {
        self.state()
            .ready
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks the process as broken beyond repair: `/healthz` fails from now on with
    /// `reason`, so the kubelet restarts the container. The first reason is kept.
    pub fn set_failed(&self, reason: impl Into<String>) {
        self.state().failure.get_or_insert_with(|| reason.into());
    }

    /// `Ok` while live, else the failure reason.
    pub fn liveness(&self) -> Result<(), String> {
        match &self.state().failure {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    pub fn is_live(&self) -> bool {
        self.liveness().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_registered_components_are() {
        let health = Health::new();
        assert!(!health.is_ready(), "nothing registered yet");
        health.set_ready("nodepoolnetwork-controller", false);
        health.set_ready("webhook", true);
        assert!(!health.is_ready());
        assert_eq!(health.not_ready(), ["nodepoolnetwork-controller"]);
        let clone = health.clone();
        clone.set_ready("nodepoolnetwork-controller", true);
        assert!(health.is_ready());
        assert!(health.not_ready().is_empty());
        health.set_ready("webhook", false);
        assert_eq!(clone.not_ready(), ["webhook"]);
    }

    #[test]
    fn liveness_fails_for_good_with_the_first_reason() {
        let health = Health::new();
        assert!(health.is_live());
        health.set_failed("watch stream ended");
        health.set_failed("second");
        assert_eq!(health.liveness(), Err("watch stream ended".to_string()));
        assert!(!health.clone().is_live());
    }
}
