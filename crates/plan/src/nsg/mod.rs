//! NSG rules: what poolnet wants in one network security group, and the whole-NSG rule list
//! to write back (read-modify-write), never touching rules it does not own.
//!
//! poolnet's rules are named `poolnet-<cluster>-…`, where `<cluster>` is a short hash of the
//! AKS cluster's ARM ID (the names and limits: `poolnet_api::ownership`), but a name alone
//! proves nothing: only rules in the [`Scope`] (named so **and** recorded by an object that
//! lets poolnet write, docs/ownership.md) are ever changed or removed. Priorities are
//! allocated stably inside each rule's band by [`priority::allocate_priorities`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use poolnet_api::portspec::{PortRange, Protocol};

pub mod priority;

use crate::scope::Scope;
use poolnet_api::ownership::{MAX_RULE_NAME, cluster_rule_prefix, short_hash};
pub use priority::{Placement, allocate_priorities};

/// Rule direction; poolnet only writes inbound rules but must avoid priorities in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Who asked for a rule: a NodePoolNetwork or a HostPortPolicy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    NodePoolNetwork { name: String },
    HostPortPolicy { namespace: String, name: String },
}

impl Owner {
    /// Short readable part of rule names (`game`, `games.echoserver`).
    fn label(&self) -> String {
        match self {
            Owner::NodePoolNetwork { name } => name.clone(),
            Owner::HostPortPolicy { namespace, name } => format!("{namespace}.{name}"),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::NodePoolNetwork { name } => write!(f, "NodePoolNetwork {name}"),
            Owner::HostPortPolicy { namespace, name } => {
                write!(f, "HostPortPolicy {namespace}/{name}")
            }
        }
    }
}

/// The content of an allow rule poolnet manages (everything but its priority).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleContent {
    pub protocol: Protocol,
    /// Sorted, de-duplicated source prefixes / service tags.
    pub sources: Vec<String>,
    /// Sorted, de-duplicated destination ASG IDs (lower-cased: ARM IDs are case-insensitive).
    pub destination_asgs: Vec<String>,
    /// Sorted, merged destination port ranges.
    pub ports: Vec<PortRange>,
}

impl RuleContent {
    /// Ports in ARM's `destinationPortRanges` form (`"80"`, `"40000-60000"`).
    pub fn port_strings(&self) -> Vec<String> {
        self.ports.iter().map(ToString::to_string).collect()
    }

    /// Number of addresses this rule counts against the NSG's 4000 source-address limit.
    pub fn source_address_count(&self) -> usize {
        self.sources.len()
    }
}

/// One rule poolnet wants, before priority allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRule {
    pub name: String,
    pub owner: Owner,
    pub content: RuleContent,
    /// Inclusive priority band.
    pub band: (u16, u16),
    pub description: String,
}

/// A rule as read from the NSG. `content` is parsed only for rules poolnet owns (for the
/// drift check); foreign rules need only name, priority and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRule {
    pub name: String,
    pub priority: u16,
    pub direction: Direction,
    pub content: Option<RuleContent>,
    /// Whether the rule as read is exactly what poolnet writes (allow, inbound, `*` source
    /// ports); a rule edited by hand in another way is rewritten.
    pub canonical: bool,
    /// The rule's description as read (`Some("")` when it has none); `None` when unknown, and
    /// then not compared. poolnet's rules carry the description naming their object: one
    /// edited by hand is rewritten.
    pub description: Option<String>,
}

/// A desired rule with its allocated priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRule {
    pub rule: DesiredRule,
    pub priority: u16,
}

/// A rule that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub rule: DesiredRule,
    pub reason: String,
}

/// What to do with one NSG.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsgPlan {
    /// poolnet's rules after the write, with priorities (only those that could be placed).
    pub rules: Vec<PlannedRule>,
    /// Names of owned rules to delete (stale or replaced).
    pub removed: Vec<String>,
    /// Names of rules to create.
    pub added: Vec<String>,
    /// Names of rules whose content or priority changes.
    pub changed: Vec<String>,
    /// Rules that did not fit (band full, NSG limits).
    pub unplaced: Vec<Unplaced>,
    /// Rules named like this cluster's poolnet that no object records: left alone.
    pub unrecorded: Vec<String>,
    /// The rules this plan may change (what applying it replaces).
    pub scope: Scope,
}

impl NsgPlan {
    /// True when the NSG must be written.
    pub fn needs_write(&self) -> bool {
        !(self.removed.is_empty() && self.added.is_empty() && self.changed.is_empty())
    }

