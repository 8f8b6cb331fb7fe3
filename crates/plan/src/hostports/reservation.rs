//! Choosing host ports for one admission, as a sans-I/O state machine.
//!
//! The webhook drives it: [`Reservation::next`] proposes keys, the webhook creates one claim
//! object per key, and reports back [`Reservation::created`] or [`Reservation::conflicted`]
//! (the API server already holds a claim of that name). Only when every key is created does
//! `next` return [`Step::Done`], so a patch is never built from an unconfirmed key (S2). The
//! same machine runs under the model-based tests with an in-memory store, so the logic that
//! is proven there is the logic that runs in the webhook.
//!
//! Choice is deterministic for a given seed and held set, and spread: every port request
//! probes its range in its own pseudo-random order (double hashing, seeded by the request),
//! so webhook replicas working from the same slightly stale cache rarely propose the same key.

use std::collections::BTreeSet;
use std::fmt;

use poolnet_api::portspec::{PortRange, Protocol};

use super::key::Key;
use super::keyset::Held;

/// Where a host port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any free port of the range.
    Auto(PortRange),
    /// Exactly this port (a policy's static port, or one the pod's author wrote).
    Static(u16),
}

/// One container port that needs a host port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortRequest {
    pub container_port: u16,
    pub protocol: Protocol,
    pub source: Source,
    /// Who asked, for messages: `HostPortPolicy team-a/echo`, `annotation …`, `pod spec`.
    pub origin: String,
}

/// A host port given to a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
}

impl Assignment {
    pub fn key(&self) -> Key {
        Key::new(self.protocol, self.host_port)
    }
}

/// Why no ports could be reserved. Messages name the requester, the range and the way out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error(
        "no free {protocol} host port in {range} for containerPort {container_port} ({origin}): \
         all {total} ports of the range are held; delete pods that hold ports in this range or \
         widen the range (spec.hostPortRange of the HostPortPolicy)"
    )]
    Exhausted {
        origin: String,
        container_port: u16,
        protocol: Protocol,
        range: PortRange,
        total: u32,
    },
    #[error(
        "static host port {port}/{protocol} for containerPort {container_port} ({origin}) is \
         already held by another pod (kubectl get hostportclaim {protocol}-{port}); host ports \
         are unique across the cluster: choose another port or delete the pod holding it"
    )]
    StaticTaken {
        origin: String,
        container_port: u16,
        protocol: Protocol,
        port: u16,
    },
    #[error(
        "gave up after {conflicts} host ports proposed for this pod were taken concurrently by \
         other pods; retry the request"
    )]
    Contended { conflicts: u32 },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a claim for each key (in any order, concurrently if wished), then report each
    /// outcome and call [`Reservation::next`] again.
    Create(Vec<Key>),
    /// Every request has a durably reserved key; in request order.
    Done(Vec<Assignment>),
}

/// Default bound on conflicts before giving up; the driver may refresh its view and retry.
pub const DEFAULT_MAX_CONFLICTS: u32 = 32;

/// The allocation of one admission request.
#[derive(Debug, Clone)]
pub struct Reservation {
    requests: Vec<PortRequest>,
    chosen: Vec<Option<Key>>,
    reserved: Vec<bool>,
    /// Keys the store refused: held by others whatever the driver's view says.
    refused: BTreeSet<Key>,
    seed: u64,
    conflicts: u32,
    max_conflicts: u32,
}

impl Reservation {
    /// `seed` spreads choices; derive it from the request with [`seed_of`].
    pub fn new(requests: Vec<PortRequest>, seed: u64) -> Self {
        let n = requests.len();
        Self {
            requests,
            chosen: vec![None; n],
            reserved: vec![false; n],
            refused: BTreeSet::new(),
            seed,
            conflicts: 0,
            max_conflicts: DEFAULT_MAX_CONFLICTS,
        }
    }

    pub fn with_max_conflicts(mut self, max: u32) -> Self {
        self.max_conflicts = max;
        self
    }

    pub fn requests(&self) -> &[PortRequest] {
        &self.requests
    }

    /// Conflicts reported so far.
    pub fn conflicts(&self) -> u32 {
        self.conflicts
    }

    /// The request `key` is proposed or reserved for, by index into [`Reservation::requests`].
    pub fn request_of(&self, key: Key) -> Option<usize> {
        self.chosen.iter().position(|k| *k == Some(key))
    }

    /// Keys whose claims this reservation created (what to roll back if it is abandoned).
    pub fn reserved_keys(&self) -> Vec<Key> {
        self.chosen
            .iter()
            .zip(&self.reserved)
            .filter_map(|(k, &r)| if r { *k } else { None })
            .collect()
    }

