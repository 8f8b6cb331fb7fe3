//! Benchmark: memory of the operator process alone at fleet scale (issue 14, item 2).
//!
//! A real kube-apiserver and armsim on 127.0.0.1; `poolnet-operator` (release) runs as a
//! process of its own, with the flags the tests give it, serving the shipped admission
//! webhooks (`config/webhook/webhooks.yaml`, called by URL): pods get their host ports and
//! claims from it as in a cluster. The fleet grows in stages and the operator's RSS
//! (`VmRSS`, and the peak `VmHWM`) is printed after each, with the object counts and the
//! growth per object:
//!
//! 0. the operator with no object at all: the baseline every figure is compared with;
//! 1. `--pools` NodePoolNetworks (each its agent pool and NSG, policies from any namespace),
//!    all Ready;
//! 2. `--policies` HostPortPolicies over `--namespaces` namespaces, all Ready;
//! 3. pods, up to each of `--pods` in turn, of which `--host-port-share` match a policy and
//!    get a host port (pods without host ports should cost nothing: they are not kept).
//!
//! ```sh
//! cargo build --release -p poolnet-operator
//! cargo run --release -p poolnet-tests --example bench_memory -- [--pools 100] \
//!     [--policies 5000] [--pods 1000,10000,50000] [--host-port-share 0.2]
//! ```
//!
//! Prints figures; asserts nothing.

#[path = "../tests/hostports_support/mod.rs"]
mod hostports_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use armsim::Fixture;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use poolnet_tests::operator::{Harness, HarnessOptions, is_ready};
use serde_json::json;

const SUB: &str = "00000000-aaaa-bbbb-cccc-000000000002";
const RG: &str = "rg-memory";
const CLUSTER: &str = "aks-memory";

#[derive(Debug, Parser)]
struct Args {
    /// NodePoolNetworks (one agent pool and one NSG each).
    #[arg(long, default_value_t = 100)]
    pools: usize,
    /// HostPortPolicies, spread over the pools.
    #[arg(long, default_value_t = 5000)]
    policies: usize,
    /// Namespaces the policies and pods live in.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Pod totals to measure at, in order.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    pods: Vec<usize>,
    /// Share of the pods that hold a host port.
    #[arg(long, default_value_t = 0.2)]
    host_port_share: f64,
    /// Creations in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// How long the operator is left to settle after each stage before RSS is read.
    #[arg(long, default_value = "15s")]
    settle: String,
    /// The `poolnet-operator` binary; default: next to this example's directory
    /// (`target/release/poolnet-operator`).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// More environment for the operator process, `NAME=VALUE` (repeatable).
    #[arg(long = "operator-env")]
    operator_env: Vec<String>,
}

fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}"
    )
}

fn pool_id(i: usize) -> String {
    format!("{}/agentPools/p{i:03}", cluster_id())
}

fn nsg_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg-{i:03}"
    )
}

/// One subscription, one cluster with `pools` pools and as many empty NSGs.
fn world(pools: usize) -> Result<Fixture> {
    poolnet_tests::operator::fleet_fixture(
        SUB,
        RG,
        &cluster_id(),
        (0..pools).map(pool_id),
        (0..pools).map(nsg_id),
    )
}

fn npn(i: usize) -> Result<NodePoolNetwork> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "NodePoolNetwork",
        "metadata": {"name": format!("pool-{i:03}")},
        "spec": {
            "nodePool": {"agentPoolId": pool_id(i)},
            "allowedHostPorts": ["40000-59999/tcp"],
            "networkSecurityGroups": [{"id": nsg_id(i), "sourceAddressPrefixes": ["Internet"]}],
            "hostPortPolicies": {"from": "All"},
        }
    }))?)
}

/// Ports each policy's range has: host ports are cluster-unique, so the 5,000 policies
/// split the pools' 20,000 ports.
const PORTS_PER_POLICY: usize = 4;

/// Policy `j`: pool `j % pools`, its own slice of the pools' range 40000-59999.
fn policy(j: usize, pools: usize, namespaces: usize) -> Result<HostPortPolicy> {
    let start = 40000 + PORTS_PER_POLICY * (j % (20000 / PORTS_PER_POLICY));
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "HostPortPolicy",
        "metadata": {"name": format!("policy-{j:05}"), "namespace": namespace(j % namespaces)},
        "spec": {
            "nodePoolNetwork": format!("pool-{:03}", j % pools),
            "podSelector": {"matchLabels": {"app": format!("app-{j:05}")}},
            "ports": [{"containerPort": 8080}],
            "hostPortRange": {"start": start, "end": start + PORTS_PER_POLICY - 1},
        }
    }))?)
}

fn namespace(i: usize) -> String {
    format!("fleet-{i:03}")
}

