//! Host-port blocks, the pure part: what one webhook replica knows of the blocks it holds,
//! the keys it gave out that no stored pod shows yet, and when another holder counts as gone.
//! `docs/hostport-blocks.md` gives the protocol and its safety argument; the operator's
//! `hostports::blocks` drives this against the API server.
//!
//! Time is the replica's own monotonic clock, as a [`Duration`] since any fixed instant
//! (the caller's choice); nothing here compares clocks of two machines.
//!
//! - [`Book::grant`] gives keys from the blocks this replica holds, only while its Lease is
//!   valid by its own clock ([`Book::renewed`]), and never a key the view says is held, nor
//!   one given to an admission whose pod no cache shows yet ([`Pending`]).
//! - [`Book::settle`] drops pending grants once the caches show their pods (from then on the
//!   pod holds the key in the view), and lists those due for a live check.
//! - [`Book::retire_idle`] gives back blocks nothing uses, atomically with respect to grants.
//! - [`HolderWatch`] decides when another replica's block may be taken over: its holder's
//!   Lease unchanged (or gone, or renewed by someone else) for the Lease's duration plus the
//!   quarantine, by this replica's clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use poolnet_api::portspec::{PortRange, Protocol};

use super::key::Key;
use super::keyset::{Held, KeySet};
use super::reservation::{AllocError, Assignment, PortRequest, Source};

/// Ports per block (aligned: a block starts at a multiple of it).
pub const BLOCK_SIZE: u16 = poolnet_api::v1alpha1::host_port_block::BLOCK_SIZE;

/// The API server's bound on a create request, admission chain and storage included
/// (`docs/hostports.md`, "Orphan claims"): a pod admitted at t is stored by t + this, or never.
pub const CREATE_DEADLINE: Duration = Duration::from_secs(34);

/// How long a taker waits past the holder's Lease before reusing its block's keys: the
/// create deadline plus a margin for clock rates and a write already sent.
pub const QUARANTINE: Duration = Duration::from_secs(39);

/// One block: `BLOCK_SIZE` consecutive ports of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId {
    pub protocol: Protocol,
    pub start: u16,
}

impl BlockId {
    /// The block holding `key`.
    pub fn of(key: Key) -> Self {
        Self {
            protocol: key.protocol,
            start: poolnet_api::v1alpha1::host_port_block::block_start(key.port),
        }
    }

    /// Its ports (port 0 of the first block is never a host port).
    pub fn span(self) -> PortRange {
        let first = self.start.max(1);
        let last = self.start + (BLOCK_SIZE - 1);
        PortRange::new(first, last).unwrap_or_else(|| unreachable!("aligned blocks are ranges"))
    }

    pub fn contains(self, key: Key) -> bool {
        key.protocol == self.protocol && Self::of(key).start == self.start
    }

    /// The object's name, e.g. `tcp-40000`.
    pub fn name(self) -> String {
        poolnet_api::v1alpha1::host_port_block::block_name(self.protocol, self.start)
    }

