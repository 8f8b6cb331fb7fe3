//! Whether the host ports pods use on a pool's nodes can be reached (seed 000: a host port is
//! useless without an allow rule). A port is covered when the pool's `allowedHostPorts` hold
//! it and, where the NodePoolNetwork names NSGs, poolnet's rules in them open it. Pure.

use std::fmt;

use poolnet_api::portspec::HostPortSpec;

use super::Key;

/// The host ports one pod on the pool's nodes uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPorts {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub keys: Vec<Key>,
}

/// Why a host port cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gap {
    /// Not in the pool's `allowedHostPorts` (AKS opens only those).
    NotAllowed,
    /// No poolnet rule in the pool's NSGs opens it.
    NoNsgRule,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Gap::NotAllowed => "not in allowedHostPorts",
            Gap::NoNsgRule => "no NSG allow rule",
        })
    }
}

/// One host port of one pod that cannot be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub node: String,
    pub key: Key,
    pub gaps: Vec<Gap>,
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gaps: Vec<String> = self.gaps.iter().map(Gap::to_string).collect();
        write!(
            f,
            "{}/{} (pod {}/{} on {}: {})",
            self.key.port,
            self.key.protocol,
            self.namespace,
            self.pod,
            self.node,
            gaps.join(", ")
        )
    }
}

fn covers(specs: &[HostPortSpec], key: Key) -> bool {
    specs
        .iter()
        .any(|s| s.protocol == key.protocol && s.range.contains(key.port))
}

/// The host ports of `pods` that `allowed` (the pool's allowedHostPorts) or `opened` (the
/// ports poolnet's rules open in the pool's NSGs; `None` when the pool names no NSG, so
/// poolnet cannot tell) leave unreachable, sorted by pod and key.
pub fn uncovered(
    allowed: &[HostPortSpec],
    opened: Option<&[HostPortSpec]>,
    pods: &[PodPorts],
) -> Vec<Uncovered> {
    let mut out = Vec::new();
    for pod in pods {
        let mut keys = pod.keys.clone();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut gaps = Vec::new();
            if !covers(allowed, key) {
                gaps.push(Gap::NotAllowed);
            }
            if opened.is_some_and(|o| !covers(o, key)) {
                gaps.push(Gap::NoNsgRule);
            }
            if !gaps.is_empty() {
                out.push(Uncovered {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    uid: pod.uid.clone(),
                    node: pod.node.clone(),
                    key,
                    gaps,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod, a.key).cmp(&(&b.namespace, &b.pod, b.key)));
    out
}

/// A condition message listing at most `limit` uncovered ports.
pub fn summary(uncovered: &[Uncovered], limit: usize) -> String {
    let mut parts: Vec<String> = uncovered
        .iter()
        .take(limit)
        .map(|u| u.to_string())
        .collect();
    if uncovered.len() > limit {
        parts.push(format!("and {} more", uncovered.len() - limit));
    }
    format!(
        "{} host port(s) in use cannot be reached: {}",
        uncovered.len(),
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::portspec::{PortRange, Protocol, parse_list};
    use proptest::prelude::*;

    fn pod(name: &str, keys: &[(Protocol, u16)]) -> PodPorts {
        PodPorts {
            namespace: "games".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            node: "aks-game-0".into(),
            keys: keys.iter().map(|(p, n)| Key::new(*p, *n)).collect(),
        }
    }

    #[test]
    fn each_gap_is_named() {
        let allowed = parse_list("80/tcp,40000-60000/tcp").expect("ports");
        let opened = parse_list("80/tcp").expect("ports");
        let pods = [
            pod("a", &[(Protocol::Tcp, 80), (Protocol::Tcp, 40001)]),
            pod("b", &[(Protocol::Udp, 80), (Protocol::Tcp, 80)]),
        ];
        let u = uncovered(&allowed, Some(&opened), &pods);
        let shown: Vec<String> = u.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "40001/tcp (pod games/a on aks-game-0: no NSG allow rule)",
                "80/udp (pod games/b on aks-game-0: not in allowedHostPorts, no NSG allow rule)",
            ]
        );
        // Without NSGs in the spec, only allowedHostPorts is judged.
        let u = uncovered(&allowed, None, &pods);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].gaps, [Gap::NotAllowed]);
        assert_eq!(
            summary(&u, 5),
            "1 host port(s) in use cannot be reached: 80/udp (pod games/b on aks-game-0: not in allowedHostPorts)"
        );
    }

    #[test]
    fn summary_is_bounded() {
        let pods: Vec<PodPorts> = (0..20)
            .map(|i| pod(&format!("p{i:02}"), &[(Protocol::Tcp, 1000 + i)]))
            .collect();
        let u = uncovered(&[], None, &pods);
        let s = summary(&u, 3);
        assert!(s.starts_with("20 host port(s)"), "{s}");
        assert!(s.ends_with("; and 17 more"), "{s}");
    }

    fn spec() -> impl Strategy<Value = HostPortSpec> {
        (any::<bool>(), 1u16..2000, 0u16..200).prop_map(|(tcp, start, len)| HostPortSpec {
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            range: PortRange::new(start, start.saturating_add(len)).expect("range"),
        })
    }

    proptest! {
        /// A port is reported exactly when one of the two lists misses it, with exactly the
        /// gaps that apply; every key of every pod is judged once.
        #[test]
        fn reported_exactly_when_a_list_misses_it(
            allowed in proptest::collection::vec(spec(), 0..4),
            opened in proptest::option::of(proptest::collection::vec(spec(), 0..4)),
            ports in proptest::collection::vec((any::<bool>(), 1u16..2300), 0..12),
        ) {
            let keys: Vec<(Protocol, u16)> = ports
                .iter()
                .map(|(tcp, p)| (if *tcp { Protocol::Tcp } else { Protocol::Udp }, *p))
                .collect();
            let pods = [pod("x", &keys)];
            let u = uncovered(&allowed, opened.as_deref(), &pods);
            let mut distinct: Vec<Key> = pods[0].keys.clone();
            distinct.sort();
            distinct.dedup();
            for key in distinct {
                let mut want = Vec::new();
                if !covers(&allowed, key) { want.push(Gap::NotAllowed); }
                if opened.as_deref().is_some_and(|o| !covers(o, key)) { want.push(Gap::NoNsgRule); }
                let got = u.iter().find(|x| x.key == key).map(|x| x.gaps.clone()).unwrap_or_default();
                prop_assert_eq!(got, want);
            }
            prop_assert!(u.windows(2).all(|w| w[0].key < w[1].key), "sorted, once per key");
        }
    }
}
