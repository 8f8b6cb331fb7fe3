//! Wiring: build the clients, caches, writers and controllers, then run them until shutdown.
//! `main.rs` parses flags into [`OperatorArgs`]; tests and the demo call [`run`] in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};
use poolnet_arm::{ArmClient, ArmConfig, ArmNetwork, CredentialConfig, Secret, Url};

use crate::controller::host_port_policy::CachedRanges;
use crate::controller::{
    Context, ControllerConfig, Informers, host_port_policy, node_pool_network, while_leading,
};
use crate::hostports::Repairer;
use crate::runtime::{
    self, CancellationToken, Health, LeaderElector, LeaderHandle, LeaseConfig, Metrics, RuntimeArgs,
};
use crate::webhook::{self, WebhookArgs};
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

    /// Subscriptions and resource groups poolnet may write in, e.g.
    /// /subscriptions/<id>/resourceGroups/rg-aks (repeat or separate with commas). Every ARM ID
    /// in a NodePoolNetwork must lie inside one: the webhook refuses others, the controller
    /// writes nothing for them. Empty: whatever the Azure identity reaches.
    #[arg(
        long = "allowed-scope",
        env = "POOLNET_ALLOWED_SCOPES",
        value_delimiter = ','
    )]
    pub allowed_scopes: Vec<String>,

    /// How often the leader removes the label that routes a namespace's pods to the pod
    /// webhook from namespaces that no longer have a HostPortPolicy.
    #[arg(long, env = "POOLNET_NAMESPACE_LABEL_SWEEP", default_value = "60s", value_parser = runtime::parse_duration)]
    pub namespace_label_sweep: Duration,

    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// Build the ARM client from flags and the environment (workload identity first).
