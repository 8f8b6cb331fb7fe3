//! Host-port admission benchmark: a real kube-apiserver on 127.0.0.1, poolnet's pod webhook
//! in-process (self-managed TLS, the shipped webhook configurations). First the baseline:
//! `--pods` pod creations without host ports, in a namespace the webhooks never see; then the
//! same pods with the AKS host-port annotation, both with `--in-flight` in flight on the same
//! API server. Prints both rows (pods/s, latency as the client sees the creation), their
//! ratios against the goals, the webhook's own answer time, duplicate keys among the created
//! pods (must be 0), and the allocator core's operations per second in memory.
//!
//! ```sh
//! cargo run --release -p poolnet-tests --example bench_admission -- --pods 10000 --in-flight 64
//! ```

#[path = "../tests/hostports_support/mod.rs"]
mod hostports_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use futures::StreamExt;
use hostports_support::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use poolnet_api::portspec::Protocol;
use poolnet_operator::hostports::core::{
    Key, KeySet, PortRequest, Reservation, Source, Step, request::default_range, seed_of,
};
use poolnet_operator::runtime::CancellationToken;
use poolnet_tests::TestEnv;

#[derive(Parser, Debug)]
struct Args {
    /// Pods to create.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Creations in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Container ports per pod given host ports (1: 8080/tcp; 2: 8080/tcp and 8443/tcp).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    ports_per_pod: u8,
    /// Webhook replicas (behind a load balancer when more than one).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Reserve every port with its own HostPortClaim (the protocol before host-port
    /// blocks), for a before/after comparison in one build.
    #[arg(long)]
    claims: bool,
    /// Kill replica 0 (as a crash would: in-flight admissions are cut) once this many
    /// annotated pods were created; needs --replicas 2 or more. Failed creations are
    /// retried, as a controller would.
    #[arg(long)]
    kill_after: Option<usize>,
    /// Allocator-core operations for the in-memory figure.
    #[arg(long, default_value_t = 1_000_000)]
    core_ops: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Reserve-then-release cycles of the pure allocator at half occupancy of the AKS range:
/// each operation reserves one key for a pod (seeded by its name) and frees the oldest.
fn core_ops_per_second(ops: usize) -> f64 {
    let range = default_range();
    let mut held = KeySet::new();
    let mut fifo = std::collections::VecDeque::new();
    let half = range.len() as usize / 2;
    let started = Instant::now();
    for i in 0..ops {
        let name = i.to_string();
        let mut r = Reservation::new(
            vec![PortRequest {
                container_port: 8080,
                protocol: Protocol::Tcp,
                source: Source::Auto(range),
                origin: "bench".into(),
            }],
            seed_of(&["bench", &name]),
        );
        let key: Key = loop {
            match r.next(&held) {
                Ok(Step::Create(keys)) => {
                    for k in keys {
                        if held.insert(k) {
                            r.created(k);
                        } else {
                            r.conflicted(k);
                        }
                    }
                }
                Ok(Step::Done(a)) => break a[0].key(),
                Err(e) => panic!("allocator refused at half occupancy: {e}"),
            }
        };
        fifo.push_back(key);
        if fifo.len() > half
            && let Some(old) = fifo.pop_front()
        {
            held.remove(old);
        }
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

/// Serves the pod webhook path with poolnet's patch for a constant port, at once, over TLS with a
/// self-managed certificate, installed for `pods_ns` by a copy of poolnet's shipped
/// configuration. Cancel the token to stop it.
async fn start_noop(client: &Client, owner_ns: &str, pods_ns: &str) -> Result<CancellationToken> {
    use poolnet_operator::webhook::{self, CertResolver, CertSource, SelfManaged, certs, tls};
    async fn allow(
        axum::Json(review): axum::Json<AdmissionReview<DynamicObject>>,
    ) -> axum::Json<AdmissionReview<DynamicObject>> {
        let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
        let Ok(req) = request else {
            return axum::Json(AdmissionResponse::invalid("unreadable").into_review());
        };
        // The same patch poolnet returns (label, annotation, hostPort, variables), with a
        // constant port: what any webhook assigning host ports must send, minus choosing.
        let resp = AdmissionResponse::from(&req);
        let raw = serde_json::to_value(&req.object).unwrap_or_default();
        let assignments = [poolnet_plan::hostports::Assignment {
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_port: 40000,
        }];
        let env = poolnet_plan::hostports::env_vars("bench", &assignments);
        let ops = poolnet_operator::webhook::patch::pod_patch(
            &raw,
            &poolnet_operator::webhook::patch::PodMutation {
                assignments: &assignments,
                env: &env,
                token: &req.uid,
            },
        );
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default();
        axum::Json(match resp.clone().with_patch(patch) {
            Ok(r) => r.into_review(),
            Err(_) => resp.into_review(),
        })
    }
    let shutdown = CancellationToken::new();
    let listener = tls::bind("127.0.0.1:0".parse()?).await?;
    let addr = listener.local_addr()?;
    let configs = install_webhooks(client, pods_ns, &format!("https://{addr}")).await?;
    let mut certs = SelfManaged::new(owner_ns, "noop-webhook-cert", vec!["127.0.0.1".into()]);
    certs.mutating_configs = vec![configs.mutating.clone()];
    certs.validating_configs = vec![configs.validating.clone()];
    let resolver = CertResolver::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(certs::run_certs(
        client.clone(),
        CertSource::SelfManaged(certs),
        resolver.clone(),
        Some(ready_tx),
        shutdown.clone(),
    ));
    ready_rx.await?;
    let app = axum::Router::new().route(webhook::PODS_PATH, axum::routing::post(allow));
    tokio::spawn(tls::serve(listener, app, resolver, shutdown.clone()));
    // Active once a dry run reaches it (the configuration's caBundle is in place).
    wait_called(client, pods_ns).await?;
    Ok(shutdown)
}

async fn wait_called(client: &Client, ns: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for _ in 0..300 {
        if pods.create(&dry, &echo_pod("probe-")).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the no-op webhook never answered")
}

/// One batch of pod creations.
struct Run {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    wall: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    fn print(&self, what: &str) {
        println!(
            "  {what}: {} ok, {} failed; {:.0} pods/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latencies.len(),
            self.failures.len(),
            self.per_second(),
            self.percentile(0.5).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.latencies
                .last()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
        );
        if let Some(first) = self.failures.first() {
            println!("    first failure: {first}");
        }
    }
}

/// Creates `n` echo pods with `in_flight` at once, annotated for host ports when asked.
async fn create_pods(
    pods: &Api<Pod>,
    n: usize,
    in_flight: usize,
    annotation: Option<&str>,
    done: &AtomicUsize,
) -> Run {
    let started = Instant::now();
    let results: Vec<Result<Duration, String>> = futures::stream::iter(0..n)
        .map(|_| {
            let pods = pods.clone();
            async move {
                let mut pod = echo_pod("bench-");
                if let Some(a) = annotation {
                    pod.metadata.annotations = Some(BTreeMap::from([(
                        AKS_ANNOTATION.to_string(),
                        a.to_string(),
                    )]));
                }
                let t = Instant::now();
                // Like a controller, a failed creation is retried (a replica killed mid-run
                // cuts the admissions it was answering); latency counts from the first try.
                let mut last = String::new();
                for _ in 0..5 {
                    match pods.create(&PostParams::default(), &pod).await {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            return Ok(t.elapsed());
                        }
                        Err(e) => last = e.to_string(),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(last)
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    latencies.sort();
    let failures = results.into_iter().filter_map(Result::err).collect();
    Run {
        latencies,
        failures,
        wall,
    }
}

/// (count, p50, p99) of the webhook's own answer times, from its histogram.
fn webhook_latency(metrics_text: &str) -> (u64, String, String) {
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut count = 0;
    for line in metrics_text.lines() {
        if !line.contains("webhook=\"pods\"") {
            continue;
        }
        if line.starts_with("poolnet_webhook_admission_duration_seconds_bucket") {
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| {
                    if v == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        v.parse().ok()
                    }
                });
            let n = line.rsplit(' ').next().and_then(|v| v.parse().ok());
            if let (Some(le), Some(n)) = (le, n) {
                buckets.push((le, n));
            }
        } else if line.starts_with("poolnet_webhook_admission_duration_seconds_count") {
            count = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |p: f64| {
        let target = (count as f64 * p).ceil() as u64;
        buckets
            .iter()
            .find(|(_, n)| *n >= target)
            .map(|(le, _)| format!("<= {:.1} ms", le * 1000.0))
            .unwrap_or_else(|| "n/a".into())
    };
    (count, at(0.5), at(0.99))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();

    let core = core_ops_per_second(args.core_ops);
    println!("allocator core (in memory, 50% of 40000-59999 held): {core:.0} reservations/s");

    let env = TestEnv::start().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        let opts = Options {
            // Releases play no part here; keep repair quiet.
            repair: None,
            blocks: (!args.claims).then(|| format!("bench-{i}")),
            ..Options::default()
        };
        replicas.push(Instance::start(&client, &ns, &configs, opts).await?);
    }
    let proxy = Proxy::start().await?;
    proxy.set_backends(replicas.iter().map(|r| r.addr).collect());
    let base = if args.replicas == 1 {
        replicas[0].base_url()
    } else {
        proxy.base_url()
    };
    activate(&client, &ns, &base).await?;

    let annotation = if args.ports_per_pod == 1 {
        "8080/tcp"
    } else {
        "8080/tcp,8443/tcp"
    };
    // The baseline: the same pods, without host ports, in a namespace the webhooks never see
    // (they are limited to the test's namespace), on the same API server, in the same run.
    let plain_ns = format!("{ns}-baseline");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": plain_ns}}))?,
        )
        .await?;
    let baseline = create_pods(
        &Api::namespaced(client.clone(), &plain_ns),
        args.pods,
        args.in_flight,
        None,
        &AtomicUsize::new(0),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let done = AtomicUsize::new(0);
    let killer = async {
        let Some(n) = args.kill_after.filter(|_| replicas.len() > 1) else {
            return;
        };
        while done.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.set_backends(replicas[1..].iter().map(|r| r.addr).collect());
        replicas[0].kill();
        println!("killed replica 0 after {n} annotated pods");
    };
    let (hosted, ()) = futures::join!(
        create_pods(&pods, args.pods, args.in_flight, Some(annotation), &done),
        killer
    );

    // The physical minimum of assigning host ports by webhook on this API server: the same
    // annotated pods through a webhook that returns poolnet's patch with a constant port at
    // once (same configuration, same TLS, same process), in a namespace of its own.
    let noop_ns = format!("{ns}-noop");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": noop_ns}}))?,
        )
        .await?;
    let noop = start_noop(&client, &ns, &noop_ns).await?;
    let floor = create_pods(
        &Api::namespaced(client.clone(), &noop_ns),
        args.pods,
        args.in_flight,
        Some(annotation),
        &AtomicUsize::new(0),
    )
    .await;
    noop.cancel();
    println!(
        "pod creations: {} each, {} in flight, {} replica(s), {} port(s) per pod",
        args.pods, args.in_flight, args.replicas, args.ports_per_pod
    );
    baseline.print("without host ports (the webhook never sees them)");
    floor.print("annotated, through a webhook returning the same patch at once (no choosing)");
    hosted.print("with the AKS host-port annotation");
    println!(
        "ratios (host ports / baseline): throughput {:.2}x (goal >= 0.85), p50 {:.2}x, p99 {:.2}x (goal <= 1.15)",
        hosted.per_second() / baseline.per_second(),
        hosted.percentile(0.5).as_secs_f64() / baseline.percentile(0.5).as_secs_f64(),
        hosted.percentile(0.99).as_secs_f64() / baseline.percentile(0.99).as_secs_f64(),
    );
    println!(
        "ratios (host ports / same-patch webhook): throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
        hosted.per_second() / floor.per_second(),
        hosted.percentile(0.5).as_secs_f64() / floor.percentile(0.5).as_secs_f64(),
        hosted.percentile(0.99).as_secs_f64() / floor.percentile(0.99).as_secs_f64(),
    );
    for (i, r) in replicas.iter().enumerate() {
        let (count, p50, p99) = webhook_latency(&r.metrics.render());
        let (reserved, created, conflicts, refreshes, failed) = r.reserver.stats().snapshot();
        if let Some(b) = &r.blocks {
            let st = b.stats();
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            println!(
                "replica {i}: blocks: {} grants, {} blocks taken, {} taken over, {} Lease renewals, {} live checks",
                get(&st.granted),
                get(&st.taken),
                get(&st.taken_over),
                get(&st.renewals),
                get(&st.live_checks),
            );
        }
        println!(
            "replica {i}: {} reviews (warm-up probes included), webhook answer p50 {p50}, p99 {p99}; \
             {reserved} reservations, {created} claims created, {conflicts} conflicts, \
             {refreshes} live refreshes, {failed} failed",
            count
        );
    }

    // Duplicates: keys held by more than one pod, over every pod that exists.
    let mut holders: BTreeMap<String, usize> = BTreeMap::new();
    let mut listed = 0;
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = pods.list(&lp).await?;
        for p in &page.items {
            listed += 1;
            for k in keys_of(p) {
                *holders.entry(k).or_default() += 1;
            }
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    let duplicates = holders.values().filter(|n| **n > 1).count();
    let claims = claims_in(&client, &ns).await?.len();
    println!(
        "pods listed {listed}, keys held {}, claims {claims}, duplicate keys {duplicates} (target 0)",
        holders.len()
    );
    if duplicates > 0 {
        bail!("{duplicates} keys are held by more than one pod");
    }
    Ok(())
}
