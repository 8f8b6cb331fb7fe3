//! The real client against armsim over HTTPS on 127.0.0.1: every trait method, If-Match, LROs,
//! throttling, error classification and the RBAC action of every request.
//!
//! One test binary (one link), split by theme: [`resources`], [`operations`], [`throttling`],
//! [`errors`], [`permissions`]; [`support`] holds what they share.

mod errors;
mod operations;
mod permissions;
mod resources;
mod support;
mod throttling;
