//! Which entries of a shared NSG or route table this cluster's poolnet may change: those
//! named with its prefix **and** recorded by an object that lets poolnet write (see
//! docs/ownership.md). A name alone proves nothing: an Observe object's rules, a
//! DetachOnDelete object's leftovers and hand-made copies carry the prefix too.

use std::collections::BTreeSet;

/// The entries poolnet may add, change or remove in one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Lower-cased name prefix (`poolnet-<cluster>-` for rules, `poolnet-` for routes).
    prefix: String,
    /// Lower-cased recorded names (ARM compares names case-insensitively).
    names: BTreeSet<String>,
    /// Tests of planning logic that predates the record: every name with the prefix.
    any: bool,
}

impl Scope {
    pub fn new(prefix: &str, names: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self {
            prefix: prefix.to_ascii_lowercase(),
            names: names
                .into_iter()
                .map(|n| n.as_ref().to_ascii_lowercase())
                .collect(),
            any: false,
        }
    }

    /// Every name with `prefix` (tests of allocation and diffing only).
    #[cfg(test)]
    pub(crate) fn prefix_only(prefix: &str) -> Self {
        Self {
            any: true,
            ..Self::new(prefix, Vec::<String>::new())
        }
    }

    /// Whether the entry named `name` is poolnet's to change.
    pub fn owns(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        lower.starts_with(&self.prefix) && (self.any || self.names.contains(&lower))
    }

    /// Whether `name` looks like poolnet's (its prefix) without being recorded: such
    /// entries are left alone and reported.
    pub fn unrecorded(&self, name: &str) -> bool {
        name.to_ascii_lowercase().starts_with(&self.prefix) && !self.owns(name)
    }

    /// Add names (the union adds each recorder's names).
    pub fn extend(&mut self, names: impl IntoIterator<Item = impl AsRef<str>>) {
        self.names
            .extend(names.into_iter().map(|n| n.as_ref().to_ascii_lowercase()));
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owns_only_recorded_names_with_the_prefix() {
        let s = Scope::new("poolnet-abc-", ["poolnet-abc-game-tcp-1", "other-rule"]);
        assert!(s.owns("POOLNET-ABC-game-TCP-1"));
        assert!(
            !s.owns("other-rule"),
            "a recorded name without the prefix is not ours"
        );
        assert!(!s.owns("poolnet-abc-left-behind"));
        assert!(s.unrecorded("poolnet-abc-left-behind"));
        assert!(
            !s.unrecorded("poolnet-def-other-cluster"),
            "another cluster's prefix"
        );
        assert!(!s.unrecorded("AllowVnet"));
    }
}
