//! Runs the test control plane outside of tests: for humans and the demo
//! (`hack/controlplane/up.sh` / `down.sh`), and to measure it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use poolnet_tests::process::rss_kib;
use poolnet_tests::{ControlPlane, ControlPlaneOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    about = "A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start and keep running until SIGINT/SIGTERM; writes <dir>/kubeconfig, then <dir>/ready.
    Up {
        /// State directory: kubeconfig, certificates, component logs.
        #[arg(long)]
        dir: PathBuf,
        /// API server port (0: a free one).
        #[arg(long, default_value_t = 0, env = "POOLNET_APISERVER_PORT")]
        port: u16,
    },
    /// Start, print start-to-ready time and resident memory per component, stop.
    Measure {
        /// Number of start/stop cycles.
        #[arg(long, default_value_t = 1)]
        runs: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().command {
        Cmd::Up { dir, port } => up(dir, port).await,
        Cmd::Measure { runs } => measure(runs).await,
    }
}

async fn up(dir: PathBuf, port: u16) -> Result<()> {
    let ready_marker = dir.join("ready");
    let _ = std::fs::remove_file(&ready_marker);
    let mut plane = ControlPlane::start_with(ControlPlaneOptions {
        apiserver_port: port,
        state_dir: Some(dir.clone()),
    })
    .await?;
    println!(
        "control plane ready in {:.2}s at {}; kubeconfig {}",
        plane.ready_after().as_secs_f64(),
        plane.server(),
        plane.kubeconfig_path().display()
    );
    for (name, pid) in plane.processes() {
        println!("  {name}: pid {pid}");
    }
    std::fs::write(&ready_marker, plane.server())
        .with_context(|| format!("writing {}", ready_marker.display()))?;

    let mut term = signal(SignalKind::terminate())?;
    let mut health = tokio::time::interval(Duration::from_secs(2));
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = health.tick() => {
                if let Err(e) = plane.check_alive() {
                    break Err(e);
                }
            }
        }
    };
    let _ = std::fs::remove_file(&ready_marker);
    drop(plane);
    println!("control plane stopped");
    outcome
}

async fn measure(runs: u32) -> Result<()> {
    for run in 1..=runs {
        let started = Instant::now();
        let plane = ControlPlane::start().await?;
        let ready = plane.ready_after();
        // kube-controller-manager is up once it has created the `default` service account.
        let client = plane.client().await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
        while accounts.get_opt("default").await?.is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                bail!("kube-controller-manager did not create default/default within 120s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let with_controllers = started.elapsed();
        // Let the components settle (caches filled, controllers synced) before reading memory.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut total = 0;
        let mut rss = Vec::new();
        for (name, pid) in plane.processes() {
            let kib = rss_kib(pid).unwrap_or(0);
            total += kib;
            rss.push(format!("{name} {} MiB", kib / 1024));
        }
        println!(
            "run {run}: apiserver /readyz after {:.2}s, controller-manager serving after {:.2}s; \
             RSS {} (total {} MiB)",
            ready.as_secs_f64(),
            with_controllers.as_secs_f64(),
            rss.join(", "),
            total / 1024
        );
    }
    Ok(())
}
