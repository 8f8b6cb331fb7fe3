//! What both themes share: the test environment, lease timings, candidates and waiting.

pub use std::collections::BTreeSet;
pub use std::future::Future;
pub use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
pub use std::time::Duration;

pub use anyhow::{Context, Result, bail, ensure};
pub use clap::{CommandFactory, Parser};
pub use futures::{StreamExt, TryStreamExt};
pub use k8s_openapi::api::apps::v1::Deployment;
pub use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
pub use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
pub use k8s_openapi::api::core::v1::Pod;
pub use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
pub use kube::config::{KubeConfigOptions, Kubeconfig};
pub use kube::{Client, ResourceExt};
pub use poolnet_operator::runtime::{
    LeaderElector, LeaderHandle, LeaseConfig, Metrics, RuntimeArgs,
};
pub use poolnet_tests::TestEnv;
pub use poolnet_tests::binaries::Binaries;
pub use serde_json::json;
pub use tokio::sync::watch;
pub use tokio::task::JoinHandle;

/// Leases are built-in, and the RBAC rules may name CRDs that are not installed: no CRDs,
/// so these tests do not depend on the state of the poolnet CRDs.
pub async fn env() -> Result<TestEnv> {
    TestEnv::shared_with_crds(&[]).await
}

/// Bound for what takes a few retry periods; only a broken elector (or control plane) hits it.
pub const WAIT: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(20);
/// Retry period of every test candidate: many attempts per second keep the tests short.
pub const RETRY: Duration = Duration::from_millis(200);

/// Timings for `lease_secs`; the renew deadline is 3/4 of it, as client-go's 15 s / 10 s
/// leaves the leader a margin to stop before a successor may start.
pub fn config(namespace: &str, name: &str, identity: &str, lease_secs: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.into(),
        name: name.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(lease_secs),
        renew_deadline: Duration::from_millis(lease_secs * 750),
        retry_period: RETRY,
    }
}

/// One replica's elector, with its own metrics (as in separate processes).
pub struct Candidate {
    pub id: String,
    pub handle: LeaderHandle,
    pub metrics: Arc<Metrics>,
}

impl Candidate {
    pub fn start(client: Client, config: LeaseConfig) -> Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let id = config.identity.clone();
        let handle = LeaderElector::new(client, config, metrics.clone())?.spawn();
        Ok(Self {
            id,
            handle,
            metrics,
        })
    }

    pub fn is_leader(&self) -> bool {
        self.handle.is_leader()
    }

    /// `poolnet_leader_lease_conflicts_total` of this candidate.
    pub fn conflicts(&self) -> u64 {
        metric(
            &self.metrics.render(),
            "poolnet_leader_lease_conflicts_total",
        )
        .unwrap_or(0)
    }
}

pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `done` until it holds; fails after [`WAIT`] naming `what`.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

pub async fn wait_until_async<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await? {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

pub fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}
