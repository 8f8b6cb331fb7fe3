//! Reconcilers. Each one is glue: fetch, call `poolnet_plan`, apply through `poolnet_arm` or
//! the shared writers, write status.
//!
//! The caches are shared: one watch per kind feeds every controller ([`SharedInformer`]), and
//! the NSG/route union a writer is given is always computed from complete caches
//! ([`Stores::wait_ready`]); a half-filled cache would look like "nobody wants these rules"
//! and delete them.

pub mod conditions;
pub mod host_port_policy;
pub mod node_pool_network;
pub mod status;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use serde::de::DeserializeOwned;

/// Events buffered per subscriber of a shared informer before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;

/// One watch of a kind, its cache, and the streams handed to the controllers that subscribed.
pub struct SharedInformer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    /// Applied to every object before it is cached: drops what poolnet never reads.
    slim: fn(&mut K),
}

/// What every cached object can do without: `managedFields` (often larger than the object)
/// and the copy of the whole object `kubectl apply` leaves in an annotation.
pub fn slim_meta<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A Node as poolnet reads it: name, labels (which pool it belongs to) and
/// `spec.providerID` (its scale-set instance). Its status (images, conditions, addresses)
/// and annotations are most of a Node's size and go unread.
pub fn slim_node(node: &mut Node) {
    slim_meta(node);
    node.metadata.annotations = None;
    node.status = None;
    if let Some(spec) = node.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::NodeSpec {
            provider_id: spec.provider_id.take(),
            ..Default::default()
        };
    }
}

/// A Namespace as poolnet reads it: name and labels.
pub fn slim_namespace(ns: &mut Namespace) {
    slim_meta(ns);
    ns.metadata.annotations = None;
    ns.spec = None;
    ns.status = None;
}

impl<K> SharedInformer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
        Self {
            api,
            config,
            store,
            writer,
            slim: slim_meta::<K>,
        }
    }

    /// Cache objects as `slim` leaves them instead of [`slim_meta`] alone.
    pub fn slimmed(mut self, slim: fn(&mut K)) -> Self {
        self.slim = slim;
        self
    }

    /// The cache (filled once [`SharedInformer::run`] is polled).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A stream of changed objects for one controller. Every subscriber must be consumed, or
    /// the watch stalls once its buffer is full: subscribe only for controllers that run.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        // `store_shared` writers always hand out subscriptions.
        self.writer
            .subscribe()
            .expect("a shared store always has subscribers")
    }

    /// Drive the watch (spawn this).
    pub async fn run(self) {
        watcher(self.api, self.config)
            .default_backoff()
            .modify(self.slim)
            .reflect_shared(self.writer)
            .for_each(|_| futures::future::ready(()))
            .await;
    }
}

/// The caches the controllers and webhooks read.
#[derive(Clone)]
pub struct Stores {
    pub pools: Store<NodePoolNetwork>,
    pub policies: Store<HostPortPolicy>,
    pub nodes: Store<Node>,
    pub namespaces: Store<Namespace>,
}

