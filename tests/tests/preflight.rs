//! Preflight at admission and in the controller (issue 16, item 3), against the real API
//! server, the operator as a process serving its webhooks, and armsim seeded with the AKS demo
//! world (kubenet cluster `aks-demo`: pod CIDR 10.244.0.0/16, service CIDR 10.0.0.0/16, VNet
//! 10.240.0.0/16 + 10.241.0.0/16, pools game (3) and kubenet (2)) plus an Azure CNI cluster.

mod hostports_support;

use anyhow::{Context, Result, ensure};
use armsim::fixture::FixtureResource;
use armsim::{FaultAction, FaultRule};
use hostports_support::Configs;
use hostports_support::{OWNER_LABEL, install_webhooks};
use kube::api::{Patch, PatchParams};
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_api::v1alpha1::conditions::{self as cond, reason};
use poolnet_arm::ArmNetwork;
use poolnet_tests::operator::{Harness, HarnessOptions, RG, condition, route_table_id};
use serde_json::{Value, json};

const SUB: &str = "00000000-1111-2222-3333-444444444444";

fn pool_id(cluster: &str, pool: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{cluster}/agentPools/{pool}"
    )
}

fn npn(ns: &str, name: &str, pool: &str, spec: Value) -> Result<NodePoolNetwork> {
    let mut spec = spec;
    spec["nodePool"] = json!({"agentPoolId": pool});
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": spec,
    }))?)
}

fn routes(extra: Value) -> Value {
    json!({
        "id": route_table_id(),
        "routes": [{"name": "default", "addressPrefix": "0.0.0.0/0", "nextHopType": "Internet"}, extra],
    })
}

async fn denied(h: &Harness, npn: &NodePoolNetwork) -> String {
    match h.apply(npn).await {
        Ok(o) => panic!("admitted: {:?}", o.spec),
        Err(e) => format!("{e:#}"),
    }
}

