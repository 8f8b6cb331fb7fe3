//! The poolnet CRDs against a real kube-apiserver: every sample in `config/samples/` is
//! accepted, every manifest in `tests/invalid/` is rejected with the message its header
//! promises, by the layer its header names (see `tests/invalid/README.md`):
//! - `layer: schema`: the CRD's OpenAPI schema / CEL rules reject it, no webhook involved;
//! - `layer: webhook`: the schema accepts it and only poolnet's validator
//!   (`poolnet_api::validation::validate_admission`, served here as a validating webhook)
//!   rejects it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use poolnet_tests::webhook::{admission, rule};
use poolnet_tests::{Hook, Kind, TestEnv, WebhookServer, crds, repo_root};
use serde::Deserialize;

const MANAGER: &str = "poolnet-crd-validation";
const VALIDATE_PATH: &str = "/validate-poolnet";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Schema,
    Webhook,
}

/// One file of the invalid corpus.
#[derive(Debug)]
struct Case {
    file: String,
    expect: Vec<String>,
    layer: Layer,
    /// For `operation: update`: the stored object, applied before `manifest`.
    stored: Option<DynamicObject>,
    manifest: DynamicObject,
}

fn documents(path: &Path) -> Result<Vec<DynamicObject>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("parsing {}", path.display()))?;
        if !value.is_null() {
            objects.push(
                serde_yaml::from_value(value)
                    .with_context(|| format!("{}: not a Kubernetes object", path.display()))?,
            );
        }
    }
    Ok(objects)
}

fn load_case(path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(path)?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let header = |key: &str| -> Vec<String> {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix('#')?.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
            .collect()
    };
    let expect = header("expect:");
    if expect.is_empty() {
        bail!("{file}: no `# expect:` header");
    }
    let layer = match header("layer:").first().map(String::as_str) {
        Some("schema") => Layer::Schema,
        Some("webhook") => Layer::Webhook,
        other => bail!("{file}: `# layer:` must be schema or webhook, found {other:?}"),
    };
    let mut docs = documents(path)?;
    let operation = header("operation:")
        .first()
        .cloned()
        .unwrap_or_else(|| "create".into());
    let (stored, manifest) = match (operation.as_str(), docs.len()) {
        ("create", 1) => (None, docs.remove(0)),
        ("update", 2) => {
            let manifest = docs.remove(1);
            (Some(docs.remove(0)), manifest)
        }
        (op, n) => bail!("{file}: operation {op} with {n} documents"),
    };
    Ok(Case {
        file,
        expect,
        layer,
        stored,
        manifest,
    })
}

fn invalid_cases() -> Result<Vec<Case>> {
    let files = crds::yaml_files(&repo_root().join("tests/invalid"))?;
    if files.is_empty() {
        bail!("tests/invalid has no manifests");
    }
    files.iter().map(|f| load_case(f)).collect()
}

/// Creates namespace `name` unless it exists (corpus files may name their own namespace).
async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_none() {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            // Created concurrently by another test: fine.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An `Api` for `obj`'s kind, in its namespace (or `default_ns`) when the kind is namespaced.
async fn api_for(
    client: &Client,
    obj: &DynamicObject,
    default_ns: &str,
) -> Result<Api<DynamicObject>> {
    let types = obj
        .types
        .as_ref()
        .context("manifest without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, caps) = pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {}/{}", types.api_version, types.kind))?;
    Ok(match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let ns = obj.namespace().unwrap_or_else(|| default_ns.to_string());
            ensure_namespace(client, &ns).await?;
            Api::namespaced_with(client.clone(), &ns, &resource)
        }
    })
}

fn message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Server-side apply, as GitOps tools (Flux, `kubectl apply --server-side`) do.
async fn apply(
    client: &Client,
    obj: &DynamicObject,
    ns: &str,
    dry_run: bool,
) -> Result<DynamicObject, String> {
    let api = api_for(client, obj, ns)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut params = PatchParams::apply(MANAGER).force();
    params.dry_run = dry_run;
    api.patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
        .map_err(message)
}

