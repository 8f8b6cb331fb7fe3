//! The whole NodePoolNetwork path on one machine: a real API server, armsim seeded with the AKS
//! demo world, and the real operator embedded in the test process.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use poolnet_tests::operator::{Harness, sample};
//! let h = Harness::start().await?;
//! h.apply(&sample("game-pool.yaml")?).await?;
//! let game = h.wait_ready("game").await?;
//! # Ok(()) }
//! ```
//!
//! The operator runs on its own tokio runtime, like a process of its own: [`Operator::stop`]
//! is a graceful shutdown (SIGTERM), [`Operator::crash`] drops every task at once (SIGKILL),
//! in-flight ARM and Kubernetes requests included.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use armsim::{Counters, Fixture, RunningSim, SimConfig};
use clap::Parser;
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_arm::{ArmClient, ArmConfig, ArmNetwork, CredentialConfig, ResourceId, Secret, Url};
use poolnet_operator::app::{self, OperatorArgs};
use poolnet_operator::runtime::CancellationToken;
use serde_json::Value;
use tempfile::TempDir;

use crate::{FIELD_MANAGER, TestEnv};

/// Subscription of armsim's demo fixture (`crates/armsim/fixtures/aks-demo.yaml`).
pub const SUB: &str = "00000000-1111-2222-3333-444444444444";
/// The customer resource group of the fixture.
pub const RG: &str = "rg-poolnet-demo";
/// The node resource group, spelled as node provider IDs spell it.
pub const NODE_RG: &str = "mc_rg-poolnet-demo_aks-demo_westeurope";
/// The cluster's VMSS suffix (AKS derives it from the cluster ID).
pub const CLUSTER_DIGITS: &str = "47472799";

/// Bound for anything that takes a few reconciles; only a broken operator hits it, also on a
/// loaded two-core machine.
pub const WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

/// Resync period the harness gives the operator unless told otherwise: short, so drift checks
/// happen within a test.
pub const DEFAULT_RESYNC: &str = "3s";

/// Environment variable that turns on the embedded operator's logs (a `tracing` filter,
/// e.g. `info,poolnet_operator=debug`).
pub const LOG_ENV: &str = "POOLNET_TEST_LOG";

pub fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks-demo"
    )
}

pub fn agent_pool_id(pool: &str) -> String {
    format!("{}/agentPools/{pool}", cluster_id())
}

/// ARM ID of a Microsoft.Network resource of the fixture, e.g. `network_id(RG,
/// "networkSecurityGroups", "nsg-snet-aks")`.
pub fn network_id(resource_group: &str, kind: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{resource_group}/providers/Microsoft.Network/{kind}/{name}"
    )
}

/// The BYO subnet NSG of the fixture, which AKS never touches.
pub fn byo_nsg_id() -> String {
    network_id(RG, "networkSecurityGroups", "nsg-snet-aks")
}

/// The AKS NSG in the node resource group, with the cloud controller's `k8s-azure-lb_*` rules.
pub fn aks_nsg_id() -> String {
    network_id(
        "MC_rg-poolnet-demo_aks-demo_westeurope",
        "networkSecurityGroups",
        &format!("aks-agentpool-{CLUSTER_DIGITS}-nsg"),
    )
}

pub fn route_table_id() -> String {
    network_id(RG, "routeTables", "rt-kubenet")
}

