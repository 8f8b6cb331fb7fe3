//! Benchmark: many NodePoolNetworks sharing few NSGs, on a real API server and armsim with
//! Azure's throttling (reads 250 + 25/s, writes 200 + 10/s per subscription), the operator
//! embedded in this process. Prints figures; asserts nothing.
//!
//! ```sh
//! cargo run --release -p poolnet-tests --example bench_npn -- [--objects 200] [--nsgs 20] \
//!     [--changed 100] [--resync 60s] [--windows 3]
//! ```
//!
//! 1. `--objects` agent pools of one cluster and `--nsgs` NSGs are seeded into armsim; object
//!    `i` names pool `i` and NSG `i % nsgs`, opens two TCP ports and one UDP port (so two rules
//!    per object per NSG) to its managed ASG. All objects exist before the operator starts;
//!    the clock runs from its start until every object is Ready.
//! 2. `--windows` resync periods of a converged system: ARM writes (target 0).
//! 3. The first `--changed` objects (spread over every NSG) get one more port at once: ARM
//!    writes per NSG until they are all Ready again (target <= 2).
//!
//! ARM requests are armsim's counters; writes per NSG come from one zero-latency fault rule
//! per NSG, which counts the PUTs it matches. RSS is this process's (API client, armsim and
//! operator together), before the operator starts and after each phase.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use armsim::{Counters, FaultAction, FaultRule, Fixture};
use clap::Parser;
use futures::future::try_join_all;
use kube::ResourceExt;
use kube::api::ListParams;
use poolnet_api::v1alpha1::NodePoolNetwork;
use poolnet_tests::operator::{Harness, HarnessOptions, is_ready};
use serde_json::json;

const SUB: &str = "00000000-aaaa-bbbb-cccc-000000000001";
const RG: &str = "rg-bench";
const CLUSTER: &str = "aks-bench";
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
struct Args {
    /// NodePoolNetworks (one agent pool each).
    #[arg(long, default_value_t = 200)]
    objects: usize,
    /// NSGs they share.
    #[arg(long, default_value_t = 20)]
    nsgs: usize,
    /// Objects changed at once in phase 3.
    #[arg(long, default_value_t = 100)]
    changed: usize,
    /// The operator's --resync.
    #[arg(long, default_value = "60s")]
    resync: String,
    /// Resync periods watched after convergence.
    #[arg(long, default_value_t = 3)]
    windows: u32,
    /// armsim's throttling (Azure's token buckets); `false` lifts it, and with it the
    /// client's own budget, which follows armsim's `x-ms-ratelimit-remaining-*` headers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    arm_throttling: bool,
    /// Give up on a phase after this long.
    #[arg(long, default_value = "600s")]
    limit: String,
}

fn nsg_name(i: usize) -> String {
    format!("nsg-bench-{i:03}")
}

fn pool_name(i: usize) -> String {
    format!("p{i:03}")
}

fn cluster_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/{CLUSTER}"
    )
}

fn nsg_id(i: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{}",
        nsg_name(i)
    )
}

/// One subscription, one cluster with `objects` pools, `nsgs` empty NSGs.
fn world(objects: usize, nsgs: usize) -> Result<Fixture> {
    poolnet_tests::operator::fleet_fixture(
        SUB,
        RG,
        &cluster_id(),
        (0..objects).map(|i| format!("{}/agentPools/{}", cluster_id(), pool_name(i))),
        (0..nsgs).map(nsg_id),
    )
}

fn npn(i: usize, nsgs: usize, extra_port: bool) -> Result<NodePoolNetwork> {
    let mut ports = format!("{}/tcp,{}/tcp,{}/udp", 20000 + i, 30000 + i, 40000 + i);
    if extra_port {
        ports.push_str(&format!(",{}/tcp", 50000 + i));
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "NodePoolNetwork",
        "metadata": {"name": format!("npn-{i:03}")},
        "spec": {
            "nodePool": {"agentPoolId": format!("{}/agentPools/{}", cluster_id(), pool_name(i))},
            "allowedHostPorts": [ports],
            "networkSecurityGroups": [{"id": nsg_id(i % nsgs), "sourceAddressPrefixes": ["Internet"]}],
        }
    }))?)
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn rss() -> (f64, f64) {
    poolnet_tests::process::rss_mib(None)
}

fn print_rss(when: &str) {
    let (now, peak) = rss();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    println!("  RSS {when}: {now:.1} MiB (peak so far {peak:.1} MiB), {fds} open file descriptors");
}

