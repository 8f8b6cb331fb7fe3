//! The trait controllers depend on.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use azure_mgmt_network::package_2024_03::models::{
    ApplicationSecurityGroup, NetworkSecurityGroup, PublicIpAddress, PublicIpPrefix, RouteTable,
    VirtualNetwork,
};

use crate::agentpool::{AgentPool, ManagedCluster};
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::lro::{Lro, OperationHandle};
use crate::stats::ArmStats;

/// A resource as read, with the ETag to send back as `If-Match` on the next write.
#[derive(Debug, Clone, PartialEq)]
pub struct Etagged<T> {
    pub resource: T,
    /// `None` when ARM gave none (then a conditional write is impossible).
    pub etag: Option<String>,
}

impl<T> Etagged<T> {
    /// `If-Match` with this ETag, or unconditional when there is none.
    pub fn precondition(&self) -> Precondition {
        self.etag
            .clone()
            .map_or(Precondition::None, Precondition::IfMatch)
    }
}

/// Conditional-write header of a PUT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional: last writer wins. Only for resources nobody else writes.
    #[default]
    None,
    /// `If-Match: <etag>`: fail with 412 if the resource changed since it was read.
    IfMatch(String),
    /// `If-None-Match: *`: create only; fail with 412 if the resource exists.
    IfNoneMatch,
}

/// Everything poolnet does on ARM.
///
/// Writes take the whole resource (read-modify-write) and return [`Lro::Done`] with the resource
/// and its new ETag, or [`Lro::Pending`] with a handle to [`ArmNetwork::poll`] later; after a
/// pending write completes, read the resource again for its final state and ETag.
/// Deletes of absent resources succeed (`Done(())`). Every error is an [`ArmError`] that says
/// whether to retry ([`ArmError::is_retryable`]) and when ([`ArmError::retry_after`]).
#[async_trait]
pub trait ArmNetwork: Send + Sync + fmt::Debug {
    /// The gate this client checks before every write (leader fencing), if it has one.
    fn write_gate(&self) -> Option<crate::WriteGate> {
        None
    }

    async fn get_nsg(&self, id: &ResourceId) -> Result<Etagged<NetworkSecurityGroup>, ArmError>;
    async fn put_nsg(
        &self,
        id: &ResourceId,
        nsg: &NetworkSecurityGroup,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<NetworkSecurityGroup>>, ArmError>;
    async fn delete_nsg(&self, id: &ResourceId) -> Result<Lro<()>, ArmError>;

    async fn get_asg(&self, id: &ResourceId)
    -> Result<Etagged<ApplicationSecurityGroup>, ArmError>;
    async fn put_asg(
        &self,
        id: &ResourceId,
        asg: &ApplicationSecurityGroup,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<ApplicationSecurityGroup>>, ArmError>;
    async fn delete_asg(&self, id: &ResourceId) -> Result<Lro<()>, ArmError>;

    async fn get_public_ip_prefix(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<PublicIpPrefix>, ArmError>;
    async fn put_public_ip_prefix(
        &self,
        id: &ResourceId,
        prefix: &PublicIpPrefix,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<PublicIpPrefix>>, ArmError>;
    async fn delete_public_ip_prefix(&self, id: &ResourceId) -> Result<Lro<()>, ArmError>;

    async fn get_route_table(&self, id: &ResourceId) -> Result<Etagged<RouteTable>, ArmError>;
    async fn put_route_table(
        &self,
        id: &ResourceId,
        table: &RouteTable,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<RouteTable>>, ArmError>;

    /// All instance public IPs of a scale set (`.../virtualMachineScaleSets/{vmss}/publicipaddresses`),
    /// following `nextLink` to the last page.
    async fn list_vmss_public_ips(
        &self,
        vmss: &ResourceId,
    ) -> Result<Vec<PublicIpAddress>, ArmError>;

    /// A virtual network (preflight reads the address space of a pool's VNet); read-only.
    async fn get_virtual_network(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<VirtualNetwork>, ArmError>;

    /// The managed cluster (location, node resource group, network plugin); read-only.
    async fn get_managed_cluster(
        &self,
        id: &ResourceId,
    ) -> Result<Etagged<ManagedCluster>, ArmError>;

    /// The registration state of a preview feature in a subscription (`az feature show`):
    /// `Registered`, `NotRegistered`, `Registering`, ...
    async fn get_feature_state(
        &self,
        subscription: &str,
        namespace: &str,
        feature: &str,
    ) -> Result<String, ArmError>;

    /// The pool at [`AGENT_POOL_API_VERSION`], its ETag from the body's `properties.eTag`.
    ///
    /// [`AGENT_POOL_API_VERSION`]: crate::AGENT_POOL_API_VERSION
    async fn get_agent_pool(&self, id: &ResourceId) -> Result<Etagged<AgentPool>, ArmError>;
    /// DELETE of an agent pool (a long-running operation; absent counts as deleted). Only for
    /// a pool poolnet created.
    async fn delete_agent_pool(&self, id: &ResourceId) -> Result<Lro<()>, ArmError>;
    /// PUT of the whole pool as read and edited, with the read's [`Etagged::precondition`]
    /// (or [`Precondition::IfNoneMatch`] to create a pool that must not exist yet).
    ///
    /// That is `If-Match: <properties.eTag>`, so a change someone else made since the read (a
    /// scale, an upgrade, another tool's edit) answers 412 [`ArmError::PreconditionFailed`]
    /// (re-read and retry) instead of being overwritten. The read-only `eTag` is left out of
    /// the body sent.
    ///
    /// A read without any eTag (an AKS that does not implement it at this api-version) gives
    /// [`Precondition::None`]: the PUT then goes out unconditional, as every pool PUT did before
    /// AKS had eTags, and the client logs a warning the first time that happens in the process
    /// (then at debug level). It does not refuse the write: poolnet could then neither reconcile
    /// nor restore any pool of such an AKS, for a race that AKS gives no way to close there.
    async fn put_agent_pool(
        &self,
        id: &ResourceId,
        pool: &AgentPool,
        precondition: Precondition,
    ) -> Result<Lro<Etagged<AgentPool>>, ArmError>;

    /// One look at a pending operation: `Done(())` when it succeeded, `Pending` with a refreshed
    /// handle (new `retry_after`) while it runs, `Err(OperationFailed)` when it failed or was canceled.
    async fn poll(&self, handle: &OperationHandle) -> Result<Lro<()>, ArmError>;

    /// Polls, honouring `Retry-After`, until the operation ends or `deadline` would be passed
    /// (then `OperationTimeout`, which carries the handle to keep polling later).
    async fn wait(&self, handle: OperationHandle, deadline: Duration) -> Result<(), ArmError>;

    /// Call counters of this client.
    fn stats(&self) -> &ArmStats;
}

/// Turns `NotFound` into `Ok(None)` for reads where absence is a normal answer.
pub trait NotFoundExt<T> {
    fn optional(self) -> Result<Option<T>, ArmError>;
}

impl<T> NotFoundExt<T> for Result<T, ArmError> {
    fn optional(self) -> Result<Option<T>, ArmError> {
        match self {
            Ok(t) => Ok(Some(t)),
            Err(ArmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