    /// Every block with a port in `range` on `protocol`, in port order.
    pub fn covering(protocol: Protocol, range: PortRange) -> impl Iterator<Item = BlockId> {
        let first = poolnet_api::v1alpha1::host_port_block::block_start(range.start());
        let last = poolnet_api::v1alpha1::host_port_block::block_start(range.end());
        (u32::from(first)..=u32::from(last))
            .step_by(usize::from(BLOCK_SIZE))
            .map(move |start| BlockId {
                protocol,
                start: start as u16,
            })
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why keys given out are not yet visible as held in the view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pending {
    /// This replica admitted a pod (reservation token, pod namespace); it holds the keys
    /// once a cache shows a pod carrying the token, or never if none is ever stored.
    Admission { namespace: String, token: String },
    /// A pod found by a live list when a block was taken, not in the cache yet.
    Pod {
        namespace: String,
        name: String,
        uid: String,
    },
    /// A claim found by a live list when a block was taken, not in the cache yet.
    Claim { name: String },
}

/// What the caches show, for [`Book::settle`].
pub trait Seen {
    /// A cached pod in `namespace` carries reservation `token`.
    fn admission_stored(&self, namespace: &str, token: &str) -> bool;
    /// The pod with this UID is cached.
    fn pod_cached(&self, uid: &str) -> bool;
    /// The claim is cached.
    fn claim_cached(&self, name: &str) -> bool;
}

#[derive(Debug, Clone)]
struct Grant {
    keys: Vec<Key>,
    assignments: Vec<Assignment>,
    /// When a live read must confirm the grant is still needed (or drop it).
    check_at: Duration,
}

#[derive(Debug, Clone)]
struct HeldBlock {
    last_used: Duration,
}

/// The Lease timing a holder works by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `leaseDurationSeconds` written in the Lease.
    pub duration: Duration,
    /// Renew this often.
    pub renew_every: Duration,
    /// Stop answering this long before the Lease would expire (clock-rate margin).
    pub margin: Duration,
    /// Wait past the holder's last renewal plus `duration` before reusing its keys: at
    /// least [`CREATE_DEADLINE`] in production ([`QUARANTINE`]); tests may shorten it.
    pub quarantine: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            margin: Duration::from_secs(5),
            quarantine: QUARANTINE,
        }
    }
}

impl LeaseTiming {
    /// How long a taker watches a holder's Lease unchanged before taking its block.
    pub fn takeover_after(&self) -> Duration {
        self.duration + self.quarantine
    }
}

/// Why a grant could not be made from the blocks held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// The Lease is not valid by this replica's clock: it gives nothing from any block.
    NotHolding,
    /// No free key for request `request` (index into the requests) in the blocks held.
    NoRoom { request: usize },
    /// A static key lies in a block this replica does not hold.
    NotMine { request: usize, block: BlockId },
}

/// One replica's blocks and the keys it gave out that the caches do not show yet.
#[derive(Debug, Default)]
pub struct Book {
    blocks: BTreeMap<BlockId, HeldBlock>,
    pending: HashMap<Pending, Grant>,
    /// Keys of `pending`, counted (two pendings may name one key: a pod and its admission).
    pending_keys: HashMap<Key, u32>,
    /// The same keys as a bitmap: a block's free keys are one word operation.
    pending_set: KeySet,
    /// The Lease is valid until then (renew start + duration - margin).
    valid_until: Option<Duration>,
    timing: LeaseTiming,
}

