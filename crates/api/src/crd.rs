//! The CustomResourceDefinitions generated from the Rust types; `config/crd/` holds their YAML.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::v1alpha1::{HostPortPolicy, NodePoolNetwork, host_port_claim};

/// Every CRD poolnet serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        NodePoolNetwork::crd(),
        HostPortPolicy::crd(),
        host_port_claim::crd(),
    ]
}

/// File name under `config/crd/`, e.g. `nodepoolnetworks.poolnet.dev.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML document written to `config/crd/`, with a header saying it is generated.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated from crates/api by `make crds`; do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}