/// Pod `k`: in namespace `k % namespaces`; when `host_port`, selected by policy
/// `k % policies` (which lives in the same namespace), whose webhook gives its container
/// port 8080 a host port; otherwise selected by no policy.
fn pod(k: usize, namespaces: usize, policies: usize, host_port: bool) -> Result<Pod> {
    let app = if host_port {
        format!("app-{:05}", k % policies)
    } else {
        "plain".to_string()
    };
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("pod-{k:06}"),
            "namespace": namespace(k % namespaces),
            "labels": {"app": app},
        },
        "spec": {
            "containers": [{"name": "app", "image": "example.invalid/app:1", "ports": [{"containerPort": 8080}]}],
        }
    }))?)
}

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn rss_of(pid: u32) -> (f64, f64) {
    poolnet_tests::process::rss_mib(Some(pid))
}

/// The operator as a child process, killed when dropped.
struct OperatorProcess(Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a refused create is worth another try, as a controller would retry it: the
/// webhook asked for it, or the server was busy.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 429 || s.code >= 500 || s.message.contains("retry the request")
        }
        _ => true,
    }
}

/// Creates `items` with `in_flight` requests at once, retrying refusals a controller would
/// retry (up to 20 times each); returns the retries.
async fn create_all<K>(
    api_for: impl Fn(&K) -> Api<K>,
    items: Vec<K>,
    in_flight: usize,
) -> Result<u64>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let retries = std::sync::atomic::AtomicU64::new(0);
    let retries_ref = &retries;
    futures::stream::iter(items.into_iter().map(|item| {
        let api = api_for(&item);
        async move {
            let mut attempt = 0;
            loop {
                match api.create(&PostParams::default(), &item).await {
                    Ok(_) => return Ok(()),
                    Err(e) if attempt < 20 && retryable(&e) => {
                        attempt += 1;
                        retries_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e))
                            .with_context(|| format!("creating {:?}", item.meta().name));
                    }
                }
            }
        }
    }))
    .buffer_unordered(in_flight)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(retries.into_inner())
}

/// Waits until `count()` reaches `want`; `false` when `limit` passes first.
async fn wait_for<F, Fut>(want: usize, limit: Duration, count: F) -> Result<bool>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if count().await? >= want {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(false)
}

struct Report {
    pid: u32,
    baseline: f64,
    last: (f64, usize),
}

