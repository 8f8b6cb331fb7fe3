//! The invariant checker (`poolnet-check`, issue 13) against a real installation: the API
//! server, armsim with the AKS demo world and the operator. Two pools share the BYO subnet
//! NSG (one Manage, one switched to Observe after it wrote), a HostPortPolicy opens its range
//! there, and a hand-made rule sits beside them. Once everything is Ready the checker finds
//! nothing; with the operator stopped, each thing broken behind poolnet's back is reported
//! under its invariant.

mod hostports_support;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use poolnet_api::ownership::cluster_rule_prefix;
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork, ReconcilePolicy};
use poolnet_arm::models::SecurityRule;
use poolnet_arm::{ArmNetwork, Lro};
use poolnet_check::{Invariant, Kind, Options, Report, Snapshot, cli, shell};
use poolnet_tests::operator::{
    Harness, HarnessOptions, WAIT, agent_pool_id, aks_nsg_id, byo_nsg_id, cluster_id,
    route_table_id, sample,
};
use serde_json::json;

const FOREIGN: &str = "allow-bastion-ssh";

/// The kubenet pool sharing the game sample's NSG, its rules aimed at an existing ASG.
fn neighbour() -> Result<NodePoolNetwork> {
    let mut n = sample("game-pool.yaml")?;
    n.metadata.name = Some("watch".into());
    n.spec.node_pool.agent_pool_id = agent_pool_id("kubenet");
    n.spec.node_public_ip = None;
    n.spec.host_port_policies = None;
    n.spec.allowed_host_ports = vec!["8000-8100/tcp".into()];
    let asgs = n
        .spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?;
    asgs.managed = Some(false);
    asgs.custom_ids.truncate(1);
    n.spec.network_security_groups[0].priorities.from = 300;
    n.spec.network_security_groups[0].priorities.to = 399;
    Ok(n)
}

async fn write_nsg(h: &Harness, edit: impl FnOnce(&mut Vec<SecurityRule>)) -> Result<()> {
    let id = Harness::id(&byo_nsg_id())?;
    let read = h.arm.get_nsg(&id).await?;
    let mut nsg = read.resource.clone();
    edit(
        &mut nsg
            .properties
            .get_or_insert_with(Default::default)
            .security_rules,
    );
    if let Lro::Pending(handle) = h.arm.put_nsg(&id, &nsg, read.precondition()).await? {
        h.arm.wait(handle, Duration::from_secs(60)).await?;
    }
    Ok(())
}

fn rule(name: &str, priority: i32, port: &str, description: &str) -> Result<SecurityRule> {
    Ok(serde_json::from_value(
        json!({"name": name, "properties": {
        "priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "10.20.0.0/16", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": port,
        "description": description}}),
    )?)
}

async fn snapshot(h: &Harness, baseline: Option<&poolnet_check::Baseline>) -> Result<Snapshot> {
    let extra = baseline
        .iter()
        .flat_map(|b| b.resources.iter().map(|r| r.id.clone()))
        .collect::<Vec<_>>();
    shell::read(&h.env.client(), &h.arm, extra).await
}

async fn policy_ready(api: &Api<HostPortPolicy>, name: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = api.get(name).await?;
        let st = p.status.clone().unwrap_or_default();
        if st.observed_generation == p.metadata.generation
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("HostPortPolicy {name} not Ready: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `poolnet-check` as a user would (the binary's own code path) against the harness.
async fn cli(h: &Harness, dir: &std::path::Path, args: &[&str]) -> Result<cli::Outcome> {
    let ca = dir.join("armsim-ca.pem");
    std::fs::write(&ca, h.sim.ca_pem().unwrap_or_default())?;
    let mut argv: Vec<String> = vec!["poolnet-check".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.extend([
        format!("--kubeconfig={}", h.kubeconfig().display()),
        format!("--arm-endpoint={}", h.sim.base_url()),
        format!("--arm-ca-file={}", ca.display()),
        "--arm-static-token=poolnet-tests".into(),
        "--armsim".into(),
    ]);
    Ok(cli::run(<cli::Cli as clap::Parser>::try_parse_from(argv)?).await)
}

fn found(report: &Report) -> BTreeSet<(char, Kind, String)> {
    report
        .violations
        .iter()
        .map(|v| {
            (
                v.invariant.letter(),
                v.kind,
                v.entry.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn pod(name: &str, host_port: i32) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 8080, "hostPort": host_port, "protocol": "TCP"}]}]}
    }))?)
}

