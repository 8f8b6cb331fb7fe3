//! The fixture's control plane is a real one: each test shows one API server or controller
//! behaviour poolnet depends on, against kube-apiserver + etcd + kube-controller-manager.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::admission::AdmissionResponse;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, ObjectMeta};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use poolnet_tests::env::create_namespace;
use poolnet_tests::webhook::{admission, rule};
use poolnet_tests::{Hook, Kind, TestEnv, WebhookServer, fixture_dir};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// The fixture's own CRD only, so these tests show the control plane works whatever state
/// the poolnet CRDs are in (those are covered by `crd_validation.rs`).
async fn env() -> Result<TestEnv> {
    TestEnv::shared_with_crds(&[fixture_dir().join("crd")]).await
}

fn widgets(env: &TestEnv) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "fixture.poolnet.test",
        "v1",
        "Widget",
    ));
    Api::namespaced_with(env.client(), env.namespace(), &ar)
}

fn widget(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "fixture.poolnet.test/v1",
        "kind": "Widget",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

fn ssa(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

/// Waits until `name` is gone from `api`.
async fn await_deleted<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt(name).await?.is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("{name} still exists after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn api_error_message(result: Result<impl std::fmt::Debug, kube::Error>) -> Result<(u16, String)> {
    match result {
        Err(kube::Error::Api(status)) => Ok((status.code, status.message.clone())),
        other => bail!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crd_installs_and_becomes_established() -> Result<()> {
    let env = env().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client());
    let crd = crds.get("widgets.fixture.poolnet.test").await?;
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "widgets CRD is not Established");
    // Established means served: the resource can be listed right away.
    widgets(&env).list(&Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn server_side_apply_tracks_field_owners() -> Result<()> {
    let env = env().await?;
    let api = widgets(&env);
    let obj: DynamicObject = serde_json::from_value(widget("ssa", json!({"size": 2})))?;
    api.patch("ssa", &ssa("team-a"), &Patch::Apply(&obj))
        .await?;

    let other: DynamicObject = serde_json::from_value(widget("ssa", json!({"size": 3})))?;
    let (code, message) = api_error_message(
        api.patch("ssa", &ssa("team-b"), &Patch::Apply(&other))
            .await,
    )?;
    assert_eq!(code, 409, "{message}");
    assert!(message.contains("conflict"), "{message}");
    assert!(message.contains("team-a"), "{message}");

    let applied = api
        .patch("ssa", &ssa("team-b").force(), &Patch::Apply(&other))
        .await?;
    assert_eq!(applied.data["spec"]["size"], 3);
    let managers: Vec<_> = applied
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"team-b".to_string()), "{managers:?}");
    Ok(())
}

#[tokio::test]
async fn schema_and_cel_reject_invalid_objects() -> Result<()> {
    let env = env().await?;
    let api = widgets(&env);
    let cases = [
        (json!({"size": 0}), "should be greater than or equal to 1"),
        (
            json!({"size": 5, "maxSize": 3}),
            "size must not exceed maxSize",
        ),
        (
            json!({"size": 1, "color": "purple"}),
            "Unsupported value: \"purple\"",
        ),
        (json!({"color": "red"}), "spec.size: Required value"),
    ];
    for (i, (spec, expected)) in cases.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(widget(&format!("bad-{i}"), spec))?;
        let (code, message) = api_error_message(api.create(&PostParams::default(), &obj).await)?;
        assert_eq!(code, 422, "{message}");
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn status_subresource_is_separate_from_spec() -> Result<()> {
    let env = env().await?;
    let api = widgets(&env);
    let obj: DynamicObject = serde_json::from_value(widget("status", json!({"size": 1})))?;
    let created = api.create(&PostParams::default(), &obj).await?;
    let generation = created.metadata.generation;

    let status = json!({"status": {"observedGeneration": generation, "phase": "Ready"}});
    let patched = api
        .patch_status("status", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    assert_eq!(patched.data["status"]["phase"], "Ready");
    assert_eq!(
        patched.metadata.generation, generation,
        "status must not bump generation"
    );

    // Through the main resource, status is ignored and spec changes bump the generation.
    let edit = json!({"spec": {"size": 2}, "status": {"phase": "Hacked"}});
    let edited = api
        .patch("status", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    assert_eq!(edited.data["status"]["phase"], "Ready");
    assert_eq!(edited.data["spec"]["size"], 2);
    assert!(edited.metadata.generation > generation);
    Ok(())
}

#[tokio::test]
async fn finalizer_holds_deletion_until_removed() -> Result<()> {
    let env = env().await?;
    let api = widgets(&env);
    let mut obj: DynamicObject = serde_json::from_value(widget("held", json!({"size": 1})))?;
    obj.metadata.finalizers = Some(vec!["fixture.poolnet.test/cleanup".into()]);
    let created = api.create(&PostParams::default(), &obj).await?;

    api.delete("held", &DeleteParams::default()).await?;
    let held = api.get("held").await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.finalizers(), ["fixture.poolnet.test/cleanup"]);

    let release = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await?;
    let uid = created.uid().context("created object has no uid")?;
    tokio::time::timeout(
        WAIT,
        await_condition(api.clone(), "held", conditions::is_deleted(&uid)),
    )
    .await
    .context("object not deleted after its finalizer was removed")??;
    Ok(())
}

#[tokio::test]
async fn lease_is_acquired_renewed_and_guarded() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let now = || MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("poolnet-operator".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("replica-a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    let acquired = leases.create(&PostParams::default(), &lease).await?;
    // A second replica racing to create the same Lease loses.
    let mut rival = lease.clone();
    if let Some(spec) = rival.spec.as_mut() {
        spec.holder_identity = Some("replica-b".into());
    }
    let (code, _) = api_error_message(leases.create(&PostParams::default(), &rival).await)?;
    assert_eq!(code, 409);

    // Renewal is a compare-and-swap on resourceVersion.
    let mut renewed = acquired.clone();
    if let Some(spec) = renewed.spec.as_mut() {
        spec.renew_time = Some(now());
    }
    let renewed = leases
        .replace("poolnet-operator", &PostParams::default(), &renewed)
        .await?;
    assert_ne!(renewed.resource_version(), acquired.resource_version());
    assert_eq!(
        renewed
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref()),
        Some("replica-a")
    );

    // A takeover based on the stale copy is refused: the holder renewed in between.
    let mut takeover = acquired;
    if let Some(spec) = takeover.spec.as_mut() {
        spec.holder_identity = Some("replica-b".into());
    }
    let (code, message) = api_error_message(
        leases
            .replace("poolnet-operator", &PostParams::default(), &takeover)
            .await,
    )?;
    assert_eq!(code, 409, "{message}");
    Ok(())
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_of_deleted_owner() -> Result<()> {
    let env = env().await?;
    let configmaps: Api<ConfigMap> = env.api();
    let owner = configmaps
        .create(&PostParams::default(), &configmap("owner"))
        .await?;
    let mut dependent = configmap("dependent");
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().context("owner has no uid")?,
        ..OwnerReference::default()
    }]);
    configmaps
        .create(&PostParams::default(), &dependent)
        .await?;

    configmaps
        .delete("owner", &DeleteParams::background())
        .await?;
    await_deleted(&configmaps, "dependent")
        .await
        .context("garbage collector did not delete the dependent")?;
    Ok(())
}

#[tokio::test]
async fn namespace_deletion_removes_its_contents() -> Result<()> {
    let env = env().await?;
    let client: Client = env.client();
    let name = create_namespace(&client, "doomed-").await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    configmaps
        .create(&PostParams::default(), &configmap("content"))
        .await?;
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces.delete(&name, &DeleteParams::default()).await?;
    await_deleted(&namespaces, &name)
        .await
        .context("namespace controller did not finish deleting the namespace")?;
    Ok(())
}

#[tokio::test]
async fn mutating_webhook_served_by_the_test_is_called_on_pod_creation() -> Result<()> {
    let env = env().await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let routes = axum::Router::new().route(
        "/mutate-pods",
        admission(move |req| {
            seen.fetch_add(1, Ordering::SeqCst);
            let patch: json_patch::Patch = match serde_json::from_value(json!([
                {"op": "add", "path": "/metadata/labels", "value": {"poolnet.test/mutated": "yes"}}
            ])) {
                Ok(patch) => patch,
                Err(e) => return AdmissionResponse::from(&req).deny(e),
            };
            match AdmissionResponse::from(&req).with_patch(patch) {
                Ok(response) => response,
                Err(e) => AdmissionResponse::from(&req).deny(e),
            }
        }),
    );
    let server = WebhookServer::start(routes).await?;
    env.register_webhook(
        &server,
        Kind::Mutating,
        Hook {
            name: "pods.mutate.poolnet.test".into(),
            path: "/mutate-pods".into(),
            rules: vec![rule("", "v1", "pods", &["CREATE"])],
            namespace: None,
        },
    )
    .await?;

    let pods: Api<Pod> = env.api();
    let pod = pods
        .create(
            &PostParams::default(),
            &Pod {
                metadata: ObjectMeta {
                    name: Some("echo".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "echo".into(),
                        image: Some("registry.invalid/echo:1".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
                ..Pod::default()
            },
        )
        .await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        pod.labels(),
        &BTreeMap::from([("poolnet.test/mutated".to_string(), "yes".to_string())])
    );
    Ok(())
}

#[tokio::test]
async fn isolated_control_plane_works_with_kubectl_and_stops_on_drop() -> Result<()> {
    let env = TestEnv::start_with_crds(&[fixture_dir().join("crd")]).await?;
    let plane = env.control_plane();
    let bins = poolnet_tests::binaries::Binaries::locate()?;
    let out = tokio::process::Command::new(&bins.kubectl)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["get", "--raw", "/readyz"])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let pids: Vec<u32> = plane.processes().iter().map(|(_, pid)| *pid).collect();
    let state_dir = plane.state_dir().to_path_buf();
    drop(env);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived the drop"
        );
    }
    assert!(
        !state_dir.exists(),
        "{} survived the drop",
        state_dir.display()
    );
    Ok(())
}