impl Stores {
    /// Wait until every cache has its first full list.
    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        ready(&self.pools).await?;
        ready(&self.policies).await?;
        ready(&self.nodes).await?;
        ready(&self.namespaces).await
    }

    pub fn all_pools(&self) -> Vec<NodePoolNetwork> {
        self.pools.state().iter().map(|p| (**p).clone()).collect()
    }

    pub fn all_policies(&self) -> Vec<HostPortPolicy> {
        self.policies
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect()
    }

    /// The policies the union of NSG `nsg_id` needs, cloned out of the cache:
    /// those whose pool (in `pools`) targets the NSG, whose pool is gone, or whose record
    /// names the NSG. With thousands of policies over many NSGs, cloning them all for every
    /// write was most of the operator's CPU and memory (bench_memory).
    fn policies_for_nsg(&self, nsg_id: &str, pools: &[NodePoolNetwork]) -> Vec<HostPortPolicy> {
        let targets: std::collections::BTreeMap<&str, bool> = pools
            .iter()
            .filter_map(|p| {
                let name = p.metadata.name.as_deref()?;
                let names = p
                    .spec
                    .network_security_groups
                    .iter()
                    .any(|t| t.id.eq_ignore_ascii_case(nsg_id));
                Some((name, names))
            })
            .collect();
        self.policies
            .state()
            .iter()
            .filter(|h| {
                let recorded = h
                    .status
                    .as_ref()
                    .and_then(|s| s.owned.as_ref())
                    .is_some_and(|o| {
                        !poolnet_api::v1alpha1::Owned::names_in(&o.security_rules, nsg_id)
                            .is_empty()
                    });
                recorded
                    || targets
                        .get(h.spec.node_pool_network.as_str())
                        .copied()
                        .unwrap_or(true)
            })
            .map(|h| (**h).clone())
            .collect()
    }

    /// The other policies that reserve static host ports, which a policy with static host
    /// ports is checked against (they are cluster-unique); none for a policy without any.
    pub fn static_port_rivals(&self, policy: &HostPortPolicy) -> Vec<HostPortPolicy> {
        if !has_static_ports(policy) {
            return Vec::new();
        }
        self.policies
            .state()
            .iter()
            .filter(|p| {
                has_static_ports(p)
                    && !(p.metadata.namespace == policy.metadata.namespace
                        && p.metadata.name == policy.metadata.name)
            })
            .map(|p| (**p).clone())
            .collect()
    }

    /// What this cluster's poolnet may touch in NSG `nsg_id` and must hold there (`cluster`
    /// is the cluster's ARM ID; docs/ownership.md), from `pools` and the cached policies the
    /// NSG needs (the caller's view: the object being reconciled, a pool in `pools` or
    /// `policy`, in place of its cached copy). Call it when the writer
    /// holds the NSG, so the union is the caches' at write time.
    pub fn nsg_union(
        &self,
        cluster: &str,
        nsg_id: &str,
        pools: &[NodePoolNetwork],
        policy: Option<&HostPortPolicy>,
    ) -> poolnet_plan::desired::NsgUnion {
        let mut policies = self.policies_for_nsg(nsg_id, pools);
        if let Some(me) = policy {
            policies.retain(|p| {
                !(p.metadata.namespace == me.metadata.namespace
                    && p.metadata.name == me.metadata.name)
            });
            policies.push(me.clone());
        }
        poolnet_plan::desired::nsg_union(cluster, nsg_id, pools, &policies, &|h, p| {
            self.admits(h, p) && poolnet_api::validation::fits_pool(h, p)
        })
    }

    /// Whether `pool` admits policies from the namespace of `policy` (per its
    /// `spec.hostPortPolicies`), judged on the cached namespace labels.
    pub fn admits(&self, policy: &HostPortPolicy, pool: &NodePoolNetwork) -> bool {
        use kube::core::{Selector, SelectorExt};
        use poolnet_api::v1alpha1::PolicyNamespaces;
        let Some(admission) = &pool.spec.host_port_policies else {
            return false;
        };
        match admission.from {
            PolicyNamespaces::None => false,
            PolicyNamespaces::All => true,
            PolicyNamespaces::Selector => {
                let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
                let labels = self
                    .namespaces
                    .get(&reflector::ObjectRef::new(ns))
                    .and_then(|n| n.metadata.labels.clone())
                    .unwrap_or_default();
                admission
                    .selector
                    .clone()
                    .and_then(|s| Selector::try_from(s).ok())
                    .is_some_and(|s| s.matches(&labels))
            }
        }
    }
}

/// A broadcast subscription as a stream of what is sent. A subscriber that falls behind
/// skips what it missed: every user of it has a periodic requeue that catches up.
pub fn broadcast_stream<T: Clone + Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// A controller's trigger stream: objects of one kind as its shared informer sees them change.
pub type Events<K> = futures::stream::BoxStream<'static, Arc<K>>;

/// Hands a subscription's events to a leader-only controller.
///
/// A shared informer's watch waits while any subscriber's buffer is full, and its cache then
/// stops at the last object it applied. Every replica subscribes at start, but only the leader
/// runs the controllers: on a follower nobody read the subscriptions, so after
/// [`SUBSCRIBER_BUFFER`] changes its caches froze. Its webhooks then answered from a stale
/// cache, and when it took over, its controllers saw the objects as they were back then (the
/// fault matrix, `make reliability`, found it: edits made after the freeze of the old leader
/// were never reconciled).
///
/// So a task of its own reads the subscription for the life of the process; while `leading`
/// is true it passes each object on to the returned stream (waiting for the controller, as
/// the subscription itself would), otherwise it drops it. A controller that starts on gaining
/// the Lease has missed what happened before: it reconciles everything once its caches are
/// ready (`reconcile_all_on(`[`once_ready`]`)`).
pub fn while_leading<K>(
    subscription: ReflectHandle<K>,
    leading: tokio::sync::watch::Receiver<bool>,
) -> Events<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Arc<K>>(SUBSCRIBER_BUFFER);
    tokio::spawn(async move {
        let mut subscription = std::pin::pin!(subscription);
        while let Some(object) = subscription.next().await {
            if *leading.borrow() && !tx.is_closed() {
                // The controller reads at its pace; if it stopped (leadership lost), drop.
                let _ = tx.send(object).await;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let object = rx.recv().await?;
        Some((object, rx))
    })
    .boxed()
}

/// One trigger, once every cache has its first full list: with `reconcile_all_on`, a
/// controller that starts on gaining the Lease reconciles every object it caches.
pub fn once_ready(stores: Stores) -> futures::stream::BoxStream<'static, ()> {
    futures::stream::once(async move {
        // A dropped writer ends the process anyway; trigger regardless.
        let _ = stores.wait_ready().await;
    })
    .boxed()
}

