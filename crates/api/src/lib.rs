//! poolnet's API: the `NodePoolNetwork` and `HostPortPolicy` custom resources, parsers of
//! every kind of user input they carry (host-port specs, ARM IDs, CIDRs, IP tags, routes) and
//! the validators the admission webhook runs. No I/O and no async: everything is a function
//! of its inputs.

pub mod allowed_scopes;
pub mod armid;
pub mod cidr;
pub mod crd;
pub mod error;
pub mod iptag;
pub mod names;
pub mod one_per_pool;
pub mod ownership;
pub mod portspec;
pub mod route;
pub mod v1alpha1;
pub mod validation;

pub use error::{FieldError, FieldErrors};
