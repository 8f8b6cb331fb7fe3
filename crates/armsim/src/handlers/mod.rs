//! ARM semantics over the state: CRUD with ETags and preconditions, long-running operations
//! (201/202 + `Azure-AsyncOperation` / `Location`, cancellation by a newer PUT), paging,
//! subscriptions and resource groups, api-version checks, and the VMSS views of agent pools.
//!
//! One file per concern:
//! - `dispatch`: routes a request to its handler after the api-version and method checks;
//! - `request`: the parsed request, its reply, body parsing and `If-Match` / `If-None-Match`;
//! - `resource_groups`: subscription GET and resource group CRUD;
//! - `resources`: top-level resources and agent pools (list, GET, PUT, PATCH, DELETE);
//! - `child_resources`: security rules, routes and subnets inside their parent;
//! - `vmss`: the read-only VMSS views of agent pools;
//! - `operations`: long-running operations and their polling URLs;
//! - `paging`: `nextLink` / `$skiptoken`;
//! - `other_writer`: the fault that changes a resource behind the client's back.

mod child_resources;
mod dispatch;
mod operations;
mod other_writer;
mod paging;
mod request;
mod resource_groups;
mod resources;
mod vmss;

pub use dispatch::handle;
pub use other_writer::other_write;
pub use request::{Reply, Request};
pub use resource_groups::normalize_location;
pub use resources::{put_core, res_id};