impl Book {
    pub fn new(timing: LeaseTiming) -> Self {
        Self {
            timing,
            ..Self::default()
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// A renewal of this replica's Lease, sent at `sent_at`, succeeded.
    pub fn renewed(&mut self, sent_at: Duration) {
        let until = sent_at + self.timing.duration.saturating_sub(self.timing.margin);
        self.valid_until = Some(self.valid_until.map_or(until, |u| u.max(until)));
    }

    /// Whether blocks may be answered from at `now`.
    pub fn holding(&self, now: Duration) -> bool {
        self.valid_until.is_some_and(|u| now < u)
    }

    /// The Lease lapsed (not renewed in time): every block is forgotten and must be taken
    /// again like anyone else's, after the quarantine. Pending grants stay: their keys may
    /// still be stored by the API server, and a block taken again must not reuse them.
    pub fn lapse(&mut self) -> Vec<BlockId> {
        self.valid_until = None;
        std::mem::take(&mut self.blocks).into_keys().collect()
    }

    /// This replica now holds `block` (it wrote itself as holder).
    pub fn add_block(&mut self, block: BlockId, now: Duration) {
        self.blocks.insert(block, HeldBlock { last_used: now });
    }

    pub fn holds(&self, block: BlockId) -> bool {
        self.blocks.contains_key(&block)
    }

    pub fn blocks(&self) -> Vec<BlockId> {
        self.blocks.keys().copied().collect()
    }

    /// Keys given out and not yet shown by the caches.
    pub fn is_pending(&self, key: Key) -> bool {
        self.pending_set.contains(key)
    }

    /// Free keys of `block` within `range` (not in `view`, not pending), as bits.
    fn free_bits(&self, block: BlockId, range: PortRange, view: &impl Held) -> u64 {
        let span = block.span();
        let lo = span.start().max(range.start());
        let hi = span.end().min(range.end());
        if lo > hi {
            return 0;
        }
        let mask = (u64::MAX >> (63 - (hi - block.start))) & (u64::MAX << (lo - block.start));
        let used = view.block_bits(block.protocol, block.start)
            | self.pending_set.block_bits(block.protocol, block.start);
        !used & mask
    }

    /// The assignments granted to admission `token` in `namespace`, if this replica still
    /// remembers them (a re-invocation of the same admission gets the same ports: S4).
    pub fn granted(&self, namespace: &str, token: &str) -> Option<Vec<Assignment>> {
        self.pending
            .get(&Pending::Admission {
                namespace: namespace.to_string(),
                token: token.to_string(),
            })
            .map(|g| g.assignments.clone())
    }

    /// Gives every request a key from the blocks held, or nothing. Static requests must lie
    /// in a held block and be free (or `shared(key)`: held only by pods that may share it);
    /// automatic ones take the first free key of their range in the held blocks, starting
    /// at a block chosen by `seed` so concurrent admissions spread. Free means: not in
    /// `view`, not pending. On success the keys are pending under (namespace, token) until
    /// `check_after` from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &mut self,
        namespace: &str,
        token: &str,
        requests: &[PortRequest],
        view: &impl Held,
        shared: impl Fn(Key) -> bool,
        seed: u64,
        now: Duration,
        check_after: Duration,
    ) -> Result<Vec<Assignment>, Shortfall> {
        if !self.holding(now) {
            return Err(Shortfall::NotHolding);
        }
        let mut taken: BTreeSet<Key> = BTreeSet::new();
        let mut out = Vec::with_capacity(requests.len());
        // Static requests first: they have one choice each.
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| matches!(requests[i].source, Source::Auto(_)));
        let mut chosen: Vec<Option<Assignment>> = vec![None; requests.len()];
        for i in order {
            let r = &requests[i];
            let key = match r.source {
                Source::Static(port) => {
                    let key = Key::new(r.protocol, port);
                    let block = BlockId::of(key);
                    if !self.blocks.contains_key(&block) {
                        return Err(Shortfall::NotMine { request: i, block });
                    }
                    let free = !taken.contains(&key)
                        && !self.is_pending(key)
                        && (!view.is_held(key) || shared(key));
                    if !free {
                        return Err(Shortfall::NoRoom { request: i });
                    }
                    key
                }
                Source::Auto(range) => self
                    .free_in(r.protocol, range, view, &taken, seed)
                    .ok_or(Shortfall::NoRoom { request: i })?,
            };
            taken.insert(key);
            chosen[i] = Some(Assignment {
                container_port: r.container_port,
                protocol: r.protocol,
                host_port: key.port,
            });
        }
        out.extend(chosen.into_iter().flatten());
        for k in &taken {
            if let Some(b) = self.blocks.get_mut(&BlockId::of(*k)) {
                b.last_used = now;
            }
        }
        self.add_pending(
            Pending::Admission {
                namespace: namespace.to_string(),
                token: token.to_string(),
            },
            taken.into_iter().collect(),
            out.clone(),
            now + check_after,
        );
        Ok(out)
    }

