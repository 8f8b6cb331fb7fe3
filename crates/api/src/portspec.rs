//! Host-port specifications in the AKS format: `port/protocol` or `start-end/protocol`, with
//! protocol `tcp` or `udp`, several entries separated by commas (`80/tcp,443/tcp,53/udp`).
//!
//! The parser here is the single source of truth; the CRD schema's CEL pattern
//! ([`ENTRY_LIST_PATTERN`]) accepts exactly the same syntax so the API server and the webhook
//! never disagree on what is well formed.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, FieldErrors};

/// RE2 pattern (used in CEL `matches`) for one list item: one or more entries separated by
/// commas, optional blanks around them, port numbers without leading zeros (as AKS writes
/// them). Numeric bounds (0, above 65535, reversed ranges) are checked by the parser/webhook.
pub const ENTRY_LIST_PATTERN: &str = r"^\s*(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?/(?i:tcp|udp)\s*(,\s*(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?/(?i:tcp|udp)\s*)*$";

const ENTRY_EXAMPLE: &str = "entries like 80/tcp or 40000-60000/tcp separated by commas";

/// Transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Lower-case form used in AKS port specs (`tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Upper-case form used by Kubernetes container ports and ARM (`TCP`, `Tcp`).
    pub fn as_kubernetes(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Protocol::Udp)
        } else {
            Err(FieldError::new(
                "",
                s,
                format!("protocol {s:?} is not supported"),
                "tcp or udp",
            ))
        }
    }
}

/// An inclusive range of ports, `1 <= start <= end <= 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// A range, or `None` when `start` is 0 or greater than `end`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start >= 1 && start <= end).then_some(Self { start, end })
    }

    pub fn single(port: u16) -> Option<Self> {
        Self::new(port, port)
    }

    pub fn start(self) -> u16 {
        self.start
    }

    pub fn end(self) -> u16 {
        self.end
    }

    /// Number of ports in the range.
    pub fn len(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never true: a range holds at least one port. Present for API symmetry with `len`.
    pub fn is_empty(self) -> bool {
        false
    }

    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    pub fn contains_range(self, other: PortRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One AKS host-port entry: a port or range plus a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPortSpec {
    pub protocol: Protocol,
    pub range: PortRange,
}

impl fmt::Display for HostPortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.range, self.protocol)
    }
}

impl FromStr for HostPortSpec {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_entry(s)
    }
}

fn parse_port(s: &str, whole: &str) -> Result<u16, FieldError> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits && s.len() > 1 && s.starts_with('0') {
        return Err(FieldError::new(
            "",
            whole,
            format!("port {s} has a leading zero"),
            "a port number between 1 and 65535 without leading zeros, as AKS writes it",
        ));
    }
    if !digits || s.len() > 5 {
        return Err(FieldError::new(
            "",
            whole,
            format!("{s:?} is not a port number"),
            "a port number between 1 and 65535",
        ));
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(FieldError::new(
            "",
            whole,
            format!("port {s} is out of range"),
            "a port number between 1 and 65535",
        )),
    }
}

/// Blanks around entries: exactly what RE2's `\s` in [`ENTRY_LIST_PATTERN`] matches (not
/// `str::trim`'s Unicode white space), so the parser and the CRD agree.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// Parse one entry (`80/tcp`, `40000-60000/udp`). Surrounding blanks are ignored.
pub fn parse_entry(raw: &str) -> Result<HostPortSpec, FieldError> {
    let s = raw.trim_matches(is_blank);
    if s.is_empty() {
        return Err(FieldError::new("", raw, "empty entry", ENTRY_EXAMPLE));
    }
    let Some((ports, proto)) = s.split_once('/') else {
        return Err(FieldError::new(
            "",
            raw,
            "missing protocol",
            "<port>/<protocol> or <start>-<end>/<protocol> with protocol tcp or udp, e.g. 80/tcp",
        ));
    };
    let protocol = Protocol::from_str(proto).map_err(|e| FieldError {
        value: raw.into(),
        ..e
    })?;
    let range = match ports.split_once('-') {
        None => {
            let p = parse_port(ports, raw)?;
            PortRange { start: p, end: p }
        }
        Some((a, b)) => {
            let start = parse_port(a, raw)?;
            let end = parse_port(b, raw)?;
            PortRange::new(start, end).ok_or_else(|| {
                FieldError::new(
                    "",
                    raw,
                    format!("range start {start} is greater than its end {end}"),
                    format!("a range written low-high, e.g. {end}-{start}/{protocol}"),
                )
            })?
        }
    };
    Ok(HostPortSpec { protocol, range })
}

/// Parse a comma-separated list (`80/tcp,443/tcp`). Every entry must be valid; an empty
/// string is an error (an empty list is written as no item at all).
pub fn parse_list(raw: &str) -> Result<Vec<HostPortSpec>, FieldError> {
    raw.split(',').map(parse_entry).collect()
}