/// Waits until the API server calls poolnet's validating webhook for NodePoolNetworks: a
/// dry-run create only the webhook refuses (overlapping host ports, judged before any ARM
/// read) comes back with poolnet's message instead of a failed call.
async fn wait_webhook(h: &Harness, ns: &str) -> Result<()> {
    let probe = npn(
        ns,
        "probe",
        &pool_id("aks-demo", "game"),
        json!({"allowedHostPorts": ["80/tcp", "80/tcp"], "reconcilePolicy": "Observe"}),
    )?;
    let api: kube::Api<NodePoolNetwork> = h.npns();
    let dry = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let last = match api.create(&dry, &probe).await {
            Err(e) if e.to_string().contains("poolnet:") => return Ok(()),
            Err(e) => e.to_string(),
            Ok(_) => "admitted".to_string(),
        };
        ensure!(
            tokio::time::Instant::now() < deadline,
            "poolnet's webhook never became active: {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The demo world plus `aks-cni`, a cluster on Azure CNI.
fn options() -> Result<HarnessOptions> {
    let mut o = HarnessOptions::demo()?;
    o.operator = false;
    let cni: FixtureResource = serde_json::from_value(json!({
        "id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks-cni"),
        "location": "westeurope",
        "properties": {
            "kubernetesVersion": "1.30.3",
            "dnsPrefix": "aks-cni",
            "networkProfile": {"networkPlugin": "azure", "serviceCidr": "10.0.0.0/16", "dnsServiceIP": "10.0.0.10"},
            "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}]
        }
    }))?;
    o.fixture.resources.push(cni);
    Ok(o)
}

#[tokio::test]
async fn preflight_denies_at_admission_and_the_controller_reports_what_it_admitted() -> Result<()> {
    let mut h = Harness::start_with(options()?).await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let names = Configs::for_namespace(&ns);
    let base = h.serve_webhooks(&names.mutating, &names.validating)?;
    install_webhooks(&client, &ns, &base).await?;

    // Before any admission reads aks-demo: pool kubenet scales to 5 with 50% surge, and a
    // Windows pool joins the (kubenet) cluster.
    let kubenet = Harness::id(&pool_id("aks-demo", "kubenet"))?;
    let mut pool = h.arm.get_agent_pool(&kubenet).await?;
    let extra = &mut pool.resource.properties.extra;
    extra.insert("enableAutoScaling".into(), json!(true));
    extra.insert("minCount".into(), json!(1));
    extra.insert("maxCount".into(), json!(5));
    extra.insert("upgradeSettings".into(), json!({"maxSurge": "50%"}));
    let lro = h
        .arm
        .put_agent_pool(&kubenet, &pool.resource, pool.precondition())
        .await?;
    if let poolnet_arm::Lro::Pending(op) = lro {
        h.arm.wait(op, std::time::Duration::from_secs(30)).await?;
    }
    let win = Harness::id(&pool_id("aks-demo", "win"))?;
    let mut body = poolnet_arm::AgentPool::default();
    body.properties.count = Some(1);
    body.properties.os_type = Some("Windows".into());
    let lro = h
        .arm
        .put_agent_pool(&win, &body, poolnet_arm::Precondition::IfNoneMatch)
        .await?;
    if let poolnet_arm::Lro::Pending(op) = lro {
        h.arm.wait(op, std::time::Duration::from_secs(30)).await?;
    }

    // The first read of aks-cni (the webhook's) takes 6 s: longer than admission waits.
    h.sim.faults().add_rule(
        FaultRule::new(FaultAction::Latency { ms: 6000 })
            .method("GET")
            .resource_type("Microsoft.ContainerService/managedClusters")
            .path_contains("managedClusters/aks-cni")
            .count(1),
    );
    h.start_operator()?;
    wait_webhook(&h, &ns).await?;

    // ARM too slow: admitted, with a warning saying preflight was skipped.
    let slow = npn(
        &ns,
        "cni-slow",
        &pool_id("aks-cni", "a"),
        json!({
            "routeTable": routes(json!({"name": "hub", "addressPrefix": "192.168.0.0/16", "nextHopType": "VirtualNetworkGateway"})),
            "reconcilePolicy": "Observe",
        }),
    )?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), serde_json::to_string(&slow)?)?;
    let out = h
        .kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &file.path().display().to_string(),
        ])
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "kubectl apply failed: {stderr}");
    ensure!(
        stderr.contains("Warning")
            && stderr.contains("preflight against the live cluster was skipped")
            && stderr.contains("PreflightPassed"),
        "no skip warning: {stderr}"
    );
    // The controller judges it anyway: a route table on an Azure CNI cluster.
    let judged = h
        .wait_condition("cni-slow", cond::PREFLIGHT_PASSED, "False", reason::FAILED)
        .await?;
    let c = condition(&judged, cond::PREFLIGHT_PASSED).context("condition")?;
    ensure!(
        c.message.contains("spec.routeTable") && c.message.contains("no node route table"),
        "{}",
        c.message
    );
    let ready = condition(&judged, cond::READY).context("Ready")?;
    ensure!(ready.status == "False", "{ready:?}");
    let routes_ready = condition(&judged, cond::ROUTES_READY).context("RoutesReady")?;
    ensure!(
        routes_ready.reason == reason::PREFLIGHT_FAILED,
        "{routes_ready:?}"
    );

    // Now the webhook has the facts: the same spec on another pool of aks-cni is denied.
    let msg = denied(&h, &npn(&ns, "cni-denied", &pool_id("aks-cni", "b"), json!({
        "routeTable": routes(json!({"name": "hub", "addressPrefix": "192.168.0.0/16", "nextHopType": "VirtualNetworkGateway"})),
    }))?).await;
    ensure!(
        msg.contains("spec.routeTable") && msg.contains("network plugin azure"),
        "{msg}"
    );

    // Routes into the pod CIDR and a reserved range are denied naming the field.
    let msg = denied(&h, &npn(&ns, "pods", &pool_id("aks-demo", "game"), json!({
        "routeTable": routes(json!({"name": "pods", "addressPrefix": "10.244.9.0/24", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.240.0.4"})),
    }))?).await;
    ensure!(
        msg.contains("spec.routeTable.routes[1].addressPrefix")
            && msg.contains("pod CIDR 10.244.0.0/16"),
        "{msg}"
    );
    let msg = denied(&h, &npn(&ns, "imds", &pool_id("aks-demo", "game"), json!({
        "routeTable": routes(json!({"name": "imds", "addressPrefix": "169.254.169.254/32", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.240.0.4"})),
    }))?).await;
    ensure!(
        msg.contains("spec.routeTable.routes[1].addressPrefix") && msg.contains("169.254.0.0/16"),
        "{msg}"
    );

    // The Windows pool on kubenet.
    let msg = denied(
        &h,
        &npn(
            &ns,
            "win",
            &pool_id("aks-demo", "win"),
            json!({"reconcilePolicy": "Observe"}),
        )?,
    )
    .await;
    ensure!(
        msg.contains("spec.nodePool.agentPoolId") && msg.contains("Azure CNI"),
        "{msg}"
    );

    // The route budget: game 3 (+1 surge at 10%) and kubenet at maxCount 5 and win 1, plus 2
    // custom routes: 3 + 1 + 5 + 1 + 2 = 12 routes.
    let budget = |limit: u32| {
        npn(
            &ns,
            "budget",
            &pool_id("aks-demo", "game"),
            json!({
                "routeTable": {
                    "id": route_table_id(), "routeLimit": limit,
                    "routes": [{"name": "default", "addressPrefix": "0.0.0.0/0", "nextHopType": "Internet"},
                               {"name": "hub", "addressPrefix": "192.168.0.0/16", "nextHopType": "VirtualNetworkGateway"}],
                },
                "reconcilePolicy": "Observe",
            }),
        )
    };
    let msg = denied(&h, &budget(11)?).await;
    ensure!(
        msg.contains("spec.routeTable.routes") && msg.contains("12 routes"),
        "{msg}"
    );
    ensure!(
        msg.contains("2 other pools: 6 nodes at their maximum"),
        "{msg}"
    );
    h.apply(&budget(12)?).await?;
    let passed = h
        .wait_condition("budget", cond::PREFLIGHT_PASSED, "True", reason::PASSED)
        .await?;
    ensure!(
        condition(&passed, cond::PREFLIGHT_PASSED).is_some_and(|c| c.message.contains("aks-demo")),
        "{:?}",
        passed.status
    );

    // A metadata-only update of an object preflight now fails is never refused (its
    // deletion must not wedge): cni-slow still takes a label.
    h.npns()
        .patch(
            "cni-slow",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .context("labelling cni-slow")?;
    h.stop_operator().await?;
    Ok(())
}

/// AKS's own host-port auto-assignment preview, registered in the subscription, would assign
/// host ports beside poolnet on the same annotation: the controller reads the registration
/// and warns on an object that admits HostPortPolicies (the object stays Ready).
#[tokio::test]
async fn a_registered_host_port_preview_is_reported() -> Result<()> {
    let mut o = HarnessOptions::demo()?;
    for s in &mut o.fixture.subscriptions {
        s.registered_features
            .push("Microsoft.ContainerService/PodHostPortAutoAssignPreview".into());
    }
    let h = Harness::start_with(o).await?;
    h.apply(&poolnet_tests::operator::sample("game-pool.yaml")?)
        .await?;
    let game = h.wait_ready("game").await?;
    let c = condition(&game, cond::PREFLIGHT_PASSED).context("PreflightPassed")?;
    ensure!(c.status == "True" && c.reason == reason::PASSED, "{c:?}");
    ensure!(
        c.message.contains("warning hostports.auto-assign")
            && c.message.contains("PodHostPortAutoAssignPreview"),
        "{}",
        c.message
    );
    // The kubenet sample admits no HostPortPolicies: nothing to say, nothing read for it.
    h.apply(&poolnet_tests::operator::sample("kubenet-pool.yaml")?)
        .await?;
    let kubenet = h.wait_ready("kubenet").await?;
    let c = condition(&kubenet, cond::PREFLIGHT_PASSED).context("PreflightPassed")?;
    ensure!(
        !c.message.contains("PodHostPortAutoAssignPreview"),
        "{}",
        c.message
    );
    Ok(())
}
