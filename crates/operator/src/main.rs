//! `poolnet-operator`: reconciles NodePoolNetworks (and HostPortPolicies) against Azure.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use poolnet_operator::app::{self, OperatorArgs};
use poolnet_operator::runtime;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = OperatorArgs::parse();
    runtime::init_logging(&args.runtime)?;
    let shutdown = runtime::shutdown_on_signal().context("installing signal handlers")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let arm = Arc::new(app::arm_client(&args)?);
    app::run(args, client, arm, shutdown).await
}
