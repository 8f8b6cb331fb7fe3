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
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use futures::StreamExt;
use hostports_support::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use poolnet_api::portspec::Protocol;
use poolnet_operator::hostports::core::{
    Key, KeySet, PortRequest, Reservation, Source, Step, request::default_range, seed_of,
};
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
async fn create_pods(pods: &Api<Pod>, n: usize, in_flight: usize, annotation: Option<&str>) -> Run {
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
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(_) => Ok(t.elapsed()),
                    Err(e) => Err(e.to_string()),
                }
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
    for _ in 0..args.replicas {
        let opts = Options {
            // Releases play no part here; keep repair quiet.
            repair: None,
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
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let hosted = create_pods(&pods, args.pods, args.in_flight, Some(annotation)).await;

    println!(
        "pod creations: {} each, {} in flight, {} replica(s), {} port(s) per pod",
        args.pods, args.in_flight, args.replicas, args.ports_per_pod
    );
    baseline.print("without host ports (the webhook never sees them)");
    hosted.print("with the AKS host-port annotation");
    println!(
        "ratios (host ports / baseline): throughput {:.2}x (goal >= 0.85), p50 {:.2}x, p99 {:.2}x (goal <= 1.15)",
        hosted.per_second() / baseline.per_second(),
        hosted.percentile(0.5).as_secs_f64() / baseline.percentile(0.5).as_secs_f64(),
        hosted.percentile(0.99).as_secs_f64() / baseline.percentile(0.99).as_secs_f64(),
    );
    for (i, r) in replicas.iter().enumerate() {
        let (count, p50, p99) = webhook_latency(&r.metrics.render());
        let (reserved, created, conflicts, refreshes, failed) = r.reserver.stats().snapshot();
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
