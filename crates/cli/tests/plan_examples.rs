//! Runs the real `kubectl-poolnet` binary on every plan under `examples/plans/` and checks the
//! exit code, the table and the JSON report.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/plans")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-poolnet"))
        .args(args)
        .output()
        .expect("run kubectl-poolnet")
}

fn table(name: &str) -> (i32, String) {
    let path = example(name);
    let out = run(&["plan", "-f", path.to_str().expect("utf-8 path")]);
    let code = out.status.code().expect("exit code");
    (code, String::from_utf8(out.stdout).expect("utf-8 output"))
}

fn json(name: &str) -> (i32, Value) {
    let path = example(name);
    let out = run(&[
        "plan",
        "-f",
        path.to_str().expect("utf-8 path"),
        "-o",
        "json",
    ]);
    let code = out.status.code().expect("exit code");
    let report = serde_json::from_slice(&out.stdout).expect("JSON report");
    (code, report)
}

/// The finding of `check` in a JSON report.
fn finding<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {report:#}"))
}

fn error_checks(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["check"].as_str().expect("check id").to_owned())
        .collect()
}

#[test]
fn seed_001_table_shows_the_documented_capacity() {
    let (code, out) = table("seed-001-kubenet-byo-subnet.yaml");
    assert_eq!(code, 0, "{out}");
    let kubenet = out
        .lines()
        .find(|l| l.contains("kubenet *"))
        .expect("kubenet row");
    for cell in ["192.168.1.0/24", "251", "110", "27,610", "250"] {
        assert!(kubenet.contains(cell), "{cell} missing in {kubenet}");
    }
    let cni = out
        .lines()
        .find(|l| l.contains("azure CNI"))
        .expect("azure CNI row");
    let cells: Vec<&str> = cni.split_whitespace().collect();
    assert_eq!(cells, ["azure", "CNI", "30", "31", "8", "240", "7"]);
    assert!(out.contains("RESULT: PASS"), "{out}");
}

#[test]
fn seed_001_json_carries_the_figures() {
    let (code, r) = json("seed-001-kubenet-byo-subnet.yaml");
    assert_eq!(code, 0);
    assert_eq!(r["passed"], true);
    let row = &r["capacity"][0];
    assert_eq!(row["usableAddresses"], 251);
    assert_eq!(row["kubenet"]["maxNodes"], 251);
    assert_eq!(row["kubenet"]["maxPods"], 27_610);
    assert_eq!(row["azureCni"]["maxNodes"], 8);
    assert_eq!(row["azureCni"]["maxPods"], 240);
    assert_eq!(r["routeBudgets"][0]["customRoutes"], 1);
}

#[test]
fn seed_001_on_premises_overlap_fails_on_aks_defaults() {
    let (code, r) = json("fail-onprem-overlap.yaml");
    assert_eq!(code, 1);
    let f = finding(&r, "ranges.overlap");
    assert_eq!(f["field"], "clusters[0].serviceCidr");
    assert_eq!(f["value"], "10.0.0.0/16 (AKS default)");
    assert!(f["problem"].as_str().expect("text").contains("10.0.0.0/8"));
}

#[test]
fn azure_cni_capacity_failure_names_node_count() {
    let (code, r) = json("fail-capacity-azure-cni.yaml");
    assert_eq!(code, 1);
    let f = finding(&r, "capacity.subnet");
    assert_eq!(f["field"], "clusters[0].nodeCount");
    assert_eq!(f["value"], "8");
    assert!(
        f["expected"]
            .as_str()
            .expect("text")
            .contains("at most 7 nodes")
    );
    assert_eq!(
        finding(&r, "capacity.max-pods")["field"],
        "clusters[1].maxPods"
    );
}

#[test]
fn range_failures() {
    let (code, r) = json("fail-ranges.yaml");
    assert_eq!(code, 1);
    let mut checks = error_checks(&r);
    checks.sort();
    checks.dedup();
    assert_eq!(
        checks,
        [
            "ranges.dns-service-ip",
            "ranges.overlap",
            "ranges.reserved",
            "ranges.subnet-in-vnet"
        ]
    );
    let dns = finding(&r, "ranges.dns-service-ip");
    assert_eq!(dns["field"], "clusters[0].dnsServiceIp");
    assert_eq!(dns["value"], "172.30.0.1");
    assert_eq!(
        finding(&r, "ranges.reserved")["field"],
        "clusters[0].serviceCidr"
    );
}

#[test]
fn route_failures() {
    let (code, r) = json("fail-routes.yaml");
    assert_eq!(code, 1);
    let mut checks = error_checks(&r);
    checks.sort();
    assert_eq!(
        checks,
        [
            "routes.default-route",
            "routes.limit",
            "routes.shared-table"
        ]
    );
    assert_eq!(
        finding(&r, "routes.limit")["field"],
        "clusters[0].nodeCount"
    );
    assert_eq!(
        finding(&r, "routes.shared-table")["field"],
        "vnets[0].subnets[1].routeTable"
    );
}

