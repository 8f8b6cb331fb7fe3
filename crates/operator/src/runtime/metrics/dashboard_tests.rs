//! The Grafana dashboard the chart ships (`charts/poolnet/dashboards/poolnet.json`) queries
//! only what the operator exports: every series a query names is a family of [`EXPORTED`]
//! (with the suffix its type gives it), every label a query matches, groups by or shows in a
//! legend exists on those series (or is one Prometheus adds when it scrapes), and every
//! exported family is on some panel.

use std::collections::{BTreeMap, BTreeSet};

use super::tests::{busy_metrics, families};
use super::*;

const DASHBOARD: &str = include_str!("../../../../../charts/poolnet/dashboards/poolnet.json");

/// Labels Prometheus attaches from the scrape target (ServiceMonitor or PodMonitor).
const TARGET_LABELS: &[&str] = &[
    "job",
    "namespace",
    "pod",
    "instance",
    "service",
    "container",
    "endpoint",
];

/// PromQL words that are neither series nor labels.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// What one PromQL expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Series names, each with the label names of its `{...}` matchers.
    series: Vec<(String, Vec<String>)>,
    /// Label names in `by (...)`, `without (...)`, `on (...)`, `ignoring (...)` clauses.
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a quoted string starting at `i` (the quote); returns the index after it.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Identifiers from the opening bracket at `i` up to `close` (quoted strings skipped: label
/// values), and the index after `close`: the label names of a `{a="x", b=~"y"}` matcher body
/// or of a `( ... )` grouping clause.
fn identifiers(chars: &[char], mut i: usize, close: char) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    i += 1;
    while i < chars.len() && chars[i] != close {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            names.push(chars[start..i].iter().collect());
        } else {
            i += 1;
        }
    }
    (names, i + 1)
}

/// Label names of a `{...}` matcher body starting at `i` (the `{`).
fn matchers(chars: &[char], i: usize) -> (Vec<String>, usize) {
    identifiers(chars, i, '}')
}

fn next_non_space(chars: &[char], mut i: usize) -> Option<(usize, char)> {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    chars.get(i).map(|c| (i, *c))
}

/// Enough of a PromQL lexer to find series, their matchers and grouping labels.
fn refs(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Refs::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            // Range or subquery duration: `[5m]`, `[$__rate_interval]`.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable or a number (`0.99`, `1e3`).
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c == '{' {
            // Matchers without a series name before them.
            let (names, after) = matchers(&chars, i);
            out.series.push((String::new(), names));
            i = after;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(&chars, i);
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                if let Some((j, '(')) = next {
                    let (names, after) = identifiers(&chars, j, ')');
                    out.grouping.extend(names);
                    i = after;
                }
            } else if matches!(next, Some((_, '('))) || KEYWORDS.contains(&word.as_str()) {
                // A function or an aggregation operator.
            } else if let Some((j, '{')) = next {
                let (names, after) = matchers(&chars, j);
                out.series.push((word, names));
                i = after;
            } else {
                out.series.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every `expr` of every panel target (rows nest panels), with the legend it draws.
fn queries(v: &serde_json::Value, out: &mut Vec<(String, String, String)>, title: &str) {
    match v {
        serde_json::Value::Object(map) => {
            let title = map
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or(title)
                .to_string();
            if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                let legend = map
                    .get("legendFormat")
                    .and_then(|l| l.as_str())
                    .unwrap_or("");
                out.push((title.clone(), expr.to_string(), legend.to_string()));
            }
            for value in map.values() {
                queries(value, out, &title);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                queries(item, out, title);
            }
        }
        _ => {}
    }
}

/// `{{label}}` references of a legend.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_string())
        .collect()
}

/// Exported series names (with suffixes) → (family, label names).
fn exported_series() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let text = busy_metrics().render();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let set = labels.entry(name.to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let (names, _) = matchers(&line.chars().collect::<Vec<_>>(), name_end);
            set.extend(names);
        }
    }
    let mut out = BTreeMap::new();
    for (family, kind) in families(&text) {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            let series = format!("{family}{suffix}");
            let set = labels.get(&series).cloned().unwrap_or_default();
            out.insert(series, (family.clone(), set));
        }
    }
    out
}