/// What the API server says to a corpus case; `None` means accepted.
struct Outcome {
    /// POST for `create`, PUT over the stored object for `update`: the request whose
    /// message the `expect` headers describe.
    direct: Option<String>,
    /// Server-side apply of a `create` case (SSA reports some errors in its own words, so
    /// only acceptance vs rejection is compared).
    server_side_apply: Option<String>,
}

/// Sends `case` to the API server. All writes of the rejected manifest are dry runs, so
/// object names in the corpus never collide with one another.
async fn try_case(client: &Client, case: &Case, ns: &str) -> Result<Outcome> {
    let api = api_for(client, &case.manifest, ns).await?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let Some(stored) = &case.stored else {
        return Ok(Outcome {
            direct: api
                .create(&dry_run, &case.manifest)
                .await
                .err()
                .map(message),
            server_side_apply: apply(client, &case.manifest, ns, true).await.err(),
        });
    };
    let stored = api
        .create(&PostParams::default(), stored)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: the stored (first) object is rejected: {}",
                case.file,
                message(e)
            )
        })?;
    let mut edit = case.manifest.clone();
    edit.metadata.resource_version = stored.resource_version();
    let direct = api
        .replace(&stored.name_any(), &dry_run, &edit)
        .await
        .err()
        .map(message);
    api.delete(&stored.name_any(), &DeleteParams::default())
        .await?;
    Ok(Outcome {
        direct,
        server_side_apply: None,
    })
}

fn check_rejected(case: &Case, outcome: Outcome, failures: &mut Vec<String>) {
    match outcome.direct {
        None => failures.push(format!("{}: accepted, expected a rejection", case.file)),
        Some(message) => {
            for expected in &case.expect {
                if !message.contains(expected.as_str()) {
                    failures.push(format!(
                        "{}: message lacks {expected:?}: {message}",
                        case.file
                    ));
                }
            }
        }
    }
    if case.stored.is_none() && outcome.server_side_apply.is_none() {
        failures.push(format!(
            "{}: rejected on create but accepted by server-side apply",
            case.file
        ));
    }
}

fn check_accepted(case: &Case, outcome: Outcome, failures: &mut Vec<String>) {
    for message in [outcome.direct, outcome.server_side_apply]
        .into_iter()
        .flatten()
    {
        failures.push(format!(
            "{}: marked `layer: webhook` but the CRD schema already rejects it: {message}",
            case.file
        ));
    }
}

fn validate(request: AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(&request);
    let (object, old) = match (
        request
            .object
            .as_ref()
            .map(serde_json::to_value)
            .transpose(),
        request
            .old_object
            .as_ref()
            .map(serde_json::to_value)
            .transpose(),
    ) {
        (Ok(Some(object)), Ok(old)) => (object, old),
        (Ok(None), _) => return response,
        (Err(e), _) | (_, Err(e)) => return response.deny(format!("unreadable object: {e}")),
    };
    match poolnet_api::validation::validate_admission(&object, old.as_ref()) {
        Ok(()) => response,
        Err(errors) => response.deny(errors),
    }
}

async fn register_validator(env: &TestEnv) -> Result<WebhookServer> {
    let server =
        WebhookServer::start(axum::Router::new().route(VALIDATE_PATH, admission(validate))).await?;
    // Cluster-wide (NodePoolNetwork is cluster-scoped): this env has a control plane of its own.
    server
        .register(
            &env.client(),
            Kind::Validating,
            &Hook {
                name: "validate.poolnet.dev".into(),
                path: VALIDATE_PATH.into(),
                rules: vec![
                    rule(
                        "poolnet.dev",
                        "*",
                        "nodepoolnetworks",
                        &["CREATE", "UPDATE"],
                    ),
                    rule(
                        "poolnet.dev",
                        "*",
                        "hostportpolicies",
                        &["CREATE", "UPDATE"],
                    ),
                ],
                namespace: None,
            },
        )
        .await?;
    Ok(server)
}

