//! `kubectl poolnet diff -f FILE`: the changes a NodePoolNetwork manifest would make, before
//! it is applied. The manifest is planned with the operator's own code (the NodePoolNetwork
//! controller run as a dry run, reconcilePolicy Observe) against the live cluster's objects
//! (for the shared NSGs' and route tables' union) and the live ARM resources, read with the
//! user's own ARM credential (the Azure CLI login). Nothing is written anywhere.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use poolnet_api::v1alpha1::{NodePoolNetwork, ReconcilePolicy};
use poolnet_api::validation::validate_node_pool_network;
use poolnet_arm::ArmNetwork;
use poolnet_operator::controller::{Context, ControllerConfig, Informers, node_pool_network};
use poolnet_operator::runtime::Metrics;
use poolnet_operator::writers::{NsgWriter, RouteWriter};

/// UID of a manifest not created yet: rule names hash the object's UID, so the last six
/// hex digits of the names shown differ from those poolnet writes once it exists.
pub const NEW_OBJECT_UID: &str = "00000000-0000-0000-0000-000000000000";

/// `manifest` planned against the cluster and ARM: the object as poolnet would report it in
/// Observe, `status.pendingChanges` holding the changes. Refuses a manifest the validating
/// webhook would refuse.
pub async fn plan_manifest(
    client: Client,
    arm: Arc<dyn ArmNetwork>,
    manifest: NodePoolNetwork,
) -> Result<(NodePoolNetwork, bool)> {
    let mut candidate = manifest;
    let name = candidate.name_any();
    if name.is_empty() {
        bail!("the manifest has no metadata.name");
    }
    let live = Api::<NodePoolNetwork>::all(client.clone())
        .get_opt(&name)
        .await
        .with_context(|| format!("reading NodePoolNetwork {name}"))?;
    if let Err(errs) = validate_node_pool_network(&candidate, live.as_ref()) {
        bail!("the manifest would be refused at admission: {errs}");
    }
    // The live object's identity and record: the same rule names, the same ownership.
    let exists = live.is_some();
    match live {
        Some(l) => {
            candidate.metadata.uid = l.metadata.uid;
            candidate.metadata.generation = l.metadata.generation;
            candidate.status = l.status;
        }
        None => {
            candidate.metadata.uid = Some(NEW_OBJECT_UID.to_string());
            candidate.metadata.generation = Some(1);
            candidate.status = None;
        }
    }

    let informers = Informers::new(client.clone());
    let stores = informers.stores();
    let watches = informers.spawn();
    let ctx = Arc::new(Context {
        client: client.clone(),
        nsg_writer: NsgWriter::new(arm.clone()),
        batches: Default::default(),
        resync_floor: Default::default(),
        reads: Default::default(),
        route_writer: RouteWriter::new(arm.clone()),
        arm,
        stores,
        recorder: Recorder::new(client, Reporter::from("kubectl-poolnet")),
        metrics: Arc::new(Metrics::new()),
        config: ControllerConfig::default(),
        host_ports: None,
        dry_run: Some(Arc::default()),
    });
    let result = node_pool_network::preview(ctx, candidate.clone()).await;
    for w in watches {
        w.abort();
    }
    let status = result.context("planning the manifest")?;
    candidate.spec.reconcile_policy = ReconcilePolicy::Observe;
    candidate.metadata.generation = status.observed_generation;
    candidate.status = Some(status);
    Ok((candidate, exists))
}
