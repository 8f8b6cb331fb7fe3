//! `kubectl poolnet status` against a real kube-apiserver, with poolnet-operator reconciling
//! the demo world in armsim: the binary as users run it, text and JSON.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::HostPortPolicy;
use poolnet_tests::operator::{Harness, sample};

/// Runs `kubectl-poolnet <command> <args> --kubeconfig <the harness's>`: exit code, stdout,
/// stderr.
fn plugin(h: &Harness, command: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-poolnet"))
        .arg(command)
        .args(args)
        .arg("--kubeconfig")
        .arg(h.kubeconfig())
        .output()
        .context("running kubectl-poolnet")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn status(h: &Harness, args: &[&str]) -> Result<(i32, String, String)> {
    plugin(h, "status", args)
}

fn diff(h: &Harness, args: &[&str]) -> Result<(i32, String, String)> {
    plugin(h, "diff", args)
}

#[tokio::test]
async fn status_shows_one_screen_per_pool_joined_with_its_policies() -> Result<()> {
    let h = Harness::start().await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    h.apply(&sample("game-pool.yaml")?).await?;
    let game = h.wait_ready("game").await?;
    // The game pool admits namespaces labelled poolnet.dev/host-ports=game.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"poolnet.dev/host-ports": "game"}}}),
            ),
        )
        .await?;
    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), &ns);
    let policy: HostPortPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": "echo", "namespace": ns},
        "spec": {
            "nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "echo"}},
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "hostPortRange": {"start": 45000, "end": 45099}
        }
    }))?;
    policies.create(&PostParams::default(), &policy).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let p = policies.get("echo").await?;
        let ready = p.status.as_ref().is_some_and(|s| {
            s.observed_generation == p.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the policy never became Ready: {:?}", p.status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The pool's status after the policy's rule joined it.
    let game_rule = game
        .status
        .as_ref()
        .and_then(|s| s.security_groups.first())
        .and_then(|n| n.rules.first())
        .map(|r| r.name.clone())
        .context("the game pool reports a rule")?;

    let (code, text, err) = status(&h, &["game"])?;
    ensure!(code == 0, "exit {code}: {err}");
    println!("{text}");
    for needle in [
        "NodePoolNetwork game",
        "aks-demo/game",
        "True  Reconciled",
        "RoutingPreference=Internet",
        "80/tcp,443/tcp,53/udp,40000-60000/tcp",
        "NSG nsg-snet-aks",
        game_rule.as_str(),
        "Conditions",
        "SecurityRulesReady",
    ] {
        ensure!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    let row = text
        .lines()
        .find(|l| l.contains(&format!("{ns}/echo")))
        .with_context(|| format!("no row for the policy in\n{text}"))?;
    ensure!(row.contains("45000-45099") && row.contains("True"), "{row}");
    // The policy's own rule, under the NSG it is in.
    let policy_rule = policies
        .get("echo")
        .await?
        .status
        .and_then(|s| s.security_rules.first().cloned())
        .context("the policy reports its rule")?;
    ensure!(
        text.lines()
            .any(|l| l.contains(&policy_rule.name)
                && l.contains(&format!("HostPortPolicy {ns}/echo"))),
        "no line for the policy's rule {} in\n{text}",
        policy_rule.name
    );

    // Every pool when no name is given; JSON for scripts.
    let (code, all, _) = status(&h, &[])?;
    ensure!(code == 0 && all.contains("NodePoolNetwork game"), "{all}");
    let (code, json, err) = status(&h, &["game", "-o", "json"])?;
    ensure!(code == 0, "exit {code}: {err}");
    let views: serde_json::Value = serde_json::from_str(&json)?;
    ensure!(
        views[0]["node_pool_network"]["metadata"]["name"] == "game",
        "{json}"
    );
    ensure!(
        views[0]["host_port_policies"][0]["metadata"]["name"] == "echo",
        "{json}"
    );

    // A name that does not exist: exit 2, saying which.
    let (code, _, err) = status(&h, &["no-such-pool"])?;
    ensure!(
        code == 2 && err.contains("no-such-pool"),
        "exit {code}: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn diff_shows_the_exact_changes_an_observe_object_would_make() -> Result<()> {
    let h = Harness::start().await?;
    let mut npn = sample("game-pool.yaml")?;
    npn.spec.reconcile_policy = poolnet_api::v1alpha1::ReconcilePolicy::Observe;
    // Custom ASGs only: Observe can then say exactly what it would do to the pool and NSG.
    npn.spec
        .application_security_groups
        .as_mut()
        .context("applicationSecurityGroups")?
        .managed = Some(false);
    h.apply(&npn).await?;
    let observed = h
        .wait_npn("game", "changes listed", |n| {
            n.status.as_ref().is_some_and(|s| {
                s.observed_generation == n.metadata.generation && !s.pending_changes.is_empty()
            })
        })
        .await?;
    let pending = observed
        .status
        .map(|s| s.pending_changes)
        .unwrap_or_default();

    let (code, text, err) = diff(&h, &["game"])?;
    println!("{text}");
    ensure!(code == 1, "exit {code} (1: changes pending): {err}\n{text}");
    ensure!(
        text.contains("NodePoolNetwork game (Observe): poolnet would add"),
        "{text}"
    );
    ensure!(text.contains("NSG nsg-snet-aks"), "{text}");
    for c in &pending {
        ensure!(text.contains(&c.name), "{} missing in\n{text}", c.name);
    }
    ensure!(text.contains("networkProfile.allowedHostPorts"), "{text}");
    let (code, json, _) = diff(&h, &["game", "-o", "json"])?;
    ensure!(code == 1);
    let listed: Vec<poolnet_api::v1alpha1::PendingChange> = serde_json::from_str(&json)?;
    ensure!(listed == pending, "{json}");

    // Managed: nothing pending, exit 0, and it says why.
    let mut managed = sample("game-pool.yaml")?;
    managed.metadata.name = Some("managed".into());
    managed.spec.node_pool.agent_pool_id = poolnet_tests::operator::agent_pool_id("kubenet");
    managed.spec.network_security_groups.clear();
    managed.spec.node_public_ip = None;
    h.apply(&managed).await?;
    let (code, text, err) = diff(&h, &["managed"])?;
    ensure!(code == 0, "exit {code}: {err}");
    ensure!(
        text.contains("poolnet applies its changes itself"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn diff_of_a_manifest_plans_it_before_it_is_applied_and_writes_nothing() -> Result<()> {
    let h = Harness::start().await?;
    let before = poolnet_tests::operator::comparable_state(&h.sim.snapshot()?);
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("armsim-ca.pem");
    std::fs::write(&ca, h.sim.ca_pem().unwrap_or_default())?;
    let manifest = dir.path().join("game.yaml");
    std::fs::write(
        &manifest,
        serde_yaml::to_string(&sample("game-pool.yaml")?)?,
    )?;
    let arm = [
        "--arm-endpoint".to_string(),
        h.sim.base_url(),
        "--arm-ca-file".to_string(),
        ca.display().to_string(),
        "--arm-token".to_string(),
        "preview".to_string(),
    ];
    let mut args: Vec<String> = vec!["-f".into(), manifest.display().to_string()];
    args.extend(arm.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text, err) = diff(&h, &args)?;
    println!("{text}");
    ensure!(code == 1, "exit {code} (1: changes): {err}\n{text}");
    for needle in [
        "NodePoolNetwork game from",
        "(new: rule names end differently once created)",
        "+ application security group poolnet-game (add)",
        "+ rule poolnet-",
        "destinationPortRanges",
        "\"80,443,40000-60000\"",
        "networkProfile.allowedHostPorts",
    ] {
        ensure!(text.contains(needle), "no {needle:?} in\n{text}");
    }
    // Nothing was written: no object in the cluster, ARM byte-for-byte as before.
    let npns: Api<poolnet_api::v1alpha1::NodePoolNetwork> = Api::all(h.env.client());
    ensure!(
        npns.get_opt("game").await?.is_none(),
        "the manifest was not applied"
    );
    let after = poolnet_tests::operator::comparable_state(&h.sim.snapshot()?);
    ensure!(
        before == after,
        "ARM changed: {:?}",
        poolnet_tests::operator::json_diff(&before, &after)
    );

    // Applied and converged, the same manifest plans no change.
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    let (code, text, err) = diff(&h, &args)?;
    ensure!(code == 0, "exit {code}: {err}\n{text}");
    ensure!(
        text.contains("no changes. Azure matches the spec"),
        "{text}"
    );
    ensure!(!text.contains("(new:"), "{text}");

    // An edit: narrower host ports show as changed fields, under the live object's names.
    let mut edited = sample("game-pool.yaml")?;
    edited.spec.allowed_host_ports = vec!["80/tcp,443/tcp,53/udp".into()];
    std::fs::write(&manifest, serde_yaml::to_string(&edited)?)?;
    let (code, text, err) = diff(&h, &args)?;
    ensure!(code == 1, "exit {code}: {err}\n{text}");
    ensure!(text.contains("~ rule poolnet-"), "{text}");
    ensure!(
        text.contains("\"80,443,40000-60000\" -> \"80,443\""),
        "{text}"
    );

    // A manifest the webhook would refuse is refused, naming the field.
    let mut bad = sample("game-pool.yaml")?;
    bad.spec.allowed_host_ports = vec!["70000/tcp".into()];
    std::fs::write(&manifest, serde_yaml::to_string(&bad)?)?;
    let (code, _, err) = diff(&h, &args)?;
    ensure!(
        code == 2 && err.contains("allowedHostPorts"),
        "exit {code}: {err}"
    );
    Ok(())
}
