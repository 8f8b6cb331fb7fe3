//! Network preflight checks (seed docs 000, 001, 002, 004): capacity, reserved ranges,
//! overlaps, route limits, API-server subnet and AKS Arc static IP plans, and a
//! `NodePoolNetwork` judged against its live cluster. A crate of its own, apart from
//! `poolnet-plan`: these checks judge whether a network can work, not what to write.
//!
//! Every check is a pure function from data to `Vec<Finding>`; each finding names the check,
//! the offending field path, the bad value and what would be valid. `run` applies all checks
//! that a `NetworkPlan` (the CLI's input) has data for and returns a `Report`;
//! `node_pool_network::check` runs the ones a `NodePoolNetwork` spec allows, and
//! `live::check` adds those that need the cluster's ARM facts (network plugin, pod and
//! service CIDRs, VNet, pools, versions, feature registrations). Callers of `live::check`:
//! the validating webhook (facts read from ARM under a short deadline, fail-open with a
//! warning), the NodePoolNetwork controller (condition `PreflightPassed`) and
//! `kubectl poolnet plan NAME` / `plan -f npn.yaml --live`. See docs/validation.md.

pub mod addresses;
pub mod apiserver;
pub mod arc;
pub mod capacity;
pub mod cross_vlan;
pub mod finding;
pub mod live;
pub mod model;
pub mod net;
pub mod node_pool_network;
pub mod ranges;
pub mod report;
pub mod routes;

pub use finding::{CheckId, Finding, Severity};
pub use model::NetworkPlan;
pub use report::{CheckOutcome, CheckStatus, Report, run};
