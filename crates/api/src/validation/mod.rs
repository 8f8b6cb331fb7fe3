//! Validation the CRD schema cannot express (or expresses only approximately): numeric port
//! bounds and overlaps, CIDR maths, ARM ID structure, limits, immutability and cross-object
//! checks. The validating webhook calls these; so do the CLI and the controllers, so a spec
//! that slipped past admission (webhook down, older poolnet) still gets a clear condition.
//!
//! Schema/CEL rules are repeated here on purpose: the webhook must give the same answer when
//! it is the only check that ran (e.g. objects created before a CRD upgrade).
//!
//! One module per kind: `node_pool_network` and `host_port_policy`; what both share
//! (source prefixes, name length, admission decoding) stays here.

mod agent_pool_template;
mod host_port_policy;
mod node_pool_network;

use serde::de::DeserializeOwned;

use crate::cidr::{AddressPrefix, overlaps, parse_address_prefix};
use crate::error::{FieldError, FieldErrors};
use crate::portspec::{self, HostPortSpec};
use crate::v1alpha1::{HostPortPolicy, NodePoolNetwork, NodePoolNetworkSpec};

pub use host_port_policy::{PolicyContext, fits_pool, policy_fits_pool, validate_host_port_policy};
pub use node_pool_network::validate_node_pool_network;

pub use crate::ownership::{MAX_ASGS_PER_NIC, PRIORITY_BAND};
/// Names of poolnet objects end up in Azure names (≤ 80 characters).
pub const MAX_NAME_LEN: usize = 63;

/// The parsed host ports of a spec (`spec.allowedHostPorts`), for callers that already
/// validated it; invalid items are skipped.
pub fn allowed_host_ports(spec: &NodePoolNetworkSpec) -> Vec<HostPortSpec> {
    spec.allowed_host_ports
        .iter()
        .filter_map(|s| portspec::parse_list(s).ok())
        .flatten()
        .collect()
}

/// Whether the managed ASG is in use: explicitly, or by default when host ports are set.
pub fn managed_asg_enabled(spec: &NodePoolNetworkSpec) -> bool {
    spec.application_security_groups
        .as_ref()
        .and_then(|a| a.managed)
        .unwrap_or(!spec.allowed_host_ports.is_empty())
}

fn validate_sources(sources: &[String], path: &str) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let mut parsed: Vec<(usize, AddressPrefix)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        match parse_address_prefix(s) {
            Ok(p) => parsed.push((i, p)),
            Err(e) => errs.push(e.at(format!("{path}[{i}]"))),
        }
    }
    for (k, (i, a)) in parsed.iter().enumerate() {
        for (j, b) in &parsed[..k] {
            let clash = match (a.as_net(), b.as_net()) {
                (Some(x), Some(y)) => overlaps(&x, &y),
                _ => a == b,
            };
            if clash {
                errs.push(FieldError::new(
                    format!("{path}[{i}]"),
                    a.to_string(),
                    format!("overlaps or repeats {b} ({path}[{j}])"),
                    "distinct, non-overlapping sources (keep the wider prefix)",
                ));
            }
        }
    }
    if parsed.len() > 1 && parsed.iter().any(|(_, p)| *p == AddressPrefix::Any) {
        errs.push(FieldError::new(
            path,
            sources.join(","),
            "'*' already allows every source, so the other entries are meaningless",
            "either ['*'] alone or specific sources",
        ));
    }
    errs
}

/// Kinds this module validates, by `kind`.
pub const KINDS: [&str; 2] = ["NodePoolNetwork", "HostPortPolicy"];

fn decode<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        FieldErrors::from(FieldError::new(
            if path == "." { String::new() } else { path },
            "",
            e.inner().to_string(),
            "a value of the type the CRD schema describes (kubectl explain nodepoolnetworks.spec)",
        ))
    })
}

/// Entry point for admission without cross-object context: decode `object` (and `old`) by
/// `kind` and run the matching validator. Used by the webhook, the CLI and tests.
pub fn validate_admission(
    object: &serde_json::Value,
    old: Option<&serde_json::Value>,
) -> Result<(), FieldErrors> {
    let kind = object.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    match kind {
        "NodePoolNetwork" => {
            let new: NodePoolNetwork = decode(object)?;
            let old: Option<NodePoolNetwork> = old.map(decode).transpose()?;
            validate_node_pool_network(&new, old.as_ref())
        }
        "HostPortPolicy" => {
            let new: HostPortPolicy = decode(object)?;
            let old: Option<HostPortPolicy> = old.map(decode).transpose()?;
            validate_host_port_policy(&new, old.as_ref(), None)
        }
        other => Err(FieldError::new(
            "kind",
            other,
            "not a poolnet kind",
            "NodePoolNetwork or HostPortPolicy",
        )
        .into()),
    }
}
