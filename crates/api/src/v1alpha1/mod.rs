//! `poolnet.dev/v1alpha1`: the `NodePoolNetwork` and `HostPortPolicy` custom resources.

pub mod common;
pub mod conditions;
pub mod host_port_policy;
pub mod node_pool_network;

pub use common::*;
pub use host_port_policy::*;
pub use node_pool_network::*;
