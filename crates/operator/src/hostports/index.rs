//! An in-memory index of who holds which host port, fed by two watches (claims and pods).
//!
//! It answers the webhook's "which keys look taken?" and the repair loop's "does this pod
//! still exist?". It is a cache: the webhook's proposals are confirmed by creating claims
//! (the API server refuses duplicates) and the repair loop confirms releases with live
//! reads, so staleness here costs retries, never correctness. Plain data, tested without a
//! cluster.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::HostPortClaim;
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_plan::hostports::{Held, Key, KeySet, PodRef, PodView};
use tokio::sync::Notify;

/// What the index keeps of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEntry {
    pub key: Key,
    pub token: String,
    pub namespace: String,
    pub bound_uid: Option<String>,
    pub policy: Option<String>,
    /// UID of the DaemonSet whose pods share the claim, if it is shared.
    pub daemon_set: Option<String>,
}

/// What the index keeps of a pod that holds host ports or carries a reservation token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub token: Option<String>,
    pub keys: Vec<Key>,
    /// UID of the DaemonSet controlling the pod, if one does (its pods share claims).
    pub daemon_set: Option<String>,
    /// The node it is bound to (`spec.nodeName`), once scheduled.
    pub node: Option<String>,
    /// Its labels, kept for pods poolnet admitted (token) only: which HostPortPolicy
    /// selects it (a policy's status lists its pods' ports, given from blocks with no claim).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The ports poolnet gave it (the `poolnet.dev/host-ports` annotation).
    pub assigned: Vec<poolnet_plan::hostports::Assignment>,
}

impl PodEntry {
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    claims: HashMap<String, ClaimEntry>,
    pods: HashMap<String, PodEntry>,
    by_token: HashMap<(String, String), String>,
    /// Holders per key (claims and pods' host ports both count), and the keys with any.
    holders: HashMap<Key, u32>,
    held: KeySet,
    claims_ready: bool,
    pods_ready: bool,
    /// Objects received since the watch (re)started listing, swapped in when it is done.
    claims_relist: Option<Vec<ClaimEntry>>,
    pods_relist: Option<Vec<PodEntry>>,
}

impl Inner {
    fn hold(&mut self, key: Key) {
        let n = self.holders.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.held.insert(key);
        }
    }

    fn unhold(&mut self, key: Key) {
        if let Some(n) = self.holders.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.holders.remove(&key);
                self.held.remove(key);
            }
        }
    }

    fn put_claim(&mut self, name: String, entry: ClaimEntry) {
        let key = entry.key;
        if let Some(old) = self.claims.insert(name, entry) {
            self.unhold(old.key);
        }
        self.hold(key);
    }

    fn drop_claim(&mut self, name: &str) {
        if let Some(old) = self.claims.remove(name) {
            self.unhold(old.key);
        }
    }

    fn put_pod(&mut self, entry: PodEntry) {
        self.drop_pod(&entry.uid.clone());
        for k in &entry.keys {
            self.hold(*k);
        }
        if let Some(t) = &entry.token {
            self.by_token
                .insert((entry.namespace.clone(), t.clone()), entry.uid.clone());
        }
        self.pods.insert(entry.uid.clone(), entry);
    }

    fn drop_pod(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            for k in &old.keys {
                self.unhold(*k);
            }
            if let Some(t) = old.token {
                let slot = (old.namespace, t);
                if self.by_token.get(&slot).is_some_and(|u| u == uid) {
                    self.by_token.remove(&slot);
                }
            }
        }
    }
}

/// The shared index. Cheap to read concurrently; writers are the two watches.
pub struct HostPortIndex {
    inner: RwLock<Inner>,
    /// Signalled when a pod holding ports or a token appears or disappears: the repair loop
    /// then runs a pass soon instead of waiting for its period.
    changed: Notify,
    /// Nodes whose pods' host ports changed (a pod holding ports bound, changed or gone):
    /// the NodePoolNetwork controller re-checks the coverage of the pool they are in.
    nodes_changed: tokio::sync::broadcast::Sender<String>,
    namespaces_changed: tokio::sync::broadcast::Sender<String>,
}

