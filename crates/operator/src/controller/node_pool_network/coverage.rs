//! Host-port coverage (seed 000: host ports are useless without allow rules): the pods using
//! host ports on the pool's nodes, against the pool's allowedHostPorts and the rules poolnet
//! wrote into its NSGs. The condition `HostPortsCovered` reports, it never holds Ready down;
//! each pod gets one Warning Event per port that cannot be reached.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use poolnet_api::portspec::{self, HostPortSpec};
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_api::v1alpha1::{NodePoolNetwork, NodePoolNetworkStatus};
use poolnet_plan::hostports::Key;
use poolnet_plan::hostports::coverage::{PodPorts, Uncovered, summary, uncovered};

use super::super::Context;
use super::super::conditions::PartState;

/// Ports named in the condition message at most (the Events name every one).
const LISTED: usize = 10;

/// What the pool's rules open, per protocol: each rule's destination ports.
fn opened(status: &NodePoolNetworkStatus) -> Vec<HostPortSpec> {
    status
        .security_groups
        .iter()
        .flat_map(|n| n.rules.iter())
        .flat_map(|r| {
            let protocol = r.protocol.to_ascii_lowercase();
            r.destination_port_ranges
                .iter()
                .filter_map(move |ports| portspec::parse_list(&format!("{ports}/{protocol}")).ok())
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The condition, and the ports that cannot be reached; `None` when this process keeps no
/// host-port index (webhooks off).
pub(super) fn check(
    npn: &NodePoolNetwork,
    status: &NodePoolNetworkStatus,
    ctx: &Context,
) -> Option<(PartState, Vec<Uncovered>)> {
    let index = ctx.host_ports.as_ref()?;
    let nodes: BTreeSet<String> = ctx
        .stores
        .nodes
        .state()
        .iter()
        .filter(|n| super::selects(npn, n.labels()))
        .map(|n| n.name_any())
        .collect();
    let pods: Vec<PodPorts> = index
        .pods_on(|node| nodes.contains(node))
        .into_iter()
        .map(|p| PodPorts {
            namespace: p.namespace,
            name: p.name,
            uid: p.uid,
            node: p.node.unwrap_or_default(),
            keys: p.keys,
        })
        .collect();
    let allowed = poolnet_api::validation::allowed_host_ports(&npn.spec);
    // Without NSGs in the spec poolnet writes no rule, so it cannot tell what is open.
    let opened = (!npn.spec.network_security_groups.is_empty()).then(|| opened(status));
    let gaps = uncovered(&allowed, opened.as_deref(), &pods);
    // No counts in the message: pods coming and going while everything is covered must not
    // rewrite the status.
    let part = if gaps.is_empty() {
        PartState::ok(
            cond::HOST_PORTS_COVERED,
            reason::RECONCILED,
            if opened.is_some() {
                "every host port in use on the pool's nodes is in allowedHostPorts and opened by an NSG rule"
            } else {
                "every host port in use on the pool's nodes is in allowedHostPorts"
            },
        )
    } else {
        PartState::failed(
            cond::HOST_PORTS_COVERED,
            reason::HOST_PORTS_NOT_COVERED,
            format!(
                "{}; add them to spec.allowedHostPorts, or move the pods to ports inside it",
                summary(&gaps, LISTED)
            ),
        )
        .capacity()
    };
    Some((part, gaps))
}

/// One Warning Event per pod and port that cannot be reached, the first time it is seen;
/// `warned` (the controller's memory of this pool) is updated to the current set.
pub(super) async fn warn_pods(
    ctx: &Context,
    npn: &NodePoolNetwork,
    gaps: &[Uncovered],
    warned: BTreeSet<(String, Key)>,
) -> BTreeSet<(String, Key)> {
    let now: BTreeSet<(String, Key)> = gaps.iter().map(|g| (g.uid.clone(), g.key)).collect();
    for gap in gaps {
        if warned.contains(&(gap.uid.clone(), gap.key)) {
            continue;
        }
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(gap.namespace.clone()),
            name: Some(gap.pod.clone()),
            uid: Some(gap.uid.clone()),
            ..ObjectReference::default()
        };
        let reasons: Vec<String> = gap.gaps.iter().map(ToString::to_string).collect();
        let event = Event {
            type_: EventType::Warning,
            reason: "HostPortNotReachable".into(),
            note: Some(format!(
                "host port {}/{} cannot be reached on node {} of NodePoolNetwork {}: {}; add it to \
                 spec.allowedHostPorts of {} (allowed now: {})",
                gap.key.port,
                gap.key.protocol,
                gap.node,
                npn.name_any(),
                reasons.join(", "),
                npn.name_any(),
                if npn.spec.allowed_host_ports.is_empty() {
                    "none".to_string()
                } else {
                    npn.spec.allowed_host_ports.join(",")
                }
            )),
            action: "CheckHostPorts".into(),
            secondary: Some(npn.object_ref(&())),
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, pod = %gap.pod, "cannot publish a HostPortNotReachable event");
        }
    }
    now
}

/// Whether the pool's reported `HostPortsCovered` differs from what the caches say now (a
/// pod change that does not change it needs no reconcile, so no ARM read).
pub(super) fn outdated(npn: &NodePoolNetwork, ctx: &Context) -> bool {
    let status = npn.status.clone().unwrap_or_default();
    let Some((part, _)) = check(npn, &status, ctx) else {
        return false;
    };
    let reported = status
        .conditions
        .iter()
        .find(|c| c.type_ == cond::HOST_PORTS_COVERED);
    reported.is_none_or(|c| {
        c.status != if part.ok { "True" } else { "False" } || c.message != part.message
    })
}
