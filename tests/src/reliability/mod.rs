//! The fault matrix (issue 13, `docs/reliability.md`): poolnet under Azure faults, replica
//! kills, leader freezes and API server restarts, judged by the invariant checker.
//!
//! One run: a control plane of its own, armsim (TLS, throttling on, faults seeded), two
//! `poolnet-operator` processes with leader election and webhooks behind a loopback balancer;
//! the [`world`] workload converges; the checker takes its baseline; the seeded
//! [`schedule::schedule`] plays its faults and changes over the window while pods with host
//! ports come and go; faults stop; the run waits until every object is Ready at its generation
//! and ARM has been quiet; the checker judges (a)-(e), and armsim's write log shows whether a
//! frozen leader wrote after it was frozen (f).

pub mod replicas;
pub mod report;
pub mod schedule;
pub mod world;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use armsim::{FaultAction, FaultConfig, FaultRule, OtherWriter, SimConfig};
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use poolnet_arm::{ArmClient, ArmNetwork};
use poolnet_operator::webhook::configs::{AnyWebhookConfiguration, configs_at_url};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use crate::control_plane::ControlPlane;
use replicas::Replicas;
use schedule::{Action, Change, Fault, Scenario, Step};

/// The Lease timings the replicas run with: the chart's ratios (15 s / 10 s / 2 s), shorter
/// so a failover fits a run.
pub const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_DEADLINE: &str = "4s";
const RETRY_PERIOD: &str = "1s";
const LEASE_NAMESPACE: &str = "poolnet-system";
const LEASE_NAME: &str = "poolnet-operator";

/// How one run is set up.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    pub seed: u64,
    /// How long faults and changes play.
    pub window: Duration,
    /// The `poolnet-operator` binary.
    pub operator_bin: PathBuf,
    /// Pods of a webhook burst.
    pub burst_pods: usize,
    /// Live pods the churn keeps at most.
    pub churn_pods: usize,
    /// `--resync` of the replicas.
    pub resync: String,
    /// How long the system may take to settle after the faults stop.
    pub settle_limit: Duration,
    /// ARM is quiet when it saw no write for this long.
    pub quiet: Duration,
    /// Where the replicas' logs go (kept when the run fails).
    pub log_dir: PathBuf,
}

/// What one run found.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    /// Faults played, by kind.
    pub faults: BTreeMap<&'static str, u32>,
    /// Violations by invariant letter: a-d from the checker, f for a write by a replica
    /// after it was frozen.
    pub violations: BTreeMap<char, usize>,
    /// One line per violation, and the checker's errors.
    pub details: Vec<String>,
    /// From the end of the window until every object was Ready and ARM quiet.
    pub convergence: Option<Duration>,
    /// (e): accepted ARM writes over the resources whose state changed, during the window
    /// and the settling (the driver's own deletions and other writers count too).
    pub amplification: Option<f64>,
    pub writes: u64,
    pub changed: usize,
    pub pods_created: u64,
    pub pod_refusals: u64,
    /// Replica exits nobody caused.
    pub unexpected_exits: usize,
    /// ARM writes received during the run, by the replica that sent them (its
    /// `poolnet-replica/<identity>` User-Agent part; `other` for the driver and anyone else).
    pub writes_by_client: BTreeMap<String, u64>,
    pub log_dir: PathBuf,
    /// The run could not be completed (set-up failed): counted as a failure.
    pub error: Option<String>,
}

impl RunResult {
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.violations.values().any(|n| *n > 0)
    }
}

/// Runs one (scenario, seed); set-up failures come back in [`RunResult::error`].
pub async fn run(options: &RunOptions) -> RunResult {
    let mut result = RunResult {
        scenario: options.scenario.to_string(),
        seed: options.seed,
        log_dir: options.log_dir.clone(),
        ..RunResult::default()
    };
    if let Err(e) = run_inner(options, &mut result).await {
        result.error = Some(format!("{e:#}"));
    }
    result
}

struct Env {
    plane: Arc<Mutex<ControlPlane>>,
    client: Client,
    sim: armsim::RunningSim,
    arm: ArmClient,
    replicas: Arc<std::sync::Mutex<Replicas>>,
}

