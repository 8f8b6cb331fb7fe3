//! The poolnet operator: thin glue between Kubernetes, the pure planners and ARM.
//!
//! | module | owns |
//! |---|---|
//! | [`runtime`] | args, logging, admin server (`/metrics`, `/healthz`, `/readyz`), leader election |
//! | [`controller`] | the NodePoolNetwork and HostPortPolicy reconcilers |
//! | [`writers`] | shared, coalescing read-modify-write of NSGs and route tables |
//! | [`webhook`] | admission webhooks (validation of both CRDs, host-port assignment on pods) |
//! | [`hostports`] | durable host-port reservations and their repair loop |

pub mod controller;
pub mod hostports;
pub mod runtime;
pub mod webhook;
pub mod writers;
