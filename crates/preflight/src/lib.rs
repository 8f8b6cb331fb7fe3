//! Network preflight checks (seed docs 001, 002, 004): capacity, reserved ranges, overlaps,
//! route limits, API-server subnet and AKS Arc static IP plans. A crate of its own, apart
//! from `poolnet-plan`, because the operator does not run these checks: today only the CLI
//! (`kubectl poolnet plan`) does.
//!
//! Every check is a pure function from data to `Vec<Finding>`; each finding names the check,
//! the offending field path, the bad value and what would be valid. `run` applies all checks
//! that a `NetworkPlan` (the CLI's input) has data for and returns a `Report`;
//! `node_pool_network::check` runs the ones a `NodePoolNetwork` spec allows (no caller yet:
//! kept for the validating webhook, see that module).

pub mod addresses;
pub mod apiserver;
pub mod arc;
pub mod capacity;
pub mod cross_vlan;
pub mod finding;
pub mod model;
pub mod net;
pub mod node_pool_network;
pub mod ranges;
pub mod report;
pub mod routes;

pub use finding::{CheckId, Finding, Severity};
pub use model::NetworkPlan;
pub use report::{CheckOutcome, CheckStatus, Report, run};
