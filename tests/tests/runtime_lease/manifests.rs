//! The deployment manifests: runtime flags and probes, pod security, and RBAC that grants the
//! operator exactly what it needs (including its Lease).

use super::support::*;

const SYSTEM_NAMESPACE: &str = "poolnet-system";
const OPERATOR_USER: &str = "system:serviceaccount:poolnet-system:poolnet-operator";

async fn kubectl(env: &TestEnv, args: &[&str]) -> Result<String> {
    let bins = Binaries::locate()?;
    let out = tokio::process::Command::new(&bins.kubectl)
        .arg(format!(
            "--kubeconfig={}",
            env.control_plane().kubeconfig_path().display()
        ))
        .args(args)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A client acting as the operator's service account.
async fn operator_client(env: &TestEnv) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(env.control_plane().kubeconfig_path())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(OPERATOR_USER.into());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{SYSTEM_NAMESPACE}"),
        "system:authenticated".into(),
    ]);
    Ok(Client::try_from(config)?)
}

/// Whether the operator's service account may `verb` on `group/resource[/subresource]`.
async fn operator_may(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(OPERATOR_USER.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{SYSTEM_NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(String::from),
                name: name.map(String::from),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[derive(Debug, Parser)]
struct OperatorFlags {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// The runtime flags among the container's args (the rest belong to the binary itself).
fn runtime_flags(args: &[String]) -> Vec<String> {
    let known: Vec<String> = OperatorFlags::command()
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    args.iter()
        .filter(|a| {
            known
                .iter()
                .any(|k| *a == k || a.starts_with(&format!("{k}=")))
        })
        .cloned()
        .collect()
}

#[test]
fn the_deployment_speaks_the_runtime_flags_and_probes() -> Result<()> {
    let path = poolnet_tests::repo_root().join("config/manager/deployment.yaml");
    let deployment: Deployment = serde_yaml::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let spec = deployment.spec.context("spec")?;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.context("pod spec")?;
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert_eq!(
        labels
            .get("azure.workload.identity/use")
            .map(String::as_str),
        Some("true")
    );
    let container = pod.containers.first().context("a container")?;
    let flags = runtime_flags(container.args.as_deref().unwrap_or_default());
    let parsed = OperatorFlags::try_parse_from(
        std::iter::once("poolnet-operator".to_string()).chain(flags.iter().cloned()),
    )?;
    assert!(parsed.runtime.leader_election);
    let admin_port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("admin"))
        .context("an `admin` port")?
        .container_port;
    assert_eq!(i32::from(parsed.runtime.admin_addr.port()), admin_port);
    // The webhook Service's `webhook` target port is where the operator serves admission.
    let webhook_port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("webhook"))
        .context("a `webhook` port")?
        .container_port;
    let webhook_addr: std::net::SocketAddr = container
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--webhook-addr="))
        .context("a --webhook-addr argument")?
        .parse()?;
    assert_eq!(i32::from(webhook_addr.port()), webhook_port);
    let probe_path = |probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(container.liveness_probe.as_ref()).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(container.readiness_probe.as_ref()).as_deref(),
        Some("/readyz")
    );
    let env_from_field = |name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    assert_eq!(env_from_field("POD_NAME").as_deref(), Some("metadata.name"));
    assert_eq!(
        env_from_field("POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    let security = container
        .security_context
        .as_ref()
        .context("securityContext")?;
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_install_and_grant_the_operator_what_it_needs() -> Result<()> {
    let env = env().await?;
    let manager = poolnet_tests::repo_root().join("config/manager");
    let manager = manager.to_str().context("repository path is UTF-8")?;
    kubectl(
        &env,
        &[
            "apply",
            "--server-side",
            "--field-manager=poolnet-tests",
            "-k",
            manager,
        ],
    )
    .await?;

    // The Deployment's pods pass admission: the service account exists and the pod meets
    // the namespace's `restricted` pod security level. (They never run: no nodes.)
    let pods: Api<Pod> = Api::namespaced(env.client(), SYSTEM_NAMESPACE);
    let by_app = ListParams::default().labels("app.kubernetes.io/name=poolnet-operator");
    wait_until_async("two operator pods", || async {
        Ok(pods.list(&by_app).await?.items.len() == 2)
    })
    .await?;
    for pod in pods.list(&by_app).await? {
        let spec = pod.spec.as_ref().context("pod spec")?;
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("poolnet-operator")
        );
        assert!(pod.name_any().starts_with("poolnet-operator-"));
    }

    let admin = env.client();
    let ns = Some(SYSTEM_NAMESPACE);
    let app_ns = Some("team-a");
    let allowed = [
        ("get", "coordination.k8s.io", "leases", ns),
        ("create", "coordination.k8s.io", "leases", ns),
        ("update", "coordination.k8s.io", "leases", ns),
        ("create", "", "secrets", ns),
        ("watch", "", "secrets", ns),
        ("watch", "poolnet.dev", "nodepoolnetworks", None),
        ("patch", "poolnet.dev", "nodepoolnetworks", None),
        ("patch", "poolnet.dev", "nodepoolnetworks/status", None),
        ("update", "poolnet.dev", "nodepoolnetworks/finalizers", None),
        ("list", "poolnet.dev", "hostportpolicies", app_ns),
        ("patch", "poolnet.dev", "hostportpolicies/status", app_ns),
        ("create", "poolnet.dev", "hostportclaims", None),
        ("delete", "poolnet.dev", "hostportclaims", None),
        ("patch", "poolnet.dev", "hostportclaims/status", None),
        ("watch", "", "pods", None),
        ("list", "", "pods", app_ns),
        ("list", "", "namespaces", None),
        ("patch", "", "namespaces", None),
        ("watch", "", "nodes", None),
        ("create", "events.k8s.io", "events", app_ns),
        ("patch", "", "events", app_ns),
    ];
    let denied = [
        ("get", "", "secrets", app_ns),
        ("list", "", "secrets", None),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some("kube-system"),
        ),
        ("delete", "coordination.k8s.io", "leases", ns),
        ("create", "", "pods", app_ns),
        // Admission answers with a patch in the response; nothing writes pods through the API.
        ("patch", "", "pods", app_ns),
        ("delete", "", "pods", app_ns),
        ("patch", "", "nodes", None),
        ("delete", "poolnet.dev", "nodepoolnetworks", None),
        ("create", "poolnet.dev", "hostportpolicies", app_ns),
        (
            "delete",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
        ),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
        ),
    ];
    // Its own webhook configurations only, by name: the CA bundle it injects must not reach
    // anyone else's (a patched caBundle or clientConfig redirects another product's webhooks).
    let admission = "admissionregistration.k8s.io";
    let allowed_named = [
        ("get", "mutatingwebhookconfigurations", "poolnet-host-ports"),
        (
            "patch",
            "mutatingwebhookconfigurations",
            "poolnet-host-ports",
        ),
        (
            "get",
            "validatingwebhookconfigurations",
            "poolnet-validation",
        ),
        (
            "patch",
            "validatingwebhookconfigurations",
            "poolnet-validation",
        ),
    ];
    let denied_named = [
        (
            "patch",
            "mutatingwebhookconfigurations",
            "istio-sidecar-injector",
        ),
        (
            "get",
            "mutatingwebhookconfigurations",
            "istio-sidecar-injector",
        ),
        (
            "patch",
            "validatingwebhookconfigurations",
            "gatekeeper-validating",
        ),
    ];
    let mut wrong = Vec::new();
    for (verb, group, resource, namespace) in allowed {
        if !operator_may(&admin, verb, group, resource, namespace, None).await? {
            wrong.push(format!("denied {verb} {group}/{resource} in {namespace:?}"));
        }
    }
    for (verb, group, resource, namespace) in denied {
        if operator_may(&admin, verb, group, resource, namespace, None).await? {
            wrong.push(format!(
                "allowed {verb} {group}/{resource} in {namespace:?}"
            ));
        }
    }
    for (verb, resource, name) in allowed_named {
        if !operator_may(&admin, verb, admission, resource, None, Some(name)).await? {
            wrong.push(format!("denied {verb} {resource}/{name}"));
        }
    }
    for (verb, resource, name) in denied_named {
        if operator_may(&admin, verb, admission, resource, None, Some(name)).await? {
            wrong.push(format!("allowed {verb} {resource}/{name}"));
        }
    }
    ensure!(wrong.is_empty(), "operator RBAC: {wrong:#?}");

    // End to end: as its service account, the operator takes and releases its Lease.
    let operator = operator_client(&env).await?;
    let elector = Candidate::start(
        operator,
        config(SYSTEM_NAMESPACE, "poolnet-operator", "rbac-check", 10),
    )?;
    wait_until("the operator's service account leads", || {
        elector.is_leader()
    })
    .await?;
    elector.handle.release().await?;
    let leases: Api<Lease> = Api::namespaced(env.client(), SYSTEM_NAMESPACE);
    let lease = leases.get("poolnet-operator").await?;
    assert_eq!(lease.spec.as_ref().and_then(holder), None);
    Ok(())
}
