//! Preflight in the controller: `poolnet_preflight::live::check` with the cluster as
//! `cluster.rs` read it (cached per resync) and the VNet of the pool's subnet, every
//! reconcile, so an object the webhook never judged (created while it was down, or admitted
//! with "preflight skipped") is judged here. The result is condition `PreflightPassed`;
//! an error holds `Ready` down (the object is `Stalled`: only a change of spec or cluster
//! helps), and errors about `spec.routeTable` stop route writes (see `live::blocks_routes`).
//! Other parts still run: the checks that fail there (a Windows pool on kubenet, an old AKS)
//! make ARM refuse the write itself, and the rest of the object is fine to reconcile.

use kube::runtime::events::EventType;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_preflight::Finding;
use poolnet_preflight::live;

use super::super::conditions::PartState;
use super::Pass;
use super::outcome::{Effects, Part};
use crate::preflight::FactsReader;

/// What preflight decided: `Some(message)` when route writes must wait.
pub(super) type BlockRoutes = Option<String>;

pub(super) async fn reconcile(pass: &Pass<'_>, reader: &FactsReader) -> Part<BlockRoutes> {
    let mut fx = Effects::default();
    let Some(cluster) = pass.cluster.managed.as_deref() else {
        // cluster.rs reports why on AgentPoolReady; judge nothing without the cluster.
        let c = PartState::failed(
            cond::PREFLIGHT_PASSED,
            reason::ARM_ERROR,
            "preflight waits for the managed cluster to be read (see AgentPoolReady)",
        );
        return Part::new(None, c, fx);
    };
    let (mut facts, problem) = reader.facts_with(&pass.npn.spec, cluster).await;
    // Only an object that admits HostPortPolicies can meet AKS's own assigner.
    if pass.npn.spec.host_port_policies.is_some() {
        facts.host_port_feature_registered = reader.host_port_feature(&pass.npn.spec).await;
    }
    let findings = live::check(&pass.npn.spec, &facts);
    let blocking: Vec<&Finding> = findings.iter().filter(|f| live::blocks_routes(f)).collect();
    let block = (!blocking.is_empty()).then(|| {
        format!(
            "routes not written: preflight failed on {}",
            blocking
                .iter()
                .map(|f| f.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let mut message = findings
        .iter()
        .map(|f| format!("{} {}: {f}", severity(f), f.check))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(p) = &problem {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!("VNet checks left out: {}", p.summary()));
    }
    let condition = if findings.iter().any(Finding::is_error) {
        let told = pass.previous.conditions.iter().any(|c| {
            c.type_ == cond::PREFLIGHT_PASSED && c.reason == reason::FAILED && c.message == message
        });
        if !told {
            fx.event(EventType::Warning, reason::FAILED, message.clone());
        }
        PartState::failed(cond::PREFLIGHT_PASSED, reason::FAILED, message)
    } else {
        let message = if message.is_empty() {
            format!(
                "the spec fits cluster {} (route destinations, route budget, network plugin, OS, AKS version)",
                facts.cluster.name
            )
        } else {
            message
        };
        PartState::ok(cond::PREFLIGHT_PASSED, reason::PASSED, message)
    };
    Part::new(block, condition, fx)
}

fn severity(f: &Finding) -> &'static str {
    if f.is_error() { "error" } else { "warning" }
}
