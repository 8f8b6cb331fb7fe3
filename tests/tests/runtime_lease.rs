//! The operator runtime against a real API server: leader election on a Lease (one leader,
//! takeover after expiry, prompt handover on release, conflicts retried) and the deployment
//! manifests (they install, pass pod security, and grant exactly what the operator needs,
//! including its Lease).
//!
//! Two views prove "never two leaders": each candidate's own belief (its leadership
//! channel, checked on every change) and the Lease's history as the API server recorded it
//! (a live holder is only replaced once its record has been left unrenewed for its
//! duration).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{CommandFactory, Parser};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use poolnet_operator::runtime::{LeaderElector, LeaderHandle, LeaseConfig, Metrics, RuntimeArgs};
use poolnet_tests::TestEnv;
use poolnet_tests::binaries::Binaries;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Leases are built-in, and the RBAC rules may name CRDs that are not installed: no CRDs,
/// so these tests do not depend on the state of the poolnet CRDs.
async fn env() -> Result<TestEnv> {
    TestEnv::shared_with_crds(&[]).await
}

/// Bound for what takes a few retry periods; only a broken elector (or control plane) hits it.
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
/// Retry period of every test candidate: many attempts per second keep the tests short.
const RETRY: Duration = Duration::from_millis(200);

/// Timings for `lease_secs`; the renew deadline is 3/4 of it, as client-go's 15 s / 10 s
/// leaves the leader a margin to stop before a successor may start.
fn config(namespace: &str, name: &str, identity: &str, lease_secs: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.into(),
        name: name.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(lease_secs),
        renew_deadline: Duration::from_millis(lease_secs * 750),
        retry_period: RETRY,
    }
}

/// One replica's elector, with its own metrics (as in separate processes).
struct Candidate {
    id: String,
    handle: LeaderHandle,
    metrics: Arc<Metrics>,
}

impl Candidate {
    fn start(client: Client, config: LeaseConfig) -> Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let id = config.identity.clone();
        let handle = LeaderElector::new(client, config, metrics.clone())?.spawn();
        Ok(Self {
            id,
            handle,
            metrics,
        })
    }

    fn is_leader(&self) -> bool {
        self.handle.is_leader()
    }

    /// `poolnet_leader_lease_conflicts_total` of this candidate.
    fn conflicts(&self) -> u64 {
        metric(
            &self.metrics.render(),
            "poolnet_leader_lease_conflicts_total",
        )
        .unwrap_or(0)
    }
}

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `done` until it holds; fails after [`WAIT`] naming `what`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