    /// Planned rules of one owner.
    pub fn rules_of<'a>(&'a self, owner: &'a Owner) -> impl Iterator<Item = &'a PlannedRule> {
        self.rules.iter().filter(move |r| &r.rule.owner == owner)
    }
}

/// Group `(protocol, port range)` pairs into consolidated rules: one per protocol and source
/// set, all ports in `destinationPortRanges`, named
/// `poolnet-<cluster>-<owner>-<proto>-<hash>` (≤ 80 characters, unique per owner, object UID
/// (`uid`), protocol and source set: a same-named object created later never writes a
/// rule its predecessor left behind).
pub fn consolidate(
    cluster_id: &str,
    owner: &Owner,
    uid: &str,
    ports: &[(Protocol, PortRange)],
    sources: &[String],
    destination_asgs: &[String],
    band: (u16, u16),
) -> Vec<DesiredRule> {
    let mut sources: Vec<String> = sources.to_vec();
    sources.sort();
    sources.dedup();
    let mut asgs: Vec<String> = destination_asgs
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    asgs.sort();
    asgs.dedup();
    let mut by_proto: BTreeMap<Protocol, poolnet_api::portspec::PortSet> = BTreeMap::new();
    for &(proto, range) in ports {
        by_proto.entry(proto).or_default().insert(proto, range);
    }
    let prefix = cluster_rule_prefix(cluster_id);
    let owner_label = owner.label();
    by_proto
        .into_iter()
        .map(|(proto, set)| {
            let hash = short_hash(&[&owner.to_string(), uid, proto.as_str(), &sources.join(",")]);
            let tail = format!("-{}-{}", proto.as_str(), &hash[..6]);
            let room = MAX_RULE_NAME - prefix.len() - tail.len();
            let label: String = owner_label.chars().take(room).collect();
            DesiredRule {
                name: format!("{prefix}{label}{tail}"),
                owner: owner.clone(),
                content: RuleContent {
                    protocol: proto,
                    sources: sources.clone(),
                    destination_asgs: asgs.clone(),
                    ports: set.ranges(proto).to_vec(),
                },
                band,
                description: rule_description(owner, uid),
            }
        })
        .collect()
}

/// Azure keeps at most 140 characters of a rule's description.
pub const MAX_DESCRIPTION: usize = 140;

/// The description as poolnet writes it into Azure (cut to [`MAX_DESCRIPTION`]).
pub fn written_description(rule: &DesiredRule) -> String {
    rule.description.chars().take(MAX_DESCRIPTION).collect()
}

/// The description of every rule poolnet writes: who it is for, so the rule is attributable
/// to its object (and that object's UID) from the Azure portal alone.
pub fn rule_description(owner: &Owner, uid: &str) -> String {
    format!("Managed by poolnet for {owner} (uid {uid}); do not edit")
}

