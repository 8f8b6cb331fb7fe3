//! A set of keys as a bitmap (2 protocols × 65,536 ports = 16 KiB): membership tests are what
//! the allocator does most, and a copy of the whole set is a cheap snapshot.

use poolnet_api::portspec::{PortRange, Protocol};

use super::key::Key;

const WORDS_PER_PROTOCOL: usize = 65536 / 64;

/// Anything that can say whether a key is taken.
pub trait Held {
    fn is_held(&self, key: Key) -> bool;

    /// The held keys among the 64 ports `start..start+63` of `protocol` (`start` a
    /// multiple of 64), bit i for port start+i. [`KeySet`] answers with one word.
    fn block_bits(&self, protocol: Protocol, start: u16) -> u64 {
        let mut bits = 0;
        for i in 0..64u16 {
            if let Some(port) = start.checked_add(i)
                && self.is_held(Key::new(protocol, port))
            {
                bits |= 1 << i;
            }
        }
        bits
    }
}

/// A set of keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySet {
    bits: Box<[u64; 2 * WORDS_PER_PROTOCOL]>,
    len: usize,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn slot(key: Key) -> (usize, u64) {
    let base = match key.protocol {
        Protocol::Tcp => 0,
        Protocol::Udp => WORDS_PER_PROTOCOL,
    };
    let port = usize::from(key.port);
    (base + port / 64, 1u64 << (port % 64))
}

impl KeySet {
    pub fn new() -> Self {
        Self {
            bits: Box::new([0; 2 * WORDS_PER_PROTOCOL]),
            len: 0,
        }
    }

    /// Adds `key`; true when it was not there.
    pub fn insert(&mut self, key: Key) -> bool {
        let (word, bit) = slot(key);
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.len += usize::from(fresh);
        fresh
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, key: Key) -> bool {
        let (word, bit) = slot(key);
        let present = self.bits[word] & bit != 0;
        self.bits[word] &= !bit;
        self.len -= usize::from(present);
        present
    }

    pub fn contains(&self, key: Key) -> bool {
        let (word, bit) = slot(key);
        self.bits[word] & bit != 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys of `protocol` inside `range`.
    pub fn count_in(&self, protocol: Protocol, range: PortRange) -> u32 {
        (range.start()..=range.end())
            .filter(|&p| self.contains(Key::new(protocol, p)))
            .count() as u32
    }

    /// All keys, TCP first, ascending.
    pub fn iter(&self) -> impl Iterator<Item = Key> + '_ {
        [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .flat_map(move |protocol| {
                (0..=u16::MAX)
                    .map(move |port| Key::new(protocol, port))
                    .filter(|&k| self.contains(k))
            })
    }
}

impl FromIterator<Key> for KeySet {
    fn from_iter<I: IntoIterator<Item = Key>>(iter: I) -> Self {
        let mut set = Self::new();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

impl Held for KeySet {
    fn is_held(&self, key: Key) -> bool {
        self.contains(key)
    }

    fn block_bits(&self, protocol: Protocol, start: u16) -> u64 {
        debug_assert_eq!(start % 64, 0, "blocks are aligned");
        self.bits[slot(Key::new(protocol, start)).0]
    }
}

impl Held for std::collections::BTreeSet<Key> {
    fn is_held(&self, key: Key) -> bool {
        self.contains(&key)
    }
}

impl Held for std::collections::HashSet<Key> {
    fn is_held(&self, key: Key) -> bool {
        self.contains(&key)
    }
}

impl<H: Held + ?Sized> Held for &H {
    fn block_bits(&self, protocol: Protocol, start: u16) -> u64 {
        (**self).block_bits(protocol, start)
    }

    fn is_held(&self, key: Key) -> bool {
        (**self).is_held(key)
    }
}

/// Held when either part holds it (e.g. the cached claims plus the pods' own host ports).
#[derive(Debug, Clone, Copy)]
pub struct Union<A, B>(pub A, pub B);

impl<A: Held, B: Held> Held for Union<A, B> {
    fn is_held(&self, key: Key) -> bool {
        self.0.is_held(key) || self.1.is_held(key)
    }

    fn block_bits(&self, protocol: Protocol, start: u16) -> u64 {
        self.0.block_bits(protocol, start) | self.1.block_bits(protocol, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_btree_set(ops in prop::collection::vec((any::<bool>(), any::<bool>(), any::<u16>()), 0..200)) {
            let mut set = KeySet::new();
            let mut model = BTreeSet::new();
            for (insert, udp, port) in ops {
                let key = Key::new(if udp { Protocol::Udp } else { Protocol::Tcp }, port);
                if insert {
                    prop_assert_eq!(set.insert(key), model.insert(key));
                } else {
                    prop_assert_eq!(set.remove(key), model.remove(&key));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
        }
    }

    proptest! {
        #[test]
        fn a_blocks_word_is_its_keys(ports in prop::collection::vec(any::<u16>(), 0..300), start in 0u16..1024) {
            let set: KeySet = ports.iter().map(|&p| Key::udp(p)).collect();
            let start = start * 64;
            let slow: BTreeSet<Key> = set.iter().collect();
            prop_assert_eq!(set.block_bits(Protocol::Udp, start), slow.block_bits(Protocol::Udp, start));
            prop_assert_eq!(set.block_bits(Protocol::Tcp, start), 0);
        }
    }

    #[test]
    fn counts_inside_a_range() {
        let set: KeySet = [
            Key::tcp(40000),
            Key::tcp(59999),
            Key::tcp(60000),
            Key::udp(40001),
        ]
        .into_iter()
        .collect();
        let range = PortRange::new(40000, 59999).unwrap();
        assert_eq!(set.count_in(Protocol::Tcp, range), 2);
        assert_eq!(set.count_in(Protocol::Udp, range), 1);
    }
}
