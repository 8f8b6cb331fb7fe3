//! Model-based test of the whole reservation protocol, in memory: webhook replicas with
//! stale views drive [`Reservation`]s against a store that refuses duplicate names (the API
//! server), admissions crash or fail after answering, pods are deleted slowly (Terminating)
//! and vanish, and repair passes run [`decide`] with a stale pod view and confirm releases
//! against the truth, as the operator does. The model is the set of keys each live pod holds.
//!
//! Checked after every step: S1 (no key held by two live pods), S2/S3 (every key a live pod
//! holds has a claim carrying that pod's token). On every denial: L2 (a denial for lack of
//! ports happens only when the range truly lacks them). At the end, after quiescence: L1
//! (claims are exactly the keys of live pods, all bound).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use poolnet_api::portspec::{PortRange, Protocol};
use proptest::prelude::*;

use super::key::Key;
use super::keyset::KeySet;
use super::repair::{ClaimFacts, PodRef, PodView, ReleasePolicy, ReleaseReason, Repair, decide};
use super::reservation::{AllocError, PortRequest, Reservation, Source, Step};

const RANGE: (u16, u16) = (40000, 40011);
const STATIC_PORT: u16 = 40005;
/// Ticks after which the API server has given up on an admission (its request timeout).
const TIMEOUT: u64 = 5;
/// Live re-reads an admission may make before it gives up (as the webhook).
const MAX_REFRESHES: u32 = 3;
const POLICY: ReleasePolicy = ReleasePolicy {
    grace: Duration::from_secs(8),
    confirm_after: Duration::from_secs(2),
};

#[derive(Debug, Clone)]
enum Op {
    /// A pod creation reaches webhook replica `replica`, asking for `auto` ports (and the
    /// static port if `with_static`).
    Begin {
        replica: usize,
        auto: usize,
        with_static: bool,
    },
    /// One API call of an in-flight admission; `persist` says whether the API server goes on
    /// to store the pod once the webhook answers.
    Advance {
        which: usize,
        persist: bool,
    },
    /// The replica serving an admission dies mid-way.
    Crash {
        which: usize,
    },
    /// A replica's cache catches up.
    RefreshView {
        replica: usize,
    },
    /// The repair loop's pod cache catches up.
    RefreshPods,
    /// A pod is deleted (it becomes Terminating and still holds its ports).
    Delete {
        which: usize,
    },
    /// A Terminating pod disappears.
    Vanish {
        which: usize,
    },
    Repair,
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..3usize, prop::bool::weighted(0.2))
            .prop_map(|(replica, auto, with_static)| Op::Begin { replica, auto, with_static }),
        8 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(which, persist)| Op::Advance { which, persist }),
        1 => any::<usize>().prop_map(|which| Op::Crash { which }),
        2 => (0..3usize).prop_map(|replica| Op::RefreshView { replica }),
        1 => Just(Op::RefreshPods),
        2 => any::<usize>().prop_map(|which| Op::Delete { which }),
        2 => any::<usize>().prop_map(|which| Op::Vanish { which }),
        2 => Just(Op::Repair),
        2 => Just(Op::Tick),
    ]
}

#[derive(Debug, Clone)]
struct Claim {
    token: String,
    namespace: String,
    bound: Option<String>,
    created: u64,
    marked: Option<u64>,
}

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    token: String,
    keys: Vec<Key>,
    terminating: bool,
}

struct InFlight {
    token: String,
    replica: usize,
    started: u64,
    reservation: Reservation,
    refreshes: u32,
}

#[derive(Default, Clone)]
struct PodSnapshot {
    uids: BTreeSet<String>,
    tokens: BTreeMap<(String, String), PodRef>,
}

impl PodView for PodSnapshot {
    fn has_uid(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }
    fn with_token(&self, namespace: &str, token: &str) -> Option<PodRef> {
        self.tokens
            .get(&(namespace.to_string(), token.to_string()))
            .cloned()
    }
}

#[derive(Default)]
struct World {
    now: u64,
    next_id: u64,
    claims: BTreeMap<Key, Claim>,
    /// uid → pod
    pods: BTreeMap<String, Pod>,
    views: [KeySet; 3],
    pod_view: PodSnapshot,
    inflight: Vec<InFlight>,
}

const NS: &str = "team";

fn range() -> PortRange {
    PortRange::new(RANGE.0, RANGE.1).unwrap()
}

impl World {
    fn truth(&self) -> KeySet {
        self.claims
            .keys()
            .copied()
            .chain(self.pods.values().flat_map(|p| p.keys.iter().copied()))
            .collect()
    }