impl Report {
    fn line(&mut self, stage: &str, objects: usize, what: &str) {
        let (rss, peak) = rss_of(self.pid);
        let growth = if objects > self.last.1 {
            format!(
                ", {:.2} KiB per {what} since the last stage",
                (rss - self.last.0) * 1024.0 / (objects - self.last.1) as f64
            )
        } else {
            String::new()
        };
        println!(
            "  {stage:<44} RSS {rss:>7.1} MiB (peak {peak:>7.1} MiB), {:.2}x the idle operator, {:.0}% of the 128 MiB goal{growth}",
            rss / self.baseline,
            rss / 128.0 * 100.0
        );
        self.last = (rss, objects);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let settle = poolnet_operator::runtime::parse_duration(&args.settle)
        .map_err(anyhow::Error::msg)
        .context("--settle")?;
    if args.pools == 0 || args.namespaces == 0 {
        bail!("need --pools >= 1 and --namespaces >= 1");
    }
    let bin = match &args.operator_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("this example's directory")?
            .join("poolnet-operator"),
    };
    if !bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p poolnet-operator (or --operator-bin)",
            bin.display()
        );
    }
    println!(
        "bench_memory: {} NodePoolNetworks, {} HostPortPolicies in {} namespaces, pods {:?} ({:.0}% with a host port); operator {}",
        args.pools,
        args.policies,
        args.namespaces,
        args.pods,
        args.host_port_share * 100.0,
        bin.display()
    );
    if args.policies % args.namespaces != 0 {
        bail!(
            "--policies must be a multiple of --namespaces (pod k and policy k % policies share a namespace)"
        );
    }
    let mut h = Harness::start_with(HarnessOptions {
        fixture: world(args.pools)?,
        nodes: Vec::new(),
        resync: "5m".into(),
        operator: false,
        flags: Vec::new(),
    })
    .await?;
    h.sim.set_throttling(armsim::ThrottleConfig {
        enabled: false,
        ..armsim::ThrottleConfig::default()
    });
    let namespace_names: Vec<String> = (0..args.namespaces).map(namespace).collect();
    let refs: Vec<&str> = namespace_names.iter().map(String::as_str).collect();
    let configs = hostports_support::Configs::for_namespace(refs[0]);
    let base = h.serve_webhooks(&configs.mutating, &configs.validating)?;
    hostports_support::install_webhooks_in(&h.env.client(), &refs, &base).await?;
    let log = tempfile::NamedTempFile::new()?;
    let mut command = Command::new(&bin);
    for kv in &args.operator_env {
        let (k, v) = kv
            .split_once('=')
            .context("--operator-env takes NAME=VALUE")?;
        command.env(k, v);
    }
    let child = command
        .args(h.operator_flags())
        .env("KUBECONFIG", h.kubeconfig())
        .env("POD_NAME", "bench-memory")
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let operator = OperatorProcess(child);
    let pid = operator.0.id();
    tokio::time::sleep(settle).await;
    let (idle, _) = rss_of(pid);
    let mut report = Report {
        pid,
        baseline: idle,
        last: (idle, 0),
    };
    println!(
        "\n  {:<44} RSS {idle:>7.1} MiB (the baseline)",
        "idle, no objects"
    );

    let client = h.env.client();
    let npns: Api<NodePoolNetwork> = Api::all(client.clone());
    for i in 0..args.pools {
        npns.create(&PostParams::default(), &npn(i)?).await?;
    }
    let ready = wait_for(args.pools, Duration::from_secs(600), || async {
        Ok(npns
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| is_ready(n))
            .count())
    })
    .await?;
    tokio::time::sleep(settle).await;
    report.line(
        &format!(
            "{} NodePoolNetworks{}",
            args.pools,
            if ready { " Ready" } else { " (NOT all Ready)" }
        ),
        args.pools,
        "NodePoolNetwork",
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for i in 0..args.namespaces {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace(i)}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let started = Instant::now();
    let policies: Vec<HostPortPolicy> = (0..args.policies)
        .map(|j| policy(j, args.pools, args.namespaces))
        .collect::<Result<_>>()?;
    let c = client.clone();
    let _ = create_all(
        move |p: &HostPortPolicy| {
            Api::namespaced(
                c.clone(),
                p.metadata.namespace.as_deref().unwrap_or_default(),
            )
        },
        policies,
        args.in_flight,
    )
    .await?;
    let all_policies: Api<HostPortPolicy> = Api::all(client.clone());
    let ready = wait_for(args.policies, Duration::from_secs(900), || async {
        Ok(all_policies
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count())
    })
    .await?;
    let labelled = wait_for(args.namespaces, Duration::from_secs(300), || async {
        Ok(namespaces
            .list(&ListParams::default().labels("poolnet.dev/host-port-policies=enabled"))
            .await?
            .items
            .len())
    })
    .await?;
    if !labelled {
        bail!("the namespaces were not labelled for the policy webhook");
    }
    println!(
        "  ({} policies created and {} in {:.0?})",
        args.policies,
        if ready { "all Ready" } else { "NOT all Ready" },
        started.elapsed()
    );
    tokio::time::sleep(settle).await;
    report.line(
        &format!("+ {} HostPortPolicies", args.policies),
        args.pools + args.policies,
        "HostPortPolicy",
    );

    // Each stage first adds the pods that hold a host port, then the others, so the cost of
    // each kind shows on its own line.
    let mut host_pods = 0usize;
    let mut plain_pods = 0usize;
    let mut next = 0usize;
    for &total in &args.pods {
        let want_host = (total as f64 * args.host_port_share).round() as usize;
        let want_plain = total.saturating_sub(want_host);
        for host in [true, false] {
            let (have, want) = if host {
                (host_pods, want_host)
            } else {
                (plain_pods, want_plain)
            };
            if want <= have {
                continue;
            }
            let started = Instant::now();
            let batch: Vec<Pod> = (next..next + (want - have))
                .map(|k| pod(k, args.namespaces, args.policies.max(1), host))
                .collect::<Result<_>>()?;
            next += want - have;
            let c = client.clone();
            let retries = create_all(
                move |p: &Pod| {
                    Api::namespaced(
                        c.clone(),
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                    )
                },
                batch,
                args.in_flight,
            )
            .await?;
            let took = started.elapsed();
            if host {
                host_pods = want;
            } else {
                plain_pods = want;
            }
            tokio::time::sleep(settle).await;
            report.line(
                &format!(
                    "+ {} pods {} ({host_pods} + {plain_pods})",
                    want - have,
                    if host { "with a host port" } else { "without" }
                ),
                args.pools + args.policies + host_pods + plain_pods,
                if host {
                    "pod with a host port"
                } else {
                    "pod without"
                },
            );
            println!(
                "  ({} pods created in {took:.0?}, {retries} refusals retried)",
                want - have
            );
        }
    }
    let (rss, peak) = rss_of(pid);
    println!(
        "\n  at the end: RSS {rss:.1} MiB, peak {peak:.1} MiB; goal <= 128 MiB: {}",
        if rss <= 128.0 { "met" } else { "NOT met" }
    );
    let log_text = std::fs::read_to_string(log.path()).unwrap_or_default();
    let errors = log_text.lines().filter(|l| l.contains("ERROR")).count();
    println!("  operator log: {errors} ERROR lines");
    drop(operator);
    Ok(())
}
