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

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use armsim::{Counters, Fixture, RunningSim, SimConfig};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_arm::{ArmClient, ResourceId};
use poolnet_operator::app::OperatorArgs;
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

mod process;
mod state;
mod world;

pub use process::Operator;
pub use state::*;
pub use world::*;

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
    /// More flags for the operator.
    pub flags: Vec<String>,
}

impl HarnessOptions {
    pub fn demo() -> Result<Self> {
        Ok(Self {
            fixture: Fixture::aks_demo()?,
            nodes: fixture_nodes(),
            resync: DEFAULT_RESYNC.into(),
            operator: true,
            flags: Vec::new(),
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
            // The webhook keeps its self-managed certificate in a Secret there.
            format!("--lease-namespace={}", env.namespace()),
            format!("--resync={}", options.resync),
        ];
        // One replica leads at once; tests of leader election pass their own Lease flags.
        if !options
            .flags
            .iter()
            .any(|f| f.starts_with("--leader-election"))
        {
            flags.push("--leader-election=false".into());
        }
        flags.extend(options.flags.iter().cloned());
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

    /// Serves the operator's admin endpoints (`/metrics`, `/healthz`, `/readyz`) at a fixed
    /// loopback port; returns the address for [`scrape_metrics`]. Call it before
    /// [`Harness::start_operator`].
    pub fn serve_admin(&mut self) -> Result<std::net::SocketAddr> {
        if self.operator.is_some() {
            bail!("serve_admin must come before the operator starts");
        }
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        self.flags.retain(|f| !f.starts_with("--admin-addr="));
        self.flags.push(format!("--admin-addr={addr}"));
        Ok(addr)
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

    /// The operator's flags as [`Harness::start_operator`] passes them (for a benchmark that
    /// runs the `poolnet-operator` binary as a process of its own).
    pub fn operator_flags(&self) -> &[String] {
        &self.flags
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

/// `GET /metrics` of an operator's admin server (plain HTTP/1.0 on loopback).
pub async fn scrape_metrics(addr: std::net::SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the admin server at {addr}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("/metrics is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of headers in the /metrics answer")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}
