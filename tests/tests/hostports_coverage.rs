//! Which pods the host-port webhook sees, and what it does with the ports they write, against
//! the real API server with poolnet's webhook served over TLS through the configurations
//! shipped in `config/webhook/` (issue 12, items 4 and 13):
//! - a pod in a namespace without a HostPortPolicy (and without poolnet's namespace label)
//!   that writes a host port another pod holds is refused, naming the port and the holder;
//!   one that writes a port inside another namespace's policy range gets a claim for it;
//! - a copy of a pod that carries the ports poolnet gave the original never shares them;
//! - the pods of one DaemonSet share one claim per static host port; other pods are refused.

mod hostports_support;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hostports_support::*;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, Pod, PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::{HostPortClaim, HostPortPolicy, HostPortSource, NodePoolNetwork};
use poolnet_tests::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

/// A pod with one container declaring `ports` as (containerPort, hostPort) over TCP.
fn pod_with(generate_name: &str, labels: &[(&str, &str)], ports: &[(i32, Option<i32>)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec(ports)),
        ..Pod::default()
    }
}

fn pod_spec(ports: &[(i32, Option<i32>)]) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("registry.invalid/app:1".into()),
            ports: Some(
                ports
                    .iter()
                    .map(|&(container_port, host_port)| ContainerPort {
                        container_port,
                        host_port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    })
                    .collect(),
            ),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

/// A NodePoolNetwork allowing `allowed` host ports to policies of every namespace.
async fn pool(client: &kube::Client, ns: &str, allowed: &[&str]) -> Result<String> {
    let name = format!("pool-{ns}");
    let pool: NodePoolNetwork = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {
            "nodePool": {"agentPoolId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-poolnet-demo/providers/Microsoft.ContainerService/managedClusters/aks-demo/agentPools/game"},
            "allowedHostPorts": allowed,
            "hostPortPolicies": {"from": "All"},
            "reconcilePolicy": "Observe"
        }
    }))?;
    Api::<NodePoolNetwork>::all(client.clone())
        .create(&PostParams::default(), &pool)
        .await
        .context("creating the NodePoolNetwork")?;
    Ok(name)
}

/// What the HostPortPolicy controller does for a namespace with a policy (it does not run
/// here): the label that routes all of the namespace's pods to the webhook.
async fn label_namespace(client: &kube::Client, ns: &str) -> Result<()> {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"poolnet.dev/host-port-policies": "enabled"}}
            })),
        )
        .await?;
    Ok(())
}

/// Creates `pod` in `ns` once dry runs show `ok` (the webhook's policy cache has caught up).
async fn create_when(
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    ok: impl Fn(&Pod) -> bool,
) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the policy in force", WAIT, || async {
        let p = pods.create(&dry, pod).await?;
        ensure!(ok(&p), "dry run gave {:?}", host_ports(&p));
        Ok(())
    })
    .await?;
    Ok(pods.create(&PostParams::default(), pod).await?)
}

