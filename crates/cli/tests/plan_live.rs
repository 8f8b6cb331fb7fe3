//! `kubectl poolnet plan NAME` and `kubectl poolnet plan -f npn.yaml`: a NodePoolNetwork checked
//! against its live cluster, with facts the binary reads from ARM (armsim here), as users run
//! it. Nothing is written.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use poolnet_tests::operator::{Harness, HarnessOptions, comparable_state, sample};

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn plan(h: &Harness, ca: &std::path::Path, args: &[&str]) -> Result<Run> {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-poolnet"))
        .arg("plan")
        .args(args)
        .args(["--kubeconfig", &h.kubeconfig().display().to_string()])
        .args(["--arm-endpoint", &h.sim.base_url()])
        .args(["--arm-ca-file", &ca.display().to_string()])
        .args(["--arm-token", "plan"])
        .output()
        .context("running kubectl-poolnet")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout)?,
        err: String::from_utf8(out.stderr)?,
    })
}

#[tokio::test]
async fn a_node_pool_network_is_planned_against_its_live_cluster() -> Result<()> {
    let h = Harness::start_with(HarnessOptions {
        operator: false,
        ..HarnessOptions::demo()?
    })
    .await?;
    let before = comparable_state(&h.sim.snapshot()?);
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("armsim-ca.pem");
    std::fs::write(&ca, h.sim.ca_pem().unwrap_or_default())?;

    // The kubenet sample, from the cluster by name: the cluster is kubenet, the routes stay
    // out of its ranges, and the table has room for every pool at its largest plus surge.
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    let r = plan(&h, &ca, &["kubenet"])?;
    println!("{}", r.out);
    ensure!(
        r.code == 0,
        "exit {} (0: passed): {}\n{}",
        r.code,
        r.err,
        r.out
    );
    ensure!(
        r.out
            .contains("NodePoolNetwork kubenet against its live cluster"),
        "{}",
        r.out
    );

    // The same, edited in a file: a route into the cluster's pod CIDR (10.244.0.0/16) fails,
    // naming the route's field.
    let mut bad = sample("kubenet-pool.yaml")?;
    if let Some(rt) = bad.spec.route_table.as_mut() {
        rt.routes[1].address_prefix = "10.244.7.0/24".into();
    }
    let file = dir.path().join("kubenet.yaml");
    std::fs::write(&file, serde_yaml::to_string(&bad)?)?;
    let r = plan(&h, &ca, &["-f", &file.display().to_string()])?;
    println!("{}", r.out);
    ensure!(
        r.code == 1,
        "exit {} (1: a check failed): {}\n{}",
        r.code,
        r.err,
        r.out
    );
    ensure!(
        r.out.contains("spec.routeTable.routes[1].addressPrefix")
            && r.out.contains("10.244.7.0/24"),
        "{}",
        r.out
    );

    // A pool poolnet would create from its template is judged as the template describes it:
    // a Windows pool cannot join this kubenet cluster.
    let mut arena = sample("arena-pool.yaml")?;
    let r = {
        std::fs::write(&file, serde_yaml::to_string(&arena)?)?;
        plan(&h, &ca, &["-f", &file.display().to_string()])?
    };
    ensure!(r.code == 0, "exit {}: {}\n{}", r.code, r.err, r.out);
    arena.spec.node_pool.agent_pool_id = arena
        .spec
        .node_pool
        .agent_pool_id
        .replace("/arena", "/win1");
    if let Some(t) = arena.spec.node_pool.template.as_mut() {
        t.os_type = Some(poolnet_api::v1alpha1::OsType::Windows);
    }
    std::fs::write(&file, serde_yaml::to_string(&arena)?)?;
    let r = plan(&h, &ca, &["-f", &file.display().to_string(), "-o", "json"])?;
    ensure!(r.code == 1, "exit {}: {}\n{}", r.code, r.err, r.out);
    let report: serde_json::Value = serde_json::from_str(&r.out)?;
    let fields: Vec<&str> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] == "error")
        .filter_map(|f| f["field"].as_str())
        .collect();
    ensure!(fields == ["spec.nodePool.agentPoolId"], "{}", r.out);

    // Nothing was written.
    let after = comparable_state(&h.sim.snapshot()?);
    ensure!(before == after, "ARM changed");
    Ok(())
}