#[tokio::test]
async fn the_checker_finds_nothing_on_a_converged_installation_and_each_break_after_it()
-> Result<()> {
    let mut h = Harness::start().await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    // A rule someone else keeps in the shared NSG.
    write_nsg(&h, |rules| {
        rules.push(rule(FOREIGN, 150, "22", "bastion").expect("rule"));
    })
    .await?;
    // The game pool (Manage) and its neighbour, which writes, then only watches.
    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&neighbour()?).await?;
    h.wait_ready("game").await?;
    h.wait_ready("watch").await?;
    let mut watch = neighbour()?;
    watch.spec.reconcile_policy = ReconcilePolicy::Observe;
    h.apply(&watch).await?;
    h.wait_ready("watch").await?;
    // A policy of an admitted namespace opens its range in the game pool's NSG.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poolnet.dev/host-ports": "game"}}})),
        )
        .await?;
    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), &ns);
    let echo: HostPortPolicy = serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": "echo", "namespace": ns},
        "spec": {"nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "echo"}},
            "ports": [{"containerPort": 8080}],
            "hostPortRange": {"start": 41000, "end": 41999}}
    }))?;
    policies.create(&PostParams::default(), &echo).await?;
    policy_ready(&policies, "echo").await?;
    h.wait_ready("game").await?;

    // Converged: a baseline, then a check, finds nothing.
    let snap = snapshot(&h, None).await?;
    let writes = shell::armsim_writes(&h.arm).await?;
    let baseline = poolnet_check::baseline(&snap, Some(writes));
    let nsg = baseline
        .resources
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(&byo_nsg_id()))
        .context("the shared NSG is in the baseline")?;
    ensure!(
        nsg.entries.contains_key(FOREIGN) && nsg.entries.keys().any(|n| n.contains("-watch-")),
        "foreign: the hand-made rule and the Observe object's: {:?}",
        nsg.entries.keys()
    );
    let opts = Options {
        writes: Some(shell::armsim_writes(&h.arm).await?),
        ..Options::default()
    };
    let clean = poolnet_check::check(
        &snapshot(&h, Some(&baseline)).await?,
        Some(&baseline),
        &opts,
    );
    ensure!(
        clean.violations.is_empty() && clean.errors.is_empty(),
        "{}",
        poolnet_check::render::human(&clean)
    );
    ensure!(clean.exit_code() == 0);
    eprintln!("{}", poolnet_check::render::human(&clean));
    let e = clean.amplification.clone().context("(e) measured")?;
    ensure!(
        e.changed == 0 && e.writes == 0,
        "a converged installation writes nothing: {e:?}"
    );

    // The same through the command line: a baseline file, then a JSON report, exit code 0.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("baseline.json");
    let file_arg = format!("--file={}", file.display());
    let out = cli(&h, dir.path(), &["baseline", &file_arg]).await?;
    ensure!(out.code == 0, "{out:?}");
    let baseline_arg = format!("--baseline={}", file.display());
    let out = cli(&h, dir.path(), &["check", &baseline_arg, "--output=json"]).await?;
    ensure!(out.code == 0, "{out:?}");
    let report: Report = serde_json::from_str(&out.stdout)?;
    ensure!(
        report.violations.is_empty() && report.amplification.is_some(),
        "{report:?}"
    );

    // Behind poolnet's back, with the operator stopped.
    h.stop_operator().await?;
    let prefix = cluster_rule_prefix(&cluster_id());
    let stray = format!("{prefix}gone-tcp-abcdef");
    let mut removed = String::new();
    write_nsg(&h, |rules| {
        let i = rules
            .iter()
            .position(|r| {
                r.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix) && n.contains("-game-udp-"))
            })
            .expect("game's udp rule");
        removed = rules.remove(i).name.unwrap_or_default();
        rules.push(
            rule(
                &stray,
                480,
                "9999",
                "Managed by poolnet for NodePoolNetwork gone (uid 0000); do not edit",
            )
            .expect("rule"),
        );
        let f = rules
            .iter_mut()
            .find(|r| r.name.as_deref() == Some(FOREIGN))
            .expect("the foreign rule");
        if let Some(p) = f.properties.as_mut() {
            p.destination_port_range = Some("2222".into());
        }
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["twin-a", "twin-b"] {
        pods.create(&PostParams::default(), &pod(name, 41500)?)
            .await?;
    }
    let opts = Options {
        writes: Some(shell::armsim_writes(&h.arm).await?),
        ..Options::default()
    };
    let broken = poolnet_check::check(
        &snapshot(&h, Some(&baseline)).await?,
        Some(&baseline),
        &opts,
    );
    let want: BTreeSet<(char, Kind, String)> = [
        ('a', Kind::ForeignEntryChanged, FOREIGN.to_string()),
        ('b', Kind::Missing, removed.clone()),
        ('b', Kind::Unrecorded, stray.clone()),
        ('c', Kind::Duplicate, "tcp-41500".to_string()),
    ]
    .into_iter()
    .collect();
    ensure!(
        found(&broken) == want,
        "expected {want:#?}\n{}",
        poolnet_check::render::human(&broken)
    );
    ensure!(broken.exit_code() == 1);
    eprintln!("{}", poolnet_check::render::human(&broken));
    let changed = &broken.of(Invariant::Foreign)[0];
    ensure!(
        changed
            .found
            .as_ref()
            .and_then(|f| f.pointer("/properties/destinationPortRange"))
            == Some(&json!("2222")),
        "{changed:?}"
    );
    // (e): one write of the NSG (ours), one resource changed.
    let e = broken.amplification.clone().context("(e) measured")?;
    ensure!(
        e.writes == 1 && e.changed == 1 && e.ratio == Some(1.0),
        "{e:?}"
    );
    // The detached-leftover switch turns only the stray rule (its owner UID is no live
    // object's) into a note.
    let lenient = poolnet_check::check(
        &snapshot(&h, Some(&baseline)).await?,
        Some(&baseline),
        &Options {
            allow_detached: true,
            ..Options::default()
        },
    );
    ensure!(
        !found(&lenient).contains(&('b', Kind::Unrecorded, stray.clone()))
            && found(&lenient).len() == 3,
        "{}",
        poolnet_check::render::human(&lenient)
    );
    // The command line agrees, with exit code 1 (the file baseline is the CLI's own).
    let out = cli(&h, dir.path(), &[&baseline_arg, "--output=json"]).await?;
    ensure!(out.code == 1, "{out:?}");
    let report: Report = serde_json::from_str(&out.stdout)?;
    ensure!(found(&report) == want, "{report:#?}");
    let out = cli(&h, dir.path(), &["--baseline=/nonexistent/baseline.json"]).await?;
    ensure!(
        out.code == 2 && out.stderr.contains("reading baseline"),
        "{out:?}"
    );
    // The checker's grace is the operator's.
    ensure!(poolnet_check::DEFAULT_GRACE == poolnet_operator::hostports::repair::DEFAULT_GRACE);
    Ok(())
}