/// Parse list items as they appear in a manifest, where every item is itself an entry or a
/// comma-separated list; errors are anchored at `path[i]`.
pub fn parse_items<S: AsRef<str>>(
    items: &[S],
    path: &str,
) -> Result<Vec<(usize, HostPortSpec)>, FieldErrors> {
    let mut out = Vec::new();
    let mut errs = FieldErrors::new();
    for (i, item) in items.iter().enumerate() {
        match parse_list(item.as_ref()) {
            Ok(specs) => out.extend(specs.into_iter().map(|s| (i, s))),
            Err(e) => errs.push(e.at(format!("{path}[{i}]"))),
        }
    }
    errs.into_result().map(|()| out)
}

/// Canonical comma-separated form (`80/tcp,443/tcp`).
pub fn format_list(specs: &[HostPortSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Indices `(i, j)`, `i < j`, of entries that share at least one port on the same protocol.
pub fn find_overlaps(specs: &[HostPortSpec]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|&i| (specs[i].protocol, specs[i].range.start, specs[i].range.end));
    let mut out = Vec::new();
    // Sweep per protocol: an entry can only overlap those that start before it ends.
    for (k, &i) in order.iter().enumerate() {
        for &j in &order[k + 1..] {
            if specs[j].protocol != specs[i].protocol || specs[j].range.start > specs[i].range.end {
                break;
            }
            out.push((i.min(j), i.max(j)));
        }
    }
    out.sort_unstable();
    out
}

/// A normalised set of ports per protocol: sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet {
    ranges: BTreeMap<Protocol, Vec<PortRange>>,
}

