//! `armsim` binary: serve the simulator on a loopback port until interrupted.

use anyhow::Context;
use armsim::{Fixture, SimConfig};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "armsim",
    about = "ARM-compatible simulator for Azure networking and AKS agent pools"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// YAML fixture with the initial subscriptions, resource groups and resources.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// YAML configuration (throttling, LRO durations, limits, faults); see `SimConfig`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve HTTPS with a CA generated at start.
    #[arg(long)]
    tls: bool,
    /// Where to write the CA certificate (PEM) when serving HTTPS.
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
    /// File for state snapshots (`POST /_armsim/snapshot`, and on exit).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Start from a snapshot instead of the seed.
    #[arg(long, conflicts_with = "seed")]
    restore: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => SimConfig::from_file(path)?,
        None => SimConfig::default(),
    };
    if let Some(seed) = &args.seed {
        config.seed = Some(Fixture::from_file(seed)?);
    }
    config.tls |= args.tls;
    if args.snapshot.is_some() {
        config.snapshot_path = args.snapshot.clone();
    }
    if args.restore.is_some() {
        config.restore_from = args.restore.clone();
    }
    let sim = armsim::start(config, args.listen)?;
    if let (Some(path), Some(pem)) = (&args.ca_out, sim.ca_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing CA to {}", path.display()))?;
    }
    // One line on stdout that scripts can wait for.
    println!("armsim listening on {}", sim.base_url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    runtime.block_on(wait_for_stop())?;
    if let Some(path) = &args.snapshot {
        sim.save_snapshot(path)?;
    }
    sim.shutdown();
    Ok(())
}

async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("Ctrl-C handler")?,
        _ = term.recv() => {}
    }
    Ok(())
}