/// A baseline taken before poolnet exists in the cluster: from the first write to the last
/// deletion, poolnet leaves every foreign rule, route and agent-pool field as it found it,
/// and deletion strands nothing (the pools' own settings restored, the managed ASG gone).
#[tokio::test]
async fn from_first_write_to_deletion_poolnet_leaves_foreign_parts_alone() -> Result<()> {
    let h = Harness::start().await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let resources = vec![
        byo_nsg_id(),
        aks_nsg_id(),
        route_table_id(),
        agent_pool_id("game"),
        agent_pool_id("kubenet"),
    ];
    let before = shell::read(&client, &h.arm, resources.clone()).await?;
    let baseline = poolnet_check::baseline(&before, Some(shell::armsim_writes(&h.arm).await?));
    ensure!(baseline.resources.len() == resources.len(), "{baseline:#?}");
    let check = |label: &'static str| {
        let (client, baseline, resources) = (client.clone(), baseline.clone(), resources.clone());
        let h = &h;
        async move {
            let ids = resources
                .into_iter()
                .chain(baseline.resources.iter().map(|r| r.id.clone()));
            let snap = shell::read(&client, &h.arm, ids).await?;
            let report = poolnet_check::check(&snap, Some(&baseline), &Options::default());
            eprintln!("{label}:\n{}", poolnet_check::render::human(&report));
            ensure!(report.errors.is_empty(), "{label}: {:?}", report.errors);
            Ok::<_, anyhow::Error>(report)
        }
    };

    h.apply(&sample("game-pool.yaml")?).await?;
    h.apply(&sample("kubenet-pool.yaml")?).await?;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poolnet.dev/host-ports": "game"}}})),
        )
        .await?;
    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), &ns);
    let echo: HostPortPolicy = serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": "echo", "namespace": ns},
        "spec": {"nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "echo"}},
            "ports": [{"containerPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
            "hostPortRange": {"start": 41000, "end": 41999}}
    }))?;
    policies.create(&PostParams::default(), &echo).await?;
    h.wait_ready("game").await?;
    h.wait_ready("kubenet").await?;
    policy_ready(&policies, "echo").await?;
    h.wait_ready("game").await?;
    let converged = check("converged").await?;
    ensure!(
        converged.violations.is_empty(),
        "{}",
        poolnet_check::render::human(&converged)
    );

    policies
        .delete("echo", &kube::api::DeleteParams::default())
        .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while policies.get_opt("echo").await?.is_some() {
        ensure!(tokio::time::Instant::now() < deadline, "echo not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in ["game", "kubenet"] {
        h.delete(name).await?;
        h.wait_gone(name).await?;
    }
    let report = check("deleted").await?;
    ensure!(report.checked.node_pool_networks == 0);
    // The game pool had neither allowedHostPorts nor applicationSecurityGroups; deletion
    // restores "none" as `[]` (the only way a PUT clears them, and what AKS reads as none),
    // which the checker reads as none too. Everything else is as found.
    ensure!(
        report.violations.is_empty(),
        "{}",
        poolnet_check::render::human(&report)
    );
    Ok(())
}

