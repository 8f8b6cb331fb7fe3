//! What every test here shares: imports, readers of armsim's state and small waits.

pub use std::collections::BTreeSet;
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use anyhow::{Context, Result, ensure};
pub use armsim::{FaultAction, FaultRule, OtherWriter, OtherWriterAction};
pub use futures::StreamExt;
pub use kube::Api;
pub use kube::runtime::{WatchStreamExt, watcher};
pub use poolnet_api::v1alpha1::{
    ChangeAction, ChangeTarget, ManagedPrefix, NodePoolNetwork, NodePublicIp, NsgTarget,
    PendingChange, PrefixSource, ReconcilePolicy,
};
pub use poolnet_arm::ArmNetwork;
pub use poolnet_tests::operator::{
    Harness, KStatus, RG, WAIT, aks_nsg_id, byo_nsg_id, comparable_state, condition, current,
    is_ready, json_diff, kstatus_of, network_id, route_table_id, sample, strip_etags,
};
pub use serde_json::{Value, json};

pub const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";
pub const ROUTE_TABLE_TYPE: &str = "Microsoft.Network/routeTables";
pub const PREFIX_TYPE: &str = "Microsoft.Network/publicIPPrefixes";
pub const AGENT_POOL_TYPE: &str = "Microsoft.ContainerService/managedClusters/agentPools";

/// Every write armsim received (whatever the resource type).
pub fn writes(c: &armsim::Counters) -> u64 {
    ["PUT", "PATCH", "DELETE", "POST"]
        .iter()
        .map(|m| c.method_total(m))
        .sum()
}

/// The NSG's security rules as ARM returns them (ETags stripped: children carry the parent's,
/// which moves on every write of any rule).
pub fn rules(h: &Harness, nsg: &str) -> Result<Vec<Value>> {
    let mut nsg = h.sim.resource(nsg).context("the NSG exists")?;
    strip_etags(&mut nsg);
    Ok(nsg["properties"]["securityRules"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub fn named<'a>(rules: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    rules
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .collect()
}

pub fn routes(h: &Harness, table: &str) -> Result<Vec<Value>> {
    let mut t = h.sim.resource(table).context("the route table exists")?;
    strip_etags(&mut t);
    Ok(t["properties"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Type, reason and note of each event.
pub fn summary(events: &[k8s_openapi::api::events::v1::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.note.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Rules poolnet owns: named `poolnet-…`.
pub const OWNED: &str = "poolnet-";

pub fn pool(h: &Harness, name: &str) -> Result<Value> {
    h.sim
        .resource(&poolnet_tests::operator::agent_pool_id(name))
        .context("the agent pool exists")
}

pub fn pool_ports(pool: &Value) -> BTreeSet<(i64, i64, String)> {
    pool["properties"]["networkProfile"]["allowedHostPorts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["portStart"].as_i64().unwrap_or_default(),
                r["portEnd"].as_i64().unwrap_or_default(),
                r["protocol"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            )
        })
        .collect()
}

pub fn pool_asgs(pool: &Value) -> BTreeSet<String> {
    pool["properties"]["networkProfile"]["applicationSecurityGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
        .collect()
}

pub fn ports(list: &[(i64, i64, &str)]) -> BTreeSet<(i64, i64, String)> {
    list.iter()
        .map(|(a, b, p)| (*a, *b, p.to_string()))
        .collect()
}

/// Waits for a write the test made by hand.
pub async fn settle<T>(h: &Harness, lro: poolnet_arm::Lro<T>) -> Result<()> {
    if let poolnet_arm::Lro::Pending(handle) = lro {
        h.arm.wait(handle, WAIT_ARM).await?;
    }
    Ok(())
}

pub const WAIT_ARM: Duration = Duration::from_secs(60);

/// Every condition `Type=Status/Reason` an object showed, from a watch started before it
/// existed (a poll could miss a short-lived state).
pub struct SeenReasons {
    seen: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SeenReasons {
    pub fn watch(h: &Harness, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let api: Api<NodePoolNetwork> = h.npns();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(npn) = item else { continue };
                let mut seen = sink.lock().unwrap_or_else(|e| e.into_inner());
                for c in npn.status.iter().flat_map(|s| s.conditions.iter()) {
                    seen.insert(format!("{}={}/{}", c.type_, c.status, c.reason));
                }
            }
        });
        Self { seen, task }
    }

    pub fn get(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for SeenReasons {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cloud controller's rules in the AKS NSG, as ARM returns them.
pub fn lb_rules(h: &Harness) -> Result<Vec<Value>> {
    Ok(named(&rules(h, &aks_nsg_id())?, "k8s-azure-lb_")
        .into_iter()
        .cloned()
        .collect())
}

pub fn assert_priorities_apart(h: &Harness) -> Result<()> {
    let all = rules(h, &aks_nsg_id())?;
    let foreign: BTreeSet<i64> = named(&all, "k8s-azure-lb_")
        .iter()
        .map(|r| r["properties"]["priority"].as_i64().unwrap_or_default())
        .collect();
    for r in named(&all, OWNED) {
        let p = r["properties"]["priority"].as_i64().unwrap_or_default();
        assert!((100..=499).contains(&p), "{r:#}");
        assert!(
            !foreign.contains(&p),
            "poolnet took a foreign priority: {r:#}"
        );
    }
    Ok(())
}

/// A third pool, created through ARM as `az aks nodepool add` would, without node public IPs.
pub async fn add_pool(h: &Harness, name: &str) -> Result<()> {
    let pool: poolnet_arm::AgentPool = serde_json::from_value(json!({
        "properties": {"count": 1, "vmSize": "Standard_D2s_v5", "mode": "User"}
    }))?;
    let lro = h
        .arm
        .put_agent_pool(
            &Harness::id(&poolnet_tests::operator::agent_pool_id(name))?,
            &pool,
            poolnet_arm::Precondition::IfNoneMatch,
        )
        .await?;
    settle(h, lro).await
}
