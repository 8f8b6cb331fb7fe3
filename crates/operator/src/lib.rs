//! The poolnet operator: thin glue between Kubernetes, the pure planners and ARM.
//!
//! | module | owns |
//! |---|---|
//! | [`app`] | wiring: flags, clients, caches, controllers; [`app::run`] embeds the operator |
//! | [`runtime`] | args, logging, admin server (`/metrics`, `/healthz`, `/readyz`), leader election |
//! | [`controller`] | the NodePoolNetwork and HostPortPolicy reconcilers |
//! | [`arm_models`] | ARM's SDK models ↔ the planners' views; request bodies of pools, prefixes, ASGs |
//! | [`writers`] | shared, coalescing read-modify-write of NSGs and route tables |
//! | [`webhook`] | admission webhooks (validation of both CRDs, host-port assignment on pods) |
//! | [`hostports`] | durable host-port reservations and their repair loop |

pub mod app;
pub mod arm_models;
pub mod controller;
pub mod hostports;
pub mod preflight;
pub mod reads;
pub mod runtime;
pub mod webhook;
pub mod writers;