impl Default for HostPortIndex {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            changed: Notify::new(),
            // A lagging subscriber misses names and catches up at its next resync.
            nodes_changed: tokio::sync::broadcast::channel(1024).0,
            namespaces_changed: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

/// The index's view of a claim object, or `None` for an object whose name is not a key.
pub fn claim_entry(claim: &HostPortClaim) -> Option<ClaimEntry> {
    let key: Key = claim.name_any().parse().ok()?;
    Some(ClaimEntry {
        key,
        token: claim.spec.request_uid.clone(),
        namespace: claim.spec.pod_namespace.clone(),
        bound_uid: claim
            .status
            .as_ref()
            .and_then(|s| s.pod.as_ref())
            .map(|p| p.uid.clone()),
        policy: claim.spec.policy.clone(),
        daemon_set: claim.spec.daemon_set.as_ref().map(|o| o.uid.clone()),
    })
}

/// Host ports a container list declares, as keys (SCTP and unset ports skipped).
pub fn container_keys<'a>(containers: impl IntoIterator<Item = &'a Container>) -> Vec<Key> {
    let mut keys = Vec::new();
    for c in containers {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.and_then(|hp| u16::try_from(hp).ok()) else {
                continue;
            };
            if hp == 0 {
                continue;
            }
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(_) => continue,
            };
            let key = Key::new(protocol, hp);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// The host ports a pod's containers and init containers declare.
pub fn pod_keys(pod: &Pod) -> Vec<Key> {
    pod.spec
        .as_ref()
        .map(|s| {
            container_keys(
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten()),
            )
        })
        .unwrap_or_default()
}

