//! `poolnet-operator`: reconciles NodePoolNetworks (and HostPortPolicies) against Azure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use poolnet_operator::app::{self, OperatorArgs};
use poolnet_operator::runtime;
use poolnet_operator::webhook::configs;

#[derive(Parser)]
#[command(
    name = "poolnet-operator",
    version,
    about = "Declarative network exposure of AKS node pools",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: OperatorArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print webhook configurations calling a URL instead of the in-cluster Service, for an
    /// operator running outside the cluster (hack/demo.sh).
    WebhookConfig {
        /// Where the webhooks are served, e.g. https://127.0.0.1:9443; each webhook's
        /// Service path is appended to it.
        #[arg(long)]
        url_base: String,
        /// The configurations to rewrite, e.g. config/webhook/webhooks.yaml.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::WebhookConfig { url_base, file }) => webhook_config(&url_base, &file),
        None => run(cli.run).await,
    }
}

async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    runtime::init_logging(&args.runtime)?;
    let shutdown = runtime::shutdown_on_signal().context("installing signal handlers")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let arm = Arc::new(app::arm_client(&args)?);
    app::run(args, client, arm, shutdown).await
}

fn webhook_config(url_base: &str, file: &Path) -> anyhow::Result<()> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let configs = configs::configs_at_url(&yaml, url_base)
        .with_context(|| format!("rewriting {}", file.display()))?;
    print!("{}", configs::to_yaml(&configs)?);
    Ok(())
}