    /// What [`Book::grant`] would give, with nothing remembered (dry runs).
    pub fn preview(
        &self,
        requests: &[PortRequest],
        view: &impl Held,
        seed: u64,
        now: Duration,
    ) -> Result<Vec<Assignment>, Shortfall> {
        if !self.holding(now) {
            return Err(Shortfall::NotHolding);
        }
        let mut taken = BTreeSet::new();
        let mut out = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let key = match r.source {
                Source::Static(port) => Key::new(r.protocol, port),
                Source::Auto(range) => self
                    .free_in(r.protocol, range, view, &taken, seed)
                    .ok_or(Shortfall::NoRoom { request: i })?,
            };
            taken.insert(key);
            out.push(Assignment {
                container_port: r.container_port,
                protocol: r.protocol,
                host_port: key.port,
            });
        }
        Ok(out)
    }

    /// Free keys of `range` in the blocks held (not in `view`, not pending), counted up to
    /// `cap`: a replica takes its next block before it runs out, off the answer path.
    pub fn spare(&self, protocol: Protocol, range: PortRange, view: &impl Held, cap: u32) -> u32 {
        let mut n = 0;
        for b in BlockId::covering(protocol, range).filter(|b| self.blocks.contains_key(b)) {
            n += self.free_bits(b, range, view).count_ones();
            if n >= cap {
                return cap;
            }
        }
        n
    }

    fn free_in(
        &self,
        protocol: Protocol,
        range: PortRange,
        view: &impl Held,
        taken: &BTreeSet<Key>,
        seed: u64,
    ) -> Option<Key> {
        let mine: Vec<BlockId> = BlockId::covering(protocol, range)
            .filter(|b| self.blocks.contains_key(b))
            .collect();
        if mine.is_empty() {
            return None;
        }
        let first = (seed % mine.len() as u64) as usize;
        for b in mine[first..].iter().chain(&mine[..first]) {
            let mut free = self.free_bits(*b, range, view);
            while free != 0 {
                let key = Key::new(protocol, b.start + free.trailing_zeros() as u16);
                if !taken.contains(&key) {
                    return Some(key);
                }
                free &= free - 1;
            }
        }
        None
    }

    /// Keys in `block` that must count as held although the caches do not show them yet
    /// (found by the live reads made when the block was taken).
    /// A second pin of the same object (a pod with keys in two blocks, each taken over on
    /// its own) adds to the first: both blocks' keys stay held.
    pub fn pin(&mut self, why: Pending, keys: Vec<Key>, check_at: Duration) {
        let (mut all, mut assignments, mut at) = (Vec::new(), Vec::new(), check_at);
        if let Some(old) = self.pending.get(&why) {
            all.clone_from(&old.keys);
            assignments.clone_from(&old.assignments);
            at = at.max(old.check_at);
        }
        for k in keys {
            if !all.contains(&k) {
                all.push(k);
            }
        }
        self.add_pending(why, all, assignments, at);
    }

    fn add_pending(
        &mut self,
        why: Pending,
        keys: Vec<Key>,
        assignments: Vec<Assignment>,
        check_at: Duration,
    ) {
        if let Some(old) = self.pending.remove(&why) {
            self.unpend(&old.keys);
        }
        for k in &keys {
            *self.pending_keys.entry(*k).or_insert(0) += 1;
            self.pending_set.insert(*k);
        }
        self.pending.insert(
            why,
            Grant {
                keys,
                assignments,
                check_at,
            },
        );
    }

    fn unpend(&mut self, keys: &[Key]) {
        for k in keys {
            if let Some(n) = self.pending_keys.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    self.pending_keys.remove(k);
                    self.pending_set.remove(*k);
                }
            }
        }
    }

    /// Drops the pending grants the caches now show (the view holds their keys from now on)
    /// and returns those due for a live check at `now`, oldest first.
    pub fn settle(&mut self, seen: &impl Seen, now: Duration) -> Vec<Pending> {
        let shown: Vec<Pending> = self
            .pending
            .keys()
            .filter(|p| match p {
                Pending::Admission { namespace, token } => seen.admission_stored(namespace, token),
                Pending::Pod { uid, .. } => seen.pod_cached(uid),
                Pending::Claim { name } => seen.claim_cached(name),
            })
            .cloned()
            .collect();
        for p in shown {
            self.confirmed_gone(&p);
        }
        let mut due: Vec<(Duration, Pending)> = self
            .pending
            .iter()
            .filter(|(_, g)| g.check_at <= now)
            .map(|(p, g)| (g.check_at, p.clone()))
            .collect();
        due.sort();
        due.into_iter().map(|(_, p)| p).collect()
    }

    /// A live read found the pending grant's object stored but the cache has not caught up:
    /// look again at `check_at`.
    pub fn recheck_later(&mut self, why: &Pending, check_at: Duration) {
        if let Some(g) = self.pending.get_mut(why) {
            g.check_at = check_at;
        }
    }

    /// A live read confirmed no object holds the grant's keys any more (the pod was never
    /// stored, or is gone): they are free again. Also used when the caches show it.
    pub fn confirmed_gone(&mut self, why: &Pending) {
        if let Some(g) = self.pending.remove(why) {
            self.unpend(&g.keys);
        }
    }

    /// Number of pending grants (diagnostics).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Keys of `block` in use: held in `view` or pending.
    pub fn in_use(&self, block: BlockId, view: &impl Held) -> u32 {
        let span = block.span();
        span.len() - self.free_bits(block, span, view).count_ones()
    }

    /// Blocks unused since `idle_for` before `now` with no key in use, removed from the
    /// book in the same step (so no grant can come from them): the caller deletes their
    /// objects, and gives them back with [`Book::add_block`] if that fails.
    pub fn retire_idle(
        &mut self,
        view: &impl Held,
        now: Duration,
        idle_for: Duration,
    ) -> Vec<BlockId> {
        let idle: Vec<BlockId> = self
            .blocks
            .iter()
            .filter(|(_, h)| now.saturating_sub(h.last_used) >= idle_for)
            .map(|(b, _)| *b)
            .filter(|b| self.in_use(*b, view) == 0)
            .collect();
        for b in &idle {
            self.blocks.remove(b);
        }
        idle
    }
}

