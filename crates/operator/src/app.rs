//! Wiring: build the clients, caches, writers and controllers, then run them until shutdown.
//! `main.rs` parses flags into [`OperatorArgs`]; tests and the demo call [`run`] in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use poolnet_arm::{ArmClient, ArmConfig, ArmNetwork, CredentialConfig, Secret, Url};

use crate::controller::{Context, ControllerConfig, Informers, node_pool_network};
use crate::runtime::{
    self, CancellationToken, Health, LeaderElector, LeaderHandle, LeaseConfig, Metrics, RuntimeArgs,
};
use crate::writers::{NsgWriter, RouteWriter};

/// Flags of `poolnet-operator` (every one also from the environment).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "poolnet-operator",
    version,
    about = "Declarative network exposure of AKS node pools"
)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// ARM endpoint: Azure public cloud by default; a sovereign cloud's, or armsim's.
    #[arg(long, env = "POOLNET_ARM_ENDPOINT", default_value = poolnet_arm::PUBLIC_ARM_ENDPOINT)]
    pub arm_endpoint: Url,

    /// PEM file with extra CA certificates to trust for ARM (armsim's CA).
    #[arg(long, env = "POOLNET_ARM_CA_FILE")]
    pub arm_ca_file: Option<PathBuf>,

    /// A fixed bearer token instead of an Azure credential (armsim only).
    #[arg(long, env = "POOLNET_ARM_STATIC_TOKEN", hide_env_values = true)]
    pub arm_static_token: Option<String>,

    /// How often a converged object re-reads Azure to detect changes made by hand.
    #[arg(long, env = "POOLNET_RESYNC", default_value = "5m", value_parser = runtime::parse_duration)]
    pub resync: Duration,
}

/// Build the ARM client from flags and the environment (workload identity first).
pub fn arm_client(args: &OperatorArgs) -> anyhow::Result<ArmClient> {
    let mut config = ArmConfig::new(args.arm_endpoint.clone());
    if let Some(path) = &args.arm_ca_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading --arm-ca-file {}", path.display()))?;
        config.transport.extra_ca_pem = Some(pem);
    }
    let credential = match &args.arm_static_token {
        Some(t) => CredentialConfig::Static(Secret::new(t.clone())),
        None => CredentialConfig::from_env(&poolnet_arm::credential::ProcessEnv)
            .map_err(|e| anyhow::anyhow!("no Azure credential: {e}"))?,
    };
    Ok(ArmClient::new(config, credential)?)
}

/// Run the operator until `shutdown` is cancelled.
pub async fn run(
    args: OperatorArgs,
    client: kube::Client,
    arm: Arc<dyn ArmNetwork>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::with_arm(arm.clone()));
    let health = Health::new();
    let (admin_addr, admin) = runtime::serve_admin(
        args.runtime.admin_addr,
        metrics.clone(),
        health.clone(),
        shutdown.clone().cancelled_owned(),
    )
    .await?;
    tracing::info!(%admin_addr, "poolnet-operator starting");

    let informers = Informers::new(client.clone());
    let stores = informers.stores();
    let pool_events = informers.pools.subscribe();
    let node_events = informers.nodes.subscribe();
    let watches = informers.spawn();

    let ctx = Arc::new(Context {
        client: client.clone(),
        nsg_writer: NsgWriter::new(arm.clone()),
        route_writer: RouteWriter::new(arm.clone()),
        arm,
        stores: stores.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from("poolnet-operator")),
        metrics: metrics.clone(),
        config: ControllerConfig {
            resync: args.resync,
            ..ControllerConfig::default()
        },
    });

    let leader = match LeaseConfig::from_args(&args.runtime)? {
        Some(cfg) => LeaderElector::new(client.clone(), cfg, metrics.clone())?.spawn(),
        None => LeaderHandle::always_leader(&metrics),
    };

    {
        let stores = stores.clone();
        let health = health.clone();
        health.set_ready("caches", false);
        tokio::spawn(async move {
            if stores.wait_ready().await.is_ok() {
                health.set_ready("caches", true);
            }
        });
    }

    // Controllers write to ARM and status only while this replica holds the Lease.
    let reconciler = node_pool_network::Reconciler::new(ctx.clone());
    let mut pool_events = Some(pool_events);
    let mut node_events = Some(node_events);
    let work = runtime::run_while_leader(
        leader.subscribe(),
        shutdown.clone().cancelled_owned(),
        || {
            let reconciler = reconciler.clone();
            let token = shutdown.clone();
            let events = pool_events.take().zip(node_events.take());
            async move {
                let Some((pools, nodes)) = events else {
                    // The shared streams can be consumed once: after losing and regaining the
                    // Lease, restart the process (the Deployment does) rather than run blind.
                    anyhow::bail!(
                        "leadership regained after being lost; restarting to resubscribe"
                    );
                };
                node_pool_network::run(reconciler, pools, nodes, token.cancelled_owned()).await;
                Ok(())
            }
        },
    );
    let result = work.await;
    shutdown.cancel();
    if let Err(e) = leader.release().await {
        tracing::warn!(error = %e, "releasing the Lease failed");
    }
    for w in watches {
        w.abort();
    }
    let _ = admin.await;
    result
}
