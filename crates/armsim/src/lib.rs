//! armsim: an ARM-compatible simulator for the Azure resources poolnet drives — NSGs (with
//! security rules and Azure's default rules), ASGs, public IP prefixes and addresses, route
//! tables, virtual networks and subnets (Microsoft.Network 2024-03-01), and AKS managed
//! clusters with agent pools (Microsoft.ContainerService 2023-10-01 and later), including the
//! VMSS public-IP and NIC listings of the node resource group.
//!
//! It reproduces ARM's semantics (ETags and preconditions, long-running operations and their
//! cancellation, paging, error bodies and codes, Azure's limits, per-subscription throttling)
//! and adds fault injection and counters for tests and benchmarks.
//!
//! ```no_run
//! let sim = armsim::start(armsim::SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
//! println!("ARM at {}", sim.base_url());
//! ```

pub mod config;
mod control;
pub mod counters;
pub mod error;
pub mod faults;
pub mod fixture;
mod handlers;
mod json;
mod kinds;
mod load;
pub mod path;
mod pool;
mod server;
mod sim;
mod state;
mod throttle;
mod tls;

pub use config::{AuthConfig, Limits, LroConfig, PagingConfig, SimConfig, ThrottleConfig};
pub use counters::{Counters, WriteLog, WriteRecord};
pub use error::CloudError;
pub use faults::{FaultAction, FaultConfig, FaultRule, OtherWriter, OtherWriterAction};
pub use fixture::Fixture;
pub use server::{FaultControl, RunningSim, start};
pub use state::{AKS_API_VERSIONS, NETWORK_API_VERSIONS};