#[tokio::test]
async fn a_pod_without_a_policy_is_refused_a_port_another_namespaces_policy_holds() -> Result<()> {
    let games_env = TestEnv::shared().await?;
    let other_env = TestEnv::shared().await?;
    let client = games_env.client();
    let games = games_env.namespace();
    let other = other_env.namespace();
    let configs = Configs::for_namespace(games);
    let poolnet = Instance::start(&client, games, &configs, Options::default()).await?;
    install_webhooks_in(&client, &[games, other], &poolnet.base_url()).await?;
    wait_active(&client, games).await?;

    // games: a policy holding static host port 8443 and a range outside the default one.
    let pool = pool(&client, games, &["8443/tcp", "30000-30009/tcp"]).await?;
    let policy: HostPortPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": "gateway", "namespace": games, "labels": {OWNER_LABEL: games}},
        "spec": {
            "nodePoolNetwork": pool,
            "podSelector": {"matchLabels": {"app": "gateway"}},
            "ports": [{"containerPort": 8443, "protocol": "TCP", "hostPort": 8443},
                      {"containerPort": 8080, "protocol": "TCP"}],
            "hostPortRange": {"start": 30000, "end": 30009}
        }
    }))?;
    Api::<HostPortPolicy>::namespaced(client.clone(), games)
        .create(&PostParams::default(), &policy)
        .await?;
    label_namespace(&client, games).await?;
    let gateway = create_when(
        &client,
        games,
        &pod_with(
            "gateway-",
            &[("app", "gateway")],
            &[(8443, None), (8080, None)],
        ),
        |p| keys_of(p).contains("tcp-8443"),
    )
    .await?;
    ensure!(
        keys_of(&gateway).contains("tcp-8443"),
        "{:?}",
        host_ports(&gateway)
    );

    // other: no policy, no label; its author writes hostPort 8443 by hand.
    let pods: Api<Pod> = Api::namespaced(client.clone(), other);
    let e = pods
        .create(
            &PostParams::default(),
            &pod_with("intruder-", &[], &[(8443, Some(8443))]),
        )
        .await
        .expect_err("tcp/8443 is held by the gateway pod");
    let message = e.to_string();
    ensure!(
        message.contains("8443/tcp") && message.contains(&gateway.name_any()),
        "the refusal names the port and its holder: {message}"
    );
    // Never two live pods on one key.
    let holders = live_pods(&client, games)
        .await?
        .into_iter()
        .chain(live_pods(&client, other).await?)
        .filter(|p| keys_of(p).contains("tcp-8443"))
        .count();
    ensure!(holders == 1, "{holders} live pods hold tcp/8443");

    // A port inside the games policy's range, written in other: reserved at admission (a
    // claim of its own, not adopted later), so the policy never hands it out. One the policy
    // has not handed to a games pod already (8080 got a random port of the same range).
    let taken: Vec<String> = live_pods(&client, games)
        .await?
        .iter()
        .flat_map(keys_of)
        .collect();
    let port = (30000..=30009i32)
        .find(|p| !taken.contains(&format!("tcp-{p}")))
        .context("every port of the range is taken")?;
    let written = pods
        .create(
            &PostParams::default(),
            &pod_with("writes-", &[], &[(9000, Some(port))]),
        )
        .await?;
    let claim = Api::<HostPortClaim>::all(client.clone())
        .get_opt(&format!("tcp-{port}"))
        .await?
        .with_context(|| format!("no claim for tcp/{port} right after admission"))?;
    ensure!(
        claim.spec.source == HostPortSource::Static && claim.spec.pod_namespace == other,
        "reserved by the webhook for {}: {:?}",
        written.name_any(),
        claim.spec
    );
    Ok(())
}

#[tokio::test]
async fn a_copied_pod_never_shares_the_originals_ports() -> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace();
    let configs = Configs::for_namespace(ns);
    let poolnet = Instance::start(&client, ns, &configs, Options::default()).await?;
    activate(&client, ns, &poolnet.base_url()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let original = pods
        .create(&PostParams::default(), &echo_pod("orig-"))
        .await?;
    let held = keys_of(&original);
    ensure!(held.len() == 2, "{held:?}");

    // `kubectl get pod -o yaml`, then the author drops the AKS annotation but keeps what
    // poolnet wrote (its label, its annotation, the host ports) and creates it again.
    let mut copy = original.clone();
    let mut annotations = original.annotations().clone();
    annotations.remove(AKS_ANNOTATION);
    copy.metadata = ObjectMeta {
        name: Some(format!("{}-copy", original.name_any())),
        labels: original.metadata.labels.clone(),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    };
    copy.status = None;
    match pods.create(&PostParams::default(), &copy).await {
        Ok(created) => {
            let got = keys_of(&created);
            ensure!(
                got.is_disjoint(&held),
                "the copy was admitted with the original's ports {got:?} (original holds {held:?})"
            );
            eventually("claims bound", WAIT, || claims_match_pods(&client, ns)).await?;
        }
        Err(e) => {
            let message = e.to_string();
            ensure!(
                message.contains("copied") && message.contains(&original.name_any()),
                "a clear refusal naming the copy and the holder: {message}"
            );
        }
    }
    // The same copy without poolnet's label: the ports count as written by its author.
    let mut unlabelled = copy.clone();
    unlabelled.metadata.name = Some(format!("{}-copy2", original.name_any()));
    if let Some(labels) = unlabelled.metadata.labels.as_mut() {
        labels.remove("poolnet.dev/reservation");
    }
    let e = pods
        .create(&PostParams::default(), &unlabelled)
        .await
        .expect_err("the original holds the ports");
    ensure!(
        e.to_string().contains(&original.name_any()),
        "names the holder: {e}"
    );
    let holders: Vec<String> = live_pods(&client, ns)
        .await?
        .iter()
        .filter(|p| !keys_of(p).is_disjoint(&held))
        .map(|p| p.name_any())
        .collect();
    ensure!(holders.len() == 1, "pods holding {held:?}: {holders:?}");
    Ok(())
}