pub fn arm_client(args: &OperatorArgs) -> anyhow::Result<ArmClient> {
    let mut config = ArmConfig::new(args.arm_endpoint.clone());
    // With leader election, ARM writes wait for the Lease (the elector opens the gate).
    if args.runtime.leader_election {
        config.write_gate = poolnet_arm::WriteGate::closed();
    }
    config.identity = Some(args.runtime.identity());
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
    let informers = Informers::new(client.clone());
    let stores = informers.stores();
    let metrics = Arc::new(
        Metrics::with_arm(arm.clone())
            .with_host_port_ranges(Arc::new(CachedRanges(stores.policies.clone()))),
    );
    let health = Health::new();
    let (admin_addr, admin) = runtime::serve_admin(
        args.runtime.admin_addr,
        metrics.clone(),
        health.clone(),
        shutdown.clone().cancelled_owned(),
    )
    .await?;
    tracing::info!(%admin_addr, "poolnet-operator starting");

    let scopes = poolnet_api::allowed_scopes::AllowedScopes::parse(&args.allowed_scopes)
        .map_err(|e| anyhow::anyhow!("--allowed-scope: {e}"))?;
    if scopes.is_unrestricted() {
        tracing::warn!(
            "no --allowed-scope: NodePoolNetworks may name any Azure resource the operator's identity reaches"
        );
    }
    let pool_events = informers.pools.subscribe();
    let rival_events = informers.pools.subscribe();
    let node_events = informers.nodes.subscribe();
    let policy_events = informers.policies.subscribe();
    let policy_pool_events = informers.pools.subscribe();
    let policy_namespace_events = informers.namespaces.subscribe();
    let watches = informers.spawn();
    let recorder = Recorder::new(client.clone(), Reporter::from("poolnet-operator"));

    // One context (and so one NSG writer) for both controllers: a pool's rules and its
    // policies' rules in the same NSG go out in the same write.
    // Kept by the webhooks' watches on every replica; the leader's NodePoolNetwork controller
    // reads it for host-port coverage.
    let host_ports = args
        .webhook
        .webhooks
        .then(|| Arc::new(crate::hostports::HostPortIndex::new()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        nsg_writer: NsgWriter::new(arm.clone()),
        batches: Default::default(),
        resync_floor: Default::default(),
        reads: crate::reads::Reads::new(args.resync),
        route_writer: RouteWriter::new(arm.clone()),
        arm,
        stores: stores.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        config: ControllerConfig {
            resync: args.resync,
            allowed_scopes: scopes.clone(),
            namespace_label_sweep: args.namespace_label_sweep,
            ..ControllerConfig::default()
        },
        host_ports: host_ports.clone(),
        dry_run: None,
    });

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

    // Admission runs on every replica (the Service spreads requests over them); the
    // host-port index it keeps is shared with the repair loop, which runs on the leader.
    let admission = if let Some(index) = host_ports {
        health.set_ready("webhook", false);
        let running = webhook::run_replica(
            client.clone(),
            &args.webhook,
            &args.runtime.lease_namespace,
            &args.runtime.identity(),
            stores.policies.clone(),
            scopes.clone(),
            metrics.clone(),
            recorder,
            index.clone(),
            Some(Arc::new(crate::preflight::FactsReader::new(
                ctx.arm.clone(),
                crate::preflight::DEFAULT_FACTS_TTL,
            ))),
            shutdown.clone(),
        )
        .await
        .context("starting the admission webhooks")?;
        tracing::info!(addr = %running.addr, "admission webhooks listening");
        let resolver = running.resolver.clone();
        let health = health.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // Ready once a serving certificate is loaded: before that every handshake fails.
            while !resolver.is_loaded() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            health.set_ready("webhook", true);
        });
        Some((index, running))
    } else {
        tracing::info!("admission webhooks disabled (--webhooks=false)");
        None
    };
    let repair = admission.as_ref().map(|(index, _)| {
        Repairer::new(
            client.clone(),
            index.clone(),
            Some(stores.policies.clone()),
            args.webhook.repair(),
        )
    });

    let leader = match LeaseConfig::from_args(&args.runtime)? {
        Some(cfg) => {
            let elector = LeaderElector::new(client.clone(), cfg, metrics.clone())?;
            match ctx.arm.write_gate() {
                Some(gate) => elector.with_write_gate(gate),
                None => elector,
            }
            .spawn()
        }
        None => LeaderHandle::always_leader(&metrics),
    };

    // Controllers and the repair loop write to ARM, status and claims only while this
    // replica holds the Lease.
    let pools = node_pool_network::Reconciler::new(ctx.clone());
    let policies = host_port_policy::Reconciler::new(ctx.clone());
    // Every replica reads its subscriptions; only the leader's controllers see the events.
    let mut subscriptions = Some((
        while_leading(pool_events, leader.subscribe()),
        while_leading(rival_events, leader.subscribe()),
        while_leading(node_events, leader.subscribe()),
        while_leading(policy_events, leader.subscribe()),
        while_leading(policy_pool_events, leader.subscribe()),
        while_leading(policy_namespace_events, leader.subscribe()),
        repair,
    ));
    let work = runtime::run_while_leader(
        leader.subscribe(),
        shutdown.clone().cancelled_owned(),
        || {
            let pools = pools.clone();
            let policies = policies.clone();
            let token = shutdown.clone();
            let subscriptions = subscriptions.take();
            async move {
                let Some((
                    pool_events,
                    rival_events,
                    node_events,
                    policy_events,
                    policy_pool_events,
                    policy_namespace_events,
                    repair,
                )) = subscriptions
                else {
                    // The shared streams can be consumed once: after losing and regaining the
                    // Lease, restart the process (the Deployment does) rather than run blind.
                    anyhow::bail!(
                        "leadership regained after being lost; restarting to resubscribe"
                    );
                };
                let repair = async {
                    if let Some(r) = repair {
                        r.run(token.clone()).await;
                    }
                };
                tokio::join!(
                    node_pool_network::run(
                        pools,
                        pool_events,
                        rival_events,
                        node_events,
                        token.clone().cancelled_owned()
                    ),
                    host_port_policy::run(
                        policies,
                        policy_events,
                        policy_pool_events,
                        policy_namespace_events,
                        token.clone().cancelled_owned()
                    ),
                    repair,
                );
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
    if let Some((_, running)) = admission {
        let _ = running.server.await;
        running.certs.abort();
    }
    let _ = admin.await;
    result
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> OperatorArgs {
        let base = [
            "poolnet-operator",
            "--arm-static-token=t",
            "--identity=pod-a",
        ];
        OperatorArgs::try_parse_from(base.iter().chain(extra)).expect("flags")
    }

    /// With leader election the ARM client's writes wait for the elector to open its gate
    /// (`run` hands the client's gate to the elector); without it nothing ever shuts them.
    #[test]
    fn the_arm_client_is_fenced_only_with_leader_election() {
        let arm = arm_client(&args(&[])).expect("client");
        let gate = arm.write_gate().expect("a gate");
        assert!(!gate.is_always_open());
        assert!(gate.check().is_err(), "shut until the Lease is held");

        let arm = arm_client(&args(&["--leader-election=false"])).expect("client");
        assert!(arm.write_gate().expect("a gate").is_always_open());
    }
}