/// What a taker observed of a holder's Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseSeen {
    /// The Lease exists with this resourceVersion and holderIdentity.
    Present {
        resource_version: String,
        holder: String,
    },
    /// No such Lease.
    Absent,
}

/// A taker's memory of other holders' Leases: a block may be taken over once its holder's
/// Lease has shown no renewal by that holder for `takeover_after`, by this replica's clock.
/// A renewal is a new resourceVersion with the holder's identity in it; anything else (the
/// same version, no Lease, a Lease renewed by a later process of the same pod) is not.
#[derive(Debug, Default)]
pub struct HolderWatch {
    /// holder identity → (last state seen, when it was first seen in that state)
    seen: HashMap<String, (LeaseSeen, Duration)>,
}

impl HolderWatch {
    /// Records what the Lease named by `holder`'s blocks showed at `now`; returns how long
    /// `holder` has shown no sign of life.
    pub fn observe(&mut self, holder: &str, lease: LeaseSeen, now: Duration) -> Duration {
        let alive_sign =
            |l: &LeaseSeen| matches!(l, LeaseSeen::Present { holder: h, .. } if h == holder);
        match self.seen.get_mut(holder) {
            Some((last, since)) if *last == lease => now.saturating_sub(*since),
            Some((last, since)) => {
                // A change is a sign of life unless the Lease already named someone else
                // when last seen: the holder may have renewed in between, overwritten by its
                // successor before this look (a holder never writes once another identity is
                // in its Lease: renewals are compare-and-swap, and a lapsed or restarted
                // process renews under a new identity).
                let someone_else =
                    matches!(&*last, LeaseSeen::Present { holder: h, .. } if h != holder);
                let renewed = alive_sign(&lease) || !someone_else;
                *last = lease;
                if renewed {
                    *since = now;
                }
                now.saturating_sub(*since)
            }
            None => {
                self.seen.insert(holder.to_string(), (lease, now));
                Duration::ZERO
            }
        }
    }

    /// Forget holders not in `keep` (bounded memory).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.seen.retain(|h, _| keep(h));
    }
}