#[test]
fn seed_002_api_server_subnet_passes() {
    let (code, out) = table("seed-002-apiserver-vnet-integration.yaml");
    assert_eq!(code, 0, "{out}");
    for check in [
        "apiserver.delegation",
        "apiserver.size",
        "apiserver.free-addresses",
        "apiserver.dedicated",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("{check} missing"));
        assert!(line.starts_with("PASS"), "{line}");
    }
}

#[test]
fn api_server_failures() {
    let (code, r) = json("fail-apiserver.yaml");
    assert_eq!(code, 1);
    let mut checks = error_checks(&r);
    checks.sort();
    assert_eq!(
        checks,
        [
            "apiserver.dedicated",
            "apiserver.delegation",
            "apiserver.free-addresses",
            "apiserver.size"
        ]
    );
    assert_eq!(
        finding(&r, "apiserver.delegation")["expected"],
        "Microsoft.ContainerService/managedClusters"
    );
}

#[test]
fn seed_004_table_reserves_19_addresses() {
    let (code, out) = table("seed-004-arc-static-ip.yaml");
    assert_eq!(code, 0, "{out}");
    let total = out
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .expect("total row");
    assert!(total.contains("19"), "{total}");
    assert!(
        total.contains("12 node VMs + 2 rolling upgrade + 2 control plane + 3 load balancer"),
        "{total}"
    );
    assert!(out.contains("IP pool holds 21, needs 14"), "{out}");
    let cross = out
        .lines()
        .find(|l| l.contains("arc.cross-vlan"))
        .expect("cross-VLAN check");
    assert!(cross.starts_with("PASS"), "{cross}");
}

#[test]
fn seed_004_json_breakdown() {
    let (code, r) = json("seed-004-arc-static-ip.yaml");
    assert_eq!(code, 0);
    let arc = &r["arc"];
    assert_eq!(arc["nodeVms"], 12);
    assert_eq!(arc["rollingUpgrade"], 2);
    assert_eq!(arc["controlPlane"], 2);
    assert_eq!(arc["loadBalancer"], 3);
    assert_eq!(arc["total"], 19);
    assert_eq!(arc["ipPoolNeeded"], 14);
}

#[test]
fn arc_failures() {
    let (code, r) = json("fail-arc.yaml");
    assert_eq!(code, 1);
    let mut checks = error_checks(&r);
    checks.sort();
    assert_eq!(
        checks,
        [
            "arc.control-plane-ip",
            "arc.cross-vlan",
            "arc.gateway",
            "arc.load-balancer-count",
            "arc.load-balancer-ip",
            "arc.pool-capacity"
        ]
    );
    let cp = finding(&r, "arc.control-plane-ip");
    assert_eq!(cp["field"], "arc.clusters[1].controlPlaneIp");
    assert_eq!(cp["value"], "10.220.32.20");
    let vlan = finding(&r, "arc.cross-vlan");
    assert!(vlan["value"].as_str().expect("text").contains("tcp/65000"));
}

#[test]
fn every_example_runs_and_failing_ones_exit_1() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_owned();
        if !name.ends_with(".yaml") {
            continue;
        }
        seen += 1;
        let (code, out) = table(&name);
        // Naming convention of examples/plans: seed-* pass, fail-* fail.
        let expect = if name.starts_with("fail-") { 1 } else { 0 };
        assert_eq!(code, expect, "{name}:\n{out}");
        // Every error finding says what would be valid.
        let (_, r) = json(&name);
        for f in r["findings"].as_array().expect("findings") {
            for key in ["field", "value", "problem", "expected"] {
                assert!(
                    !f[key].as_str().unwrap_or_default().is_empty() || key == "value",
                    "{name}: empty {key} in {f}"
                );
            }
        }
    }
    assert!(seen >= 8, "only {seen} examples");
}

#[test]
fn unreadable_input_exits_2() {
    let out = run(&["plan", "-f", "/nonexistent/plan.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.contains("/nonexistent/plan.yaml"), "{err}");

    let dir = std::env::temp_dir().join(format!("poolnet-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("typo.yaml");
    std::fs::write(&bad, "clusters:\n  - name: x\n    nodecount: 3\n").expect("write");
    let out = run(&["plan", "-f", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.contains("nodecount"), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn bad_addresses_are_findings_not_crashes() {
    let dir = std::env::temp_dir().join(format!("poolnet-plan-addr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plan = dir.join("bad.yaml");
    std::fs::write(
        &plan,
        "vnets:\n  - name: v\n    addressSpace: [10.0.0.0/16]\n    subnets:\n      - name: s\n        addressPrefix: 10.0.1.7/24\n",
    )
    .expect("write");
    let out = run(&[
        "plan",
        "-f",
        plan.to_str().expect("utf-8 path"),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let f = finding(&r, "plan.address");
    assert_eq!(f["field"], "vnets[0].subnets[0].addressPrefix");
    assert_eq!(f["value"], "10.0.1.7/24");
    assert_eq!(f["expected"], "10.0.1.0/24");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