/// Plan one NSG: `existing` is every rule in it; `desired` every rule this cluster's poolnet
/// wants there (from all owners, each inside `scope`); `scope` the rules poolnet may change.
/// Rules in scope but not desired are removed; every other rule is never touched and its
/// priority never reused. A desired rule outside `scope` is not written (its owner has not
/// recorded it: docs/ownership.md).
pub fn plan_nsg(existing: &[ExistingRule], desired: &[DesiredRule], scope: &Scope) -> NsgPlan {
    let mut plan = NsgPlan {
        scope: scope.clone(),
        ..NsgPlan::default()
    };
    let owned: BTreeMap<&str, &ExistingRule> = existing
        .iter()
        .filter(|r| scope.owns(&r.name))
        .map(|r| (r.name.as_str(), r))
        .collect();
    plan.unrecorded = existing
        .iter()
        .filter(|r| scope.unrecorded(&r.name))
        .map(|r| r.name.clone())
        .collect();
    plan.unrecorded.sort();
    let mut desired: Vec<&DesiredRule> = desired.iter().filter(|d| scope.owns(&d.name)).collect();
    desired.sort_by(|a, b| a.name.cmp(&b.name));
    desired.dedup_by(|a, b| a.name == b.name);
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();

    for name in owned.keys() {
        if !wanted.contains(name) {
            plan.removed.push((*name).to_string());
        }
    }
    let placements = allocate_priorities(existing, &desired, scope);
    for (d, placement) in desired.iter().zip(placements) {
        let priority = match placement {
            Placement::Priority(p) => p,
            Placement::Unplaced(reason) => {
                plan.unplaced.push(Unplaced {
                    rule: (*d).clone(),
                    reason,
                });
                continue;
            }
        };
        match owned.get(d.name.as_str()) {
            None => plan.added.push(d.name.clone()),
            Some(e) => {
                let same = e.priority == priority
                    && e.direction == Direction::Inbound
                    && e.canonical
                    && e.content.as_ref() == Some(&d.content)
                    && e.description
                        .as_deref()
                        .is_none_or(|written| written == written_description(d));
                if !same {
                    plan.changed.push(d.name.clone());
                }
            }
        }
        plan.rules.push(PlannedRule {
            rule: (*d).clone(),
            priority,
        });
    }
    // A wanted rule that could not be placed but exists must go too, or it would keep a
    // priority it may no longer hold.
    for u in &plan.unplaced {
        if owned.contains_key(u.rule.name.as_str()) {
            plan.removed.push(u.rule.name.clone());
        }
    }
    plan.removed.sort();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLUSTER: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks";

    fn npn(name: &str) -> Owner {
        Owner::NodePoolNetwork { name: name.into() }
    }

    fn range(a: u16, b: u16) -> PortRange {
        PortRange::new(a, b).unwrap()
    }

    fn foreign(name: &str, priority: u16, direction: Direction) -> ExistingRule {
        ExistingRule {
            name: name.into(),
            priority,
            direction,
            content: None,
            canonical: false,
            description: None,
        }
    }

    /// The NSG after applying `plan` to `existing`.
    fn apply(existing: &[ExistingRule], plan: &NsgPlan, prefix: &str) -> Vec<ExistingRule> {
        let mut out: Vec<ExistingRule> = existing
            .iter()
            .filter(|r| !r.name.starts_with(prefix))
            .cloned()
            .collect();
        out.extend(plan.rules.iter().map(|p| ExistingRule {
            name: p.rule.name.clone(),
            priority: p.priority,
            direction: Direction::Inbound,
            content: Some(p.rule.content.clone()),
            canonical: true,
            description: None,
        }));
        out
    }

    #[test]
    fn consolidates_one_rule_per_protocol_with_all_ports() {
        let ports = [
            (Protocol::Tcp, range(80, 80)),
            (Protocol::Tcp, range(443, 443)),
            (Protocol::Udp, range(53, 53)),
            (Protocol::Tcp, range(40000, 60000)),
        ];
        let rules = consolidate(
            CLUSTER,
            &npn("game"),
            "uid-1",
            &ports,
            &["Internet".into()],
            &["/X/ASG".into()],
            (100, 499),
        );
        assert_eq!(rules.len(), 2);
        let tcp = rules
            .iter()
            .find(|r| r.content.protocol == Protocol::Tcp)
            .unwrap();
        assert_eq!(tcp.content.port_strings(), ["80", "443", "40000-60000"]);
        assert_eq!(tcp.content.destination_asgs, ["/x/asg"]);
        let prefix = cluster_rule_prefix(CLUSTER);
        assert!(
            tcp.name.starts_with(&prefix) && tcp.name.contains("-game-tcp-"),
            "{}",
            tcp.name
        );
        assert!(rules.iter().all(|r| r.name.len() <= MAX_RULE_NAME));
        // Names are stable across calls and distinct per source set.
        let again = consolidate(
            CLUSTER,
            &npn("game"),
            "uid-1",
            &ports,
            &["Internet".into()],
            &[],
            (100, 499),
        );
        assert_eq!(again[0].name, rules[0].name);
        let other = consolidate(
            CLUSTER,
            &npn("game"),
            "uid-1",
            &ports,
            &["10.0.0.0/8".into()],
            &[],
            (100, 499),
        );
        assert_ne!(other[0].name, rules[0].name);
    }

    #[test]
    fn long_owner_names_are_truncated_but_unique() {
        let long = "a".repeat(63);
        let o1 = Owner::HostPortPolicy {
            namespace: long.clone(),
            name: format!("{long}1"),
        };
        let o2 = Owner::HostPortPolicy {
            namespace: long.clone(),
            name: format!("{long}2"),
        };
        let p = [(Protocol::Tcp, range(1, 2))];
        let r1 = consolidate(CLUSTER, &o1, "uid-1", &p, &[], &[], (100, 499));
        let r2 = consolidate(CLUSTER, &o2, "uid-1", &p, &[], &[], (100, 499));
        assert!(r1[0].name.len() <= MAX_RULE_NAME);
        assert_ne!(r1[0].name, r2[0].name);
    }

    #[test]
    fn avoids_foreign_priorities_and_keeps_foreign_rules() {
        let prefix = cluster_rule_prefix(CLUSTER);
        let existing = vec![
            foreign("k8s-azure-lb_allow_IPv4_80", 500, Direction::Inbound),
            foreign("allow-bastion", 100, Direction::Inbound),
            foreign("deny-out", 101, Direction::Outbound),
        ];
        let desired = consolidate(
            CLUSTER,
            &npn("game"),
            "uid-1",
            &[
                (Protocol::Tcp, range(80, 80)),
                (Protocol::Udp, range(53, 53)),
            ],
            &["Internet".into()],
            &[],
            (100, 499),
        );
        let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
        let prios: Vec<u16> = plan.rules.iter().map(|r| r.priority).collect();
        assert_eq!(
            prios,
            [101, 102],
            "100 is taken inbound; 101 is only taken outbound"
        );
        assert_eq!(plan.added.len(), 2);
        assert!(plan.removed.is_empty() && plan.changed.is_empty());
        // Converged: planning again against the result changes nothing.
        let after = apply(&existing, &plan, &prefix);
        let again = plan_nsg(&after, &desired, &Scope::prefix_only(&prefix));
        assert!(!again.needs_write(), "{again:?}");
    }

    #[test]
    fn other_clusters_rules_are_foreign() {
        let ours = cluster_rule_prefix(CLUSTER);
        let theirs = cluster_rule_prefix(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/other",
        );
        assert_ne!(ours, theirs);
        let existing = vec![ExistingRule {
            name: format!("{theirs}game-tcp-abcdef"),
            priority: 100,
            direction: Direction::Inbound,
            content: None,
            canonical: true,
            description: None,
        }];
        let plan = plan_nsg(&existing, &[], &Scope::prefix_only(&ours));
        assert!(
            plan.removed.is_empty(),
            "another cluster's poolnet rule is not ours to delete"
        );
    }

    #[test]
    fn only_recorded_rules_are_touched_and_unrecorded_ones_are_reported() {
        let prefix = cluster_rule_prefix(CLUSTER);
        let rule = |name: &str, priority| ExistingRule {
            name: format!("{prefix}{name}"),
            priority,
            direction: Direction::Inbound,
            content: None,
            canonical: true,
            description: None,
        };
        // "recorded" is some writing object's; "left" was left by a DetachOnDelete deletion.
        let existing = vec![
            rule("recorded-tcp-111111", 100),
            rule("left-tcp-222222", 101),
        ];
        let scope = Scope::new(&prefix, [format!("{prefix}recorded-tcp-111111")]);
        let plan = plan_nsg(&existing, &[], &scope);
        assert_eq!(plan.removed, [format!("{prefix}recorded-tcp-111111")]);
        assert_eq!(plan.unrecorded, [format!("{prefix}left-tcp-222222")]);
        // A wanted rule its owner has not recorded yet is not written...
        let wanted = consolidate(
            CLUSTER,
            &npn("new"),
            "uid-9",
            &[(Protocol::Tcp, range(80, 80))],
            &[],
            &[],
            (100, 499),
        );
        let plan = plan_nsg(&existing, &wanted, &scope);
        assert!(plan.added.is_empty() && plan.rules.is_empty(), "{plan:?}");
        // ...and once recorded it is, never at the unrecorded rule's priority.
        let mut scope = scope;
        scope.extend([&wanted[0].name]);
        let plan = plan_nsg(&existing, &wanted, &scope);
        assert_eq!(plan.added, [wanted[0].name.clone()]);
        assert_eq!(
            plan.rules[0].priority, 100,
            "the removed recorded rule's priority is free; 101 is not"
        );
    }

    #[test]
    fn a_later_object_of_the_same_name_gets_other_rule_names() {
        let p = [(Protocol::Tcp, range(80, 80))];
        let first = consolidate(CLUSTER, &npn("game"), "uid-1", &p, &[], &[], (100, 499));
        let later = consolidate(CLUSTER, &npn("game"), "uid-2", &p, &[], &[], (100, 499));
        assert_ne!(first[0].name, later[0].name);
        assert!(later[0].description.contains("uid-2"));
    }

    #[test]
    fn stale_rules_are_removed_and_band_full_is_reported() {
        let prefix = cluster_rule_prefix(CLUSTER);
        let stale = ExistingRule {
            name: format!("{prefix}old-tcp-123456"),
            priority: 200,
            direction: Direction::Inbound,
            content: None,
            canonical: true,
            description: None,
        };
        let existing = vec![stale, foreign("x", 300, Direction::Inbound)];
        let desired = consolidate(
            CLUSTER,
            &npn("g"),
            "uid-1",
            &[(Protocol::Tcp, range(1, 1))],
            &[],
            &[],
            (300, 300),
        );
        let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
        assert_eq!(plan.removed, [format!("{prefix}old-tcp-123456")]);
        assert_eq!(plan.unplaced.len(), 1);
        assert!(
            plan.unplaced[0]
                .reason
                .contains("no free inbound priority in 300-300")
        );
        assert!(plan.needs_write());
    }

    #[test]
    fn hand_edited_rule_is_rewritten_in_place() {
        let prefix = cluster_rule_prefix(CLUSTER);
        let desired = consolidate(
            CLUSTER,
            &npn("g"),
            "uid-1",
            &[(Protocol::Tcp, range(80, 80))],
            &["Internet".into()],
            &[],
            (100, 499),
        );
        let mut edited = desired[0].content.clone();
        edited.ports = vec![range(22, 22)];
        let existing = vec![ExistingRule {
            name: desired[0].name.clone(),
            priority: 150,
            direction: Direction::Inbound,
            content: Some(edited),
            canonical: true,
            description: None,
        }];
        let plan = plan_nsg(&existing, &desired, &Scope::prefix_only(&prefix));
        assert_eq!(plan.changed, [desired[0].name.clone()]);
        assert_eq!(plan.rules[0].priority, 150, "keeps its priority");
    }

    fn arb_foreign() -> impl Strategy<Value = Vec<ExistingRule>> {
        prop::collection::btree_map(100u16..140, prop::bool::ANY, 0..30).prop_map(|m| {
            m.into_iter()
                .enumerate()
                .map(|(i, (p, out))| {
                    foreign(
                        &format!("foreign-{i}"),
                        p,
                        if out {
                            Direction::Outbound
                        } else {
                            Direction::Inbound
                        },
                    )
                })
                .collect()
        })
    }

    fn arb_desired() -> impl Strategy<Value = Vec<DesiredRule>> {
        prop::collection::vec((0u8..6, prop::bool::ANY, 1u16..1000, 0u8..3), 0..8).prop_map(|v| {
            v.into_iter()
                .flat_map(|(owner, udp, port, src)| {
                    let proto = if udp { Protocol::Udp } else { Protocol::Tcp };
                    consolidate(
                        CLUSTER,
                        &npn(&format!("o{owner}")),
                        "uid-1",
                        &[(proto, range(port, port))],
                        &[format!("10.{src}.0.0/16")],
                        &[],
                        (100, 140),
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn invariants_hold(foreign in arb_foreign(), desired in arb_desired(), old in arb_desired()) {
            let prefix = cluster_rule_prefix(CLUSTER);
            // Start from a converged state for `old`, then move to `desired`.
            let start_plan = plan_nsg(&foreign, &old, &Scope::prefix_only(&prefix));
            let start = apply(&foreign, &start_plan, &prefix);
            let plan = plan_nsg(&start, &desired, &Scope::prefix_only(&prefix));
            let after = apply(&start, &plan, &prefix);

            // Foreign rules survive untouched.
            for f in &foreign {
                prop_assert!(after.contains(f));
                prop_assert!(!plan.removed.contains(&f.name) && !plan.changed.contains(&f.name));
            }
            // Priorities are unique per direction and our rules stay in band.
            let mut seen = BTreeSet::new();
            for r in &after {
                prop_assert!(seen.insert((r.direction, r.priority)), "duplicate priority {:?}", r);
            }
            for p in &plan.rules {
                prop_assert!((p.rule.band.0..=p.rule.band.1).contains(&p.priority));
            }
            // Every desired rule is placed or reported.
            let mut names: Vec<&str> = desired.iter().map(|d| d.name.as_str()).collect();
            names.sort();
            names.dedup();
            prop_assert_eq!(plan.rules.len() + plan.unplaced.len(), names.len());
            // Idempotent: converged state needs no write.
            let again = plan_nsg(&after, &desired, &Scope::prefix_only(&prefix));
            prop_assert!(!again.needs_write(), "{:?}", again);
            // Stable: rules wanted before and after keep their priority.
            for p in &plan.rules {
                if let Some(s) = start_plan.rules.iter().find(|s| s.rule.name == p.rule.name) {
                    prop_assert_eq!(s.priority, p.priority);
                }
            }
        }
    }
}