/// Blocks to try for `range`, best first: blocks with no object yet (in an order spread
/// by `seed` so replicas rarely race for the same one), then existing blocks whose holder
/// may be gone. `existing(b)` tells whether an object for `b` is known to exist.
pub fn candidates(
    protocol: Protocol,
    range: PortRange,
    existing: impl Fn(BlockId) -> bool,
    seed: u64,
) -> (Vec<BlockId>, Vec<BlockId>) {
    let all: Vec<BlockId> = BlockId::covering(protocol, range).collect();
    let n = all.len().max(1);
    let first = (seed % n as u64) as usize;
    let rotated = all[first..].iter().chain(&all[..first]).copied();
    rotated.partition(|b| !existing(*b))
}

/// The error an admission gets when the blocks cannot serve it and a block cannot be had.
pub fn shortfall_error(requests: &[PortRequest], shortfall: &Shortfall, total: u32) -> AllocError {
    match shortfall {
        Shortfall::NoRoom { request } | Shortfall::NotMine { request, .. } => {
            let r = &requests[*request];
            match r.source {
                Source::Static(port) => AllocError::StaticTaken {
                    origin: r.origin.clone(),
                    container_port: r.container_port,
                    protocol: r.protocol,
                    port,
                },
                Source::Auto(range) => AllocError::Exhausted {
                    origin: r.origin.clone(),
                    container_port: r.container_port,
                    protocol: r.protocol,
                    range,
                    total,
                },
            }
        }
        Shortfall::NotHolding => AllocError::Contended { conflicts: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn auto(range: (u16, u16)) -> PortRequest {
        PortRequest {
            container_port: 8080,
            protocol: Protocol::Tcp,
            source: Source::Auto(PortRange::new(range.0, range.1).unwrap()),
            origin: "test".into(),
        }
    }

    fn fixed(port: u16) -> PortRequest {
        PortRequest {
            container_port: 9090,
            protocol: Protocol::Tcp,
            source: Source::Static(port),
            origin: "test".into(),
        }
    }

    fn holding_book(blocks: &[u16]) -> Book {
        let mut b = Book::new(LeaseTiming::default());
        b.renewed(Duration::ZERO);
        for &start in blocks {
            b.add_block(
                BlockId {
                    protocol: Protocol::Tcp,
                    start,
                },
                Duration::ZERO,
            );
        }
        b
    }

    struct NoneSeen;
    impl Seen for NoneSeen {
        fn admission_stored(&self, _: &str, _: &str) -> bool {
            false
        }
        fn pod_cached(&self, _: &str) -> bool {
            false
        }
        fn claim_cached(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn blocks_cover_a_range_and_name_themselves() {
        let r = PortRange::new(40000, 40200).unwrap();
        let starts: Vec<u16> = BlockId::covering(Protocol::Tcp, r)
            .map(|b| b.start)
            .collect();
        assert_eq!(starts, vec![40000, 40064, 40128, 40192]);
        let last = BlockId::covering(Protocol::Udp, PortRange::new(65500, 65535).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].span().end(), 65535);
        assert_eq!(BlockId::of(Key::tcp(63)).span().start(), 1);
        assert_eq!(BlockId::of(Key::udp(41932)).name(), "udp-41920");
    }

    #[test]
    fn nothing_is_granted_without_a_valid_lease_and_the_margin_counts() {
        let mut b = holding_book(&[40000]);
        let view = KeySet::new();
        let reqs = [auto((40000, 40063))];
        // Valid until 0 + 30 - 5 = 25 s.
        assert!(
            b.grant("ns", "t1", &reqs, &view, |_| false, 0, 24 * S, 40 * S)
                .is_ok()
        );
        assert_eq!(
            b.grant("ns", "t2", &reqs, &view, |_| false, 0, 25 * S, 40 * S),
            Err(Shortfall::NotHolding)
        );
        b.renewed(20 * S);
        assert!(
            b.grant("ns", "t2", &reqs, &view, |_| false, 0, 44 * S, 40 * S)
                .is_ok()
        );
        // A late answer to an old renewal never shortens the lease.
        b.renewed(S);
        assert!(b.holding(44 * S));
        b.lapse();
        assert!(!b.holding(Duration::ZERO));
        assert!(b.blocks().is_empty());
    }

    #[test]
    fn statics_need_their_block_and_may_be_shared() {
        let mut b = holding_book(&[40000]);
        let mut view = KeySet::new();
        view.insert(Key::tcp(40001));
        assert_eq!(
            b.grant("ns", "t", &[fixed(40064)], &view, |_| false, 0, S, S),
            Err(Shortfall::NotMine {
                request: 0,
                block: BlockId {
                    protocol: Protocol::Tcp,
                    start: 40064
                }
            })
        );
        assert_eq!(
            b.grant("ns", "t", &[fixed(40001)], &view, |_| false, 0, S, S),
            Err(Shortfall::NoRoom { request: 0 })
        );
        let got = b
            .grant(
                "ns",
                "t",
                &[fixed(40001)],
                &view,
                |k| k == Key::tcp(40001),
                0,
                S,
                S,
            )
            .unwrap();
        assert_eq!(got[0].host_port, 40001);
        // An automatic request never gets a port a static one of the same pod took.
        let got = b
            .grant(
                "ns",
                "u",
                &[auto((40002, 40003)), fixed(40002)],
                &view,
                |_| false,
                0,
                S,
                S,
            )
            .unwrap();
        assert_eq!(
            got.iter().map(|a| a.host_port).collect::<Vec<_>>(),
            vec![40003, 40002]
        );
    }

    #[test]
    fn pending_grants_hold_until_the_cache_shows_the_pod_or_a_live_check_drops_them() {
        let mut b = holding_book(&[40000]);
        let view = KeySet::new();
        let reqs = [auto((40000, 40000))];
        b.grant("ns", "t1", &reqs, &view, |_| false, 0, S, 10 * S)
            .unwrap();
        assert_eq!(
            b.grant("ns", "t2", &reqs, &view, |_| false, 0, S, 10 * S),
            Err(Shortfall::NoRoom { request: 0 })
        );
        assert_eq!(b.granted("ns", "t1").unwrap()[0].host_port, 40000);
        assert!(b.settle(&NoneSeen, 5 * S).is_empty());
        let due = b.settle(&NoneSeen, 11 * S);
        assert_eq!(due.len(), 1);
        b.recheck_later(&due[0], 20 * S);
        assert!(b.settle(&NoneSeen, 12 * S).is_empty());
        b.confirmed_gone(&due[0]);
        assert!(
            b.grant("ns", "t2", &reqs, &view, |_| false, 0, S, 10 * S)
                .is_ok()
        );
    }

    #[test]
    fn spare_counts_free_keys_of_the_range_in_held_blocks_up_to_a_cap() {
        let mut b = holding_book(&[40000, 40128]);
        let mut view = KeySet::new();
        view.insert(Key::tcp(40001));
        let r = PortRange::new(40000, 40191).unwrap();
        assert_eq!(b.spare(Protocol::Tcp, r, &view, 1000), 127);
        assert_eq!(b.spare(Protocol::Tcp, r, &view, 10), 10);
        b.grant(
            "ns",
            "t",
            &[auto((40000, 40000))],
            &view,
            |_| false,
            0,
            S,
            S,
        )
        .unwrap();
        assert_eq!(b.spare(Protocol::Tcp, r, &view, 1000), 126);
        assert_eq!(b.spare(Protocol::Udp, r, &view, 1000), 0);
    }

    #[test]
    fn idle_blocks_retire_only_when_empty() {
        let mut b = holding_book(&[40000, 40064]);
        let mut view = KeySet::new();
        view.insert(Key::tcp(40070));
        let idle = b.retire_idle(&view, 600 * S, 600 * S);
        assert_eq!(
            idle.iter().map(|b| b.start).collect::<Vec<_>>(),
            vec![40000]
        );
        assert_eq!(
            b.blocks().iter().map(|b| b.start).collect::<Vec<_>>(),
            vec![40064]
        );
        // A pending grant keeps its block.
        let mut b = holding_book(&[40000]);
        b.grant(
            "ns",
            "t",
            &[auto((40000, 40063))],
            &KeySet::new(),
            |_| false,
            0,
            S,
            S,
        )
        .unwrap();
        assert!(b.retire_idle(&KeySet::new(), 10_000 * S, S).is_empty());
    }

    #[test]
    fn a_holder_is_gone_only_after_no_renewal_of_its_own_for_the_whole_wait() {
        let mut w = HolderWatch::default();
        let live = |rv: &str, h: &str| LeaseSeen::Present {
            resource_version: rv.into(),
            holder: h.into(),
        };
        assert_eq!(
            w.observe("a/1", live("1", "a/1"), Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(w.observe("a/1", live("1", "a/1"), 50 * S), 50 * S);
        // Renewed: the wait starts again.
        assert_eq!(w.observe("a/1", live("2", "a/1"), 60 * S), Duration::ZERO);
        // The pod's next process renews the same Lease under another identity: a/1 may have
        // renewed just before that, so the wait starts again...
        assert_eq!(w.observe("a/1", live("3", "a/2"), 70 * S), Duration::ZERO);
        // ...but once another identity is in the Lease, a/1 writes no more: later changes
        // are not a/1's.
        assert_eq!(w.observe("a/1", live("4", "a/2"), 100 * S), 30 * S);
        assert_eq!(w.observe("a/1", LeaseSeen::Absent, 140 * S), 70 * S);
        assert!(70 * S >= LeaseTiming::default().takeover_after());
    }

    #[test]
    fn candidates_prefer_blocks_nobody_has() {
        let r = PortRange::new(40000, 40255).unwrap();
        let (fresh, taken) = candidates(Protocol::Tcp, r, |b| b.start == 40064, 1);
        assert_eq!(
            fresh.iter().map(|b| b.start).collect::<Vec<_>>(),
            vec![40128, 40192, 40000]
        );
        assert_eq!(
            taken.iter().map(|b| b.start).collect::<Vec<_>>(),
            vec![40064]
        );
    }

    proptest! {
        /// Whatever the view, the blocks and the requests: every key granted lies in a held
        /// block and in its request's range, is free in the view, is not pending, and no two
        /// grants (in one admission or across admissions) share a key.
        #[test]
        fn grants_are_unique_free_and_inside_held_blocks(
            blocks in prop::collection::btree_set(0u16..8, 1..5),
            held in prop::collection::vec(40000u16..40512, 0..200),
            admissions in prop::collection::vec(
                prop::collection::vec((any::<bool>(), 40000u16..40512, 0u16..300), 1..4), 1..40),
            seed in any::<u64>(),
        ) {
            let starts: Vec<u16> = blocks.iter().map(|i| 40000 + i * 64).collect();
            let mut book = holding_book(&starts);
            let view: KeySet = held.iter().map(|&p| Key::tcp(p)).collect();
            let mut given: BTreeSet<Key> = BTreeSet::new();
            for (n, reqs) in admissions.iter().enumerate() {
                let requests: Vec<PortRequest> = reqs.iter().map(|&(is_static, a, len)| {
                    if is_static { fixed(a) } else { auto((a, a.saturating_add(len).min(40511))) }
                }).collect();
                let token = format!("t{n}");
                if let Ok(got) = book.grant("ns", &token, &requests, &view, |_| false, seed ^ n as u64, S, S) {
                    prop_assert_eq!(got.len(), requests.len());
                    for (a, r) in got.iter().zip(&requests) {
                        let k = a.key();
                        prop_assert!(book.holds(BlockId::of(k)));
                        prop_assert!(!view.contains(k));
                        prop_assert!(given.insert(k), "{} given twice", k);
                        match r.source {
                            Source::Auto(range) => prop_assert!(range.contains(k.port)),
                            Source::Static(p) => prop_assert_eq!(p, k.port),
                        }
                    }
                }
            }
            for k in &given {
                prop_assert!(book.is_pending(*k));
            }
        }
    }
}