/// Whether the policy reserves any static host port.
pub fn has_static_ports(policy: &HostPortPolicy) -> bool {
    policy.spec.ports.iter().any(|p| p.host_port.is_some())
}

/// How often a task waiting for a cache re-checks it.
const READY_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// `store.wait_until_ready()`, robust to many waiters. kube's readiness future keeps a single
/// waker (a oneshot receiver behind a mutex): of the tasks waiting at once, only the last to
/// poll is woken, and the others wait forever. Every reconcile waits here, so an operator that
/// started with objects already present left most of them unreconciled for good. A waiter that
/// polls again on a timer always sees the value once it is set.
async fn ready<K>(store: &Store<K>) -> Result<(), reflector::store::WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        if let Ok(result) = tokio::time::timeout(READY_RECHECK, store.wait_until_ready()).await {
            return result;
        }
    }
}

/// The informers of one operator process; controllers subscribe before [`Informers::spawn`].
pub struct Informers {
    pub pools: SharedInformer<NodePoolNetwork>,
    pub policies: SharedInformer<HostPortPolicy>,
    pub nodes: SharedInformer<Node>,
    pub namespaces: SharedInformer<Namespace>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Self {
            pools: SharedInformer::new(Api::all(client.clone()), watcher::Config::default()),
            policies: SharedInformer::new(Api::all(client.clone()), watcher::Config::default()),
            nodes: SharedInformer::new(Api::all(client.clone()), watcher::Config::default())
                .slimmed(slim_node),
            namespaces: SharedInformer::new(Api::all(client), watcher::Config::default())
                .slimmed(slim_namespace),
        }
    }

    pub fn stores(&self) -> Stores {
        Stores {
            pools: self.pools.store(),
            policies: self.policies.store(),
            nodes: self.nodes.store(),
            namespaces: self.namespaces.store(),
        }
    }

    /// Start every watch.
    pub fn spawn(self) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.pools.run()),
            tokio::spawn(self.policies.run()),
            tokio::spawn(self.nodes.run()),
            tokio::spawn(self.namespaces.run()),
        ]
    }
}

/// Shared by everything that reconciles: clients, caches, writers.
pub struct Context {
    pub client: kube::Client,
    pub arm: Arc<dyn poolnet_arm::ArmNetwork>,
    pub stores: Stores,
    pub nsg_writer: crate::writers::NsgWriter,
    /// NSG writes held for objects on their way into the same union.
    pub batches: crate::writers::Batches,
    /// Reads of the ARM resources single objects own, kept a resync period.
    pub reads: crate::reads::Reads,
    /// The resync period as the fleet's size raises it ([`Context::resync`]).
    pub resync_floor: ResyncFloor,
    pub route_writer: crate::writers::RouteWriter,
    pub recorder: kube::runtime::events::Recorder,
    pub metrics: Arc<crate::runtime::Metrics>,
    pub config: ControllerConfig,
    /// The pods holding host ports, with their nodes (kept by the webhook's watches): the
    /// NodePoolNetwork controller checks that its pool's allowedHostPorts and NSG rules
    /// cover them. `None` when this process serves no webhooks.
    pub host_ports: Option<Arc<crate::hostports::HostPortIndex>>,
    /// Set for a dry run (`kubectl poolnet diff -f`): the NodePoolNetwork controller writes no
    /// status and publishes no Event; the status it would write lands here instead.
    pub dry_run:
        Option<Arc<std::sync::Mutex<Option<poolnet_api::v1alpha1::NodePoolNetworkStatus>>>>,
}

