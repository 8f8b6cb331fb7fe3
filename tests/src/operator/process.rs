//! The operator as a process of its own: its own runtime, graceful stop or crash.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use poolnet_arm::ArmNetwork;
use poolnet_operator::app::{self, OperatorArgs};
use poolnet_operator::runtime::CancellationToken;

use super::*;

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