/// The index's view of a pod, or `None` for a pod that neither holds host ports nor carries
/// a reservation token (most pods: they are not kept).
pub fn pod_entry(pod: &Pod) -> Option<PodEntry> {
    let uid = pod.metadata.uid.clone()?;
    let keys = pod_keys(pod);
    let token = pod.labels().get(RESERVATION_LABEL).cloned();
    if keys.is_empty() && token.is_none() {
        return None;
    }
    Some(PodEntry {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid,
        keys,
        daemon_set: super::shared::daemon_set_of(pod).map(|(_, uid)| uid.to_string()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        labels: if token.is_some() {
            pod.labels().clone()
        } else {
            Default::default()
        },
        assigned: pod
            .annotations()
            .get(super::ASSIGNED_ANNOTATION)
            .map(|v| crate::webhook::patch::parse_assigned(v))
            .unwrap_or_default(),
        token,
    })
}

impl HostPortIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping would: keep serving from them.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Both watches have delivered their first complete list.
    pub fn is_ready(&self) -> bool {
        let g = self.read();
        g.claims_ready && g.pods_ready
    }

    /// Waits for a change of pods holding ports (see [`HostPortIndex::notify_change`]).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn notify_change(&self) {
        self.changed.notify_one();
    }

    /// Namespaces whose poolnet-admitted pods came or went, as they do.
    pub fn subscribe_namespaces(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.namespaces_changed.subscribe()
    }

    fn namespace_changed(&self, namespace: &str) {
        let _ = self.namespaces_changed.send(namespace.to_string());
    }

    /// Cached pods of `namespace` that poolnet admitted (they carry a token).
    pub fn admitted_in(&self, namespace: &str) -> Vec<PodEntry> {
        let g = self.read();
        let mut out: Vec<PodEntry> = g
            .pods
            .values()
            .filter(|p| p.namespace == namespace && p.token.is_some())
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Names of nodes whose pods' host ports changed, as they change.
    pub fn subscribe_nodes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.nodes_changed.subscribe()
    }

    fn node_changed(&self, node: Option<&String>) {
        if let Some(n) = node {
            // No subscriber (no leader here) is fine.
            let _ = self.nodes_changed.send(n.clone());
        }
    }

    // --- claims watch ---

    pub fn apply_claim(&self, claim: &HostPortClaim) {
        let Some(entry) = claim_entry(claim) else {
            return;
        };
        let mut g = self.write();
        match g.claims_relist.as_mut() {
            Some(list) => list.push(entry),
            None => g.put_claim(claim.name_any(), entry),
        }
    }

    pub fn delete_claim(&self, claim: &HostPortClaim) {
        let mut g = self.write();
        g.drop_claim(&claim.name_any());
    }

    /// The claims watch starts a full list (at start or after losing its place).
    pub fn claims_relist_started(&self) {
        self.write().claims_relist = Some(Vec::new());
    }

    /// The full list is complete: it replaces what the index held.
    pub fn claims_relist_done(&self) {
        let mut g = self.write();
        let list = g.claims_relist.take().unwrap_or_default();
        let names: Vec<String> = g.claims.keys().cloned().collect();
        for name in names {
            g.drop_claim(&name);
        }
        for e in list {
            g.put_claim(e.key.claim_name(), e);
        }
        g.claims_ready = true;
    }

    // --- pods watch ---

    pub fn apply_pod(&self, pod: &Pod) {
        let entry = pod_entry(pod);
        let mut g = self.write();
        if let Some(list) = g.pods_relist.as_mut() {
            list.extend(entry);
            return;
        }
        match entry {
            Some(e) => {
                let before = g.pods.get(&e.uid).map(|p| (p.node.clone(), p.keys.clone()));
                let fresh = before.is_none();
                let moved = before.as_ref() != Some(&(e.node.clone(), e.keys.clone()));
                let nodes = [before.and_then(|b| b.0), e.node.clone()];
                let namespace = e.token.as_ref().map(|_| e.namespace.clone());
                g.put_pod(e);
                drop(g);
                if fresh {
                    self.notify_change();
                    if let Some(ns) = namespace {
                        self.namespace_changed(&ns);
                    }
                }
                if moved {
                    for n in nodes.iter().flatten() {
                        self.node_changed(Some(n));
                    }
                }
            }
            None => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    let node = g.pods.get(uid).and_then(|p| p.node.clone());
                    g.drop_pod(uid);
                    drop(g);
                    self.node_changed(node.as_ref());
                }
            }
        }
    }

    pub fn delete_pod(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let mut g = self.write();
        let gone = g
            .pods
            .get(uid)
            .map(|p| (p.node.clone(), p.namespace.clone()));
        g.drop_pod(uid);
        drop(g);
        if let Some((node, namespace)) = gone {
            self.notify_change();
            self.node_changed(node.as_ref());
            self.namespace_changed(&namespace);
        }
    }

    pub fn pods_relist_started(&self) {
        self.write().pods_relist = Some(Vec::new());
    }

    pub fn pods_relist_done(&self) {
        let mut g = self.write();
        let list = g.pods_relist.take().unwrap_or_default();
        let mut nodes: std::collections::BTreeSet<String> =
            g.pods.values().filter_map(|p| p.node.clone()).collect();
        nodes.extend(list.iter().filter_map(|p| p.node.clone()));
        let uids: Vec<String> = g.pods.keys().cloned().collect();
        for uid in uids {
            g.drop_pod(&uid);
        }
        for e in list {
            g.put_pod(e);
        }
        g.pods_ready = true;
        drop(g);
        self.notify_change();
        for n in &nodes {
            self.node_changed(Some(n));
        }
    }

    // --- readers ---

    /// Keys held by claims or by pods' own host ports, as a snapshot the caller can use
    /// without holding any lock.
    pub fn held(&self) -> KeySet {
        self.read().held.clone()
    }

    /// Keys declared by cached pods only (a fresh claim list plus these is the webhook's
    /// refreshed view).
    pub fn pod_keys(&self) -> KeySet {
        self.read()
            .pods
            .values()
            .flat_map(|p| p.keys.iter().copied())
            .collect()
    }

    pub fn claim(&self, key: Key) -> Option<ClaimEntry> {
        self.read().claims.get(&key.claim_name()).cloned()
    }

    pub fn claims(&self) -> Vec<ClaimEntry> {
        self.read().claims.values().cloned().collect()
    }

    pub fn pod(&self, uid: &str) -> Option<PodEntry> {
        self.read().pods.get(uid).cloned()
    }

    /// Pods holding a key inside `managed` (ranges per protocol) with no claim for it:
    /// host ports written by pods' authors that did not go through the webhook.
    pub fn unclaimed(&self, managed: &[(Protocol, PortRange)]) -> Vec<(PodEntry, Key)> {
        let g = self.read();
        let mut out = Vec::new();
        for pod in g.pods.values() {
            for &key in &pod.keys {
                let in_range = managed
                    .iter()
                    .any(|(p, r)| *p == key.protocol && r.contains(key.port));
                if in_range && !g.claims.contains_key(&key.claim_name()) {
                    out.push((pod.clone(), key));
                }
            }
        }
        out.sort_by(|a, b| (a.1, &a.0.uid).cmp(&(b.1, &b.0.uid)));
        out
    }

    /// Cached pods that declare `key` as a host port.
    pub fn pods_holding(&self, key: Key) -> Vec<PodEntry> {
        let g = self.read();
        let mut out: Vec<PodEntry> = g
            .pods
            .values()
            .filter(|p| p.keys.contains(&key))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// A cached pod of DaemonSet `daemon_set` (UID) in `namespace` declares `key`.
    pub fn daemon_set_holds(&self, namespace: &str, daemon_set: &str, key: Key) -> bool {
        self.read().pods.values().any(|p| {
            p.namespace == namespace
                && p.daemon_set.as_deref() == Some(daemon_set)
                && p.keys.contains(&key)
        })
    }

    /// Cached pods bound to a node `on_node` accepts that declare host ports.
    pub fn pods_on(&self, on_node: impl Fn(&str) -> bool) -> Vec<PodEntry> {
        let g = self.read();
        let mut out: Vec<PodEntry> = g
            .pods
            .values()
            .filter(|p| !p.keys.is_empty() && p.node.as_deref().is_some_and(&on_node))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// Counts for diagnostics and tests: (claims, pods kept, keys held).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let g = self.read();
        (g.claims.len(), g.pods.len(), g.held.len())
    }
}

