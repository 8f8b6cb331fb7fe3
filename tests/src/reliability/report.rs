//! The matrix's summary: fault × runs × violations per invariant, convergence after the last
//! fault, write amplification. Pure: results in, text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::RunResult;

/// Invariant letters in report order: the checker's (a)-(d) and (f), no write by a frozen
/// leader after its freeze.
pub const LETTERS: [char; 5] = ['a', 'b', 'c', 'd', 'f'];

/// The `q`-quantile (0..=1) of `values` by the nearest-rank method; `None` when empty.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// The table of a whole matrix.
pub fn render(results: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>5} {:>8}   {:>4} {:>4} {:>4} {:>4} {:>4}",
        "fault", "runs", "played", "(a)", "(b)", "(c)", "(d)", "(f)"
    );
    let mut by_fault: BTreeMap<&str, (usize, u32, BTreeMap<char, usize>)> = BTreeMap::new();
    for r in results {
        for (kind, n) in &r.faults {
            let row = by_fault.entry(kind).or_default();
            row.0 += 1;
            row.1 += n;
            for (letter, v) in &r.violations {
                *row.2.entry(*letter).or_default() += v;
            }
        }
    }
    for (kind, (runs, played, violations)) in &by_fault {
        let _ = write!(out, "{kind:<22} {runs:>5} {played:>8}  ");
        for l in LETTERS {
            let _ = write!(out, " {:>4}", violations.get(&l).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>5} {:>7}   {:>4} {:>4} {:>4} {:>4} {:>4}   {:>8} {:>8} {:>8}   {:>6}",
        "scenario",
        "runs",
        "failed",
        "(a)",
        "(b)",
        "(c)",
        "(d)",
        "(f)",
        "conv p50",
        "p99",
        "max",
        "ampl."
    );
    let mut by_scenario: BTreeMap<&str, Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        by_scenario.entry(&r.scenario).or_default().push(r);
    }
    let all: Vec<&RunResult> = results.iter().collect();
    for (name, runs) in by_scenario.iter().chain(std::iter::once((&"all", &all))) {
        let failed = runs.iter().filter(|r| r.failed()).count();
        let _ = write!(out, "{name:<12} {:>5} {failed:>7}  ", runs.len());
        for l in LETTERS {
            let n: usize = runs
                .iter()
                .map(|r| r.violations.get(&l).copied().unwrap_or(0))
                .sum();
            let _ = write!(out, " {n:>4}");
        }
        let conv: Vec<Duration> = runs.iter().filter_map(|r| r.convergence).collect();
        let writes: u64 = runs.iter().map(|r| r.writes).sum();
        let changed: usize = runs.iter().map(|r| r.changed).sum();
        let ampl = if changed > 0 {
            format!("{:.2}", writes as f64 / changed as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "   {:>8} {:>8} {:>8}   {ampl:>6}",
            secs(quantile(&conv, 0.5)),
            secs(quantile(&conv, 0.99)),
            secs(conv.iter().max().copied()),
        );
    }
    out
}

/// One line per run, and for a failed run its findings and the command that reruns it.
pub fn render_run(r: &RunResult, rerun: &str) -> String {
    let mut out = format!(
        "{} seed {}: {}; faults {:?}; violations {:?}; convergence {}; amplification {} ({} writes / {} changed); pods {} created, {} refusals retried; ARM writes by client {:?}",
        r.scenario,
        r.seed,
        if r.failed() { "FAILED" } else { "ok" },
        r.faults,
        r.violations,
        secs(r.convergence),
        r.amplification.map_or("-".into(), |a| format!("{a:.2}")),
        r.writes,
        r.changed,
        r.pods_created,
        r.pod_refusals,
        r.writes_by_client,
    );
    if let Some(e) = &r.error {
        let _ = write!(out, "\n  error: {e}");
    }
    if r.failed() || !r.details.is_empty() {
        for d in r.details.iter().take(40) {
            let _ = write!(out, "\n  {d}");
        }
        if r.details.len() > 40 {
            let _ = write!(out, "\n  … {} more", r.details.len() - 40);
        }
    }
    if r.failed() {
        let _ = write!(out, "\n  logs: {}\n  rerun: {rerun}", r.log_dir.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_secs(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_secs(99)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_secs(100)));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(
            quantile(&[Duration::from_secs(3)], 0.99),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn the_table_counts_runs_per_fault_and_violations_per_invariant() {
        let mut a = RunResult {
            scenario: "kill".into(),
            seed: 1,
            convergence: Some(Duration::from_secs(4)),
            writes: 10,
            changed: 5,
            ..RunResult::default()
        };
        a.faults.insert("replica SIGKILL", 7);
        a.violations.insert('b', 2);
        let mut b = a.clone();
        b.seed = 2;
        b.violations.clear();
        let text = render(&[a.clone(), b]);
        let kill = text
            .lines()
            .find(|l| l.starts_with("replica SIGKILL"))
            .unwrap();
        let cols: Vec<&str> = kill.split_whitespace().collect();
        assert_eq!(&cols[2..], ["2", "14", "0", "2", "0", "0", "0"]);
        let all = text.lines().find(|l| l.starts_with("all")).unwrap();
        assert!(all.contains("2.00"), "{all}");
        assert!(a.failed());
        assert!(render_run(&a, "make reliability SEED=1").contains("rerun: make reliability"));
    }
}