/// A manifest of `config/samples/`.
pub fn sample(file: &str) -> Result<NodePoolNetwork> {
    let path = crate::repo_root().join("config/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Node objects for the fixture's VMSS instances (no kubelets: they never run pods), named and
/// labelled as AKS names and labels them.
pub fn fixture_nodes() -> Vec<Node> {
    [("game", 3), ("kubenet", 2)]
        .into_iter()
        .flat_map(|(pool, count)| (0..count).map(move |i| node(pool, i)))
        .collect()
}

fn node(pool: &str, instance: u32) -> Node {
    let vmss = format!("aks-{pool}-{CLUSTER_DIGITS}-vmss");
    Node {
        metadata: ObjectMeta {
            name: Some(format!("{vmss}{instance:06}")),
            labels: Some(
                [
                    ("kubernetes.azure.com/agentpool", pool),
                    ("kubernetes.io/os", "linux"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!(
                "azure:///subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{instance}"
            )),
            ..NodeSpec::default()
        }),
        ..Node::default()
    }
}

/// An ARM client for armsim, as the operator builds one (static token, armsim's CA).
pub fn arm_client(sim: &RunningSim) -> Result<ArmClient> {
    let mut config = ArmConfig::new(Url::parse(&sim.base_url()).context("armsim URL")?);
    config.transport.extra_ca_pem = sim.ca_pem();
    Ok(ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("poolnet-tests")),
    )?)
}

/// One embedded operator "process".
pub struct Operator {
    shutdown: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Operator {
    /// Starts `poolnet-operator` with `flags` (after the program name) against the API server
    /// of `kubeconfig`, on a runtime of its own.
    pub fn start(kubeconfig: &Path, flags: &[String]) -> Result<Self> {
        let args = OperatorArgs::try_parse_from(
            std::iter::once("poolnet-operator".to_string()).chain(flags.iter().cloned()),
        )
        .context("operator flags")?;
        if std::env::var_os(LOG_ENV).is_some() {
            let mut logging = args.runtime.clone();
            logging.log_level = std::env::var(LOG_ENV).unwrap_or_default();
            // Once per process; later operators share the first subscriber.
            let _ = poolnet_operator::runtime::init_logging(&logging);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("operator")
            .enable_all()
            .build()
            .context("building the operator runtime")?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let kubeconfig = kubeconfig.to_path_buf();
        // Clients spawn their connection tasks on the runtime that builds them: build them
        // inside, so a crash takes them down with everything else.
        let task = runtime.spawn(async move {
            let client = client_from(&kubeconfig).await?;
            let arm: Arc<dyn ArmNetwork> = Arc::new(app::arm_client(&args)?);
            app::run(args, client, arm, token).await
        });
        Ok(Self {
            shutdown,
            runtime: Some(runtime),
            task: Some(task),
        })
    }

    /// Graceful shutdown: running reconciles finish, then the process ends.
    pub async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(WAIT, task).await {
                Ok(joined) => joined.context("operator task panicked")??,
                Err(_) => bail!("the operator did not stop within {WAIT:?} of shutdown"),
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        Ok(())
    }

    /// Kill: every task is dropped where it stands, mid-request if need be.
    pub fn crash(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Whether the operator ended on its own (it should not while the test runs).
    pub fn exited(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// What a [`Harness`] starts with.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// armsim's initial state.
    pub fixture: Fixture,
    /// Node objects to create before the operator starts.
    pub nodes: Vec<Node>,
    /// `--resync` of the operator.
    pub resync: String,
    /// Start the operator right away.
    pub operator: bool,
}

impl HarnessOptions {
    pub fn demo() -> Result<Self> {
        Ok(Self {
            fixture: Fixture::aks_demo()?,
            nodes: fixture_nodes(),
            resync: DEFAULT_RESYNC.into(),
            operator: true,
        })
    }
}

/// A control plane of its own (NodePoolNetworks are cluster-scoped and the operator watches
/// them all), armsim, the fixture's nodes, and the operator.
pub struct Harness {
    pub env: TestEnv,
    pub sim: RunningSim,
    /// The test's own ARM client (a user or another tool changing Azure by hand).
    pub arm: ArmClient,
    operator: Option<Operator>,
    flags: Vec<String>,
    _dir: TempDir,
}

impl Harness {
    /// The AKS demo world with the operator running, `--resync` [`DEFAULT_RESYNC`].
    pub async fn start() -> Result<Self> {
        Self::start_with(HarnessOptions::demo()?).await
    }

    pub async fn start_with(options: HarnessOptions) -> Result<Self> {
        // The operator's own types, not `config/crd/` (a generated copy of them, checked for
        // drift elsewhere): these tests exercise the operator, whatever the YAML's state.
        let env = TestEnv::start_with_crds(&[]).await?;
        crate::crds::install(&env.client(), &poolnet_api::crd::crds()).await?;
        let nodes: Api<Node> = Api::all(env.client());
        for n in &options.nodes {
            nodes
                .create(&PostParams::default(), n)
                .await
                .with_context(|| format!("creating node {}", n.name_any()))?;
        }
        let sim = armsim::start(
            SimConfig {
                seed: Some(options.fixture),
                tls: true,
                ..SimConfig::default()
            },
            "127.0.0.1:0".parse()?,
        )?;
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("armsim-ca.pem");
        std::fs::write(&ca, sim.ca_pem().unwrap_or_default())?;
        let mut flags = vec![
            format!("--arm-endpoint={}", sim.base_url()),
            format!("--arm-ca-file={}", ca.display()),
            "--arm-static-token=poolnet-tests".into(),
            "--admin-addr=127.0.0.1:0".into(),
            "--leader-election=false".into(),
            // The webhook keeps its self-managed certificate in a Secret there.
            format!("--lease-namespace={}", env.namespace()),
            format!("--resync={}", options.resync),
        ];
        // Every test has an operator of its own: any server it runs gets a free port.
        if <OperatorArgs as clap::CommandFactory>::command()
            .get_arguments()
            .any(|a| a.get_id() == "webhook_addr")
        {
            flags.push("--webhook-addr=127.0.0.1:0".into());
        }
        let arm = arm_client(&sim)?;
        let mut harness = Self {
            env,
            sim,
            arm,
            operator: None,
            flags,
            _dir: dir,
        };
        if options.operator {
            harness.start_operator()?;
        }
        Ok(harness)
    }

    /// Lets the operator serve its admission webhooks at a fixed loopback port, with
    /// `127.0.0.1` in its self-managed certificate and the CA bundle written into the named
    /// configurations; returns the base URL (`https://127.0.0.1:<port>`) for their `url`s.
    /// Call it before [`Harness::start_operator`].
    pub fn serve_webhooks(&mut self, mutating: &str, validating: &str) -> Result<String> {
        if self.operator.is_some() {
            bail!("serve_webhooks must come before the operator starts");
        }
        // A port free now; the operator binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        self.flags.retain(|f| !f.starts_with("--webhook-addr="));
        self.flags.extend([
            format!("--webhook-addr=127.0.0.1:{port}"),
            "--webhook-extra-names=127.0.0.1".into(),
            format!("--mutating-webhooks={mutating}"),
            format!("--validating-webhooks={validating}"),
        ]);
        Ok(format!("https://127.0.0.1:{port}"))
    }

    /// Starts an operator (another one may not run yet).
    pub fn start_operator(&mut self) -> Result<()> {
        if self.operator.is_some() {
            bail!("an operator is already running");
        }
        self.operator = Some(Operator::start(
            self.env.control_plane().kubeconfig_path(),
            &self.flags,
        )?);
        Ok(())
    }

    pub async fn stop_operator(&mut self) -> Result<()> {
        match self.operator.take() {
            Some(op) => op.stop().await,
            None => Ok(()),
        }
    }

    pub fn crash_operator(&mut self) {
        if let Some(op) = self.operator.take() {
            op.crash();
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.env.control_plane().kubeconfig_path().to_path_buf()
    }

    pub fn npns(&self) -> Api<NodePoolNetwork> {
        Api::all(self.env.client())
    }

    /// Server-side applies `npn` (spec and metadata) as the test's field manager.
    pub async fn apply(&self, npn: &NodePoolNetwork) -> Result<NodePoolNetwork> {
        let mut obj = serde_json::to_value(npn)?;
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        let name = npn.name_any();
        self.npns()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying NodePoolNetwork {name}"))
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        self.npns()
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting NodePoolNetwork {name}"))?;
        Ok(())
    }

    /// Polls `name` until `done` holds; fails after [`WAIT`] with the last state seen and
    /// `what` was awaited.
    pub async fn wait_npn(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&NodePoolNetwork) -> bool,
    ) -> Result<NodePoolNetwork> {
        let api = self.npns();
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = None;
        loop {
            self.check_operator()?;
            if let Some(npn) = api.get_opt(name).await? {
                if done(&npn) {
                    return Ok(npn);
                }
                last = Some(npn);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "NodePoolNetwork {name}: not {what} after {WAIT:?}; last seen:\n{}",
                    last.map(|l| serde_yaml::to_string(&l).unwrap_or_default())
                        .unwrap_or_else(|| "(absent)".into())
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `Ready` is True for the current generation.
    pub async fn wait_ready(&self, name: &str) -> Result<NodePoolNetwork> {
        self.wait_npn(name, "Ready", is_ready).await
    }

    /// Waits until the part condition `type_` has `reason` for the current generation.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<NodePoolNetwork> {
        self.wait_npn(name, &format!("{type_}={status} ({reason})"), |n| {
            current(n)
                && condition(n, type_).is_some_and(|c| c.status == status && c.reason == reason)
        })
        .await
    }

    /// Waits until the object is gone (finalizer done).
    pub async fn wait_gone(&self, name: &str) -> Result<()> {
        let api = self.npns();
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Some(npn) = api.get_opt(name).await? {
            self.check_operator()?;
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "NodePoolNetwork {name} still exists {WAIT:?} after deletion:\n{}",
                    serde_yaml::to_string(&npn).unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Polls armsim's counters until `done` holds (bounded by [`WAIT`]).
    pub async fn wait_counters(
        &self,
        what: &str,
        done: impl Fn(&Counters) -> bool,
    ) -> Result<Counters> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.check_operator()?;
            let c = self.sim.counters();
            if done(&c) {
                return Ok(c);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("armsim: not {what} after {WAIT:?}; counters: {c:#?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls an ARM resource (read directly from armsim's state) until `done` holds.
    pub async fn wait_resource(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(Option<&Value>) -> bool,
    ) -> Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.check_operator()?;
            let r = self.sim.resource(id);
            if done(r.as_ref()) {
                return Ok(r);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{id}: not {what} after {WAIT:?}; last seen: {}",
                    serde_json::to_string_pretty(&r).unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The operator must not end while a test waits on it.
    fn check_operator(&self) -> Result<()> {
        if self.operator.as_ref().is_some_and(Operator::exited) {
            bail!("the embedded operator exited");
        }
        Ok(())
    }

    /// Events about NodePoolNetwork `name` (cluster-scoped objects get them in `default`).
    pub async fn events(&self, name: &str) -> Result<Vec<Event>> {
        let api: Api<Event> = Api::all(self.env.client());
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("NodePoolNetwork") && r.name.as_deref() == Some(name)
                })
            })
            .collect())
    }

    /// Events about NodePoolNetwork `name` once one has a reason in `reasons`: the operator
    /// writes status first and publishes its Events right after, so a test that saw the
    /// condition may still be early for the Event.
    pub async fn wait_event(&self, name: &str, reasons: &[&str]) -> Result<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let events = self.events(name).await?;
            if events
                .iter()
                .any(|e| e.reason.as_deref().is_some_and(|r| reasons.contains(&r)))
            {
                return Ok(events);
            }
            if tokio::time::Instant::now() > deadline {
                let seen: Vec<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
                bail!("no {reasons:?} event about {name} within 60s; saw {seen:?}");
            }
            self.check_operator()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs kubectl against this harness's API server.
    pub async fn kubectl(&self, args: &[&str]) -> Result<std::process::Output> {
        let bins = crate::binaries::Binaries::locate()?;
        let out = tokio::process::Command::new(&bins.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .args(args)
            .output()
            .await
            .context("running kubectl")?;
        Ok(out)
    }

    /// ARM ID parsed for the client.
    pub fn id(raw: &str) -> Result<ResourceId> {
        Ok(raw.parse::<ResourceId>()?)
    }
}

/// The condition `type_` of `npn`'s status.
pub fn condition<'a>(npn: &'a NodePoolNetwork, type_: &str) -> Option<&'a Condition> {
    npn.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Status written for the current generation.
pub fn current(npn: &NodePoolNetwork) -> bool {
    npn.status.as_ref().is_some_and(|s| {
        s.observed_generation.is_some() && s.observed_generation == npn.metadata.generation
    })
}

/// kstatus readiness: `Ready=True` at the current generation.
pub fn is_ready(npn: &NodePoolNetwork) -> bool {
    current(npn) && condition(npn, "Ready").is_some_and(|c| c.status == "True")
}

/// `state` (armsim's whole state, as [`RunningSim::snapshot`] gives it) without what changes
/// on every write whatever was written: ETags, the record of operations, the operation in
/// flight. What is left is what a GET of each resource shows, read the way ARM and AKS read it:
/// - `provisioningState: Succeeded` equals no provisioning state (armsim's fixture loader
///   sets none; the first write adds it);
/// - an agent pool's empty `allowedHostPorts` / `applicationSecurityGroups` equal absent ones
///   (AKS reads both as "none", and a PUT can only clear them with `[]`).
pub fn comparable_state(state: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["subscriptions", "resources", "pool", "nodes"] {
        let mut v = state.get(key).cloned().unwrap_or(Value::Null);
        if key == "resources" {
            if let Some(resources) = v.as_object_mut() {
                for r in resources.values_mut() {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("op");
                    }
                    if let Some(props) = r["body"]["properties"].as_object_mut() {
                        if props.get("provisioningState") == Some(&Value::from("Succeeded")) {
                            props.remove("provisioningState");
                        }
                        if let Some(net) = props
                            .get_mut("networkProfile")
                            .and_then(Value::as_object_mut)
                        {
                            for field in ["allowedHostPorts", "applicationSecurityGroups"] {
                                if net
                                    .get(field)
                                    .and_then(Value::as_array)
                                    .is_some_and(Vec::is_empty)
                                {
                                    net.remove(field);
                                }
                            }
                            if net.is_empty() {
                                props.remove("networkProfile");
                            }
                        }
                    }
                }
            }
            strip_etags(&mut v);
        }
        out.insert(key.into(), v);
    }
    Value::Object(out)
}

/// Removes every `etag` field (children carry their parent's).
pub fn strip_etags(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("etag");
            map.values_mut().for_each(strip_etags);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_etags),
        _ => {}
    }
}

/// Paths where two JSON values differ, for readable assertion messages.
pub fn json_diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    let p = format!("{path}/{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => walk(&p, va, vb, out),
                        (va, vb) => out.push(format!("{p}: {va:?} != {vb:?}")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}/{i}"), va, vb, out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} != {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}
