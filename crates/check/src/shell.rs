//! The I/O around the pure core: a [`Snapshot`] read from a cluster (kube client) and ARM
//! (`poolnet_arm::ArmClient`, the operator's client and credentials), and armsim's write
//! counters.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use poolnet_api::armid::ResourceKind;
use poolnet_api::v1alpha1::{HostPortBlock, HostPortClaim, HostPortPolicy, NodePoolNetwork};
use poolnet_arm::{AGENT_POOL_API_VERSION, ArmClient, ArmError, NETWORK_API_VERSION};
use poolnet_operator::hostports::ASSIGNED_ANNOTATION;
use poolnet_operator::hostports::index::pod_entry;
use poolnet_operator::webhook::patch::parse_assigned;

use crate::attribution::{kind_of, needed};
use crate::model::{ArmView, PodHold, Snapshot};

/// The API version of a resource poolnet reads.
pub fn api_version(id: &str) -> &'static str {
    match kind_of(id) {
        Some(ResourceKind::AgentPool) => AGENT_POOL_API_VERSION,
        _ => NETWORK_API_VERSION,
    }
}

/// The Kubernetes side of a snapshot (ARM empty).
pub async fn read_cluster(client: &kube::Client) -> Result<Snapshot> {
    let lp = ListParams::default();
    let pools = Api::<NodePoolNetwork>::all(client.clone())
        .list(&lp)
        .await
        .context("listing NodePoolNetworks")?
        .items;
    let policies = Api::<HostPortPolicy>::all(client.clone())
        .list(&lp)
        .await
        .context("listing HostPortPolicies")?
        .items;
    let claims = Api::<HostPortClaim>::all(client.clone())
        .list(&lp)
        .await
        .context("listing HostPortClaims")?
        .items;
    // A cluster whose CRDs predate HostPortBlock has none (the list is a 404).
    let blocks = match Api::<HostPortBlock>::all(client.clone()).list(&lp).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e).context("listing HostPortBlocks"),
    };
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&lp)
        .await
        .context("listing namespaces")?
        .items
        .into_iter()
        .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
        .collect();
    let pods = Api::<Pod>::all(client.clone())
        .list(&lp)
        .await
        .context("listing pods")?
        .items
        .iter()
        .filter_map(|pod| {
            let e = pod_entry(pod)?;
            let assigned = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ASSIGNED_ANNOTATION))
                .map(|v| parse_assigned(v).iter().map(|a| a.key()).collect())
                .unwrap_or_default();
            Some(PodHold {
                namespace: e.namespace,
                name: e.name,
                uid: e.uid,
                token: e.token,
                keys: e.keys,
                assigned,
                daemon_set: e.daemon_set,
            })
        })
        .collect();
    Ok(Snapshot {
        pools,
        policies,
        namespaces,
        claims,
        blocks,
        pods,
        arm: ArmView::default(),
        now: k8s_openapi::jiff::Timestamp::now(),
    })
}

/// Reads into `snap.arm` every resource the objects name or record (plus `extra`, e.g. a
/// baseline's), and the ASGs and public IP prefixes of the groups poolnet creates them in.
pub async fn read_arm(
    arm: &ArmClient,
    snap: &mut Snapshot,
    extra: impl IntoIterator<Item = String>,
) -> Result<()> {
    let needed = needed(snap, extra);
    let mut view = ArmView::default();
    for id in &needed.ids {
        let parsed: poolnet_arm::ResourceId = id
            .parse()
            .with_context(|| format!("resource ID {id:?} in an object"))?;
        match arm.get_resource_json(&parsed, api_version(id)).await {
            Ok(r) => view.insert(id, r.resource),
            Err(ArmError::NotFound { .. }) => view.insert_absent(id),
            Err(e) => return Err(e).with_context(|| format!("reading {id}")),
        }
    }
    let mut listed = BTreeSet::new();
    for group in &needed.groups {
        for kind in ["applicationSecurityGroups", "publicIPPrefixes"] {
            let path = format!("{group}/providers/Microsoft.Network/{kind}");
            if !listed.insert(path.clone()) {
                continue;
            }
            list_into(arm, &mut view, &path, NETWORK_API_VERSION).await?;
        }
    }
    for cluster in &needed.clusters {
        let path = format!("{cluster}/agentPools");
        list_into(arm, &mut view, &path, poolnet_arm::AGENT_POOL_API_VERSION).await?;
    }
    snap.arm = view;
    Ok(())
}

/// Every item of the collection at `path` into `view`; a parent that does not exist (a group,
/// a cluster) holds nothing.
async fn list_into(
    arm: &ArmClient,
    view: &mut ArmView,
    path: &str,
    api_version: &str,
) -> Result<()> {
    let items = match arm.list_json(path, api_version).await {
        Ok(items) => items,
        Err(ArmError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {path}")),
    };
    for item in items {
        if let Some(id) = item.get("id").and_then(|v| v.as_str()).map(String::from) {
            view.insert(&id, item);
        }
    }
    Ok(())
}

/// armsim's accepted writes per resource (`GET /_armsim/counters`).
pub async fn armsim_writes(arm: &ArmClient) -> Result<BTreeMap<String, u64>> {
    let counters = arm
        .get_json("/_armsim/counters")
        .await
        .context("reading armsim's counters (GET /_armsim/counters)")?;
    let per = counters
        .get("accepted_writes_by_resource")
        .cloned()
        .context("armsim's counters have no accepted_writes_by_resource (an older armsim?)")?;
    serde_json::from_value(per).context("armsim's accepted_writes_by_resource")
}

/// A whole snapshot: the cluster, then ARM.
pub async fn read(
    client: &kube::Client,
    arm: &ArmClient,
    extra: impl IntoIterator<Item = String>,
) -> Result<Snapshot> {
    let mut snap = read_cluster(client).await?;
    read_arm(arm, &mut snap, extra).await?;
    Ok(snap)
}