fn test_node(name: &str, label: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "poolnet-tests/daemon-nodes".to_string(),
                label.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

#[tokio::test]
async fn daemon_set_pods_share_one_claim_per_static_port_and_others_are_refused() -> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let poolnet = Instance::start(&client, &ns, &configs, Options::default()).await?;
    activate(&client, &ns, &poolnet.base_url()).await?;
    // Two nodes of this test only; the DaemonSet controller puts one pod on each.
    let nodes: Api<Node> = Api::all(client.clone());
    let node_names = [format!("{ns}-a"), format!("{ns}-b")];
    for n in &node_names {
        nodes
            .create(&PostParams::default(), &test_node(n, &ns))
            .await?;
    }
    let result = daemon_set_scenario(&client, &ns).await;
    for n in &node_names {
        let _ = nodes.delete(n, &DeleteParams::default()).await;
    }
    result
}

async fn daemon_set_scenario(client: &kube::Client, ns: &str) -> Result<()> {
    const PORT: i32 = 45900;
    let labels = BTreeMap::from([("app".to_string(), "agent".to_string())]);
    let ds = DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(BTreeMap::from([(
                        "poolnet-tests/daemon-nodes".to_string(),
                        ns.to_string(),
                    )])),
                    // The test's nodes have no kubelet: tolerate their not-ready taints.
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Toleration::default()
                    }]),
                    ..pod_spec(&[(9000, Some(PORT))])
                }),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    };
    let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ds)
        .await?;
    let agents = eventually("one agent pod per node", WAIT, || async {
        let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        ensure!(pods.len() == 2, "{} agent pods", pods.len());
        Ok(pods)
    })
    .await?;
    for p in &agents {
        ensure!(
            keys_of(p).contains(&format!("tcp-{PORT}")),
            "{}: {:?}",
            p.name_any(),
            host_ports(p)
        );
    }
    let claims: Api<HostPortClaim> = Api::all(client.clone());
    let claim = claims
        .get(&format!("tcp-{PORT}"))
        .await
        .context("the shared claim")?;
    let owner = claim
        .spec
        .daemon_set
        .clone()
        .context("the claim is the DaemonSet's")?;
    ensure!(owner.name == "agent" && Some(owner.uid.as_str()) == ds.uid().as_deref());

    // Anything else is refused the port, and told who holds it.
    let e = Api::<Pod>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &pod_with("squatter-", &[], &[(9000, Some(PORT))]),
        )
        .await
        .expect_err("the DaemonSet holds the port");
    ensure!(
        e.to_string().contains("DaemonSet") && e.to_string().contains("agent"),
        "{e}"
    );

    // The DaemonSet goes, its pods with it (garbage collection), and then the claim.
    Api::<DaemonSet>::namespaced(client.clone(), ns)
        .delete("agent", &DeleteParams::foreground())
        .await?;
    eventually("the shared claim released", WAIT, || async {
        match claims.get_opt(&format!("tcp-{PORT}")).await? {
            None => Ok(()),
            Some(c) => bail!("still there: {:?}", c.status),
        }
    })
    .await?;
    Ok(())
}
