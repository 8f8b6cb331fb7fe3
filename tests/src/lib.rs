//! Test fixture for poolnet: a real Kubernetes control plane on 127.0.0.1.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! // An isolated kube-apiserver + etcd + kube-controller-manager, poolnet CRDs installed:
//! let env = poolnet_tests::TestEnv::start().await?;
//! // Or a fresh namespace on the control plane shared by this test binary:
//! let env = poolnet_tests::TestEnv::shared().await?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = env.api();
//! # Ok(()) }
//! ```
//!
//! [`operator::Harness`] adds armsim (seeded with the AKS demo world) and the real operator,
//! embedded in-process, for end-to-end tests and benchmarks of the controllers.
//!
//! The binaries come from `hack/controlplane/build.sh`, found through `POOLNET_K8S_BIN_DIR`
//! or the default cache directory (see [`binaries`]).

pub mod binaries;
pub mod control_plane;
pub mod crds;
pub mod env;
pub mod operator;
pub mod pki;
pub mod process;
pub mod reliability;
pub mod webhook;

use std::path::PathBuf;

pub use control_plane::{ControlPlane, ControlPlaneOptions};
pub use env::TestEnv;
pub use webhook::{Hook, Kind, WebhookServer};

/// Field manager for everything the fixture applies.
pub const FIELD_MANAGER: &str = "poolnet-tests";

/// Root of the poolnet repository (this package lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Files that describe the fixture's own test CRD (used until and besides the poolnet CRDs).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