#[tokio::test]
async fn invalid_manifests_are_rejected_by_their_layer() -> Result<()> {
    let cases = invalid_cases()?;
    let env = TestEnv::start().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let mut failures = Vec::new();

    // Without the webhook: schema-layer files are rejected, webhook-layer files accepted.
    for case in &cases {
        let outcome = try_case(&client, case, &ns).await?;
        match case.layer {
            Layer::Schema => check_rejected(case, outcome, &mut failures),
            Layer::Webhook => check_accepted(case, outcome, &mut failures),
        }
    }

    // With poolnet's validator served as a webhook: webhook-layer files are rejected too.
    let _server = register_validator(&env).await?;
    for case in cases.iter().filter(|c| c.layer == Layer::Webhook) {
        let outcome = try_case(&client, case, &ns).await?;
        check_rejected(case, outcome, &mut failures);
    }

    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests misbehave:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

/// One file of the valid corpus (`tests/valid/`): `# operation:` as in `tests/invalid/`.
fn load_valid_case(path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(path)?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let update = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .any(|l| l.trim() == "# operation: update");
    let mut docs = documents(path)?;
    let (stored, manifest) = match (update, docs.len()) {
        (false, 1) => (None, docs.remove(0)),
        (true, 2) => {
            let manifest = docs.remove(1);
            (Some(docs.remove(0)), manifest)
        }
        (_, n) => bail!("{file}: {n} documents"),
    };
    Ok(Case {
        file,
        expect: Vec::new(),
        layer: Layer::Schema,
        stored,
        manifest,
    })
}

fn check_valid(case: &Case, outcome: Outcome, with: &str, failures: &mut Vec<String>) {
    for message in [outcome.direct, outcome.server_side_apply]
        .into_iter()
        .flatten()
    {
        failures.push(format!("{} ({with}): rejected: {message}", case.file));
    }
}

/// Edge cases where the CRD's CEL rules and the webhook once disagreed (`tests/valid/`):
/// accepted by the API server, without and with poolnet's validator as a webhook.
#[tokio::test]
async fn valid_edge_cases_are_accepted_by_every_layer() -> Result<()> {
    let files = crds::yaml_files(&repo_root().join("tests/valid"))?;
    if files.is_empty() {
        bail!("tests/valid has no manifests");
    }
    let cases: Vec<Case> = files
        .iter()
        .map(|f| load_valid_case(f))
        .collect::<Result<_>>()?;
    let env = TestEnv::start().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = try_case(&client, case, &ns).await?;
        check_valid(case, outcome, "CRD schema", &mut failures);
    }
    let _server = register_validator(&env).await?;
    for case in &cases {
        let outcome = try_case(&client, case, &ns).await?;
        check_valid(case, outcome, "with the webhook", &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn samples_are_accepted_and_reapply_is_a_no_op() -> Result<()> {
    let env = TestEnv::start().await?;
    let _server = register_validator(&env).await?;
    let client = env.client();
    let samples: Vec<PathBuf> = crds::yaml_files(&repo_root().join("config/samples"))?;
    if samples.is_empty() {
        bail!("config/samples has no manifests");
    }
    let mut failures = Vec::new();
    let mut applied = 0;
    for file in &samples {
        for obj in documents(file)? {
            let what = format!(
                "{}: {} {}",
                file.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?"),
                obj.name_any()
            );
            match apply(&client, &obj, env.namespace(), false).await {
                Err(message) => failures.push(format!("{what}: rejected: {message}")),
                Ok(first) => {
                    applied += 1;
                    // GitOps tools re-apply constantly: the same manifest must not change
                    // the stored spec (no defaulting churn). Generation, not resourceVersion:
                    // controllers (e.g. for a sample Deployment) may write status meanwhile.
                    match apply(&client, &obj, env.namespace(), false).await {
                        Err(message) => {
                            failures.push(format!("{what}: re-apply rejected: {message}"))
                        }
                        Ok(second) if second.metadata.generation != first.metadata.generation => {
                            failures.push(format!(
                                "{what}: re-applying the same manifest changed its spec"
                            ));
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(applied > 0);
    Ok(())
}