async fn run_inner(options: &RunOptions, result: &mut RunResult) -> Result<()> {
    std::fs::create_dir_all(&options.log_dir)?;
    let env = set_up(options).await?;
    let client = env.client.clone();
    let outcome = exercise(options, &env, result).await;
    if let Ok(mut r) = env.replicas.lock() {
        result.unexpected_exits = r.unexpected_exits.len();
        for exit in &r.unexpected_exits {
            result.details.push(format!("unexpected exit: {exit}"));
        }
        r.stop_all();
    }
    let plane = env.plane.lock().await;
    let _ = std::fs::write(
        options.log_dir.join("control-plane.txt"),
        format!("state dir: {}\n", plane.state_dir().display()),
    );
    drop(client);
    outcome
}

async fn set_up(options: &RunOptions) -> Result<Env> {
    let plane = ControlPlane::start().await?;
    let client = plane.client().await?;
    crate::crds::install(&client, &poolnet_api::crd::crds()).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut names = vec![LEASE_NAMESPACE.to_string()];
    names.extend((0..world::NAMESPACES).map(world::namespace));
    for name in &names {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    for name in &names {
        crate::env::wait_for_default_service_account(&client, name).await?;
    }

    let sim = armsim::start(
        SimConfig {
            seed: Some(world::fixture()?),
            tls: true,
            faults: FaultConfig {
                rng_seed: options.seed,
                ..FaultConfig::default()
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )?;
    let ca = options.log_dir.join("armsim-ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap_or_default())?;
    let arm = crate::operator::arm_client(&sim)?;

    // The shipped webhook configurations, called by URL through the balancer.
    let yaml_path = crate::repo_root().join("config/webhook/webhooks.yaml");
    let yaml = std::fs::read_to_string(&yaml_path)
        .with_context(|| format!("reading {}", yaml_path.display()))?;
    let flags = vec![
        format!("--arm-endpoint={}", sim.base_url()),
        format!("--arm-ca-file={}", ca.display()),
        "--arm-static-token=poolnet-reliability".into(),
        "--admin-addr=127.0.0.1:0".into(),
        format!("--resync={}", options.resync),
        "--leader-election=true".into(),
        format!("--lease-namespace={LEASE_NAMESPACE}"),
        format!("--lease-name={LEASE_NAME}"),
        format!("--lease-duration={}s", LEASE_DURATION.as_secs()),
        format!("--renew-deadline={RENEW_DEADLINE}"),
        format!("--retry-period={RETRY_PERIOD}"),
        "--webhooks=true".into(),
        "--webhook-extra-names=127.0.0.1".into(),
        "--mutating-webhooks=poolnet-host-ports".into(),
        "--validating-webhooks=poolnet-validation".into(),
    ];
    let mut replicas = Replicas::new(
        &options.operator_bin,
        plane.kubeconfig_path(),
        flags,
        &options.log_dir,
        2,
    )
    .await?;
    for config in configs_at_url(&yaml, &replicas.webhook_url())? {
        match config {
            AnyWebhookConfiguration::Mutating(c) => {
                Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .create(&PostParams::default(), &c)
                    .await?;
            }
            AnyWebhookConfiguration::Validating(c) => {
                Api::<ValidatingWebhookConfiguration>::all(client.clone())
                    .create(&PostParams::default(), &c)
                    .await?;
            }
        }
    }
    replicas.start_all()?;
    Ok(Env {
        plane: Arc::new(Mutex::new(plane)),
        client,
        sim,
        arm,
        replicas: Arc::new(std::sync::Mutex::new(replicas)),
    })
}

/// Retries a request the way a controller would: while the answer is retryable (the API
/// server or a webhook is unavailable for a moment), with a pause, up to `attempts` times.
async fn retrying<T, F, Fut>(attempts: u32, refusals: &AtomicU64, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut n = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if n < attempts && retryable(&e) => {
                n += 1;
                refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 429 || s.code >= 500 || s.code == 403 && s.message.contains("webhook")
        }
        _ => true,
    }
}

async fn exercise(options: &RunOptions, env: &Env, result: &mut RunResult) -> Result<()> {
    let client = &env.client;
    let refusals = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    // A supervisor restarts dead replicas for the whole run.
    let supervising = {
        let replicas = env.replicas.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut r) = replicas.lock()
                    && let Err(e) = r.supervise()
                {
                    log_line(&format!("supervisor: {e:#}"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let _stop_supervisor = AbortOnDrop(supervising);

    // The world converges before the baseline.
    let npns: Api<NodePoolNetwork> = Api::all(client.clone());
    for i in 0..world::OBJECTS {
        let npn = world::npn(i, false)?;
        let (npns, npn) = (&npns, &npn);
        retrying(40, &refusals, || async move {
            npns.create(&PostParams::default(), npn).await
        })
        .await?;
    }
    for j in 0..world::POLICIES {
        let policy = world::policy(j)?;
        let api: Api<HostPortPolicy> = Api::namespaced(client.clone(), &world::policy_namespace(j));
        let (api, policy) = (&api, &policy);
        retrying(40, &refusals, || async move {
            api.create(&PostParams::default(), policy).await
        })
        .await?;
    }
    let (converged, _) = settle(
        env,
        options.settle_limit.max(Duration::from_secs(180)),
        options.quiet,
    )
    .await?;
    if !converged {
        bail!(
            "the workload did not converge before any fault: {}",
            unsettled(client).await.join("; ")
        );
    }
    wait_namespaces_labelled(client).await?;
    let extra: Vec<String> = (0..world::NSGS)
        .map(world::nsg_id)
        .chain((0..world::ROUTE_TABLES).map(world::route_table_id))
        .chain((0..world::OBJECTS).map(world::pool_id))
        .collect();
    let before = poolnet_check::shell::read(client, &env.arm, extra.clone()).await?;
    let mut baseline = poolnet_check::baseline(
        &before,
        Some(poolnet_check::shell::armsim_writes(&env.arm).await?),
    );
    env.sim.faults().set(FaultConfig {
        rng_seed: options.seed,
        ..FaultConfig::default()
    });

    // The window: pods churn while the schedule plays.
    let shape = world::shape(options.burst_pods);
    let steps = schedule::schedule(options.scenario, options.seed, options.window, &shape);
    let churning = Arc::new(AtomicBool::new(true));
    let churn = tokio::spawn(churn_pods(
        client.clone(),
        options.seed,
        options.churn_pods,
        churning.clone(),
        created.clone(),
        refusals.clone(),
    ));
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0xfa17);
    for step in &steps {
        if let Some(wait) = step.at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if let Action::Fault(f) = &step.action {
            *result.faults.entry(f.kind()).or_default() += 1;
        }
        if let Err(e) = play(env, step, &mut rng, &refusals, &created).await {
            result.details.push(format!(
                "step at {:?} ({:?}) failed: {e:#}",
                step.at, step.action
            ));
        }
    }
    if let Some(rest) = options.window.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    churning.store(false, Ordering::Relaxed);
    let _ = churn.await;

    // Faults stop (what the other writers did is kept for the baseline below); whatever
    // was frozen resumes; the system settles.
    let other_writers = env.sim.faults().config().other_writers;
    env.sim.faults().clear();
    if let Ok(mut r) = env.replicas.lock() {
        r.thaw_all();
    }
    let end = Instant::now();
    let (converged, last_change) = settle(env, options.settle_limit, options.quiet).await?;
    if converged {
        result.convergence = Some(last_change.saturating_duration_since(end));
    } else {
        result.details.push(format!(
            "not settled within {:?} after the faults: {}",
            options.settle_limit,
            unsettled(client).await.join("; ")
        ));
    }
    result.pods_created = created.load(Ordering::Relaxed);
    result.pod_refusals = refusals.load(Ordering::Relaxed);

    // The other writer's last word is what (a) compares with: an agent pool it scaled keeps
    // the count it set.
    for w in other_writers {
        if w.fired == 0 {
            continue;
        }
        if let armsim::OtherWriterAction::SetProperty { name, value } = &w.action
            && let Some(r) = baseline
                .resources
                .iter_mut()
                .find(|r| r.id.eq_ignore_ascii_case(&w.resource_id))
            && let Some(props) = r
                .fields
                .get_mut("properties")
                .and_then(|p| p.as_object_mut())
        {
            props.insert(name.clone(), value.clone());
        }
    }
    let snap = poolnet_check::shell::read(client, &env.arm, extra).await?;
    let check_options = poolnet_check::Options {
        allow_detached: true,
        writes: Some(poolnet_check::shell::armsim_writes(&env.arm).await?),
        ..poolnet_check::Options::default()
    };
    let report = poolnet_check::check(&snap, Some(&baseline), &check_options);
    for v in &report.violations {
        *result.violations.entry(v.invariant.letter()).or_default() += 1;
        result.details.push(format!(
            "({}) {:?} {} {}: {}",
            v.invariant.letter(),
            v.kind,
            v.subject,
            v.entry.clone().unwrap_or_default(),
            v.message
        ));
    }
    for e in &report.errors {
        result.details.push(format!("checker error: {e}"));
    }
    if !report.errors.is_empty() {
        bail!(
            "the checker could not complete: {}",
            report.errors.join("; ")
        );
    }
    if let Some(a) = &report.amplification {
        result.amplification = a.ratio;
        result.writes = a.writes;
        result.changed = a.changed;
    }
    // (f) A frozen replica writes nothing after it was frozen: by then its Lease runs out
    // and the other replica leads.
    let incarnations = env
        .replicas
        .lock()
        .map(|r| r.incarnations())
        .unwrap_or_default();
    let writes = env.sim.writes();
    for w in &writes.records {
        let client = w
            .user_agent
            .split_whitespace()
            .find_map(|part| part.strip_prefix("poolnet-replica/"))
            .unwrap_or("other");
        *result
            .writes_by_client
            .entry(client.to_string())
            .or_default() += 1;
    }
    let mut fenced = 0;
    for inc in incarnations {
        let Some(frozen_at) = inc.frozen_at_unix_ms else {
            continue;
        };
        let tag = format!("poolnet-replica/{}", inc.identity);
        for w in writes.records.iter().filter(|w| {
            w.received_unix_ms > frozen_at
                && w.user_agent.split_whitespace().any(|part| part == tag)
        }) {
            fenced += 1;
            result.details.push(format!(
                "(f) {} wrote {} {} ({}), {} ms after it was frozen",
                inc.identity,
                w.method,
                w.path,
                w.status,
                w.received_unix_ms - frozen_at
            ));
        }
    }
    result.violations.insert('f', fenced);
    Ok(())
}

/// Waits until things are quiet: every NodePoolNetwork and HostPortPolicy Ready at its
/// generation, every host-port claim held by a live pod or young enough to be inside its
/// grace (the checker's (c) and (d) find nothing), and no ARM write accepted for `quiet`.
/// Returns whether that happened within `limit`, and when the last change (a write, or an
/// invariant not yet holding) was seen.
async fn settle(env: &Env, limit: Duration, quiet: Duration) -> Result<(bool, Instant)> {
    let started = Instant::now();
    let mut last_change = Instant::now();
    let mut last_writes = u64::MAX;
    while started.elapsed() < limit {
        if let Ok(mut r) = env.replicas.lock() {
            r.supervise()?;
        }
        let writes = env.sim.counters().accepted_writes;
        let settled = writes == last_writes && unsettled(&env.client).await.is_empty();
        if !settled {
            last_change = Instant::now();
            last_writes = writes;
        } else if last_change.elapsed() >= quiet {
            return Ok((true, last_change));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok((false, last_change))
}

/// What the checker's (c) and (d) find on the cluster alone (empty: settled).
async fn unsettled(client: &Client) -> Vec<String> {
    let snap = match poolnet_check::shell::read_cluster(client).await {
        Ok(s) => s,
        Err(e) => return vec![format!("reading the cluster: {e:#}")],
    };
    // No ARM in this snapshot: (b) cannot be judged (its "not read" errors are expected).
    let report = poolnet_check::check(&snap, None, &poolnet_check::Options::default());
    report
        .violations
        .iter()
        .filter(|v| {
            matches!(
                v.invariant,
                poolnet_check::Invariant::Ready | poolnet_check::Invariant::HostPorts
            )
        })
        .map(|v| {
            format!(
                "({}) {:?} {}: {}",
                v.invariant.letter(),
                v.kind,
                v.subject,
                v.message
            )
        })
        .collect()
}

async fn wait_namespaces_labelled(client: &Client) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for _ in 0..600 {
        let labelled = namespaces
            .list(&ListParams::default().labels("poolnet.dev/host-port-policies=enabled"))
            .await?
            .items
            .len();
        if labelled >= world::NAMESPACES {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the team namespaces were not labelled for the pod webhook within 60s")
}

/// Creates a pod with a host port every ~200 ms and deletes the oldest beyond `keep`.
async fn churn_pods(
    client: Client,
    seed: u64,
    keep: usize,
    running: Arc<AtomicBool>,
    created: Arc<AtomicU64>,
    refusals: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc0de);
    let mut live: std::collections::VecDeque<(String, String)> = Default::default();
    let mut n = 0u64;
    while running.load(Ordering::Relaxed) {
        let j = rng.gen_range(0..world::POLICIES);
        let name = format!("churn-{n:05}");
        n += 1;
        if let Ok(pod) = world::pod(j, &name) {
            let ns = world::policy_namespace(j);
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    created.fetch_add(1, Ordering::Relaxed);
                    live.push_back((ns, name));
                }
                Err(_) => {
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        while live.len() > keep {
            if let Some((ns, name)) = live.pop_front() {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if pods.delete(&name, &DeleteParams::default()).await.is_err() {
                    // The API server may be down for a moment: try again later.
                    live.push_front((ns, name));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..300))).await;
    }
}

async fn play(
    env: &Env,
    step: &Step,
    rng: &mut StdRng,
    refusals: &Arc<AtomicU64>,
    created: &Arc<AtomicU64>,
) -> Result<()> {
    let client = &env.client;
    let npns: Api<NodePoolNetwork> = Api::all(client.clone());
    match &step.action {
        Action::Change(Change::Edit { object }) => {
            let name = world::npn_name(*object);
            let Some(current) = npns.get_opt(&name).await? else {
                return Ok(());
            };
            let edited =
                current.spec.allowed_host_ports.len() < 2 && world::policy_of(*object) != "Observe";
            let spec = world::npn(*object, edited)?.spec;
            let patch = json!({"spec": {"allowedHostPorts": spec.allowed_host_ports}});
            let (npns, name, patch) = (&npns, &name, &patch);
            retrying(20, refusals, || async move {
                npns.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            })
            .await?;
        }
        Action::Change(Change::Delete { object }) => {
            let (npns, name) = (&npns, &world::npn_name(*object));
            retrying(20, refusals, || async move {
                npns.delete(name, &DeleteParams::default()).await.map(drop)
            })
            .await?;
        }
        Action::Change(Change::Recreate { object }) => {
            let name = world::npn_name(*object);
            // The deletion finishes once poolnet has removed what it owns (under faults,
            // throttling can stretch that to minutes).
            for _ in 0..3000 {
                if npns.get_opt(&name).await?.is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let npn = world::npn(*object, false)?;
            let (npns, npn) = (&npns, &npn);
            retrying(40, refusals, || async move {
                npns.create(&PostParams::default(), npn).await
            })
            .await?;
        }
        Action::Fault(fault) => play_fault(env, fault, rng, refusals, created).await?,
    }
    Ok(())
}

async fn play_fault(
    env: &Env,
    fault: &Fault,
    rng: &mut StdRng,
    refusals: &Arc<AtomicU64>,
    created: &Arc<AtomicU64>,
) -> Result<()> {
    let faults = env.sim.faults();
    match fault {
        Fault::Throttle {
            count,
            retry_after_secs,
            writes_only,
        } => {
            let mut rule = FaultRule::new(FaultAction::Throttle {
                retry_after_secs: *retry_after_secs,
            })
            .count(*count);
            if *writes_only {
                rule = rule.method("PUT");
            }
            faults.add_rule(rule);
        }
        Fault::ServerErrors {
            status,
            probability,
            count,
        } => faults.add_rule(
            FaultRule::new(FaultAction::Error {
                status: *status,
                code: "InternalServerError".into(),
                message: None,
            })
            .probability(*probability)
            .count(*count),
        ),
        Fault::Drops { probability, count } => faults.add_rule(
            FaultRule::new(FaultAction::Drop)
                .probability(*probability)
                .count(*count),
        ),
        Fault::FailOperations { count } => faults.add_rule(
            FaultRule::new(FaultAction::FailOperation {
                code: "InternalServerError".into(),
                message: None,
            })
            .method("PUT")
            .count(*count),
        ),
        Fault::StallOperations { ms, count } => faults.add_rule(
            FaultRule::new(FaultAction::StallOperation { ms: *ms })
                .method("PUT")
                .count(*count),
        ),
        Fault::Latency { ms, count } => {
            faults.add_rule(FaultRule::new(FaultAction::Latency { ms: *ms }).count(*count))
        }
        Fault::Foreign { resource, change } => faults.add_other_writer(OtherWriter::new(
            &world::resource_id(*resource),
            1,
            world::foreign_action(*resource, *change),
        )),
        Fault::DeleteOwnedRule { nsg, pick } => {
            delete_owned_child(&env.arm, &world::nsg_id(*nsg), false, *pick).await?
        }
        Fault::DeleteOwnedRoute { table, pick } => {
            delete_owned_child(&env.arm, &world::route_table_id(*table), true, *pick).await?
        }
        Fault::Kill { replica } => {
            if let Ok(mut r) = env.replicas.lock() {
                r.kill(*replica);
            }
        }
        Fault::FreezeLeader { past_lease } => {
            let Some(leader) = leader_index(env).await? else {
                return Ok(());
            };
            if let Ok(mut r) = env.replicas.lock() {
                r.freeze(leader);
            }
            tokio::time::sleep(LEASE_DURATION + *past_lease).await;
            if let Ok(mut r) = env.replicas.lock() {
                r.thaw(leader);
            }
        }
        Fault::RestartApiserver { down } => {
            env.plane.lock().await.restart_apiserver(*down).await?;
        }
        Fault::WebhookBurst { pods, kill_after } => {
            let victim = rng.gen_range(0..env.replicas.lock().map(|r| r.len()).unwrap_or(1));
            webhook_burst(env, *pods, *kill_after, victim, refusals, created).await?;
        }
    }
    Ok(())
}

/// The replica that holds the Lease now, if any.
async fn leader_index(env: &Env) -> Result<Option<usize>> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), LEASE_NAMESPACE);
    let holder = leases
        .get_opt(LEASE_NAME)
        .await?
        .and_then(|l| l.spec?.holder_identity);
    Ok(holder.and_then(|h| env.replicas.lock().ok()?.index_of(&h)))
}

/// Removes the `pick`-th (modulo) poolnet entry of an NSG or route table through ARM, as
/// another tool would (read, drop the entry, write back with `If-Match`): poolnet must put it
/// back and keep recording it, not strand or forget it.
async fn delete_owned_child(
    arm: &ArmClient,
    parent: &str,
    routes: bool,
    pick: usize,
) -> Result<()> {
    let id: poolnet_arm::ResourceId = parent.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let owned = |name: &Option<String>| name.as_deref().is_some_and(|n| n.starts_with("poolnet-"));
    let pending = if routes {
        let read = arm.get_route_table(&id).await?;
        let mut table = read.resource.clone();
        let list = &mut table.properties.get_or_insert_with(Default::default).routes;
        let names: Vec<usize> = (0..list.len()).filter(|k| owned(&list[*k].name)).collect();
        if names.is_empty() {
            return Ok(());
        }
        list.remove(names[pick % names.len()]);
        match arm
            .put_route_table(&id, &table, read.precondition())
            .await?
        {
            poolnet_arm::Lro::Pending(handle) => Some(handle),
            _ => None,
        }
    } else {
        let read = arm.get_nsg(&id).await?;
        let mut nsg = read.resource.clone();
        let list = &mut nsg
            .properties
            .get_or_insert_with(Default::default)
            .security_rules;
        let names: Vec<usize> = (0..list.len()).filter(|k| owned(&list[*k].name)).collect();
        if names.is_empty() {
            return Ok(());
        }
        list.remove(names[pick % names.len()]);
        match arm.put_nsg(&id, &nsg, read.precondition()).await? {
            poolnet_arm::Lro::Pending(handle) => Some(handle),
            _ => None,
        }
    };
    if let Some(handle) = pending {
        arm.wait(handle, Duration::from_secs(60)).await?;
    }
    Ok(())
}

/// `pods` creations at 32 in flight over every policy; after `kill_after` of them, replica
/// `victim` is killed (SIGKILL) while the rest are admitted.
async fn webhook_burst(
    env: &Env,
    pods: usize,
    kill_after: usize,
    victim: usize,
    refusals: &Arc<AtomicU64>,
    created: &Arc<AtomicU64>,
) -> Result<()> {
    static BURSTS: AtomicU64 = AtomicU64::new(0);
    let burst = BURSTS.fetch_add(1, Ordering::Relaxed);
    let done = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let client = env.client.clone();
    let replicas = env.replicas.clone();
    let results: Vec<Result<()>> = futures::stream::iter(0..pods)
        .map(|k| {
            let client = client.clone();
            let done = done.clone();
            let killed = killed.clone();
            let replicas = replicas.clone();
            let refusals = refusals.clone();
            let created = created.clone();
            async move {
                let j = k % world::POLICIES;
                let pod = world::pod(j, &format!("burst-{burst}-{k:04}"))?;
                let api: Api<Pod> = Api::namespaced(client, &world::policy_namespace(j));
                let (api, pod) = (&api, &pod);
                retrying(40, &refusals, || async move {
                    api.create(&PostParams::default(), pod).await
                })
                .await?;
                created.fetch_add(1, Ordering::Relaxed);
                if done.fetch_add(1, Ordering::Relaxed) + 1 >= kill_after as u64
                    && !killed.swap(true, Ordering::Relaxed)
                    && let Ok(mut r) = replicas.lock()
                {
                    r.kill(victim);
                }
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {pods} burst pods were never admitted");
    }
    Ok(())
}

fn log_line(line: &str) {
    eprintln!("reliability: {line}");
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
