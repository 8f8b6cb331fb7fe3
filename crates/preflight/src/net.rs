//! Address maths shared by every preflight check: lenient parsing of what users write
//! (a bad value becomes a finding, not an abort), inclusive address spans, overlap,
//! containment and coverage, and Azure's per-subnet address accounting.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Azure keeps five addresses of every subnet: network, default gateway, two for Azure DNS
/// and broadcast.
pub const AZURE_RESERVED_PER_SUBNET: u64 = 5;

/// The smallest IPv4 subnet Azure accepts (/29: 8 addresses, 3 usable).
pub const AZURE_SMALLEST_SUBNET_LEN: u8 = 29;

/// Number of addresses in a prefix.
pub fn address_count(net: Ipv4Net) -> u64 {
    1u64 << (32 - u32::from(net.prefix_len()))
}

/// Addresses of an Azure subnet that can be handed to NICs.
pub fn usable_addresses(net: Ipv4Net) -> u64 {
    address_count(net).saturating_sub(AZURE_RESERVED_PER_SUBNET)
}

/// The longest prefix length whose block holds at least `addresses` addresses, if any does.
pub fn smallest_prefix_len_for(addresses: u64) -> Option<u8> {
    (0..=32u8)
        .rev()
        .find(|len| (1u64 << (32 - u32::from(*len))) >= addresses)
}

/// Whether two prefixes share at least one address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    Span::of_net(a).overlaps(&Span::of_net(b))
}

/// An inclusive range of IPv4 addresses: what a pool, a CIDR or a single address occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    first: u32,
    last: u32,
}

impl Span {
    /// The span from `first` to `last`, or `None` when they are in the wrong order.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Option<Span> {
        let (first, last) = (u32::from(first), u32::from(last));
        (first <= last).then_some(Span { first, last })
    }

    pub fn single(addr: Ipv4Addr) -> Span {
        let a = u32::from(addr);
        Span { first: a, last: a }
    }

    pub fn of_net(net: Ipv4Net) -> Span {
        Span {
            first: u32::from(net.network()),
            last: u32::from(net.broadcast()),
        }
    }

    /// Every IPv4 address (what `*` means in a firewall rule).
    pub const fn everything() -> Span {
        Span {
            first: 0,
            last: u32::MAX,
        }
    }

    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }

    /// Number of addresses in the span (never zero).
    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn contains_addr(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
    }

    pub fn contains(&self, other: &Span) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            return write!(f, "{}", self.first());
        }
        let len = self.size();
        if len.is_power_of_two() && u64::from(self.first) % len == 0 {
            let prefix = 32 - len.trailing_zeros();
            return write!(f, "{}/{}", self.first(), prefix);
        }
        write!(f, "{}-{}", self.first(), self.last())
    }
}

/// Whether the union of `pieces` covers every address of `target`.
pub fn covers(pieces: &[Span], target: Span) -> bool {
    let mut sorted: Vec<Span> = pieces
        .iter()
        .copied()
        .filter(|p| p.overlaps(&target))
        .collect();
    sorted.sort();
    // Walk the pieces in order, advancing the first address not yet covered.
    let mut next = u64::from(target.first);
    for piece in sorted {
        if u64::from(piece.first) > next {
            return false;
        }
        next = next.max(u64::from(piece.last) + 1);
        if next > u64::from(target.last) {
            return true;
        }
    }
    next > u64::from(target.last)
}

/// Why a written prefix could not be used as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixProblem {
    /// Not `a.b.c.d/len` at all.
    Syntax,
    /// An IPv6 prefix; preflight plans are IPv4.
    Ipv6,
    /// Address bits set below the prefix length; Azure only takes the network address.
    HostBitsSet { network: Ipv4Net },
}

/// A CIDR prefix as the user wrote it, with its parse outcome kept beside it so every bad
/// value can be reported with its field path instead of aborting the whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub struct Prefix {
    raw: String,
    parsed: Result<Ipv4Net, PrefixProblem>,
}

impl Prefix {
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The prefix, truncated to its network when host bits were set (so later checks still
    /// run; the misalignment itself is reported by the address check).
    pub fn net(&self) -> Option<Ipv4Net> {
        match &self.parsed {
            Ok(net) | Err(PrefixProblem::HostBitsSet { network: net }) => Some(*net),
            Err(_) => None,
        }
    }

    pub fn problem(&self) -> Option<&PrefixProblem> {
        self.parsed.as_ref().err()
    }
}

impl From<String> for Prefix {
    fn from(raw: String) -> Self {
        let text = raw.trim();
        let parsed = match Ipv4Net::from_str(text) {
            Ok(net) if net.network() != net.addr() => Err(PrefixProblem::HostBitsSet {
                network: net.trunc(),
            }),
            Ok(net) => Ok(net),
            Err(_) if ipnet::Ipv6Net::from_str(text).is_ok() => Err(PrefixProblem::Ipv6),
            Err(_) => Err(PrefixProblem::Syntax),
        };
        Prefix { raw, parsed }
    }
}

impl From<&str> for Prefix {
    fn from(raw: &str) -> Self {
        Prefix::from(raw.to_owned())
    }
}

impl From<Ipv4Net> for Prefix {
    fn from(net: Ipv4Net) -> Self {
        Prefix {
            raw: net.to_string(),
            parsed: Ok(net),
        }
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.raw
    }
}

/// A single IPv4 address as written by the user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub struct Address {
    raw: String,
    parsed: Option<Ipv4Addr>,
}