fn print_requests(c: &Counters) {
    for (method, by_type) in &c.requests {
        let total: u64 = by_type.values().sum();
        println!("  {method:<6} {total:>6}");
        for (t, n) in by_type {
            println!("         {n:>6}  {t}");
        }
    }
    let statuses: Vec<String> = c
        .responses
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!("  responses by status: {}", statuses.join(", "));
    println!(
        "  total {} requests, {} accepted writes, {} answered 429 by the token buckets",
        c.total, c.accepted_writes, c.throttled
    );
}

/// ARM writes per ARM resource whose desired state changed (the physical minimum is 1.00).
fn print_amplification(writes: u64, changed: usize) {
    println!(
        "  write amplification: {writes} ARM writes / {changed} resources changed = {:.2} (minimum 1.00)",
        writes as f64 / changed.max(1) as f64
    );
}

fn writes(c: &Counters) -> u64 {
    ["PUT", "PATCH", "DELETE", "POST"]
        .iter()
        .map(|m| c.method_total(m))
        .sum()
}

/// PUTs each NSG received so far (the per-NSG fault rules' match counts).
fn nsg_puts(h: &Harness, nsgs: usize) -> Vec<u64> {
    let rules = h.sim.faults().config().rules;
    (0..nsgs)
        .map(|i| {
            rules
                .iter()
                .find(|r| r.path_contains.as_deref() == Some(nsg_name(i).as_str()))
                .map_or(0, |r| r.injected)
        })
        .collect()
}