/// Spec edits strand nothing; a hand edit of a poolnet rule's description is repaired by the
/// operator's drift check (the checker is clean again); a DetachOnDelete
/// deletion leaves rules that are stranded unless detached leftovers are allowed.
#[tokio::test]
async fn spec_edits_hand_edits_and_detached_leftovers() -> Result<()> {
    let h = Harness::start().await?;
    let mut game = sample("game-pool.yaml")?;
    h.apply(&game).await?;
    h.apply(&neighbour()?).await?;
    h.wait_ready("game").await?;
    h.wait_ready("watch").await?;
    let baseline = poolnet_check::baseline(
        &snapshot(&h, None).await?,
        Some(shell::armsim_writes(&h.arm).await?),
    );
    let run = |label: &'static str, allow_detached: bool| {
        let (baseline, h) = (baseline.clone(), &h);
        async move {
            let report = poolnet_check::check(
                &snapshot(h, Some(&baseline)).await?,
                Some(&baseline),
                &Options {
                    allow_detached,
                    writes: Some(shell::armsim_writes(&h.arm).await?),
                    ..Options::default()
                },
            );
            eprintln!("{label}:\n{}", poolnet_check::render::human(&report));
            Ok::<_, anyhow::Error>(report)
        }
    };

    // A spec edit: other ports, one protocol fewer.
    game.spec.allowed_host_ports = vec!["80/tcp,40000-41000/tcp".into()];
    h.apply(&game).await?;
    h.wait_ready("game").await?;
    let r = run("edited", false).await?;
    ensure!(
        r.violations.is_empty(),
        "{}",
        poolnet_check::render::human(&r)
    );
    // (e): the edit changed the agent pool's host ports and the NSG's rules; every write
    // went to a resource that changed.
    let e = r.amplification.clone().context("(e) measured")?;
    ensure!(
        e.changed == 2 && e.writes >= 2 && e.resources.iter().all(|x| x.changed),
        "{e:#?}"
    );

    // A hand edit of one of poolnet's rules (its description) behind its back.
    let prefix = cluster_rule_prefix(&cluster_id());
    write_nsg(&h, |rules| {
        let r = rules
            .iter_mut()
            .find(|r| {
                r.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix) && n.contains("-game-tcp-"))
            })
            .expect("game's rule");
        if let Some(p) = r.properties.as_mut() {
            p.description = Some("edited by hand".into());
        }
    })
    .await?;
    // The operator's drift check compares descriptions too: within a few resyncs (3 s each)
    // the rule reads as poolnet writes it, and the checker finds nothing. (Before the fix the
    // edit stayed for good: `existing_rules` did not read descriptions.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = run("description edited, then repaired", false).await?;
        if r.violations.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the hand-edited description was not repaired:\n{}",
            poolnet_check::render::human(&r)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // DetachOnDelete: deleting the neighbour leaves its rule, now nobody's.
    let mut watch = neighbour()?;
    watch.spec.reconcile_policy = ReconcilePolicy::DetachOnDelete;
    h.apply(&watch).await?;
    h.wait_ready("watch").await?;
    h.delete("watch").await?;
    h.wait_gone("watch").await?;
    let strict = run("detached, strict", false).await?;
    let left: Vec<&String> = strict
        .violations
        .iter()
        .filter(|v| v.kind == Kind::Unrecorded)
        .filter_map(|v| v.entry.as_ref())
        .collect();
    ensure!(
        !left.is_empty() && left.iter().all(|n| n.contains("-watch-")),
        "{}",
        poolnet_check::render::human(&strict)
    );
    let lenient = run("detached, --allow-detached", true).await?;
    ensure!(
        !found(&lenient)
            .iter()
            .any(|(_, k, _)| *k == Kind::Unrecorded),
        "{}",
        poolnet_check::render::human(&lenient)
    );
    Ok(())
}