impl Address {
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.parsed
    }
}

impl From<String> for Address {
    fn from(raw: String) -> Self {
        let parsed = Ipv4Addr::from_str(raw.trim()).ok();
        Address { raw, parsed }
    }
}

impl From<&str> for Address {
    fn from(raw: &str) -> Self {
        Address::from(raw.to_owned())
    }
}

impl From<Ipv4Addr> for Address {
    fn from(ip: Ipv4Addr) -> Self {
        Address {
            raw: ip.to_string(),
            parsed: Some(ip),
        }
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.raw
    }
}

/// A set of addresses as written in lists of IPs and firewall rules: a single address
/// (`10.0.0.5`), a CIDR (`10.0.0.0/28`, host bits tolerated), a range (`10.0.0.5-10.0.0.9`)
/// or `*` / `any` for every address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub struct AddressRange {
    raw: String,
    parsed: Option<Span>,
}

impl AddressRange {
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn span(&self) -> Option<Span> {
        self.parsed
    }
}

fn parse_span(text: &str) -> Option<Span> {
    let text = text.trim();
    if text == "*" || text.eq_ignore_ascii_case("any") {
        return Some(Span::everything());
    }
    if let Some((first, last)) = text.split_once('-') {
        let first = Ipv4Addr::from_str(first.trim()).ok()?;
        let last = Ipv4Addr::from_str(last.trim()).ok()?;
        return Span::new(first, last);
    }
    if text.contains('/') {
        return Ipv4Net::from_str(text)
            .ok()
            .map(|n| Span::of_net(n.trunc()));
    }
    Ipv4Addr::from_str(text).ok().map(Span::single)
}

impl From<String> for AddressRange {
    fn from(raw: String) -> Self {
        let parsed = parse_span(&raw);
        AddressRange { raw, parsed }
    }
}

impl From<&str> for AddressRange {
    fn from(raw: &str) -> Self {
        AddressRange::from(raw.to_owned())
    }
}

impl From<AddressRange> for String {
    fn from(r: AddressRange) -> String {
        r.raw
    }
}

/// A port or inclusive port range as written in allow rules: `22`, `"40000-60000"` or `"*"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "PortText", into = "String")]
pub struct PortRange {
    raw: String,
    parsed: Option<(u16, u16)>,
}

/// YAML writes `22` as a number and `40000-60000` as a string; accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortText {
    Number(u64),
    Text(String),
}

impl PortRange {
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn bounds(&self) -> Option<(u16, u16)> {
        self.parsed
    }

    pub fn contains(&self, port: u16) -> bool {
        self.parsed
            .is_some_and(|(first, last)| (first..=last).contains(&port))
    }
}

fn parse_ports(text: &str) -> Option<(u16, u16)> {
    let text = text.trim();
    if text == "*" || text.eq_ignore_ascii_case("any") {
        return Some((0, u16::MAX));
    }
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = text.parse().ok()?;
            (p, p)
        }
    };
    (first <= last).then_some((first, last))
}

impl From<PortText> for PortRange {
    fn from(t: PortText) -> Self {
        let raw = match t {
            PortText::Number(n) => n.to_string(),
            PortText::Text(s) => s,
        };
        PortRange::from(raw)
    }
}

impl From<String> for PortRange {
    fn from(raw: String) -> Self {
        let parsed = parse_ports(&raw);
        PortRange { raw, parsed }
    }
}

impl From<&str> for PortRange {
    fn from(raw: &str) -> Self {
        PortRange::from(raw.to_owned())
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }

    #[test]
    fn usable_addresses_of_common_subnets() {
        assert_eq!(usable_addresses(net("192.168.1.0/24")), 251);
        assert_eq!(usable_addresses(net("10.0.0.0/27")), 27);
        assert_eq!(usable_addresses(net("10.0.0.0/28")), 11);
        assert_eq!(usable_addresses(net("10.0.0.0/29")), 3);
        assert_eq!(usable_addresses(net("10.0.0.0/31")), 0);
    }

    #[test]
    fn smallest_prefix_for_address_counts() {
        assert_eq!(smallest_prefix_len_for(256), Some(24));
        assert_eq!(smallest_prefix_len_for(257), Some(23));
        assert_eq!(smallest_prefix_len_for(1), Some(32));
        assert_eq!(smallest_prefix_len_for(1 << 33), None);
    }