/// Waits until every object in `names` is Ready at a generation of at least `min_generation`;
/// `Err(ready)` when `limit` passes first.
async fn wait_all_ready(
    h: &Harness,
    names: &[String],
    min_generation: i64,
    limit: Duration,
) -> Result<std::result::Result<Duration, usize>> {
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let list = h.npns().list(&ListParams::default()).await?;
        let ready: BTreeMap<String, bool> = list
            .items
            .iter()
            .map(|n| {
                (
                    n.name_any(),
                    is_ready(n) && n.metadata.generation.unwrap_or(0) >= min_generation,
                )
            })
            .collect();
        let done = names
            .iter()
            .filter(|n| ready.get(*n).copied().unwrap_or(false))
            .count();
        if done == names.len() {
            return Ok(Ok(start.elapsed()));
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            let waiting = list
                .items
                .iter()
                .find(|n| names.contains(&n.name_any()) && !ready[&n.name_any()]);
            let why = waiting
                .and_then(|n| poolnet_tests::operator::condition(n, "Ready"))
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| {
                    format!(
                        "no status yet (finalizers {:?})",
                        waiting.map(|n| n.finalizers().to_vec())
                    )
                });
            let c = h.sim.counters();
            let gets: Vec<String> = c
                .requests
                .get("GET")
                .into_iter()
                .flatten()
                .map(|(t, n)| format!("{}={n}", t.rsplit('/').next().unwrap_or(t)))
                .collect();
            eprintln!(
                "  ... {done}/{} Ready after {:.0?} ({} requests, {} writes, {} throttled; GET {}); e.g. {}: {why}",
                names.len(),
                start.elapsed(),
                c.total,
                writes(&c),
                c.throttled,
                gets.join(" "),
                waiting.map(ResourceExt::name_any).unwrap_or_default()
            );
            last_report = Instant::now();
        }
        if start.elapsed() > limit {
            return Ok(Err(done));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.nsgs == 0 || args.changed > args.objects {
        bail!("need --nsgs >= 1 and --changed <= --objects");
    }
    let resync = poolnet_operator::runtime::parse_duration(&args.resync)
        .map_err(anyhow::Error::msg)
        .context("--resync")?;
    let limit = poolnet_operator::runtime::parse_duration(&args.limit)
        .map_err(anyhow::Error::msg)
        .context("--limit")?;
    println!(
        "bench_npn: {} NodePoolNetworks, {} NSGs ({} objects each), resync {:?}, ARM throttling {}, {} build",
        args.objects,
        args.nsgs,
        args.objects.div_ceil(args.nsgs),
        resync,
        if args.arm_throttling {
            "on (reads 250 + 25/s, writes 200 + 10/s)"
        } else {
            "off"
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut h = Harness::start_with(HarnessOptions {
        fixture: world(args.objects, args.nsgs)?,
        nodes: Vec::new(),
        resync: args.resync.clone(),
        operator: false,
        flags: Vec::new(),
    })
    .await?;
    if !args.arm_throttling {
        h.sim.set_throttling(armsim::ThrottleConfig {
            enabled: false,
            ..armsim::ThrottleConfig::default()
        });
    }
    for i in 0..args.nsgs {
        h.sim.faults().add_rule(
            FaultRule::new(FaultAction::Latency { ms: 0 })
                .method("PUT")
                .resource_type("networkSecurityGroups")
                .path_contains(&nsg_name(i)),
        );
    }
    let names: Vec<String> = (0..args.objects).map(|i| format!("npn-{i:03}")).collect();
    for i in 0..args.objects {
        h.apply(&npn(i, args.nsgs, false)?).await?;
    }
    print_rss("before the operator starts");

    println!("\n== 1. convergence: the operator starts with every object already there");
    h.sim.reset_counters();
    h.start_operator()?;
    let outcome = wait_all_ready(&h, &names, 1, limit).await?;
    let c = h.sim.counters();
    match outcome {
        Ok(took) => println!("  all {} Ready after {:.1?}", args.objects, took),
        Err(ready) => println!(
            "  NOT CONVERGED: {ready}/{} Ready when the {limit:?} limit ran out",
            args.objects
        ),
    }
    print_requests(&c);
    let puts = nsg_puts(&h, args.nsgs);
    println!(
        "  NSG PUTs per NSG: min {} / max {} / mean {:.2} (target <= 2; total {})",
        puts.iter().min().unwrap_or(&0),
        puts.iter().max().unwrap_or(&0),
        puts.iter().sum::<u64>() as f64 / args.nsgs as f64,
        puts.iter().sum::<u64>()
    );
    // Every agent pool gets its ports and ASG, every managed ASG is created, every NSG gets
    // rules: each of those resources changes once.
    print_amplification(writes(&c), 2 * args.objects + args.nsgs);
    print_rss("after convergence");
    if outcome.is_err() {
        h.stop_operator().await?;
        return Ok(());
    }

    println!(
        "\n== 2. steady state: {} resync periods of converged objects",
        args.windows
    );
    let objects: Vec<NodePoolNetwork> = (0..args.objects)
        .map(|i| npn(i, args.nsgs, false))
        .collect::<Result<_>>()?;
    let owned: usize = poolnet_plan::traffic::read_set(&objects)
        .values()
        .map(|s| s.len())
        .sum();
    let period = poolnet_plan::traffic::effective_resync(resync, &objects);
    h.sim.reset_counters();
    let watch = period.mul_f64(1.1) * args.windows;
    let started = Instant::now();
    tokio::time::sleep(watch).await;
    let periods = started.elapsed().as_secs_f64() / period.as_secs_f64();
    let c = h.sim.counters();
    let reads = c.method_total("GET") as f64;
    println!(
        "  over {:.0?} ({periods:.2} periods of {period:.1?}): {} ARM writes (target 0), {} reads: {:.2} per owned resource per period ({owned} resources; target <= 1), {:.2} per object per period",
        watch,
        writes(&c),
        c.method_total("GET"),
        reads / owned as f64 / periods,
        reads / args.objects as f64 / periods,
    );
    print_requests(&c);

    println!(
        "\n== 3. {} objects (every NSG) change at once: one more port each",
        args.changed
    );
    h.sim.reset_counters();
    let before = nsg_puts(&h, args.nsgs);
    let start = Instant::now();
    let changed: Vec<NodePoolNetwork> = (0..args.changed)
        .map(|i| npn(i, args.nsgs, true))
        .collect::<Result<_>>()?;
    try_join_all(changed.iter().map(|n| h.apply(n))).await?;
    println!(
        "  the {} changes reached the API server within {:.1?}",
        args.changed,
        start.elapsed()
    );
    let changed_names: Vec<String> = changed.iter().map(ResourceExt::name_any).collect();
    if let Err(ready) = wait_all_ready(&h, &changed_names, 2, limit).await? {
        println!(
            "  NOT CONVERGED: {ready}/{} Ready again when the limit ran out",
            args.changed
        );
    }
    let took = start.elapsed();
    let c = h.sim.counters();
    let per_nsg: Vec<u64> = nsg_puts(&h, args.nsgs)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    println!("  all {} Ready again after {:.1?}", args.changed, took);
    println!(
        "  NSG writes per NSG: min {} / max {} / mean {:.2} (target <= 2): {:?}",
        per_nsg.iter().min().unwrap_or(&0),
        per_nsg.iter().max().unwrap_or(&0),
        per_nsg.iter().sum::<u64>() as f64 / args.nsgs as f64,
        per_nsg
    );
    print_requests(&c);
    // The changed objects' agent pools and every NSG they share change once each.
    print_amplification(writes(&c), args.changed + args.changed.min(args.nsgs));
    print_rss("at the end");
    h.stop_operator().await?;
    Ok(())
}