impl PortSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_specs<'a>(specs: impl IntoIterator<Item = &'a HostPortSpec>) -> Self {
        let mut set = Self::new();
        for s in specs {
            set.insert(s.protocol, s.range);
        }
        set
    }

    pub fn insert(&mut self, protocol: Protocol, range: PortRange) {
        let v = self.ranges.entry(protocol).or_default();
        v.push(range);
        v.sort();
        let mut merged: Vec<PortRange> = Vec::with_capacity(v.len());
        for r in v.drain(..) {
            match merged.last_mut() {
                Some(last) if u32::from(r.start) <= u32::from(last.end) + 1 => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r),
            }
        }
        *v = merged;
    }

    /// True when every port of `range` is in the set for `protocol`.
    pub fn contains_range(&self, protocol: Protocol, range: PortRange) -> bool {
        // Ranges are merged, so containment must be within a single stored range.
        self.ranges
            .get(&protocol)
            .is_some_and(|v| v.iter().any(|r| r.contains_range(range)))
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.ranges
            .get(&protocol)
            .is_some_and(|v| v.iter().any(|r| r.contains(port)))
    }

    /// Ranges of one protocol, sorted.
    pub fn ranges(&self, protocol: Protocol) -> &[PortRange] {
        self.ranges.get(&protocol).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Total number of (protocol, port) pairs.
    pub fn port_count(&self) -> u64 {
        self.ranges
            .values()
            .flatten()
            .map(|r| u64::from(r.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.values().all(Vec::is_empty)
    }

    /// The canonical entries, TCP first, ascending.
    pub fn to_specs(&self) -> Vec<HostPortSpec> {
        self.ranges
            .iter()
            .flat_map(|(&protocol, v)| v.iter().map(move |&range| HostPortSpec { protocol, range }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(s: &str) -> HostPortSpec {
        parse_entry(s).unwrap()
    }

    #[test]
    fn parses_aks_examples() {
        for (input, n) in [
            ("80/tcp", 1),
            ("80/tcp,443/tcp", 2),
            ("53/udp,80/tcp", 2),
            ("50000-60000/tcp", 1),
            ("80/tcp,443/tcp,53/udp,40000-60000/tcp,40000-50000/udp", 5),
            (" 80/TCP , 443/Tcp ", 2),
        ] {
            assert_eq!(parse_list(input).unwrap().len(), n, "{input}");
        }
        assert_eq!(spec("40000-60000/tcp").range.len(), 20001);
        assert_eq!(spec("53/UDP").to_string(), "53/udp");
    }

    #[test]
    fn rejects_with_field_value_and_fix() {
        let cases = [
            ("", "empty entry"),
            ("80", "missing protocol"),
            ("80/sctp", "protocol \"sctp\" is not supported"),
            ("0/tcp", "port 0 is out of range"),
            ("70000/tcp", "port 70000 is out of range"),
            ("8o/tcp", "\"8o\" is not a port number"),
            ("-80/tcp", "\"\" is not a port number"),
            (
                "60000-40000/tcp",
                "range start 60000 is greater than its end 40000",
            ),
            ("80/tcp,", "empty entry"),
            ("123456/tcp", "\"123456\" is not a port number"),
            ("080/tcp", "port 080 has a leading zero"),
            ("040000-60000/tcp", "port 040000 has a leading zero"),
            ("40000-060000/tcp", "port 060000 has a leading zero"),
            ("00/udp", "port 00 has a leading zero"),
            // Blanks are what the CRD pattern's \s allows, not any Unicode white space.
            ("\u{a0}80/tcp", "is not a port number"),
            ("80/tcp\u{0b}", "protocol"),
        ];
        for (input, problem) in cases {
            let e = parse_list(input).unwrap_err();
            assert!(e.problem.contains(problem), "{input}: {e}");
            assert!(!e.expected.is_empty());
        }
        let errs = parse_items(&["80/tcp", "99999/udp"], "spec.allowedHostPorts").unwrap_err();
        assert_eq!(errs.0[0].path, "spec.allowedHostPorts[1]");
        assert_eq!(errs.0[0].value, "99999/udp");
    }

    #[test]
    fn overlaps_only_within_protocol() {
        let specs = parse_list("80/tcp,40000-60000/tcp,40000-50000/udp,50000/tcp,80/udp").unwrap();
        assert_eq!(find_overlaps(&specs), vec![(1, 3)]);
        let specs = parse_list("1-10/tcp,5-20/tcp,15/tcp").unwrap();
        assert_eq!(find_overlaps(&specs), vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn port_set_merges_and_contains() {
        let set =
            PortSet::from_specs(&parse_list("80/tcp,81-90/tcp,443/tcp,40000-60000/tcp").unwrap());
        assert_eq!(
            format_list(&set.to_specs()),
            "80-90/tcp,443/tcp,40000-60000/tcp"
        );
        assert!(set.contains_range(Protocol::Tcp, PortRange::new(40000, 59999).unwrap()));
        assert!(!set.contains_range(Protocol::Udp, PortRange::new(40000, 59999).unwrap()));
        assert!(!set.contains_range(Protocol::Tcp, PortRange::new(85, 443).unwrap()));
        assert_eq!(set.port_count(), 11 + 1 + 20001);
    }

    #[test]
    fn the_crd_uses_this_pattern() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&crate::v1alpha1::NodePoolNetwork::crd()).unwrap();
        // The rule's CEL string literal escapes backslashes; JSON escapes them again.
        let literal = ENTRY_LIST_PATTERN.replace('\\', "\\\\");
        let json = serde_json::to_string(&literal).unwrap();
        assert!(
            crd.contains(json.trim_matches('"')),
            "the allowedHostPorts CEL rule does not use ENTRY_LIST_PATTERN"
        );
    }

    static ENTRY_RE: std::sync::LazyLock<regex::Regex> =
        // The API server's RE2 (Go regexp) reads \s as [\t\n\f\r ]; Rust's regex as Unicode
        // white space.
        std::sync::LazyLock::new(|| {
            regex::Regex::new(&ENTRY_LIST_PATTERN.replace(r"\s", r"[\t\n\x0C\r ]")).unwrap()
        });

    fn arb_spec() -> impl Strategy<Value = HostPortSpec> {
        (1u16..=65535, 0u16..2000, prop::bool::ANY).prop_map(|(start, width, udp)| {
            let end = start.saturating_add(width);
            HostPortSpec {
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                range: PortRange::new(start, end).unwrap(),
            }
        })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(specs in prop::collection::vec(arb_spec(), 1..8)) {
            let text = format_list(&specs);
            prop_assert_eq!(parse_list(&text).unwrap(), specs);
        }

        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = parse_list(&s);
        }

        #[test]
        fn parser_and_cel_pattern_agree(s in "[ \t\u{b}\u{a0}]?0?[0-9]{0,6}(-0?[0-9]{0,6})?/?(tcp|udp|UDP|sctp|)( ?,0?[0-9]{1,5}/tcp)?[ \r\u{b}\u{2003}]?") {
            // The CRD pattern checks syntax only; the parser also checks numeric bounds. So the
            // parser accepting implies the pattern matches, and the pattern matching while the
            // parser refuses can only be a numeric problem.
            let re = &*ENTRY_RE;
            match parse_list(&s) {
                Ok(_) => prop_assert!(re.is_match(&s), "{s:?} parsed but pattern refused"),
                Err(e) if re.is_match(&s) => prop_assert!(
                    e.problem.contains("out of range") || e.problem.contains("greater than"),
                    "{s:?}: pattern accepted, parser said {e}"
                ),
                Err(_) => {}
            }
        }

        #[test]
        fn overlap_is_symmetric_and_matches_brute_force(specs in prop::collection::vec(arb_spec(), 0..10)) {
            let found = find_overlaps(&specs);
            let mut brute = Vec::new();
            for i in 0..specs.len() {
                for j in i + 1..specs.len() {
                    if specs[i].protocol == specs[j].protocol && specs[i].range.overlaps(specs[j].range) {
                        brute.push((i, j));
                    }
                }
            }
            prop_assert_eq!(found, brute);
        }

        #[test]
        fn port_set_is_a_union(specs in prop::collection::vec(arb_spec(), 0..10), probe in 1u16..=65535, udp in prop::bool::ANY) {
            let set = PortSet::from_specs(&specs);
            let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
            let expected = specs.iter().any(|s| s.protocol == proto && s.range.contains(probe));
            prop_assert_eq!(set.contains(proto, probe), expected);
            // Normalised ranges are disjoint and non-adjacent.
            for w in set.ranges(proto).windows(2) {
                prop_assert!(u32::from(w[0].end()) + 1 < u32::from(w[1].start()));
            }
            for s in &specs {
                prop_assert!(set.contains_range(s.protocol, s.range));
            }
        }
    }
}