    /// Proposes keys for every request that has none, or reports completion. `held` is the
    /// driver's view of keys held by others (claims and pods' own host ports); it may be
    /// stale: the store has the last word through `conflicted`.
    pub fn next(&mut self, held: &impl Held) -> Result<Step, AllocError> {
        if self.conflicts > self.max_conflicts {
            return Err(AllocError::Contended {
                conflicts: self.conflicts,
            });
        }
        for i in 0..self.requests.len() {
            if self.chosen[i].is_none() {
                self.chosen[i] = Some(self.choose(i, held)?);
            }
        }
        let pending: Vec<Key> = self
            .chosen
            .iter()
            .zip(&self.reserved)
            .filter_map(|(k, &r)| if r { None } else { *k })
            .collect();
        if !pending.is_empty() {
            return Ok(Step::Create(pending));
        }
        Ok(Step::Done(
            self.requests
                .iter()
                .zip(&self.chosen)
                .filter_map(|(r, k)| {
                    k.map(|k| Assignment {
                        container_port: r.container_port,
                        protocol: r.protocol,
                        host_port: k.port,
                    })
                })
                .collect(),
        ))
    }

    /// The driver's view was just refreshed from the API server: forget refused keys (the
    /// fresh view holds those still taken) and the conflict count, keep what is reserved.
    pub fn refresh(&mut self) {
        self.refused.clear();
        self.conflicts = 0;
    }

    /// The claim for `key` was created by this reservation (or found to be its own).
    pub fn created(&mut self, key: Key) {
        for (k, r) in self.chosen.iter().zip(self.reserved.iter_mut()) {
            if *k == Some(key) {
                *r = true;
            }
        }
    }

    /// A claim for `key` already exists and belongs to someone else: choose again.
    pub fn conflicted(&mut self, key: Key) {
        self.refused.insert(key);
        self.conflicts += 1;
        for (k, r) in self.chosen.iter_mut().zip(&self.reserved) {
            if *k == Some(key) && !*r {
                *k = None;
            }
        }
    }

    fn taken(&self, i: usize, key: Key, held: &impl Held) -> bool {
        held.is_held(key)
            || self.refused.contains(&key)
            || self
                .chosen
                .iter()
                .enumerate()
                .any(|(j, k)| j != i && *k == Some(key))
    }

    fn choose(&self, i: usize, held: &impl Held) -> Result<Key, AllocError> {
        let req = &self.requests[i];
        match req.source {
            Source::Static(port) => {
                let key = Key::new(req.protocol, port);
                if self.taken(i, key, held) {
                    Err(AllocError::StaticTaken {
                        origin: req.origin.clone(),
                        container_port: req.container_port,
                        protocol: req.protocol,
                        port,
                    })
                } else {
                    Ok(key)
                }
            }
            Source::Auto(range) => probe_order(range, mix(self.seed, i as u64))
                .map(|port| Key::new(req.protocol, port))
                .find(|&key| !self.taken(i, key, held))
                .ok_or_else(|| AllocError::Exhausted {
                    origin: req.origin.clone(),
                    container_port: req.container_port,
                    protocol: req.protocol,
                    range,
                    total: range.len(),
                }),
        }
    }
}

