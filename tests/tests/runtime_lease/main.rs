//! The operator runtime against a real API server: leader election on a Lease (one leader,
//! takeover after expiry, prompt handover on release, conflicts retried) and the deployment
//! manifests (they install, pass pod security, and grant exactly what the operator needs,
//! including its Lease).
//!
//! Two views prove "never two leaders": each candidate's own belief (its leadership
//! channel, checked on every change) and the Lease's history as the API server recorded it
//! (a live holder is only replaced once its record has been left unrenewed for its
//! duration).
//!
//! One test binary (one link), split by theme: [`election`], [`manifests`]; [`support`] holds
//! what they share.

mod election;
mod manifests;
mod support;