/// Everything wrong with the dashboard's queries against `exported`.
fn problems(
    dashboard: &serde_json::Value,
    exported: &BTreeMap<String, (String, BTreeSet<String>)>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut qs = Vec::new();
    queries(dashboard, &mut qs, "");
    // Template variables: `label_values(series{...}, label)`.
    if let Some(vars) = dashboard["templating"]["list"].as_array() {
        for var in vars {
            let q = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str())
                .unwrap_or("");
            if let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                && let Some((selector, label)) = inner.rsplit_once(',')
            {
                let name = var["name"].as_str().unwrap_or("?");
                qs.push((
                    format!("variable {name}"),
                    selector.trim().to_string(),
                    format!("{{{{{}}}}}", label.trim()),
                ));
            }
        }
    }
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    if qs.is_empty() {
        problems.push("the dashboard has no queries".to_string());
    }
    for (title, expr, legend) in &qs {
        let r = refs(expr);
        let mut available: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        let mut named = 0;
        for (series, matcher_labels) in &r.series {
            if series.is_empty() {
                problems.push(format!("{title}: `{expr}` has matchers without a series"));
                continue;
            }
            let Some((family, labels)) = exported.get(series) else {
                problems.push(format!(
                    "{title}: `{series}` is not a series the operator exports"
                ));
                continue;
            };
            named += 1;
            used.insert(family.clone());
            available.extend(labels.iter().cloned());
            for l in matcher_labels {
                if !labels.contains(l) && !TARGET_LABELS.contains(&l.as_str()) {
                    problems.push(format!("{title}: `{series}` has no label `{l}`"));
                }
            }
        }
        if named == 0 {
            problems.push(format!("{title}: `{expr}` names no exported metric"));
        }
        for l in &r.grouping {
            if !available.contains(l) {
                problems.push(format!(
                    "{title}: groups by `{l}`, which none of its series carries"
                ));
            }
        }
        let shown: BTreeSet<String> = if r.grouping.is_empty() {
            available.clone()
        } else {
            r.grouping.iter().cloned().collect()
        };
        for l in legend_labels(legend) {
            if !shown.contains(&l) {
                problems.push(format!(
                    "{title}: legend shows `{l}`, which the query drops"
                ));
            }
        }
    }
    (problems, used)
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON")
}

#[test]
fn every_dashboard_query_names_exported_metrics_and_labels() {
    let (problems, _) = problems(&dashboard(), &exported_series());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_exported_metric_is_on_the_dashboard() {
    let (_, used) = problems(&dashboard(), &exported_series());
    let missing: Vec<&str> = EXPORTED
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !used.contains(*n))
        .collect();
    assert!(missing.is_empty(), "not on any panel: {missing:?}");
}

#[test]
fn the_checker_finds_unknown_series_labels_and_legends() {
    let exported = exported_series();
    let broken = serde_json::json!({"panels": [
        {"title": "typo", "targets": [{"expr": "rate(poolnet_reconcile_totl[5m])"}]},
        {"title": "gauge with a counter suffix", "targets": [{"expr": "poolnet_leader_total"}]},
        {"title": "bad matcher", "targets": [{"expr": "sum(poolnet_leader{controller=\"x\"})"}]},
        {"title": "bad grouping", "targets": [{"expr": "sum by (subscription) (poolnet_leader)"}]},
        {"title": "bad legend", "targets": [{"expr": "sum by (pod) (poolnet_leader)", "legendFormat": "{{controller}}"}]},
        {"title": "no metric", "targets": [{"expr": "vector(1)"}]},
        {"title": "fine", "targets": [{"expr": "histogram_quantile(0.99, sum by (le, controller) (rate(poolnet_reconcile_duration_seconds_bucket{job=~\"$job\"}[$__rate_interval])))", "legendFormat": "{{controller}}"}]}
    ]});
    let (found, used) = problems(&broken, &exported);
    let expect = [
        "typo: `poolnet_reconcile_totl` is not a series the operator exports",
        "gauge with a counter suffix: `poolnet_leader_total` is not a series the operator exports",
        "bad matcher: `poolnet_leader` has no label `controller`",
        "bad grouping: groups by `subscription`, which none of its series carries",
        "bad legend: legend shows `controller`, which the query drops",
        "no metric: `vector(1)` names no exported metric",
    ];
    for e in expect {
        assert!(
            found.iter().any(|p| p.starts_with(e)),
            "missed {e:?} in {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|p| p.starts_with("fine")),
        "false alarm: {found:#?}"
    );
    assert!(used.contains("poolnet_reconcile_duration_seconds"));
}