impl Context {
    /// The resync period: `--resync`, raised so that the NodePoolNetworks' drift checks stay
    /// within their share of ARM's read refill in every subscription
    /// (`poolnet_plan::traffic`).
    pub fn resync(&self) -> std::time::Duration {
        let pools = self.stores.pools.state();
        self.resync_floor
            .effective(self.config.resync, pools.iter().map(|p| p.as_ref()))
    }
}

/// The last effective resync period, to log when the fleet's size changes it.
#[derive(Debug, Default)]
pub struct ResyncFloor {
    last_ms: std::sync::atomic::AtomicU64,
}

impl ResyncFloor {
    fn effective<'a>(
        &self,
        configured: std::time::Duration,
        pools: impl IntoIterator<Item = &'a NodePoolNetwork>,
    ) -> std::time::Duration {
        use std::sync::atomic::Ordering;
        let period = poolnet_plan::traffic::effective_resync(configured, pools);
        let ms = period.as_millis() as u64;
        if self.last_ms.swap(ms, Ordering::Relaxed) != ms && period > configured {
            tracing::info!(
                configured = ?configured,
                effective = ?period,
                "resync period raised: the NodePoolNetworks' drift checks would read ARM faster than their share of the subscription's read refill"
            );
        }
        period
    }
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often a converged object re-reads Azure to catch changes made by hand (drift).
    pub resync: std::time::Duration,
    /// Longest backoff after retryable errors.
    pub max_backoff: std::time::Duration,
    /// Where poolnet may write (`--allowed-scope`); empty: anywhere.
    pub allowed_scopes: poolnet_api::allowed_scopes::AllowedScopes,
    /// Period of the sweep that removes the pod-webhook label from namespaces without a
    /// HostPortPolicy (`--namespace-label-sweep`).
    pub namespace_label_sweep: std::time::Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            resync: std::time::Duration::from_secs(300),
            max_backoff: std::time::Duration::from_secs(300),
            allowed_scopes: Default::default(),
            namespace_label_sweep: std::time::Duration::from_secs(60),
        }
    }
}

/// What about an object can change what its reconcile does: everything but `status` and
/// bookkeeping such as `resourceVersion` and `managedFields`.
fn trigger_fingerprint<K: Resource>(obj: &K) -> u64 {
    use std::hash::Hasher;
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.labels.hash(&mut h);
    h.finish()
}

/// Drops the watch events of an object that change nothing its reconcile reads (a status
/// written by the reconcile itself above all): each would start another full reconcile,
/// with its ARM reads, for nothing. Spec edits (`generation`), deletion, finalizer and label
/// changes, and a new object under an old name (`uid`) pass.
pub fn meaningful_changes<K>(
    events: impl futures::Stream<Item = Arc<K>> + Send + 'static,
) -> impl futures::Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
{
    let mut seen: std::collections::HashMap<(Option<String>, Option<String>), u64> =
        std::collections::HashMap::new();
    events.filter(move |obj| {
        let meta = obj.meta();
        let key = (meta.namespace.clone(), meta.name.clone());
        let print = trigger_fingerprint(obj.as_ref());
        let changed = seen.insert(key, print) != Some(print);
        std::future::ready(changed)
    })
}

#[cfg(test)]
mod trigger_tests {
    use super::*;
    use futures::StreamExt;
    use kube::api::ObjectMeta;

    fn npn(generation: i64, status_note: &str, finalizers: &[&str]) -> Arc<NodePoolNetwork> {
        let mut n: NodePoolNetwork = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "game"},
            "spec": {"nodePool": {"agentPoolId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/game"}},
        }))
        .unwrap();
        n.metadata = ObjectMeta {
            name: Some("game".into()),
            uid: Some("u1".into()),
            generation: Some(generation),
            resource_version: Some(format!("{generation}-{status_note}")),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..ObjectMeta::default()
        };
        Arc::new(n)
    }

    #[tokio::test]
    async fn status_only_updates_do_not_trigger_but_spec_and_finalizers_do() {
        let events = vec![
            npn(1, "a", &[]),
            npn(1, "b", &["poolnet.dev/cleanup"]),
            npn(1, "status-1", &["poolnet.dev/cleanup"]),
            npn(1, "status-2", &["poolnet.dev/cleanup"]),
            npn(2, "spec", &["poolnet.dev/cleanup"]),
            npn(2, "status-3", &["poolnet.dev/cleanup"]),
        ];
        let passed: Vec<String> = meaningful_changes(futures::stream::iter(events))
            .map(|n| n.metadata.resource_version.clone().unwrap())
            .collect()
            .await;
        assert_eq!(passed, ["1-a", "1-b", "2-spec"]);
    }
}

