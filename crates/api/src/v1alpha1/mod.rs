//! `poolnet.dev/v1alpha1`: the `NodePoolNetwork` and `HostPortPolicy` custom resources, and
//! the `HostPortClaim` records poolnet keeps for host ports.

pub mod agent_pool_template;
pub mod common;
pub mod conditions;
pub mod host_port_block;
pub mod host_port_claim;
pub mod host_port_policy;
pub mod node_pool_network;
pub mod selector;

pub use agent_pool_template::{AgentPoolTemplate, Autoscaling, OsType, PoolMode};
pub use common::*;
pub use host_port_block::{HostPortBlock, HostPortBlockSpec, HostPortBlockStatus};
pub use host_port_claim::{
    BoundPod, ClaimOwner, HostPortClaim, HostPortClaimSpec, HostPortClaimStatus, HostPortSource,
};
pub use host_port_policy::*;
pub use node_pool_network::*;
