//! The fault matrix (issue 13): every chosen scenario × seed is one run of poolnet under
//! faults (`poolnet_tests::reliability`), judged by the invariant checker. Prints one line
//! per run, a failed run's findings with the command that reruns exactly it, and the table.
//! Exit code 1 when any run found a violation or could not complete.
//!
//! ```sh
//! cargo build -p poolnet-operator -p poolnet-tests --bin poolnet-operator --bin poolnet-reliability
//! target/debug/poolnet-reliability --scenarios mixed --seeds 1,2
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use poolnet_tests::reliability::schedule::Scenario;
use poolnet_tests::reliability::{RunOptions, report, run};

#[derive(Debug, Parser)]
#[command(about = "poolnet's fault matrix: scenarios × seeds, each run judged by poolnet-check")]
struct Args {
    /// Scenarios, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Seeds, comma-separated (each run is reproducible from its scenario and seed).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// How long faults and changes play in each run.
    #[arg(long, default_value = "60s")]
    window: String,
    /// Pods of a webhook burst (a replica is killed during it).
    #[arg(long, default_value_t = 1000)]
    burst_pods: usize,
    /// Live pods the churn keeps at most.
    #[arg(long, default_value_t = 40)]
    churn_pods: usize,
    /// The operators' --resync.
    #[arg(long, default_value = "20s")]
    resync: String,
    /// How long a run may take to settle after its faults.
    #[arg(long, default_value = "300s")]
    settle_limit: String,
    /// ARM counts as quiet after this long without a write.
    #[arg(long, default_value = "8s")]
    quiet: String,
    /// The poolnet-operator binary; default: next to this program.
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Where each run's logs go (a directory per run); default: a temporary directory.
    #[arg(long)]
    logs: Option<PathBuf>,
}

fn duration(flag: &str, s: &str) -> Result<Duration> {
    poolnet_operator::runtime::parse_duration(s)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--{flag}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = if args.scenarios == "all" {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios
            .split(',')
            .map(|s| s.trim().parse().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    let bin = match &args.operator_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("poolnet-operator"),
    };
    if !bin.exists() {
        bail!(
            "{} is missing: cargo build -p poolnet-operator (or --operator-bin)",
            bin.display()
        );
    }
    let window = duration("window", &args.window)?;
    let settle_limit = duration("settle-limit", &args.settle_limit)?;
    let quiet = duration("quiet", &args.quiet)?;
    let tmp = match &args.logs {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("poolnet-reliability-")
                .tempdir()?,
        ),
    };
    let logs = match (&args.logs, &tmp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("a temporary directory when --logs is absent"),
    };
    println!(
        "poolnet-reliability: scenarios {}, seeds {:?}, window {window:?}; operator {}",
        scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(","),
        args.seeds,
        bin.display()
    );
    let mut results = Vec::new();
    for scenario in &scenarios {
        for seed in &args.seeds {
            let options = RunOptions {
                scenario: *scenario,
                seed: *seed,
                window,
                operator_bin: bin.clone(),
                burst_pods: args.burst_pods,
                churn_pods: args.churn_pods,
                resync: args.resync.clone(),
                settle_limit,
                quiet,
                log_dir: logs.join(format!("{scenario}-{seed}")),
            };
            let result = run(&options).await;
            let rerun = format!(
                "make reliability SCENARIOS={scenario} SEEDS={seed} WINDOW={}",
                args.window
            );
            println!("{}", report::render_run(&result, &rerun));
            results.push(result);
        }
    }
    println!("\n{}", report::render(&results));
    let failed = results.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        // Keep the logs of the failed runs.
        if let Some(t) = tmp {
            println!("logs kept in {}", t.keep().display());
        }
        bail!("{failed} of {} runs failed", results.len());
    }
    Ok(())
}
