//! Plain-text rendering of a preflight report: aligned tables for the figures and the check
//! statuses, then one block per finding.

use std::fmt::Write as _;

use poolnet_preflight::arc::ArcAddressPlan;
use poolnet_preflight::capacity::{ModelCapacity, SubnetCapacity};
use poolnet_preflight::model::NetworkPlugin;
use poolnet_preflight::net::AZURE_RESERVED_PER_SUBNET;
use poolnet_preflight::routes::KubenetRouteBudget;
use poolnet_preflight::{CheckStatus, Report, Severity};

/// `27610` -> `27,610`, as Azure's docs write capacity figures.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Left-aligned columns separated by two spaces; trailing blanks trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(s, "{cell:<width$}  ");
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

fn capacity_rows(c: &SubnetCapacity) -> Vec<Vec<String>> {
    let model_row = |m: &ModelCapacity, first: bool| {
        let planned = m.plugin == c.plugin;
        let label = if planned {
            format!("{} *", m.plugin.label())
        } else {
            m.plugin.label().to_owned()
        };
        let lead = if first {
            vec![
                c.cluster.clone(),
                c.subnet.clone(),
                c.prefix.clone(),
                thousands(c.usable_addresses),
            ]
        } else {
            vec![String::new(); 4]
        };
        let mut row = lead;
        row.extend([
            label,
            m.max_pods_per_node.to_string(),
            m.addresses_per_node.to_string(),
            thousands(m.max_nodes),
            thousands(m.max_pods),
            thousands(m.max_nodes_with_surge),
            if planned {
                c.planned_nodes.to_string()
            } else {
                String::new()
            },
        ]);
        row
    };
    let (first, second) = match c.plugin {
        NetworkPlugin::Kubenet => (&c.kubenet, &c.azure_cni),
        NetworkPlugin::Azure => (&c.azure_cni, &c.kubenet),
    };
    vec![model_row(first, true), model_row(second, false)]
}

fn render_capacity(out: &mut String, rows: &[SubnetCapacity]) {
    if rows.is_empty() {
        return;
    }
    let surges: Vec<String> = rows.iter().map(|r| r.surge.to_string()).collect();
    let mut surge_note = surges.first().cloned().unwrap_or_default();
    if surges.iter().any(|s| *s != surge_note) {
        surge_note = "per cluster".to_owned();
    }
    let _ = writeln!(
        out,
        "SUBNET CAPACITY  (Azure reserves {AZURE_RESERVED_PER_SUBNET} addresses per subnet; surge headroom: {surge_note} node(s); * = the cluster's plugin)"
    );
    let body: Vec<Vec<String>> = rows.iter().flat_map(capacity_rows).collect();
    out.push_str(&table(
        &[
            "CLUSTER",
            "SUBNET",
            "PREFIX",
            "USABLE",
            "MODEL",
            "PODS/NODE",
            "ADDRS/NODE",
            "MAX NODES",
            "MAX PODS",
            "NODES WITH SURGE ROOM",
            "PLANNED",
        ],
        &body,
    ));
    out.push('\n');
}

fn render_routes(out: &mut String, budgets: &[KubenetRouteBudget]) {
    if budgets.is_empty() {
        return;
    }
    out.push_str(
        "KUBENET ROUTES  (one route per node, surge nodes included, plus custom routes)\n",
    );
    let body: Vec<Vec<String>> = budgets
        .iter()
        .map(|b| {
            vec![
                b.route_table.clone(),
                b.cluster.clone(),
                b.nodes.to_string(),
                b.surge.to_string(),
                b.custom_routes.to_string(),
                b.used().to_string(),
                b.limit.to_string(),
                b.max_nodes().to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ROUTE TABLE",
            "CLUSTER",
            "NODES",
            "SURGE",
            "CUSTOM",
            "USED",
            "LIMIT",
            "MAX NODES",
        ],
        &body,
    ));
    out.push('\n');
}

fn render_arc(out: &mut String, arc: &ArcAddressPlan) {
    let pool = match arc.ip_pool_size {
        Some(size) => format!("IP pool holds {size}, needs {}", arc.ip_pool_needed),
        None => format!("IP pool needs {}", arc.ip_pool_needed),
    };
    let _ = writeln!(
        out,
        "AKS ARC ADDRESSES  (logical network {}; {pool})",
        arc.logical_network
    );
    let mut body: Vec<Vec<String>> = arc
        .requirements
        .iter()
        .map(|r| {
            vec![
                r.need.label().to_owned(),
                r.cluster.clone(),
                r.addresses.to_string(),
                r.need.location().to_owned(),
                r.reason.clone(),
            ]
        })
        .collect();
    body.push(vec![
        "TOTAL".to_owned(),
        String::new(),
        arc.total.to_string(),
        String::new(),
        format!(
            "{} node VMs + {} rolling upgrade + {} control plane + {} load balancer",
            arc.node_vms, arc.rolling_upgrade, arc.control_plane, arc.load_balancer
        ),
    ]);
    out.push_str(&table(
        &["NEED", "CLUSTER", "ADDRESSES", "WHERE", "WHY"],
        &body,
    ));
    out.push('\n');
}

fn status_label(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "PASS",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
    }
}

pub fn render(source: &str, report: &Report) -> String {
    let mut out = format!("poolnet preflight: {source}\n\n");
    render_capacity(&mut out, &report.capacity);
    render_routes(&mut out, &report.route_budgets);
    if let Some(arc) = &report.arc {
        render_arc(&mut out, arc);
    }

    out.push_str("CHECKS\n");
    let body: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            let count = match (c.errors, c.warnings) {
                (0, 0) => String::new(),
                (e, 0) => format!("{e} error(s)"),
                (0, w) => format!("{w} warning(s)"),
                (e, w) => format!("{e} error(s), {w} warning(s)"),
            };
            vec![
                status_label(c.status).to_owned(),
                c.check.as_str().to_owned(),
                c.summary.to_owned(),
                count,
            ]
        })
        .collect();
    out.push_str(&table(
        &["STATUS", "CHECK", "WHAT IT GUARDS", "FINDINGS"],
        &body,
    ));

    if !report.findings.is_empty() {
        out.push_str("\nFINDINGS\n");
        for f in &report.findings {
            let sev = match f.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "WARN ",
            };
            let _ = writeln!(out, "{sev}  {}  {} = {:?}", f.check, f.field, f.value);
            let _ = writeln!(out, "       problem: {}", f.problem);
            let _ = writeln!(out, "       valid:   {}", f.expected);
        }
    }

    let errors = report.findings.iter().filter(|f| f.is_error()).count();
    let warnings = report.findings.len() - errors;
    let _ = writeln!(
        out,
        "\nRESULT: {}  ({} checks, {errors} error(s), {warnings} warning(s))",
        if report.passed { "PASS" } else { "FAIL" },
        report.checks.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(240), "240");
        assert_eq!(thousands(27_610), "27,610");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }
}