/// Every port of `range` exactly once, in an order fixed by `seed`: start at `h1 mod n` and
/// step by a stride coprime with `n` (double hashing, so two seeds share no long runs).
pub fn probe_order(range: PortRange, seed: u64) -> impl Iterator<Item = u16> {
    let n = u64::from(range.len());
    let start = seed % n;
    let stride = if n <= 1 {
        1
    } else {
        let mut s = 1 + splitmix(seed) % (n - 1);
        while gcd(s, n) != 1 {
            s = if s + 1 >= n { 1 } else { s + 1 };
        }
        s
    };
    let base = u64::from(range.start());
    // Both terms are < n ≤ 65535, so the arithmetic cannot overflow and the port fits a u16.
    (0..n).map(move |k| (base + (start + k * stride) % n) as u16)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(seed: u64, i: u64) -> u64 {
    splitmix(seed ^ splitmix(i))
}

/// A stable seed from request facts (namespace, name or generateName, request UID): FNV-1a
/// then a finaliser. Stable across processes and releases, unlike std's hasher.
pub fn seed_of(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    splitmix(h)
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}={}",
            self.container_port, self.protocol, self.host_port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostports::keyset::KeySet;
    use proptest::prelude::*;

    fn range(a: u16, b: u16) -> PortRange {
        PortRange::new(a, b).unwrap()
    }

    fn auto(container_port: u16, r: PortRange) -> PortRequest {
        PortRequest {
            container_port,
            protocol: Protocol::Tcp,
            source: Source::Auto(r),
            origin: "HostPortPolicy team/echo".into(),
        }
    }

    /// Runs a reservation against a store that is exactly `held` (no staleness).
    fn run(mut r: Reservation, store: &mut KeySet) -> Result<Vec<Assignment>, AllocError> {
        loop {
            match r.next(&*store)? {
                Step::Done(a) => return Ok(a),
                Step::Create(keys) => {
                    for k in keys {
                        if store.insert(k) {
                            r.created(k);
                        } else {
                            r.conflicted(k);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn echoserver_gets_two_distinct_ports_in_the_aks_range() {
        let r = range(40000, 59999);
        let mut store = KeySet::new();
        let a = run(
            Reservation::new(
                vec![auto(8080, r), auto(8443, r)],
                seed_of(&["ns", "echo-"]),
            ),
            &mut store,
        )
        .unwrap();
        assert_eq!(a.len(), 2);
        assert_ne!(a[0].host_port, a[1].host_port);
        assert!(a.iter().all(|a| r.contains(a.host_port)));
        assert_eq!((a[0].container_port, a[1].container_port), (8080, 8443));
    }

    #[test]
    fn exhaustion_names_origin_and_range() {
        let r = range(50000, 50001);
        let mut store = KeySet::new();
        run(
            Reservation::new(vec![auto(1, r), auto(2, r)], 7),
            &mut store,
        )
        .unwrap();
        let err = run(Reservation::new(vec![auto(3, r)], 8), &mut store).unwrap_err();
        assert!(matches!(err, AllocError::Exhausted { total: 2, .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("50000-50001") && msg.contains("HostPortPolicy team/echo"),
            "{msg}"
        );
    }

    #[test]
    fn static_port_taken_is_refused_not_moved() {
        let mut store: KeySet = [Key::tcp(30000)].into_iter().collect();
        let req = PortRequest {
            source: Source::Static(30000),
            ..auto(53, range(1, 2))
        };
        let err = run(Reservation::new(vec![req], 1), &mut store).unwrap_err();
        assert!(err.to_string().contains("hostportclaim tcp-30000"), "{err}");
    }

    #[test]
    fn stale_view_costs_conflicts_only() {
        let r = range(40000, 40009);
        // The store holds 9 of 10 ports; the driver's view is empty.
        let store: KeySet = (40000..40009).map(Key::tcp).collect();
        let mut res = Reservation::new(vec![auto(80, r)], 3);
        let empty = KeySet::new();
        let mut written = store.clone();
        let got = loop {
            match res.next(&empty).unwrap() {
                Step::Done(a) => break a,
                Step::Create(keys) => {
                    for k in keys {
                        if written.insert(k) {
                            res.created(k);
                        } else {
                            res.conflicted(k);
                        }
                    }
                }
            }
        };
        assert_eq!(got[0].host_port, 40009);
        assert!(res.conflicts() <= 9);
    }

    #[test]
    fn contention_is_bounded() {
        let r = range(1, 1000);
        let mut res = Reservation::new(vec![auto(80, r)], 3).with_max_conflicts(2);
        let empty = KeySet::new();
        for _ in 0..3 {
            let Ok(Step::Create(keys)) = res.next(&empty) else {
                panic!()
            };
            res.conflicted(keys[0]);
        }
        assert_eq!(
            res.next(&empty),
            Err(AllocError::Contended { conflicts: 3 })
        );
    }

    proptest! {
        #[test]
        fn probe_order_is_a_permutation(a in 1u16..=65535, width in 0u16..3000, seed in any::<u64>()) {
            let r = range(a, a.saturating_add(width));
            let mut ports: Vec<u16> = probe_order(r, seed).collect();
            prop_assert_eq!(ports.len() as u32, r.len());
            ports.sort_unstable();
            ports.dedup();
            prop_assert_eq!(ports.len() as u32, r.len());
            prop_assert!(ports.iter().all(|&p| r.contains(p)));
        }

        #[test]
        fn deterministic_for_seed_and_view(seed in any::<u64>(), held in prop::collection::btree_set(40000u16..40100, 0..50)) {
            let r = range(40000, 40099);
            let view: KeySet = held.iter().copied().map(Key::tcp).collect();
            let mut a = Reservation::new(vec![auto(1, r), auto(2, r)], seed);
            let mut b = Reservation::new(vec![auto(1, r), auto(2, r)], seed);
            let sa = a.next(&view);
            let sb = b.next(&view);
            prop_assert_eq!(&sa, &sb);
            if let Ok(Step::Create(keys)) = sa {
                prop_assert!(keys.iter().all(|k| !view.contains(*k)));
            }
        }

        #[test]
        fn never_exhausted_while_enough_ports_are_free(
            seed in any::<u64>(),
            held in prop::collection::btree_set(40000u16..40064, 0..64),
            n in 1usize..4,
        ) {
            let r = range(40000, 40063);
            let mut store: KeySet = held.iter().copied().map(Key::tcp).collect();
            let before = store.clone();
            let reqs = (0..n).map(|i| auto(1000 + i as u16, r)).collect();
            match run(Reservation::new(reqs, seed), &mut store) {
                Ok(a) => {
                    prop_assert_eq!(a.len(), n);
                    for x in &a {
                        prop_assert!(!before.contains(x.key()));
                    }
                }
                Err(AllocError::Exhausted { .. }) => prop_assert!(64 - held.len() < n),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