impl Held for HostPortIndex {
    fn is_held(&self, key: Key) -> bool {
        self.read().held.contains(key)
    }
}

impl PodView for HostPortIndex {
    fn has_uid(&self, uid: &str) -> bool {
        self.read().pods.contains_key(uid)
    }

    fn with_token(&self, namespace: &str, token: &str) -> Option<PodRef> {
        let g = self.read();
        let uid = g
            .by_token
            .get(&(namespace.to_string(), token.to_string()))?;
        g.pods.get(uid).map(PodEntry::pod_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;
    use poolnet_api::v1alpha1::{
        BoundPod, HostPortClaimSpec, HostPortClaimStatus, HostPortSource, PortProtocol,
    };

    fn pod(uid: &str, token: Option<&str>, host_ports: &[(i32, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{uid}")),
                namespace: Some("team".into()),
                uid: Some(uid.into()),
                labels: token.map(|t| [(RESERVATION_LABEL.to_string(), t.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        host_ports
                            .iter()
                            .map(|&(hp, proto)| ContainerPort {
                                container_port: 8080,
                                host_port: Some(hp),
                                protocol: Some(proto.into()),
                                ..ContainerPort::default()
                            })
                            .collect(),
                    ),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn claim(port: u16, token: &str, bound: Option<&str>) -> HostPortClaim {
        let mut c = HostPortClaim::new(
            &format!("tcp-{port}"),
            HostPortClaimSpec {
                protocol: PortProtocol::TCP,
                port,
                container_port: Some(8080),
                source: HostPortSource::Automatic,
                pod_namespace: "team".into(),
                pod_name: None,
                pod_generate_name: None,
                policy: None,
                request_uid: token.into(),
                daemon_set: None,
                created_at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            },
        );
        c.status = bound.map(|uid| HostPortClaimStatus {
            pod: Some(BoundPod {
                name: "p".into(),
                uid: uid.into(),
            }),
            ..HostPortClaimStatus::default()
        });
        c
    }

    fn ready() -> HostPortIndex {
        let idx = HostPortIndex::new();
        idx.claims_relist_started();
        idx.claims_relist_done();
        idx.pods_relist_started();
        idx.pods_relist_done();
        idx
    }

    #[test]
    fn a_key_is_held_while_a_claim_or_a_pod_holds_it() {
        let idx = ready();
        let c = claim(41000, "t1", None);
        let p = pod("u1", Some("t1"), &[(41000, "TCP")]);
        idx.apply_claim(&c);
        idx.apply_pod(&p);
        assert!(idx.is_held(Key::tcp(41000)));
        idx.delete_claim(&c);
        assert!(idx.is_held(Key::tcp(41000)), "the pod still declares it");
        idx.delete_pod(&p);
        assert!(!idx.is_held(Key::tcp(41000)));
        assert_eq!(idx.sizes(), (0, 0, 0));
    }

    #[test]
    fn finds_pods_by_token_and_uid() {
        let idx = ready();
        idx.apply_pod(&pod("u1", Some("t1"), &[]));
        assert_eq!(
            idx.with_token("team", "t1").map(|p| p.uid),
            Some("u1".into())
        );
        assert!(idx.with_token("other", "t1").is_none());
        assert!(idx.has_uid("u1"));
        // Pods with neither ports nor a token are not kept.
        idx.apply_pod(&pod("u2", None, &[]));
        assert!(!idx.has_uid("u2"));
    }

    #[test]
    fn a_relist_replaces_the_contents() {
        let idx = ready();
        idx.apply_claim(&claim(41000, "t1", None));
        idx.apply_pod(&pod("u1", None, &[(41001, "TCP")]));
        idx.claims_relist_started();
        idx.apply_claim(&claim(41002, "t2", Some("u9")));
        // Until the list completes, the old contents still answer.
        assert!(idx.is_held(Key::tcp(41000)));
        idx.claims_relist_done();
        idx.pods_relist_started();
        idx.pods_relist_done();
        assert!(!idx.is_held(Key::tcp(41000)));
        assert!(!idx.is_held(Key::tcp(41001)));
        assert!(idx.is_held(Key::tcp(41002)));
        assert_eq!(
            idx.claim(Key::tcp(41002)).and_then(|c| c.bound_uid),
            Some("u9".into())
        );
    }

    #[test]
    fn unclaimed_author_ports_inside_managed_ranges() {
        let idx = ready();
        idx.apply_pod(&pod(
            "u1",
            None,
            &[(41000, "TCP"), (80, "TCP"), (41001, "UDP")],
        ));
        idx.apply_claim(&claim(41005, "t", None));
        idx.apply_pod(&pod("u2", None, &[(41005, "TCP")]));
        let managed = [(Protocol::Tcp, PortRange::new(40000, 59999).unwrap())];
        let found: Vec<(String, Key)> = idx
            .unclaimed(&managed)
            .into_iter()
            .map(|(p, k)| (p.uid, k))
            .collect();
        assert_eq!(found, vec![("u1".to_string(), Key::tcp(41000))]);
    }
}
