//! Types shared by both CRDs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A public IP tag, e.g. {ipTagType: RoutingPreference, tag: Internet}. Plain data: the CEL
/// rules live on the (bounded) spec list, so status lists of tags cost the API server nothing.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct IpTag {
    /// Tag type, e.g. RoutingPreference or FirstPartyUsage.
    #[schemars(length(min = 1, max = 64))]
    pub ip_tag_type: String,
    /// Tag value, e.g. Internet.
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,
}

/// How far poolnet may act on Azure for an object.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReconcilePolicy {
    /// Create, update and delete what poolnet owns (default).
    #[default]
    Manage,
    /// Read Azure and report in status; never write.
    Observe,
    /// Like Manage, but leave Azure resources in place when the object is deleted.
    DetachOnDelete,
}

/// Transport protocol of a container port, as Kubernetes spells it.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
)]
pub enum PortProtocol {
    #[default]
    TCP,
    UDP,
}

impl From<PortProtocol> for crate::portspec::Protocol {
    fn from(p: PortProtocol) -> Self {
        match p {
            PortProtocol::TCP => crate::portspec::Protocol::Tcp,
            PortProtocol::UDP => crate::portspec::Protocol::Udp,
        }
    }
}

impl From<crate::portspec::Protocol> for PortProtocol {
    fn from(p: crate::portspec::Protocol) -> Self {
        match p {
            crate::portspec::Protocol::Tcp => PortProtocol::TCP,
            crate::portspec::Protocol::Udp => PortProtocol::UDP,
        }
    }
}

/// One change poolnet would make in Azure, entry by entry and field by field (an Observe
/// object's `status.pendingChanges`, rendered by `kubectl poolnet diff`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    /// ARM ID of the resource written: the NSG, the route table or the agent pool.
    pub resource_id: String,
    /// What kind of entry changes.
    pub target: ChangeTarget,
    /// The rule's or route's name in Azure; for the agent pool, the pool's name.
    pub name: String,
    /// Add, Change or Remove.
    pub action: ChangeAction,
    /// The fields that change: for Add every field (no old value), for Remove every field
    /// (no new value), for Change only those that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// The kind of entry a [`PendingChange`] is about.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChangeTarget {
    #[default]
    SecurityRule,
    Route,
    AgentPool,
    /// The managed application security group poolnet would create.
    ApplicationSecurityGroup,
    /// The managed public IP prefix poolnet would create.
    PublicIPPrefix,
}

/// What happens to the entry.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChangeAction {
    #[default]
    Add,
    Change,
    Remove,
}

/// One field of a [`PendingChange`], as ARM names it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// e.g. priority, destinationPortRanges, networkProfile.allowedHostPorts.
    pub field: String,
    /// The value in Azure now; absent when the entry is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// The value poolnet would write; absent when the entry is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// What an object has written into Azure resources it shares with others: recorded before
/// each write and trimmed after it, so clean-up after spec edits and deletion remove exactly
/// this (see docs/ownership.md). Entries with poolnet's names that no object records are
/// never touched.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Owned {
    /// NSG rules, per NSG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_rules: Vec<OwnedEntries>,
    /// Routes, per route table (NodePoolNetwork only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<OwnedEntries>,
    /// The application security group poolnet created for this object (NodePoolNetwork only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "applicationSecurityGroupId"
    )]
    pub application_security_group: Option<String>,
    /// The public IP prefix poolnet created for this object (NodePoolNetwork only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "publicIPPrefixId"
    )]
    pub public_ip_prefix: Option<String>,
    /// The AKS agent pool poolnet created from spec.nodePool.template (NodePoolNetwork only):
    /// recorded before the create request, so deletion removes the pool poolnet made and
    /// never one it found.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "agentPoolId"
    )]
    pub agent_pool: Option<String>,
    /// The AKS cluster (ARM ID) the rules were written for (HostPortPolicy only: its rules
    /// can still be removed once its pool is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// Names of the entries (rules or routes) an object owns in one shared Azure resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OwnedEntries {
    /// ARM ID of the NSG or route table.
    pub id: String,
    /// Entry names in Azure, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Owned {
    /// Names recorded in resource `id`.
    pub fn names_in<'a>(entries: &'a [OwnedEntries], id: &str) -> &'a [String] {
        entries
            .iter()
            .find(|e| e.id.eq_ignore_ascii_case(id))
            .map(|e| e.names.as_slice())
            .unwrap_or_default()
    }

    /// Add `names` to what is recorded in `id`; returns whether anything was added.
    pub fn record(
        entries: &mut Vec<OwnedEntries>,
        id: &str,
        names: impl IntoIterator<Item = String>,
    ) -> bool {
        let pos = match entries.iter().position(|e| e.id.eq_ignore_ascii_case(id)) {
            Some(p) => p,
            None => {
                entries.push(OwnedEntries {
                    id: id.to_string(),
                    names: Vec::new(),
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[pos];
        let before = entry.names.len();
        for n in names {
            if !entry.names.iter().any(|m| m.eq_ignore_ascii_case(&n)) {
                entry.names.push(n);
            }
        }
        entry.names.sort();
        let added = entry.names.len() != before;
        if entry.names.is_empty() {
            entries.remove(pos);
        }
        added
    }

    /// Make what is recorded in `id` exactly `names` (after a confirmed write; empty drops
    /// the resource from the record).
    pub fn settle(
        entries: &mut Vec<OwnedEntries>,
        id: &str,
        names: impl IntoIterator<Item = String>,
    ) {
        entries.retain(|e| !e.id.eq_ignore_ascii_case(id));
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if !names.is_empty() {
            entries.push(OwnedEntries {
                id: id.to_string(),
                names,
            });
        }
        entries.sort_by_key(|e| e.id.to_ascii_lowercase());
    }

    /// Every resource ID recorded in `entries`.
    pub fn ids(entries: &[OwnedEntries]) -> impl Iterator<Item = &str> {
        entries.iter().map(|e| e.id.as_str())
    }

    /// The resources a reconcile or a clean-up writes: `spec`'s (in order), then every one
    /// `entries` records that `spec` does not name (IDs compare case-insensitively, like ARM).
    pub fn ids_with(
        entries: &[OwnedEntries],
        spec: impl IntoIterator<Item = String>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in spec.into_iter().chain(Self::ids(entries).map(String::from)) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&id)) {
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
mod owned_tests {
    use super::*;

    #[test]
    fn record_adds_and_settle_replaces_case_insensitively() {
        let mut e = Vec::new();
        assert!(Owned::record(
            &mut e,
            "/X/NSG",
            ["b".to_string(), "a".to_string()]
        ));
        assert!(!Owned::record(&mut e, "/x/nsg", ["A".to_string()]));
        assert_eq!(Owned::names_in(&e, "/x/Nsg"), ["a", "b"]);
        assert!(
            !Owned::record(&mut e, "/y", []),
            "nothing to add records nothing"
        );
        assert_eq!(e.len(), 1);
        Owned::settle(&mut e, "/x/nsg", ["c".to_string()]);
        assert_eq!(Owned::names_in(&e, "/X/NSG"), ["c"]);
        Owned::settle(&mut e, "/X/nsg", []);
        assert!(e.is_empty());
        Owned::record(&mut e, "/old", ["a".to_string()]);
        Owned::record(&mut e, "/Spec", ["b".to_string()]);
        let ids = Owned::ids_with(&e, ["/spec".to_string(), "/new".to_string()]);
        assert_eq!(ids, ["/spec", "/new", "/old"]);
    }
}
