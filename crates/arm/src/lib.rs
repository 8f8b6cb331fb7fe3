//! poolnet's only ARM client.
//!
//! Controllers depend on the [`ArmNetwork`] trait; [`ArmClient`] implements it on the generated
//! `azure_mgmt_network` 0.21 operations and models (plus a small serde model for AKS agent pools,
//! which that crate does not cover), sent through one azure_core pipeline that adds:
//! - `If-Match` / `If-None-Match` on writes ([`Precondition`]); a stale ETag gives a retryable
//!   [`ArmError::PreconditionFailed`];
//! - long-running operations that do not block: writes return [`Lro::Pending`] with a
//!   serialisable [`OperationHandle`] to [`ArmNetwork::poll`] later;
//! - a per-subscription [`ThrottleBudget`] fed by `Retry-After` and `x-ms-ratelimit-remaining-*`
//!   that refuses to send (retryable `Throttled`) instead of hammering ARM;
//! - error classification ([`ArmError::is_retryable`], [`ArmError::metric_label`]);
//! - call counting ([`ArmStats`]), also by the RBAC action each request needs ([`permissions`],
//!   the source of `docs/azure-role.json`; a 403 names the missing action);
//! - credentials: workload identity (re-reads the projected token on every refresh), managed
//!   identity, client secret, Azure CLI, and a static token for armsim ([`CredentialConfig`]);
//! - a rustls (ring) transport that can trust an extra CA such as armsim's ([`TransportConfig`]).
//!
//! # Why an object-safe `async_trait`
//! Controllers keep the client in a shared context as `Arc<dyn ArmNetwork>`, and tests run the
//! same controllers on the real client pointed at armsim; a generic parameter would spread through
//! every controller type for no gain. The boxing `async_trait` costs one allocation per call,
//! nothing next to an HTTPS round trip.

mod agentpool;
mod budget;
mod client;
pub mod credential;
mod error;
mod gate;
mod id;
mod lro;
mod network;
pub mod permissions;
mod policy;
mod stats;
mod transport;

#[cfg(test)]
mod test_http;

pub use agentpool::{
    AGENT_POOL_API_VERSION, AgentPool, AgentPoolNetworkProfile, AgentPoolProfile,
    AgentPoolProperties, IpTag, ManagedCluster, ManagedClusterNetworkProfile,
    ManagedClusterProperties, PortRange, UpgradeSettings,
};
pub use budget::{
    BudgetConfig, BudgetEstimate, CallClass, Observation, SubscriptionBudget, ThrottleBudget,
};
pub use client::{ArmClient, ArmConfig, NETWORK_API_VERSION, PUBLIC_ARM_ENDPOINT};
pub use credential::{CredentialConfig, StaticToken};
pub use error::{ArmError, DEFAULT_THROTTLE_WAIT, ThrottleSource};
pub use gate::WriteGate;
pub use id::{
    COMPUTE, CONTAINER_SERVICE, NETWORK, ResourceId, ResourceIdError, ResourceKind, VmssInstance,
};
pub use lro::{DEFAULT_POLL_INTERVAL, Lro, MIN_POLL_INTERVAL, Monitor, OperationHandle};
pub use network::{ArmNetwork, Etagged, NotFoundExt, Precondition};
pub use stats::{ArmStats, CallMethod, StatsSnapshot, SubscriptionSnapshot};
pub use transport::{TransportConfig, TransportError, http_client};

pub use azure_core::Url;
pub use azure_core::auth::Secret;

/// The generated Microsoft.Network models the trait speaks in, re-exported so callers need no
/// direct dependency on the SDK crate.
pub use azure_mgmt_network::package_2024_03::models;