    #[test]
    fn prefix_parsing_keeps_the_raw_text_and_the_problem() {
        assert_eq!(Prefix::from("10.0.0.0/16").net(), Some(net("10.0.0.0/16")));
        assert_eq!(Prefix::from("10.0.0.0/16").problem(), None);
        let misaligned = Prefix::from("192.168.1.5/24");
        assert_eq!(
            misaligned.problem(),
            Some(&PrefixProblem::HostBitsSet {
                network: net("192.168.1.0/24")
            })
        );
        assert_eq!(misaligned.net(), Some(net("192.168.1.0/24")));
        assert_eq!(
            Prefix::from("fd00::/64").problem(),
            Some(&PrefixProblem::Ipv6)
        );
        assert_eq!(
            Prefix::from("10.0.0/8").problem(),
            Some(&PrefixProblem::Syntax)
        );
        assert_eq!(Prefix::from("10.0.0/8").net(), None);
        assert_eq!(Prefix::from("10.0.0/8").raw(), "10.0.0/8");
    }

    #[test]
    fn address_ranges_accept_the_written_forms() {
        let a = |s: &str| AddressRange::from(s).span().map(|s| s.to_string());
        assert_eq!(a("10.0.0.5"), Some("10.0.0.5".into()));
        assert_eq!(a("10.0.0.0/28"), Some("10.0.0.0/28".into()));
        assert_eq!(a("10.0.0.5-10.0.0.9"), Some("10.0.0.5-10.0.0.9".into()));
        assert_eq!(a("*"), Some("0.0.0.0/0".into()));
        assert_eq!(a("10.0.0.9-10.0.0.5"), None);
        assert_eq!(a("ten"), None);
    }

    #[test]
    fn port_ranges_accept_numbers_ranges_and_any() {
        assert!(PortRange::from("22").contains(22));
        assert!(!PortRange::from("22").contains(23));
        assert!(PortRange::from("40000-60000").contains(55000));
        assert!(PortRange::from("*").contains(65000));
        assert_eq!(PortRange::from("70000").bounds(), None);
        assert_eq!(PortRange::from("9-3").bounds(), None);
        let from_yaml: Vec<PortRange> = serde_yaml::from_str("[22, \"6443\"]").expect("yaml");
        assert!(from_yaml[0].contains(22) && from_yaml[1].contains(6443));
    }

    #[test]
    fn coverage_needs_every_address() {
        let s = |a: &str| AddressRange::from(a).span().expect("test span");
        let target = s("10.0.0.0/24");
        assert!(covers(&[s("10.0.0.0/25"), s("10.0.0.128/25")], target));
        assert!(covers(&[s("10.0.0.0/16")], target));
        assert!(!covers(&[s("10.0.0.0/25"), s("10.0.0.129/32")], target));
        assert!(!covers(&[], target));
        assert!(covers(&[Span::everything()], Span::everything()));
    }

    fn any_net() -> impl Strategy<Value = Ipv4Net> {
        (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
            Ipv4Net::new(Ipv4Addr::from(a), len)
                .expect("len <= 32")
                .trunc()
        })
    }

    proptest! {
        #[test]
        fn usable_is_block_size_minus_azure_reservation(len in 0u8..=29) {
            let n = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), len).expect("len <= 32").trunc();
            prop_assert_eq!(usable_addresses(n), (1u64 << (32 - u32::from(len))) - 5);
        }

        #[test]
        fn overlap_is_symmetric(a in any_net(), b in any_net()) {
            prop_assert_eq!(overlaps(a, b), overlaps(b, a));
        }

        #[test]
        fn a_range_overlaps_itself(a in any_net()) {
            prop_assert!(overlaps(a, a));
        }

        #[test]
        fn overlap_matches_ipnet_containment(a in any_net(), b in any_net()) {
            // CIDR blocks either nest or are disjoint, so overlap means one contains the other.
            prop_assert_eq!(overlaps(a, b), a.contains(&b) || b.contains(&a));
        }

        #[test]
        fn split_halves_cover_the_whole(a in any_net()) {
            prop_assume!(a.prefix_len() < 32);
            let halves: Vec<Span> = a
                .subnets(a.prefix_len() + 1)
                .expect("longer prefix")
                .map(Span::of_net)
                .collect();
            prop_assert!(covers(&halves, Span::of_net(a)));
            prop_assert!(!covers(&halves[..1], Span::of_net(a)));
        }

        #[test]
        fn smallest_prefix_fits_and_is_tight(n in 1u64..=(1u64 << 32)) {
            let len = smallest_prefix_len_for(n).expect("fits in IPv4");
            let size = 1u64 << (32 - u32::from(len));
            prop_assert!(size >= n);
            prop_assert!(len == 32 || size / 2 < n);
        }
    }
}
