//! poolnet's invariant checker (issue 13): run against any poolnet installation and its ARM
//! (Azure or armsim) once things are quiet, it reports every broken invariant:
//!
//! - (a) [`foreign`]: foreign rules, routes and agent-pool fields are byte for byte what their
//!   writer left (against a [`Baseline`] taken before the run);
//! - (b) [`owned`]: what ARM holds that is attributable to poolnet equals exactly what the
//!   live objects record and want: nothing stranded, nothing missing;
//! - (c) [`hostports`]: no two live pods hold one host-port key, every claim maps to a live
//!   pod or is inside its grace, every reserved key is claimed or, inside a HostPortBlock,
//!   recorded by its pod;
//! - (d) [`ready`]: every object is Ready with observedGeneration equal to generation;
//! - (e) [`amplification`]: ARM writes divided by the resources that changed.
//!
//! The core ([`check`], [`baseline`]) is pure: a [`Snapshot`] in, a [`Report`] out.
//! Attribution is the operator's own (`poolnet_plan::desired`, `poolnet_operator`'s
//! conversions), see docs/checker.md. [`shell`] reads a snapshot from a cluster and ARM.

pub mod amplification;
pub mod attribution;
pub mod cli;
pub mod foreign;
pub mod hostports;
pub mod json;
pub mod model;
pub mod owned;
pub mod ready;
pub mod render;
pub mod shell;

#[cfg(test)]
mod tests;

pub use model::*;

/// Checks every invariant on `snap`; (a) and (e) need a `baseline`.
pub fn check(snap: &Snapshot, baseline: Option<&Baseline>, options: &Options) -> Report {
    let mut report = Report {
        checked: Checked {
            node_pool_networks: snap.pools.len(),
            host_port_policies: snap.policies.len(),
            host_port_claims: snap.claims.len(),
            host_port_blocks: snap.blocks.len(),
            pods: snap.pods.len(),
            arm_resources: snap.arm.resources.len(),
            baseline_resources: baseline.map_or(0, |b| b.resources.len()),
        },
        ..Report::default()
    };
    match baseline {
        Some(b) => foreign::check(snap, b, &mut report),
        None => report
            .notes
            .push("no baseline: (a) foreign entries and (e) were not checked".into()),
    }
    owned::check(snap, baseline, options, &mut report);
    hostports::check(snap, options, &mut report);
    ready::check(snap, &mut report);
    if let Some(b) = baseline {
        match &options.writes {
            Some(end) => {
                report.amplification = amplification::compute(snap, b, end);
                if report.amplification.is_none() {
                    report
                        .notes
                        .push("(e): the baseline has no write counters".into());
                }
            }
            None => report
                .notes
                .push("(e): no write counters at the end of the run".into()),
        }
    }
    report.violations.sort_by(|a, b| {
        (a.invariant, &a.subject, &a.entry, a.kind).cmp(&(
            b.invariant,
            &b.subject,
            &b.entry,
            b.kind,
        ))
    });
    report
}

/// The baseline of `snap`: foreign parts of every shared resource, every resource's state,
/// and `writes` (ARM's accepted writes per resource, if known).
pub fn baseline(
    snap: &Snapshot,
    writes: Option<std::collections::BTreeMap<String, u64>>,
) -> Baseline {
    foreign::baseline(snap, writes)
}
