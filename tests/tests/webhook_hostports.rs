//! poolnet's pod webhook against the real API server: the API server calls poolnet's
//! handlers over TLS (poolnet's own certificate, CA bundle injected by poolnet) through the
//! webhook configurations shipped in `config/webhook/`.

mod hostports_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use hostports_support::*;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::HostPortClaim;
use poolnet_tests::TestEnv;

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> Result<(TestEnv, Instance)> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let instance = Instance::start(&client, &ns, &configs, Options::default()).await?;
    activate(&client, &ns, &instance.base_url()).await?;
    Ok((env, instance))
}

fn in_range(ports: &[(i32, String, i32)]) -> bool {
    ports.iter().all(|(_, _, h)| (40000..=59999).contains(h))
}

#[tokio::test]
async fn echoserver_deployment_gets_two_distinct_ports_per_pod_and_the_env_vars() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let labels = BTreeMap::from([("app".to_string(), "echoserver-hostport".to_string())]);
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some("echoserver-hostport".into()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(3),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        AKS_ANNOTATION.to_string(),
                        "8080/tcp,8443/tcp".to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(echo_spec()),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await?;

    // The Deployment and ReplicaSet controllers create the pods (generateName, owned by
    // the ReplicaSet): the webhook sees them exactly as in a real cluster.
    let pods = eventually("3 echoserver pods", WAIT, || async {
        let pods = live_pods(&client, ns).await?;
        ensure!(pods.len() == 3, "{} pods", pods.len());
        Ok(pods)
    })
    .await?;
    let mut all = BTreeSet::new();
    for pod in &pods {
        let ports = host_ports(pod);
        ensure!(ports.len() == 2, "{}: {ports:?}", pod.name_any());
        ensure!(in_range(&ports), "{ports:?}");
        ensure!(ports[0].2 != ports[1].2);
        for (_, _, h) in &ports {
            ensure!(all.insert(*h), "host port {h} given twice");
        }
        let env = env_of(pod, 0);
        let http = ports.iter().find(|p| p.0 == 8080).map(|p| p.2.to_string());
        let https = ports.iter().find(|p| p.0 == 8443).map(|p| p.2.to_string());
        assert_eq!(
            env.get("echoserver-hostport_PORT_8080_TCP_HOSTPORT"),
            http.as_ref()
        );
        assert_eq!(
            env.get("echoserver-hostport_PORT_8443_TCP_HOSTPORT"),
            https.as_ref()
        );
        assert_eq!(
            env.get("echoserver_hostport_PORT_8080_TCP_HOSTPORT"),
            http.as_ref()
        );
        assert_eq!(
            env.get("echoserver_hostport_PORT_8443_TCP_HOSTPORT"),
            https.as_ref()
        );
    }
    // Each port has a claim, bound to its pod by the repair loop.
    eventually("claims bound to the pods", WAIT, || {
        claims_match_pods(&client, ns)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn dry_run_shows_ports_but_reserves_nothing() -> Result<()> {
    let (env, poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let before = claims_in(&client, ns).await?.len();
    let calls = poolnet.pod_admissions();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&dry, &echo_pod("dry-"))
        .await?;
    assert_eq!(
        host_ports(&pod).len(),
        2,
        "the dry run shows what would be assigned"
    );
    assert!(poolnet.pod_admissions() > calls, "the webhook was called");
    assert_eq!(
        claims_in(&client, ns).await?.len(),
        before,
        "and reserved nothing"
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_copied_with_poolnets_label_gets_ports_of_its_own() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let original = pods
        .create(&PostParams::default(), &echo_pod("orig-"))
        .await?;
    // `kubectl get pod -o yaml`, edited and created again: poolnet's label, annotation and
    // host ports come along.
    let mut copy = original.clone();
    copy.metadata = ObjectMeta {
        name: Some(format!("{}-copy", original.name_any())),
        labels: original.metadata.labels.clone(),
        annotations: original.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    copy.status = None;
    let copy = pods.create(&PostParams::default(), &copy).await?;
    let a = keys_of(&original);
    let b = keys_of(&copy);
    assert_eq!(b.len(), 2);
    assert!(a.is_disjoint(&b), "copy got {b:?}, original holds {a:?}");
    assert_ne!(
        original.labels().get("poolnet.dev/reservation"),
        copy.labels().get("poolnet.dev/reservation")
    );
    eventually("claims bound", WAIT, || claims_match_pods(&client, ns)).await?;
    Ok(())
}

#[tokio::test]
async fn ports_are_released_only_once_the_pod_is_gone() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut pod = echo_pod("held-");
    pod.metadata.finalizers = Some(vec!["poolnet.test/hold".into()]);
    let pod = pods.create(&PostParams::default(), &pod).await?;
    let name = pod.name_any();
    let keys = keys_of(&pod);
    eventually("claims bound", WAIT, || claims_match_pods(&client, ns)).await?;

    pods.delete(&name, &DeleteParams::default()).await?;
    let terminating = pods.get(&name).await?;
    assert!(terminating.metadata.deletion_timestamp.is_some());
    // Repair passes run every 500 ms; give them several while the pod is Terminating.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held: BTreeSet<String> = claims_in(&client, ns)
        .await?
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(held, keys, "a Terminating pod still holds its ports");

    pods.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    eventually("claims released", WAIT, || async {
        let left = claims_in(&client, ns).await?;
        ensure!(left.is_empty(), "{} claims left", left.len());
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn never_bound_claims_are_released_after_the_grace_period_over_two_passes() -> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace();
    // Repair only, driven pass by pass.
    let configs = Configs::for_namespace(ns);
    let opts = Options {
        repair: Some(poolnet_operator::hostports::RepairConfig {
            release: poolnet_operator::hostports::ReleasePolicy {
                grace: Duration::from_secs(2),
                confirm_after: Duration::from_secs(1),
            },
            // Far beyond the test: the test calls pass() itself.
            interval: Duration::from_secs(3600),
            min_gap: Duration::from_secs(3600),
            list_page: 2,
        }),
        ..Options::default()
    };
    let poolnet = Instance::start(&client, ns, &configs, opts).await?;
    let repair = poolnet
        .repairer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no repairer"))?;
    // A claim whose admission never produced a pod (e.g. a later webhook denied the pod).
    let orphan: HostPortClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortClaim",
        "metadata": {"name": "udp-2301", "labels": {"poolnet.dev/pod-namespace": ns, "poolnet.dev/reservation": "lost"}},
        "spec": {"protocol": "UDP", "port": 2301, "source": "Automatic", "podNamespace": ns,
                 "requestUid": "lost", "createdAt": "2020-01-01T00:00:00Z"}
    }))?;
    let claims: Api<HostPortClaim> = Api::all(client.clone());
    claims.create(&PostParams::default(), &orphan).await?;
    repair.pass().await?;
    assert!(
        claims.get_opt("udp-2301").await?.is_some(),
        "younger than the grace period"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    repair.pass().await?;
    let marked = claims.get("udp-2301").await?;
    assert!(
        marked.status.and_then(|s| s.orphan_since).is_some(),
        "first pass marks"
    );
    repair.pass().await?;
    assert!(
        claims.get_opt("udp-2301").await?.is_some(),
        "a second pass too soon keeps it"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    repair.pass().await?;
    assert!(
        claims.get_opt("udp-2301").await?.is_none(),
        "released after two passes"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_poolnet_knows_every_held_port_from_api_state_alone() -> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    // Static ports make the check exact: the second pod asks for what the first holds.
    let first = Instance::start(&client, &ns, &configs, Options::default()).await?;
    activate(&client, &ns, &first.base_url()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let a = pods
        .create(&PostParams::default(), &echo_pod("before-"))
        .await?;
    let held = keys_of(&a);
    drop(first);

    // A new process: empty memory, same API server. Its index comes from the watches.
    let second = Instance::start(&client, &ns, &configs, Options::default()).await?;
    Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
        client.clone(),
    )
    .delete(&configs.mutating, &DeleteParams::default())
    .await?;
    Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(
        client.clone(),
    )
    .delete(&configs.validating, &DeleteParams::default())
    .await?;
    activate(&client, &ns, &second.base_url()).await?;
    for (_, _, h) in host_ports(&a) {
        let mut copy = echo_pod("static-");
        set_host_port(&mut copy, 0, h);
        let e = pods
            .create(&PostParams::default(), &copy)
            .await
            .expect_err("a held port written in the spec is refused");
        assert!(
            e.to_string().contains(&format!("static host port {h}/tcp")),
            "{e}"
        );
    }
    let b = pods
        .create(&PostParams::default(), &echo_pod("after-"))
        .await?;
    assert!(held.is_disjoint(&keys_of(&b)));
    eventually("claims bound", WAIT, || claims_match_pods(&client, &ns)).await?;
    drop(second);
    Ok(())
}

#[tokio::test]
async fn reinvocation_returns_the_same_ports_and_writes_nothing() -> Result<()> {
    let (env, poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    // Another mutating webhook that runs after poolnet's (configurations are called in
    // name order) and changes the pod: the API server then calls poolnet again
    // (reinvocationPolicy: IfNeeded) with the pod poolnet already patched.
    let routes = axum::Router::new().route(
        "/label",
        poolnet_tests::webhook::admission(|req| {
            let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
                {"op": "add", "path": "/metadata/labels/other-webhook", "value": "was-here"}
            ]))
            .unwrap_or_else(|_| json_patch::Patch(Vec::new()));
            kube::core::admission::AdmissionResponse::from(&req)
                .with_patch(patch)
                .unwrap_or_else(|e| kube::core::admission::AdmissionResponse::from(&req).deny(e))
        }),
    );
    let other = poolnet_tests::WebhookServer::start(routes).await?;
    env.register_webhook(
        &other,
        poolnet_tests::Kind::Mutating,
        poolnet_tests::Hook {
            name: "zz-other.poolnet.test".into(),
            path: "/label".into(),
            rules: vec![poolnet_tests::webhook::rule("", "v1", "pods", &["CREATE"])],
            namespace: None,
        },
    )
    .await?;
    let before = poolnet.pod_admissions();
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &echo_pod("reinvoked-"))
        .await?;
    assert_eq!(
        pod.labels().get("other-webhook").map(String::as_str),
        Some("was-here")
    );
    assert_eq!(
        poolnet.pod_admissions() - before,
        2,
        "poolnet was called twice"
    );
    // One reservation: exactly the pod's two ports are claimed, by one token.
    let claims = claims_in(&client, ns).await?;
    let names: BTreeSet<String> = claims.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, keys_of(&pod));
    let tokens: BTreeSet<&str> = claims.iter().map(|c| c.spec.request_uid.as_str()).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        pod.labels()
            .get("poolnet.dev/reservation")
            .map(String::as_str),
        tokens.first().copied()
    );
    Ok(())
}

#[tokio::test]
async fn host_ports_written_by_authors_elsewhere_are_adopted_and_never_reassigned() -> Result<()> {
    let (env, _poolnet) = setup().await?;
    let client = env.client();
    let ns = env.namespace();
    // A pod in another namespace (not covered by this test's webhook registration, like a
    // namespace excluded from the webhook) writes hostPort 45678 itself.
    let other = TestEnv::shared().await?;
    let mut foreign = echo_pod("author-");
    foreign.metadata.annotations = None;
    set_host_port(&mut foreign, 0, 45678);
    let foreign = Api::<Pod>::namespaced(client.clone(), other.namespace())
        .create(&PostParams::default(), &foreign)
        .await?;
    let claims: Api<HostPortClaim> = Api::all(client.clone());
    let adopted = eventually("the author's port adopted", WAIT, || async {
        match claims.get_opt("tcp-45678").await? {
            Some(c) if c.status.as_ref().and_then(|s| s.pod.as_ref()).is_some() => Ok(c),
            other => bail!("not yet: {other:?}"),
        }
    })
    .await?;
    assert_eq!(
        adopted.status.and_then(|s| s.pod).map(|p| p.uid),
        foreign.uid()
    );
    // Asking for it here is refused.
    let mut wants = echo_pod("wants-");
    set_host_port(&mut wants, 0, 45678);
    let e = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &wants)
        .await
        .expect_err("held by the foreign pod");
    assert!(e.to_string().contains("45678/tcp"), "{e}");
    Ok(())
}
