//! NSG priority allocation: which priority each of poolnet's rules gets in a shared NSG.
//!
//! Azure requires priorities unique per direction across the whole NSG, foreign rules
//! included, and a rule's priority decides which rule wins, so allocation is stable: a rule
//! that exists keeps its priority (when it is still in its band, inbound and unclaimed); a
//! new rule takes the lowest free priority in its band. Foreign priorities are never reused.
//! Rules are also refused when the NSG would exceed Azure's rule or source-address limits.

use std::collections::{BTreeMap, BTreeSet};

use poolnet_api::ownership::{MAX_RULES_PER_NSG, MAX_SOURCE_ADDRESSES_PER_NSG};

use super::{DesiredRule, Direction, ExistingRule, RuleContent};
use crate::scope::Scope;

/// Where one desired rule goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Priority(u16),
    /// It does not fit, and why.
    Unplaced(String),
}

/// One placement per rule of `desired`, in the same order. `desired` must be sorted by name
/// and free of duplicate names (the order makes ties deterministic); `existing` is every rule
/// in the NSG; rules `scope` owns are poolnet's, the rest foreign.
pub fn allocate_priorities(
    existing: &[ExistingRule],
    desired: &[&DesiredRule],
    scope: &Scope,
) -> Vec<Placement> {
    let owned: BTreeMap<&str, &ExistingRule> = existing
        .iter()
        .filter(|r| scope.owns(&r.name))
        .map(|r| (r.name.as_str(), r))
        .collect();

    // Priorities in use per direction by every rule that stays: foreign rules first.
    let mut used: BTreeMap<Direction, BTreeSet<u16>> = BTreeMap::new();
    let mut foreign_count = 0usize;
    let mut foreign_sources = 0usize;
    for r in existing.iter().filter(|r| !scope.owns(&r.name)) {
        foreign_count += 1;
        foreign_sources += r
            .content
            .as_ref()
            .map_or(1, RuleContent::source_address_count);
        used.entry(r.direction).or_default().insert(r.priority);
    }

    // First pass: wanted rules that exist inbound in band keep their priority, unless a rule
    // kept before it (in name order) already holds it.
    let mut kept: BTreeMap<&str, u16> = BTreeMap::new();
    for d in desired {
        if let Some(e) = owned.get(d.name.as_str()) {
            let in_band = (d.band.0..=d.band.1).contains(&e.priority);
            let inbound = used.entry(Direction::Inbound).or_default();
            if in_band && e.direction == Direction::Inbound && !inbound.contains(&e.priority) {
                inbound.insert(e.priority);
                kept.insert(d.name.as_str(), e.priority);
            }
        }
    }

    // Second pass: the lowest free priority in band for the rest, within the NSG's limits.
    let mut rule_count = foreign_count + kept.len();
    let mut source_count = foreign_sources
        + desired
            .iter()
            .filter(|d| kept.contains_key(d.name.as_str()))
            .map(|d| d.content.source_address_count())
            .sum::<usize>();
    desired
        .iter()
        .map(|d| {
            if let Some(&p) = kept.get(d.name.as_str()) {
                return Placement::Priority(p);
            }
            if rule_count >= MAX_RULES_PER_NSG {
                return Placement::Unplaced(format!(
                    "the NSG already holds Azure's maximum of {MAX_RULES_PER_NSG} rules"
                ));
            }
            if source_count + d.content.source_address_count() > MAX_SOURCE_ADDRESSES_PER_NSG {
                return Placement::Unplaced(format!(
                    "the NSG would exceed Azure's limit of {MAX_SOURCE_ADDRESSES_PER_NSG} source addresses"
                ));
            }
            let inbound = used.entry(Direction::Inbound).or_default();
            let Some(p) = (d.band.0..=d.band.1).find(|p| !inbound.contains(p)) else {
                return Placement::Unplaced(format!(
                    "no free inbound priority in {}-{}: every one is taken by other rules",
                    d.band.0, d.band.1
                ));
            };
            inbound.insert(p);
            rule_count += 1;
            source_count += d.content.source_address_count();
            Placement::Priority(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Owner, RuleContent};
    use super::*;
    use poolnet_api::portspec::Protocol;
    use proptest::prelude::*;

    const OURS: &str = "poolnet-abc123-";

    fn rule(name: &str, band: (u16, u16), sources: usize) -> DesiredRule {
        DesiredRule {
            name: format!("{OURS}{name}"),
            owner: Owner::NodePoolNetwork { name: name.into() },
            content: RuleContent {
                protocol: Protocol::Tcp,
                sources: (0..sources).map(|i| format!("10.{i}.0.0/16")).collect(),
                destination_asgs: Vec::new(),
                ports: Vec::new(),
            },
            band,
            description: String::new(),
        }
    }

    fn existing(name: &str, priority: u16, direction: Direction) -> ExistingRule {
        ExistingRule {
            name: name.into(),
            priority,
            direction,
            content: None,
            canonical: true,
            description: None,
        }
    }

    #[test]
    fn lowest_free_inbound_priority_in_band() {
        let nsg = [
            existing("foreign-in", 100, Direction::Inbound),
            existing("foreign-out", 101, Direction::Outbound),
        ];
        let (a, b) = (rule("a", (100, 199), 1), rule("b", (100, 199), 1));
        assert_eq!(
            allocate_priorities(&nsg, &[&a, &b], &Scope::prefix_only(OURS)),
            [Placement::Priority(101), Placement::Priority(102)]
        );
    }

    #[test]
    fn existing_rules_keep_their_priority_unless_out_of_band_or_taken() {
        let nsg = [
            existing(&format!("{OURS}a"), 150, Direction::Inbound),
            existing(&format!("{OURS}b"), 150, Direction::Inbound),
            existing(&format!("{OURS}c"), 600, Direction::Inbound),
        ];
        let (a, b, c) = (
            rule("a", (100, 199), 1),
            rule("b", (100, 199), 1),
            rule("c", (100, 199), 1),
        );
        assert_eq!(
            allocate_priorities(&nsg, &[&a, &b, &c], &Scope::prefix_only(OURS)),
            [
                Placement::Priority(150),
                Placement::Priority(100),
                Placement::Priority(101)
            ],
            "a keeps 150 (first in name order), b lost the tie, c left its band"
        );
    }

    #[test]
    fn azure_limits_refuse_rules_with_the_reason() {
        let many: Vec<ExistingRule> = (0..MAX_RULES_PER_NSG)
            .map(|i| existing(&format!("f{i}"), 1000 + i as u16, Direction::Inbound))
            .collect();
        let a = rule("a", (100, 199), 1);
        assert!(matches!(
            &allocate_priorities(&many, &[&a], &Scope::prefix_only(OURS))[0],
            Placement::Unplaced(why) if why.contains("maximum of 1000 rules")
        ));
        let wide = rule("w", (100, 199), MAX_SOURCE_ADDRESSES_PER_NSG + 1);
        assert!(matches!(
            &allocate_priorities(&[], &[&wide], &Scope::prefix_only(OURS))[0],
            Placement::Unplaced(why) if why.contains("4000 source addresses")
        ));
        let full = [existing("f", 300, Direction::Inbound)];
        let narrow = rule("n", (300, 300), 1);
        assert!(matches!(
            &allocate_priorities(&full, &[&narrow], &Scope::prefix_only(OURS))[0],
            Placement::Unplaced(why) if why.contains("no free inbound priority in 300-300")
        ));
    }

    proptest! {
        #[test]
        fn placements_are_unique_in_band_and_never_foreign(
            foreign in prop::collection::btree_map(100u16..160, any::<bool>(), 0..40),
            wanted in prop::collection::btree_set("[a-z]{1,6}", 0..30),
            kept in prop::collection::vec(100u16..160, 0..30),
        ) {
            let nsg: Vec<ExistingRule> = foreign
                .iter()
                .map(|(&p, &out)| existing(&format!("f{p}"), p, if out { Direction::Outbound } else { Direction::Inbound }))
                .chain(wanted.iter().zip(&kept).map(|(n, &p)| existing(&format!("{OURS}{n}"), p, Direction::Inbound)))
                .collect();
            let desired: Vec<DesiredRule> = wanted.iter().map(|n| rule(n, (100, 160), 1)).collect();
            let refs: Vec<&DesiredRule> = desired.iter().collect();
            let placed = allocate_priorities(&nsg, &refs, &Scope::prefix_only(OURS));
            prop_assert_eq!(placed.len(), desired.len());
            let foreign_in: BTreeSet<u16> = foreign.iter().filter(|(_, out)| !**out).map(|(p, _)| *p).collect();
            let mut seen = BTreeSet::new();
            for p in &placed {
                if let Placement::Priority(p) = p {
                    prop_assert!((100..=160).contains(p));
                    prop_assert!(!foreign_in.contains(p), "reused foreign priority {}", p);
                    prop_assert!(seen.insert(*p), "priority {} given twice", p);
                }
            }
            // Stable: allocating again against the result gives the same placements.
            let after: Vec<ExistingRule> = foreign
                .iter()
                .map(|(&p, &out)| existing(&format!("f{p}"), p, if out { Direction::Outbound } else { Direction::Inbound }))
                .chain(desired.iter().zip(&placed).filter_map(|(d, p)| match p {
                    Placement::Priority(p) => Some(existing(&d.name, *p, Direction::Inbound)),
                    Placement::Unplaced(_) => None,
                }))
                .collect();
            let again = allocate_priorities(&after, &refs, &Scope::prefix_only(OURS));
            for (a, b) in placed.iter().zip(&again) {
                if let Placement::Priority(_) = a {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