/// The demo harness with the operator (plus `flags`) serving the pod webhook for the test
/// namespace, and that namespace's pods.
async fn operator_serving_pods(flags: &[&str]) -> Result<(Harness, Api<Pod>)> {
    use hostports_support::{Configs, install_webhooks, wait_active};
    let mut h = Harness::start_with(HarnessOptions {
        operator: false,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        ..HarnessOptions::demo()?
    })
    .await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let names = Configs::for_namespace(&ns);
    let base = h.serve_webhooks(&names.mutating, &names.validating)?;
    install_webhooks(&client, &ns, &base).await?;
    h.start_operator()?;
    wait_active(&client, &ns).await?;
    Ok((h, Api::namespaced(client, &ns)))
}

/// (c) on real admissions: pods that poolnet's webhook gave host ports hold them through
/// bound claims, and a deleted pod's claims are released: the checker finds nothing
/// either time.
#[tokio::test]
async fn claims_of_admitted_pods_map_to_live_pods() -> Result<()> {
    use hostports_support::{echo_pod, eventually, host_ports};
    use kube::ResourceExt;
    // The claims path (a claim per port), as with --host-port-blocks=false; blocks are
    // checked by the next test.
    let (h, pods) = operator_serving_pods(&["--host-port-blocks=false"]).await?;
    let client = h.env.client();
    let mut created = Vec::new();
    for _ in 0..3 {
        let p = pods
            .create(&PostParams::default(), &echo_pod("echo-"))
            .await?;
        ensure!(host_ports(&p).len() == 2, "{:?}", host_ports(&p));
        created.push(p.name_any());
    }
    let claims: Api<poolnet_api::v1alpha1::HostPortClaim> = Api::all(client.clone());
    let bound = |n: usize| {
        let claims = claims.clone();
        async move {
            let list = claims.list(&Default::default()).await?.items;
            let ok = list.len() == n
                && list
                    .iter()
                    .all(|c| c.status.as_ref().is_some_and(|s| s.pod.is_some()));
            if ok {
                Ok(())
            } else {
                bail!("claims: {list:#?}")
            }
        }
    };
    eventually("six bound claims", WAIT, || bound(6)).await?;
    let check = || async {
        let report = poolnet_check::check(&snapshot(&h, None).await?, None, &Options::default());
        ensure!(
            report.violations.is_empty() && report.checked.host_port_claims > 0,
            "{}",
            poolnet_check::render::human(&report)
        );
        Ok::<_, anyhow::Error>(report)
    };
    let r = check().await?;
    ensure!(
        r.checked.pods == 3 && r.checked.host_port_claims == 6,
        "{:?}",
        r.checked
    );
    pods.delete(&created[0], &Default::default()).await?;
    eventually("the deleted pod's claims released", WAIT, || bound(4)).await?;
    let r = check().await?;
    ensure!(r.checked.pods == 2, "{:?}", r.checked);
    Ok(())
}

/// The operator as shipped gives the AKS annotation's ports (the default range) from
/// HostPortBlocks: no claims, and the checker accepts each key its pod records.
#[tokio::test]
async fn block_ports_of_admitted_pods_pass_the_checker() -> Result<()> {
    use hostports_support::{echo_pod, eventually, host_ports};
    let (h, pods) = operator_serving_pods(&[]).await?;
    for _ in 0..3 {
        let p = pods
            .create(&PostParams::default(), &echo_pod("echo-"))
            .await?;
        ensure!(host_ports(&p).len() == 2, "{:?}", host_ports(&p));
    }
    let check = || async {
        let report = poolnet_check::check(&snapshot(&h, None).await?, None, &Options::default());
        ensure!(
            report.violations.is_empty()
                && report.checked.pods == 3
                && report.checked.host_port_blocks > 0,
            "{:?}\n{}",
            report.checked,
            poolnet_check::render::human(&report)
        );
        Ok::<_, anyhow::Error>(report)
    };
    let r = eventually("the checker accepts the block ports", WAIT, check).await?;
    ensure!(r.checked.host_port_claims == 0, "{:?}", r.checked);
    Ok(())
}
