//! The NodePoolNetwork controller end to end: a real API server, armsim seeded with the AKS demo
//! world (`crates/armsim/fixtures/aks-demo.yaml`), and the real operator embedded in-process
//! (`poolnet_tests::operator`). Each test has its own control plane, armsim and operator:
//! NodePoolNetworks are cluster-scoped and an operator reconciles all of them.
//!
//! What the ARM side looks like is read from armsim's state directly (no request counted);
//! what poolnet did is read from armsim's request counters.
//!
//! One test binary (one link), split by theme: [`samples`], [`sharing`], [`lifecycle`], [`ownership`],
//! [`one_pool`], [`coverage`]; [`support`] holds what they share.

mod coverage;
mod lifecycle;
mod node_pools;
mod one_pool;
mod ownership;
mod samples;
mod sharing;
mod support;
