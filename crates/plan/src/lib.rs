//! Pure planning for poolnet: from (spec, observed ARM state) to desired state and a minimal
//! list of ARM operations. No async, no I/O: everything here is a function of its inputs.

pub mod agent_pool;
pub mod desired;
pub mod hostports;
pub mod new_pool;
pub mod nsg;
pub mod prefix;
pub mod preview;
pub mod routes;
pub mod scope;
pub mod traffic;
