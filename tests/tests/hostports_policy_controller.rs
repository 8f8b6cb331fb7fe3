//! Host ports end to end through the operator binary's own wiring: the real API server,
//! armsim with the AKS demo world, and one `poolnet-operator` process that reconciles the
//! game pool, runs the HostPortPolicy controller and the repair loop, and serves the
//! shipped webhook configurations (by `url` on 127.0.0.1, with the CA bundle it writes into
//! them). A policy becomes Accepted and opens its range in the pool's NSG (rule names and
//! priorities in status); pods' ports show up as allocations; an exhausted range is
//! reported and denied by name.

mod hostports_support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use hostports_support::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::HostPortPolicy;
use poolnet_operator::controller::host_port_policy;
use poolnet_tests::operator::{Harness, HarnessOptions, KStatus, kstatus_of, sample};

const WAIT: Duration = Duration::from_secs(120);

fn condition<'a>(
    p: &'a HostPortPolicy,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

async fn policy_when(
    api: &Api<HostPortPolicy>,
    name: &str,
    what: &str,
    ok: impl Fn(&HostPortPolicy) -> bool,
) -> Result<HostPortPolicy> {
    eventually(what, WAIT, || async {
        let p = api.get(name).await?;
        if ok(&p) {
            Ok(p)
        } else {
            bail!("status: {:?}", p.status)
        }
    })
    .await
}

fn is(p: &HostPortPolicy, type_: &str, status: &str) -> bool {
    condition(p, type_).is_some_and(|c| c.status == status)
        && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
}

