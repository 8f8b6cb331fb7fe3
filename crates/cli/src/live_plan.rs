//! `kubectl poolnet plan NAME` and `kubectl poolnet plan -f npn.yaml`: a NodePoolNetwork judged
//! against its live cluster, with the facts the operator's webhook and controller read
//! (`poolnet_operator::preflight::FactsReader`: the managed cluster with its pools, the VNet
//! of the pool's subnet) and the same checks (`poolnet_preflight::live`), printed like a
//! plan file's report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_arm::ArmNetwork;
use poolnet_operator::preflight::FactsReader;
use poolnet_preflight::Report;

/// Whether a YAML or JSON document is a NodePoolNetwork manifest (not a plan file).
pub fn is_node_pool_network(text: &str) -> bool {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .is_some_and(|k| k == "NodePoolNetwork")
}

/// The preflight report of `npn` against the ARM facts of its cluster; the second value says
/// what could not be read (those checks are left out).
pub async fn plan_live(
    arm: Arc<dyn ArmNetwork>,
    npn: &NodePoolNetwork,
) -> Result<(Report, Option<String>)> {
    let reader = FactsReader::new(arm, Duration::ZERO);
    let (facts, problem) = reader.facts(&npn.spec).await.with_context(|| {
        format!(
            "reading the cluster of agent pool {}",
            npn.spec.node_pool.agent_pool_id
        )
    })?;
    let report = poolnet_preflight::report::live(&npn.spec, &facts);
    Ok((report, problem.map(|p| p.to_string())))
}
