//! The real client against armsim over HTTPS on 127.0.0.1: every trait method, If-Match, LROs,
//! throttling and error classification.
//!
//! One test binary (one link), split by theme: [`resources`], [`operations`], [`throttling`],
//! [`errors`]; [`support`] holds what they share.

mod errors;
mod operations;
mod resources;
mod support;
mod throttling;