async fn wait_until_async<F, Fut>(what: &str, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await? {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Checks the candidates' own beliefs on every change: never two leaders at once.
struct Exclusivity {
    seen: Arc<Mutex<Beliefs>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Beliefs {
    /// Every candidate that believed it led at some point.
    led: BTreeSet<String>,
    violations: Vec<String>,
}

impl Exclusivity {
    fn watch(candidates: &[&Candidate]) -> Self {
        let mut channels: Vec<(String, watch::Receiver<bool>)> = candidates
            .iter()
            .map(|c| (c.id.clone(), c.handle.subscribe()))
            .collect();
        let seen = Arc::new(Mutex::new(Beliefs::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let leaders: Vec<String> = channels
                    .iter()
                    .filter(|(_, rx)| *rx.borrow())
                    .map(|(id, _)| id.clone())
                    .collect();
                {
                    let mut beliefs = lock(&record);
                    beliefs.led.extend(leaders.iter().cloned());
                    if leaders.len() > 1 {
                        beliefs.violations.push(leaders.join(" and "));
                    }
                }
                if channels.is_empty() {
                    return;
                }
                let (changed, index, rest) = futures::future::select_all(
                    channels.iter_mut().map(|(_, rx)| Box::pin(rx.changed())),
                )
                .await;
                drop(rest);
                if changed.is_err() {
                    channels.remove(index);
                }
            }
        });
        Self { seen, task }
    }

    fn check(&self) -> Result<()> {
        let beliefs = lock(&self.seen);
        ensure!(
            beliefs.violations.is_empty(),
            "two candidates believed they led at once: {:?}",
            beliefs.violations
        );
        Ok(())
    }

    fn led(&self) -> BTreeSet<String> {
        lock(&self.seen).led.clone()
    }
}

impl Drop for Exclusivity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every version of one Lease as the API server stored it, in order.
struct LeaseHistory {
    records: Arc<Mutex<Vec<LeaseSpec>>>,
    task: JoinHandle<()>,
}

impl LeaseHistory {
    /// Starts watching from the current collection version, so no write is missed.
    async fn record(api: &Api<Lease>, name: &str) -> Result<Self> {
        let by_name = format!("metadata.name={name}");
        let list = api.list(&ListParams::default().fields(&by_name)).await?;
        let version = list.metadata.resource_version.unwrap_or_default();
        let records = Arc::new(Mutex::new(
            list.items
                .into_iter()
                .map(|l| l.spec.unwrap_or_default())
                .collect::<Vec<_>>(),
        ));
        let mut events = api
            .watch(&WatchParams::default().fields(&by_name), &version)
            .await?
            .boxed();
        let sink = records.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = events.try_next().await {
                if let WatchEvent::Added(lease) | WatchEvent::Modified(lease) = event {
                    lock(&sink).push(lease.spec.unwrap_or_default());
                }
            }
        });
        Ok(Self { records, task })
    }

    fn records(&self) -> Vec<LeaseSpec> {
        lock(&self.records).clone()
    }

    /// Versions written while `id` held the Lease (its acquisition and renewals).
    fn held_by(&self, id: &str) -> usize {
        lock(&self.records)
            .iter()
            .filter(|r| holder(r) == Some(id))
            .count()
    }

    /// Holders in order of their tenure (`None` for a released, free Lease).
    fn tenures(&self) -> Vec<Option<String>> {
        let mut tenures: Vec<Option<String>> = Vec::new();
        for r in self.records() {
            let h = holder(&r).map(String::from);
            if tenures.last() != Some(&h) {
                tenures.push(h);
            }
        }
        tenures
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// The Lease's history never shows a live holder replaced early: when the holder changes
/// from one candidate to another directly (no release in between), the newcomer acquired
/// no earlier than the old record's `renewTime` plus its duration. All candidates run on
/// this machine, so the timestamps share one clock; the slack covers the API's microsecond
/// precision.
fn check_handovers(history: &[LeaseSpec]) -> Result<usize> {
    let slack_us = 1_000;
    let mut takeovers = 0;
    for pair in history.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let (Some(from), Some(to)) = (holder(old), holder(new)) else {
            continue;
        };
        if from == to {
            continue;
        }
        let renewed = old
            .renew_time
            .as_ref()
            .context("a held Lease has a renewTime")?
            .0;
        let acquired = new
            .acquire_time
            .as_ref()
            .context("a taken Lease has an acquireTime")?
            .0;
        let duration_us = i64::from(old.lease_duration_seconds.unwrap_or(0)) * 1_000_000;
        let waited_us = acquired.as_microsecond() - renewed.as_microsecond();
        ensure!(
            waited_us + slack_us >= duration_us,
            "{to} took the Lease from {from} {waited_us} µs after its last renewal, before \
             its {duration_us} µs duration ran out"
        );
        ensure!(
            new.lease_transitions == old.lease_transitions.map(|t| t + 1),
            "a takeover counts as a transition: {:?} -> {:?}",
            old.lease_transitions,
            new.lease_transitions
        );
        takeovers += 1;
    }
    Ok(takeovers)
}

/// Two candidates racing for Lease `name` from the start, with both views of exclusivity.
async fn race(
    env: &TestEnv,
    name: &str,
    lease_secs: u64,
) -> Result<(LeaseHistory, Candidate, Candidate, Exclusivity)> {
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, name).await?;
    let a = Candidate::start(env.client(), config(env.namespace(), name, "a", lease_secs))?;
    let b = Candidate::start(env.client(), config(env.namespace(), name, "b", lease_secs))?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a leader", || a.is_leader() || b.is_leader()).await?;
    Ok((history, a, b, beliefs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_elect_exactly_one_leader() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let (history, a, b, beliefs) = race(&env, "pair", 10).await?;
    let (leader, other) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    // Several renewals while the other candidate keeps trying every retry period.
    wait_until("five renewals", || history.held_by(&leader.id) >= 5).await?;

    beliefs.check()?;
    ensure!(leader.is_leader() && !other.is_leader());
    let lease = leases.get("pair").await?;
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(holder(&spec), Some(leader.id.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(10));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(leader.metrics.render().contains("poolnet_leader 1"));
    assert!(other.metrics.render().contains("poolnet_leader 0"));
    assert_eq!(check_handovers(&history.records())?, 0);
    assert_eq!(history.tenures(), [Some(leader.id.clone())]);

    a.handle.release().await?;
    b.handle.release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_is_replaced_once_its_lease_expires() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, "crash").await?;
    let a = Candidate::start(env.client(), config(env.namespace(), "crash", "a", 2))?;
    wait_until("a leads", || a.is_leader()).await?;
    let b = Candidate::start(env.client(), config(env.namespace(), "crash", "b", 2))?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a renews while b waits", || history.held_by("a") >= 3).await?;
    ensure!(!b.is_leader());

    // A crash: the elector stops without releasing. Its subscribers still learn it no
    // longer leads.
    let mut a_leads = a.handle.subscribe();
    drop(a.handle);
    while a_leads.changed().await.is_ok() {}
    ensure!(
        !*a_leads.borrow(),
        "an aborted elector retracts its leadership"
    );

    wait_until("b takes over", || b.is_leader()).await?;
    beliefs.check()?;
    assert_eq!(
        history.tenures(),
        [Some("a".to_string()), Some("b".to_string())]
    );
    assert_eq!(check_handovers(&history.records())?, 1);
    assert_eq!(
        leases
            .get("crash")
            .await?
            .spec
            .and_then(|s| s.lease_transitions),
        Some(1)
    );
    b.handle.release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_on_shutdown_hands_over_at_once() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, "handover").await?;
    // A lease far longer than WAIT: b can only lead within WAIT if a really released.
    let lease_secs = 3 * WAIT.as_secs();
    let a = Candidate::start(
        env.client(),
        config(env.namespace(), "handover", "a", lease_secs),
    )?;
    wait_until("a leads", || a.is_leader()).await?;
    let b = Candidate::start(
        env.client(),
        config(env.namespace(), "handover", "b", lease_secs),
    )?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a renews while b waits", || history.held_by("a") >= 3).await?;

    let a_leads = a.handle.subscribe();
    a.handle.release().await?;
    ensure!(!*a_leads.borrow(), "a stepped down before releasing");
    wait_until("b takes over", || b.is_leader()).await?;

    beliefs.check()?;
    assert_eq!(
        history.tenures(),
        [Some("a".to_string()), None, Some("b".to_string())]
    );
    let lease = leases.get("handover").await?.spec.unwrap_or_default();
    assert_eq!(lease.lease_transitions, Some(1));
    b.handle.release().await?;
    let released = leases.get("handover").await?.spec.unwrap_or_default();
    assert_eq!(holder(&released), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_are_retried_without_a_second_leader() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let (history, a, b, beliefs) = race(&env, "contended", 10).await?;
    let leader = if a.is_leader() { &a } else { &b };

    // Someone else (here: a label-happy tool) keeps changing the Lease, so the leader's
    // cached resourceVersion is stale at almost every renewal and the API server answers
    // 409 Conflict.
    let meddler = {
        let leases = leases.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                let patch = json!({ "metadata": { "annotations": { "example.test/touched": n.to_string() } } });
                leases
                    .patch("contended", &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        })
    };
    let renewals_before = history.held_by(&leader.id);
    wait_until("five conflicts", || leader.conflicts() >= 5).await?;
    wait_until("renewals despite conflicts", || {
        history.held_by(&leader.id) >= renewals_before + 5
    })
    .await?;
    meddler.abort();

    beliefs.check()?;
    assert_eq!(
        beliefs.led(),
        BTreeSet::from([leader.id.clone()]),
        "the leader kept the Lease through the conflicts"
    );
    assert!(leader.is_leader());
    assert_eq!(history.tenures(), [Some(leader.id.clone())]);
    a.handle.release().await?;
    b.handle.release().await?;
    Ok(())
}

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
        ("patch", "", "pods", app_ns),
        ("watch", "", "pods", None),
        ("list", "", "namespaces", None),
        ("patch", "", "namespaces", None),
        ("watch", "", "nodes", None),
        ("create", "events.k8s.io", "events", app_ns),
        ("patch", "", "events", app_ns),
        (
            "patch",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            None,
        ),
        (
            "get",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
        ),
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
    let mut wrong = Vec::new();
    for (verb, group, resource, namespace) in allowed {
        if !operator_may(&admin, verb, group, resource, namespace).await? {
            wrong.push(format!("denied {verb} {group}/{resource} in {namespace:?}"));
        }
    }
    for (verb, group, resource, namespace) in denied {
        if operator_may(&admin, verb, group, resource, namespace).await? {
            wrong.push(format!(
                "allowed {verb} {group}/{resource} in {namespace:?}"
            ));
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