#[cfg(test)]
mod slim_tests {
    use super::*;

    #[test]
    fn a_cached_node_keeps_what_poolnet_reads_and_nothing_else() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "aks-game-1-vmss000000",
                "uid": "u1",
                "resourceVersion": "7",
                "labels": {"kubernetes.azure.com/agentpool": "game"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {
                "providerID": "azure:///subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines/0",
                "podCIDR": "10.244.0.0/24",
            },
            "status": {
                "images": [{"names": ["example.invalid/app:1"], "sizeBytes": 1}],
                "addresses": [{"type": "InternalIP", "address": "10.224.0.4"}],
            },
        }))
        .unwrap();
        slim_node(&mut node);
        assert_eq!(
            serde_json::to_value(&node).unwrap(),
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": "aks-game-1-vmss000000",
                    "uid": "u1",
                    "resourceVersion": "7",
                    "labels": {"kubernetes.azure.com/agentpool": "game"},
                },
                "spec": {
                    "providerID": "azure:///subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines/0",
                },
            })
        );
    }

    #[test]
    fn cached_objects_lose_managed_fields_and_the_last_applied_copy_only() {
        let mut npn: NodePoolNetwork = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {
                "name": "game",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{…}",
                    "team": "games",
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {"nodePool": {"agentPoolId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/game"}},
        }))
        .unwrap();
        let spec_before = serde_json::to_value(&npn.spec).unwrap();
        slim_meta(&mut npn);
        assert!(npn.metadata.managed_fields.is_none());
        assert_eq!(
            npn.metadata.annotations,
            Some(std::collections::BTreeMap::from([(
                "team".to_string(),
                "games".to_string()
            )]))
        );
        assert_eq!(serde_json::to_value(&npn.spec).unwrap(), spec_before);
    }
}

#[cfg(test)]
mod leading_tests {
    use super::*;
    use kube::runtime::reflector::ObjectRef;
    use std::time::Duration;

    fn npn(generation: i64) -> NodePoolNetwork {
        let mut n: NodePoolNetwork = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "a"},
            "spec": {"nodePool": {"agentPoolId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/agentPools/p"}}
        }))
        .expect("a NodePoolNetwork");
        n.metadata.generation = Some(generation);
        n
    }

    /// The generation of "a" in `store` once it reaches `want`, or what it is after 5 s.
    async fn wait_generation(store: &Store<NodePoolNetwork>, want: i64) -> Option<i64> {
        let mut seen = None;
        for _ in 0..100 {
            seen = store
                .get(&ObjectRef::new("a"))
                .and_then(|n| n.metadata.generation);
            if seen == Some(want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    }

    #[tokio::test]
    async fn a_follower_cache_follows_every_change_and_a_leader_gets_the_events() {
        // A buffer of 4: a subscription nobody reads would stop the watch after 4 changes.
        let (store, writer) = reflector::store_shared::<NodePoolNetwork>(4);
        let subscription = writer.subscribe().expect("a shared writer");
        let (leading_tx, leading) = tokio::sync::watch::channel(false);
        let mut events = while_leading(subscription, leading);
        let (feed, watch) = futures::channel::mpsc::unbounded::<watcher::Event<NodePoolNetwork>>();
        tokio::spawn(
            watch
                .map(Ok::<_, watcher::Error>)
                .reflect_shared(writer)
                .for_each(|_| std::future::ready(())),
        );
        feed.unbounded_send(watcher::Event::Init).unwrap();
        feed.unbounded_send(watcher::Event::InitApply(npn(1)))
            .unwrap();
        feed.unbounded_send(watcher::Event::InitDone).unwrap();
        // A follower: 20 changes, nobody reads the events, the cache keeps up.
        for g in 2..=20 {
            feed.unbounded_send(watcher::Event::Apply(npn(g))).unwrap();
        }
        assert_eq!(wait_generation(&store, 20).await, Some(20));
        // Gaining the Lease: the next change reaches the controller's stream.
        leading_tx.send(true).unwrap();
        feed.unbounded_send(watcher::Event::Apply(npn(21))).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream is open");
        assert_eq!(got.metadata.generation, Some(21));
        // Losing it and dropping the controller's stream: the cache still keeps up.
        leading_tx.send(false).unwrap();
        drop(events);
        for g in 22..=40 {
            feed.unbounded_send(watcher::Event::Apply(npn(g))).unwrap();
        }
        assert_eq!(wait_generation(&store, 40).await, Some(40));
    }
}
