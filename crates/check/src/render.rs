//! The human-readable report.

use std::fmt::Write as _;

use crate::model::{Invariant, Report};

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

/// The report as people read it: one section per invariant, then (e), notes and errors.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let c = &report.checked;
    let _ = writeln!(
        out,
        "poolnet-check: {} NodePoolNetwork(s), {} HostPortPolicy(ies), {} HostPortClaim(s), {} HostPortBlock(s), {} pod(s) with host ports, {} ARM resource(s), {} baseline resource(s)",
        c.node_pool_networks,
        c.host_port_policies,
        c.host_port_claims,
        c.host_port_blocks,
        c.pods,
        c.arm_resources,
        c.baseline_resources
    );
    for inv in [
        Invariant::Foreign,
        Invariant::Owned,
        Invariant::HostPorts,
        Invariant::Ready,
    ] {
        let found = report.of(inv);
        let verdict = if found.is_empty() {
            "ok".to_string()
        } else {
            format!("{} violation(s)", found.len())
        };
        let _ = writeln!(out, "({}) {}: {verdict}", inv.letter(), inv.title());
        for v in found {
            let _ = writeln!(out, "  - {:?} {}", v.kind, v.subject);
            if let Some(e) = &v.entry {
                let _ = writeln!(out, "      entry:    {e}");
            }
            if !v.message.is_empty() {
                let _ = writeln!(out, "      {}", v.message);
            }
            if let Some(x) = &v.expected {
                let _ = writeln!(out, "      expected: {}", short(x));
            }
            if let Some(x) = &v.found {
                let _ = writeln!(out, "      found:    {}", short(x));
            }
        }
    }
    match &report.amplification {
        Some(a) => {
            let ratio = a.ratio.map_or_else(
                || "n/a (nothing changed)".to_string(),
                |r| format!("{r:.2}"),
            );
            let _ = writeln!(
                out,
                "(e) write amplification: {} write(s) / {} changed resource(s) = {ratio}",
                a.writes, a.changed
            );
            for r in &a.resources {
                let _ = writeln!(
                    out,
                    "  {:>4} write(s) {} {}",
                    r.writes,
                    if r.changed { "changed  " } else { "unchanged" },
                    r.id
                );
            }
        }
        None => {
            let _ = writeln!(out, "(e) write amplification: not measured");
        }
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    let _ = writeln!(
        out,
        "{}",
        match report.exit_code() {
            0 => "all invariants hold".to_string(),
            1 => format!("{} violation(s)", report.violations.len()),
            _ => "the check is incomplete (errors above)".to_string(),
        }
    );
    out
}