    fn snapshot_pods(&self) -> PodSnapshot {
        let mut s = PodSnapshot::default();
        for (uid, p) in &self.pods {
            s.uids.insert(uid.clone());
            s.tokens.insert(
                (NS.to_string(), p.token.clone()),
                PodRef {
                    namespace: NS.into(),
                    name: p.name.clone(),
                    uid: uid.clone(),
                },
            );
        }
        s
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Begin {
                replica,
                auto,
                with_static,
            } => {
                self.next_id += 1;
                let token = format!("req-{}", self.next_id);
                let mut requests: Vec<PortRequest> = (0..auto)
                    .map(|i| PortRequest {
                        container_port: 8080 + i as u16,
                        protocol: Protocol::Tcp,
                        source: Source::Auto(range()),
                        origin: "HostPortPolicy team/echo".into(),
                    })
                    .collect();
                if with_static {
                    requests.push(PortRequest {
                        container_port: 53,
                        protocol: Protocol::Udp,
                        source: Source::Static(STATIC_PORT),
                        origin: "HostPortPolicy team/dns".into(),
                    });
                }
                let seed = super::reservation::seed_of(&[NS, "echo-", &token]);
                self.inflight.push(InFlight {
                    token,
                    replica,
                    started: self.now,
                    reservation: Reservation::new(requests, seed).with_max_conflicts(4),
                    refreshes: 0,
                });
            }
            Op::Advance { which, persist } => {
                if self.inflight.is_empty() {
                    return Ok(());
                }
                let i = which % self.inflight.len();
                self.advance(i, persist)?;
            }
            Op::Crash { which } => {
                if !self.inflight.is_empty() {
                    let i = which % self.inflight.len();
                    self.inflight.swap_remove(i);
                }
            }
            Op::RefreshView { replica } => self.views[replica] = self.truth(),
            Op::RefreshPods => self.pod_view = self.snapshot_pods(),
            Op::Delete { which } => {
                let live: Vec<String> = self.pods.keys().cloned().collect();
                if !live.is_empty()
                    && let Some(p) = self.pods.get_mut(&live[which % live.len()])
                {
                    p.terminating = true;
                }
            }
            Op::Vanish { which } => {
                let terminating: Vec<String> = self
                    .pods
                    .iter()
                    .filter(|(_, p)| p.terminating)
                    .map(|(uid, _)| uid.clone())
                    .collect();
                if !terminating.is_empty() {
                    self.pods.remove(&terminating[which % terminating.len()]);
                }
            }
            Op::Repair => self.repair(),
            Op::Tick => {
                self.now += 1;
                // The API server gives up on admissions older than its timeout.
                let now = self.now;
                self.inflight.retain(|f| now - f.started <= TIMEOUT);
            }
        }
        self.check_safety()
    }

    fn advance(&mut self, i: usize, persist: bool) -> Result<(), TestCaseError> {
        let replica = self.inflight[i].replica;
        let mut step = self.inflight[i].reservation.next(&self.views[replica]);
        let mut fresh = false;
        if step.is_err() && self.inflight[i].refreshes < MAX_REFRESHES {
            // Before denying, the webhook re-reads the claims live and tries again at once;
            // only a failure against that fresh read stands as it is.
            self.inflight[i].refreshes += 1;
            self.inflight[i].reservation.refresh();
            self.views[replica] = self.truth();
            step = self.inflight[i].reservation.next(&self.views[replica]);
            fresh = true;
        }
        match step {
            Ok(Step::Create(keys)) => {
                // One API call per step, so other admissions interleave between calls.
                let key = keys[0];
                let token = self.inflight[i].token.clone();
                match self.claims.get(&key) {
                    Some(c) if c.token == token => self.inflight[i].reservation.created(key),
                    Some(_) => self.inflight[i].reservation.conflicted(key),
                    None => {
                        self.claims.insert(
                            key,
                            Claim {
                                token,
                                namespace: NS.into(),
                                bound: None,
                                created: self.now,
                                marked: None,
                            },
                        );
                        self.inflight[i].reservation.created(key);
                    }
                }
            }
            Ok(Step::Done(assignments)) => {
                let f = self.inflight.swap_remove(i);
                if persist && self.now - f.started <= TIMEOUT {
                    self.next_id += 1;
                    let uid = format!("uid-{}", self.next_id);
                    self.pods.insert(
                        uid,
                        Pod {
                            name: format!("echo-{}", self.next_id),
                            token: f.token,
                            keys: assignments.iter().map(|a| a.key()).collect(),
                            terminating: false,
                        },
                    );
                }
            }
            Err(e) => {
                let f = self.inflight.swap_remove(i);
                let e = if fresh {
                    e
                } else {
                    AllocError::Contended {
                        conflicts: f.reservation.conflicts(),
                    }
                };
                for k in f.reservation.reserved_keys() {
                    if self.claims.get(&k).is_some_and(|c| c.token == f.token) {
                        self.claims.remove(&k);
                    }
                }
                // L2: a denial for lack of ports is true at the time it is given (its own
                // claims were just rolled back, so they count as free).
                if let AllocError::Exhausted { .. } = e {
                    let truth = self.truth();
                    let free = range().len() - truth.count_in(Protocol::Tcp, range());
                    let auto = f
                        .reservation
                        .requests()
                        .iter()
                        .filter(|r| matches!(r.source, Source::Auto(_)))
                        .count() as u32;
                    prop_assert!(
                        free < auto,
                        "denied with {free} free ports for {auto} requests: {e}"
                    );
                }
                if let AllocError::StaticTaken { port, .. } = e {
                    prop_assert!(
                        self.truth().contains(Key::udp(port))
                            || self.claims.contains_key(&Key::udp(port))
                    );
                }
            }
        }
        Ok(())
    }

    fn repair(&mut self) {
        let now = self.now;
        let keys: Vec<Key> = self.claims.keys().copied().collect();
        for key in keys {
            let Some(c) = self.claims.get(&key).cloned() else {
                continue;
            };
            let facts = ClaimFacts {
                key,
                token: &c.token,
                pod_namespace: &c.namespace,
                bound_uid: c.bound.as_deref(),
                age: Duration::from_secs(now - c.created),
                marked_for: c.marked.map(|m| Duration::from_secs(now - m)),
            };
            match decide(&facts, &self.pod_view, &POLICY) {
                Repair::Keep => {}
                Repair::Bind(pod) => {
                    if let Some(c) = self.claims.get_mut(&key) {
                        c.bound = Some(pod.uid);
                    }
                }
                Repair::Mark => {
                    if let Some(c) = self.claims.get_mut(&key) {
                        c.marked = Some(now);
                    }
                }
                Repair::Release(ReleaseReason::PodGone) => {
                    // Confirmed live: the pod with that UID is gone.
                    if !self.pods.contains_key(c.bound.as_deref().unwrap_or("")) {
                        self.claims.remove(&key);
                    }
                }
                Repair::Release(ReleaseReason::NeverBound) => {
                    // Confirmed live: no pod carries the token.
                    if !self.pods.values().any(|p| p.token == c.token) {
                        self.claims.remove(&key);
                    }
                }
            }
        }
    }

    fn check_safety(&self) -> Result<(), TestCaseError> {
        let mut holder: BTreeMap<Key, &str> = BTreeMap::new();
        for (uid, p) in &self.pods {
            for k in &p.keys {
                if let Some(other) = holder.insert(*k, uid) {
                    prop_assert!(false, "S1: {k} held by {other} and {uid}");
                }
                let claim = self.claims.get(k);
                prop_assert!(
                    claim.is_some_and(|c| c.token == p.token),
                    "S2/S3: {k} held by live pod {uid} has claim {claim:?}"
                );
            }
        }
        Ok(())
    }

    /// Every admission ends, time passes, caches catch up, repair runs until stable.
    fn quiesce(&mut self) -> Result<(), TestCaseError> {
        self.inflight.clear();
        self.now += POLICY.grace.as_secs() + TIMEOUT;
        for _ in 0..3 {
            self.pod_view = self.snapshot_pods();
            self.repair();
            self.now += POLICY.confirm_after.as_secs();
        }
        self.check_safety()?;
        let held: BTreeSet<Key> = self
            .pods
            .values()
            .flat_map(|p| p.keys.iter().copied())
            .collect();
        let claimed: BTreeSet<Key> = self.claims.keys().copied().collect();
        prop_assert_eq!(
            &claimed,
            &held,
            "L1: claims are exactly the keys of live pods"
        );
        for c in self.claims.values() {
            prop_assert!(c.bound.is_some(), "L1: claim {c:?} never bound");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reservation_protocol_is_safe_and_live(ops in prop::collection::vec(op(), 1..300)) {
        let mut world = World::default();
        for op in ops {
            world.apply(op)?;
        }
        world.quiesce()?;
    }
}

#[test]
fn a_pod_that_is_terminating_keeps_its_ports() {
    let mut w = World::default();
    w.apply(Op::Begin {
        replica: 0,
        auto: 1,
        with_static: false,
    })
    .unwrap();
    for _ in 0..3 {
        w.apply(Op::Advance {
            which: 0,
            persist: true,
        })
        .unwrap();
    }
    assert_eq!(w.pods.len(), 1);
    w.apply(Op::RefreshPods).unwrap();
    w.apply(Op::Repair).unwrap();
    w.apply(Op::Delete { which: 0 }).unwrap();
    w.apply(Op::RefreshPods).unwrap();
    w.apply(Op::Repair).unwrap();
    assert_eq!(w.claims.len(), 1, "Terminating still holds");
    w.apply(Op::Vanish { which: 0 }).unwrap();
    w.apply(Op::RefreshPods).unwrap();
    w.apply(Op::Repair).unwrap();
    assert!(w.claims.is_empty(), "gone releases");
}