#[tokio::test]
async fn a_policy_opens_its_range_reports_allocations_and_exhaustion() -> Result<()> {
    let mut h = Harness::start_with(HarnessOptions {
        operator: false,
        ..HarnessOptions::demo()?
    })
    .await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    // The operator serves the webhooks itself; the shipped configurations call it by url
    // and it writes its CA bundle into them.
    let names = Configs::for_namespace(&ns);
    let base = h.serve_webhooks(&names.mutating, &names.validating)?;
    let admin = h.serve_admin()?;
    install_webhooks(&client, &ns, &base).await?;
    h.start_operator()?;
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
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
    wait_active(&client, &ns).await?;

    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), &ns);
    echo_policy(&client, &ns, "echo", "game", (40000, 59999)).await?;
    let ready = policy_when(&policies, "echo", "echo Ready", |p| is(p, "Ready", "True")).await?;
    let status = ready.status.clone().unwrap_or_default();
    ensure!(
        !status.security_rules.is_empty(),
        "rules reported: {status:?}"
    );
    for rule in &status.security_rules {
        ensure!(rule.name.starts_with("poolnet-"), "{rule:?}");
        ensure!(
            (200..=299).contains(&rule.priority),
            "the pool's band 200-299: {rule:?}"
        );
    }
    // The rule is really in the NSG.
    let nsg = h
        .sim
        .resource(&status.security_rules[0].nsg_id)
        .context("the NSG exists")?;
    let names: Vec<&str> = nsg["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    ensure!(
        names.contains(&status.security_rules[0].name.as_str()),
        "{names:?}"
    );
    // The namespace is routed to the pod webhook for policy-selected pods.
    let labelled = Api::<Namespace>::all(client.clone()).get(&ns).await?;
    assert_eq!(
        labelled
            .labels()
            .get(host_port_policy::NAMESPACE_LABEL)
            .map(String::as_str),
        Some("enabled")
    );

    // A pod selected by the policy but carrying no annotation gets its ports (through the
    // namespace-labelled webhook), and shows up in the policy's allocations.
    let mut plain = echo_pod("plain-");
    plain.metadata.annotations = Some(BTreeMap::new());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually("a policy-selected pod gets ports", WAIT, || async {
        let p = pods.create(&PostParams::default(), &plain).await?;
        if host_ports(&p).len() == 2 {
            Ok(p)
        } else {
            // Created before the webhook saw the namespace label: try again with a new pod.
            bail!("no ports yet")
        }
    })
    .await?;
    let name = pod.name_any();
    let with_pod = policy_when(&policies, "echo", "allocations list the pod", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.allocations
                .iter()
                .any(|a| a.pod == name && a.ports.len() == 2)
        })
    })
    .await?;
    let s = with_pod.status.unwrap_or_default();
    ensure!(
        s.ports_in_use
            .as_deref()
            .is_some_and(|u| u.ends_with("/20000")),
        "{s:?}"
    );

    // A two-port range fills with one pod; the next is refused, naming policy and range.
    echo_policy(&client, &ns, "tiny", "game", (45000, 45001)).await?;
    // Both policies select the echo pods: make them disjoint.
    policies
        .patch(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"podSelector": {"matchLabels": {"app": "echo-big"}}}}),
            ),
        )
        .await?;
    wait_policy_active(&client, &ns, (45000, 45001)).await?;
    pods.create(&PostParams::default(), &echo_pod("tiny-"))
        .await?;
    let e = pods
        .create(&PostParams::default(), &echo_pod("tiny-"))
        .await
        .expect_err("the range is full");
    let msg = e.to_string();
    ensure!(
        msg.contains("45000-45001") && msg.contains(&format!("HostPortPolicy {ns}/tiny")),
        "{msg}"
    );
    let full = policy_when(&policies, "tiny", "RangeExhausted", |p| {
        condition(p, "PortsAllocated")
            .is_some_and(|c| c.status == "False" && c.reason == "RangeExhausted")
    })
    .await?;
    // A full range is capacity, not reconciliation (issue 16, item 5): the policy's rules and
    // claims are reconciled, so it is Ready and kstatus (Flux, kpt) reads it as Current.
    ensure!(
        is(&full, "Ready", "True")
            && condition(&full, "Reconciling").is_none()
            && condition(&full, "Stalled").is_none(),
        "{:#?}",
        full.status
    );
    ensure!(
        kstatus_of(&full) == KStatus::Current,
        "kstatus: {:?}",
        kstatus_of(&full)
    );
    let events = eventually("a RangeExhausted event", WAIT, || async {
        let list = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await?;
        let found: Vec<_> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RangeExhausted"))
            .collect();
        ensure!(!found.is_empty(), "none yet");
        Ok(found)
    })
    .await?;
    ensure!(
        events
            .iter()
            .all(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("tiny"))
    );
    // The full range shows on /metrics, as dashboards and alerts see it (issue 15, item 5).
    let labels = format!(
        r#"{{policy_namespace="{ns}",policy="tiny",node_pool_network="game",protocol="TCP"}}"#
    );
    eventually("the full range on /metrics", WAIT, || async {
        let text = poolnet_tests::operator::scrape_metrics(admin).await?;
        for (family, want) in [
            ("poolnet_hostport_range_used_ports", "2"),
            ("poolnet_hostport_range_size_ports", "2"),
        ] {
            let series = format!("{family}{labels} {want}");
            ensure!(
                text.lines().any(|l| l == series),
                "no `{series}` in:\n{}",
                text.lines()
                    .filter(|l| l.starts_with("poolnet_hostport"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// The names of the rules in `nsg` (armsim's state).
fn nsg_rule_names(h: &Harness, nsg: &str) -> Result<Vec<String>> {
    let nsg = h.sim.resource(nsg).context("the NSG exists")?;
    Ok(nsg["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect())
}

/// Issue 12, item 9: a policy's rule exists in ARM exactly while its pool admits it. Narrowing
/// the pool's allowedHostPorts closes it, widening again reopens it; sources wider than the
/// pool's are not opened; deleting the policy removes its rule (its finalizer).
#[tokio::test]
async fn a_policy_rule_exists_exactly_while_its_pool_admits_it() -> Result<()> {
    let h = Harness::start().await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let nsg = poolnet_tests::operator::byo_nsg_id();
    let game = sample("game-pool.yaml")?;
    h.apply(&game).await?;
    h.wait_ready("game").await?;
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
    echo_policy(&client, &ns, "echo", "game", (40000, 40100)).await?;
    let ready = policy_when(&policies, "echo", "echo Ready", |p| is(p, "Ready", "True")).await?;
    let opened: Vec<String> = ready
        .status
        .unwrap_or_default()
        .security_rules
        .into_iter()
        .map(|r| r.name)
        .collect();
    ensure!(!opened.is_empty());
    let has = |names: &[String]| opened.iter().all(|o| names.contains(o));
    let none = |names: &[String]| !opened.iter().any(|o| names.contains(o));
    ensure!(has(&nsg_rule_names(&h, &nsg)?));

    // The platform team narrows the pool: the policy's range is outside it now.
    let mut narrow = game.clone();
    narrow.spec.allowed_host_ports = vec!["80/tcp,443/tcp,53/udp".into()];
    h.apply(&narrow).await?;
    eventually("the policy's rule is closed", WAIT, || async {
        let names = nsg_rule_names(&h, &nsg)?;
        ensure!(none(&names), "still open: {names:?}");
        Ok(())
    })
    .await?;
    policy_when(&policies, "echo", "echo not accepted", |p| {
        is(p, "Accepted", "False")
            && p.status
                .as_ref()
                .is_some_and(|s| s.owned.as_ref().is_none_or(|o| o.security_rules.is_empty()))
    })
    .await?;
    h.apply(&game).await?;
    eventually("the policy's rule is open again", WAIT, || async {
        let names = nsg_rule_names(&h, &nsg)?;
        ensure!(has(&names), "not reopened: {names:?}");
        Ok(())
    })
    .await?;

    // A namespace user cannot widen what the pool opens (Internet) to anything.
    let wide: HostPortPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": "wide", "namespace": ns},
        "spec": {
            "nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": "wide"}},
            "ports": [{"containerPort": 9000, "protocol": "UDP"}],
            "hostPortRange": {"start": 41000, "end": 41100},
            "sourceAddressPrefixes": ["*"]
        }
    }))?;
    policies.create(&PostParams::default(), &wide).await?;
    let refused = policy_when(&policies, "wide", "wide not accepted", |p| {
        is(p, "Accepted", "False")
    })
    .await?;
    let msg = &condition(&refused, "Accepted").context("Accepted")?.message;
    ensure!(msg.contains("spec.sourceAddressPrefixes[0]"), "{msg}");
    let label = format!("-{ns}.wide-");
    ensure!(
        !nsg_rule_names(&h, &nsg)?.iter().any(|n| n.contains(&label)),
        "a policy wider than its pool opened a rule"
    );

    // Deleting the policy closes its ports (its finalizer), with nothing else written.
    policies.delete("echo", &Default::default()).await?;
    eventually("echo is gone and its rule with it", WAIT, || async {
        let names = nsg_rule_names(&h, &nsg)?;
        ensure!(none(&names), "still open: {names:?}");
        ensure!(
            policies.get_opt("echo").await?.is_none(),
            "echo still exists"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// Issue 16, item 5: what a GitOps health check (kstatus, as Flux and kpt use it) reads from
/// a policy through the order a sync may create things in. Its pool not created yet: still
/// progressing (`Reconciling`, InProgress), the sync waits. The pool there but the namespace
/// not admitted: only a change by someone helps (`Stalled`, Failed), the check stops waiting
/// and says why. Admitted: Ready, Current.
#[tokio::test]
async fn gitops_health_follows_kstatus_through_a_sync() -> Result<()> {
    let h = Harness::start().await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let policies: Api<HostPortPolicy> = Api::namespaced(client.clone(), &ns);
    let has = |p: &HostPortPolicy, type_: &str, reason: &str| {
        condition(p, type_).is_some_and(|c| c.status == "True" && c.reason == reason)
            && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
    };

    echo_policy(&client, &ns, "early", "game", (45000, 45010)).await?;
    let waiting = policy_when(&policies, "early", "Reconciling: no pool yet", |p| {
        has(p, "Reconciling", "NodePoolNetworkNotFound")
    })
    .await?;
    ensure!(
        condition(&waiting, "Stalled").is_none(),
        "{:?}",
        waiting.status
    );
    ensure!(kstatus_of(&waiting) == KStatus::InProgress);

    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_ready("game").await?;
    let stalled = policy_when(&policies, "early", "Stalled: namespace not admitted", |p| {
        has(p, "Stalled", "NamespaceNotAdmitted")
    })
    .await?;
    ensure!(
        condition(&stalled, "Reconciling").is_none(),
        "{:?}",
        stalled.status
    );
    ensure!(kstatus_of(&stalled) == KStatus::Failed);

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
    let ready = policy_when(&policies, "early", "Ready once admitted", |p| {
        is(p, "Ready", "True")
    })
    .await?;
    ensure!(
        condition(&ready, "Reconciling").is_none() && condition(&ready, "Stalled").is_none(),
        "{:?}",
        ready.status
    );
    ensure!(kstatus_of(&ready) == KStatus::Current);
    Ok(())
}
