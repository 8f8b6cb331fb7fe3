//! What the checker reads (a [`Snapshot`], an optional [`Baseline`]) and what it says (a
//! [`Report`] of [`Violation`]s and the write-amplification figure).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use poolnet_api::v1alpha1::{HostPortBlock, HostPortClaim, HostPortPolicy, NodePoolNetwork};
use poolnet_plan::hostports::{Key, ReleasePolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A pod as far as host ports are concerned (`poolnet_operator::hostports::index::pod_entry`
/// builds it from a Pod, as the operator's index does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHold {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Value of the `poolnet.dev/reservation` label.
    pub token: Option<String>,
    /// Host ports the pod's containers (and init containers) declare.
    pub keys: Vec<Key>,
    /// Host ports its `poolnet.dev/host-ports` annotation lists: what poolnet's webhook gave
    /// it (automatic ports, and ports its author wrote inside a reserved range). Inside a
    /// HostPortBlock's span this is the key's only record (no HostPortClaim).
    pub assigned: Vec<Key>,
    /// UID of the DaemonSet controlling the pod.
    pub daemon_set: Option<String>,
}

/// ARM as read: every resource the checker needed, by lower-cased ID.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmView {
    /// Lower-cased ARM ID → the resource as ARM returned it.
    pub resources: BTreeMap<String, Value>,
    /// Lower-cased IDs read and found absent (404).
    pub absent: BTreeSet<String>,
}

impl ArmView {
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.resources.get(&id.to_ascii_lowercase())
    }

    pub fn is_absent(&self, id: &str) -> bool {
        self.absent.contains(&id.to_ascii_lowercase())
    }

    /// Whether `id` was read at all (present or absent).
    pub fn was_read(&self, id: &str) -> bool {
        self.get(id).is_some() || self.is_absent(id)
    }

    pub fn insert(&mut self, id: &str, resource: Value) {
        self.resources.insert(id.to_ascii_lowercase(), resource);
    }

    pub fn insert_absent(&mut self, id: &str) {
        self.absent.insert(id.to_ascii_lowercase());
    }
}

/// Everything one check looks at, read once things are quiet.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pools: Vec<NodePoolNetwork>,
    pub policies: Vec<HostPortPolicy>,
    /// Namespace name → its labels (which pools admit which policies).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub claims: Vec<HostPortClaim>,
    /// Blocks of 64 ports given to pods from memory by their holder (no claim per key).
    pub blocks: Vec<HostPortBlock>,
    /// Pods that declare host ports or carry a reservation token.
    pub pods: Vec<PodHold>,
    pub arm: ArmView,
    /// When the snapshot was taken (claims' grace periods are measured against it).
    pub now: Timestamp,
}

/// How the check judges what it cannot know from one snapshot.
#[derive(Debug, Clone)]
pub struct Options {
    /// The operator's host-port release policy (`--host-port-grace`, and the 2 s
    /// confirmation): an unbound claim older than `grace + confirm_after + claim_slack` is
    /// a leak.
    pub release: ReleasePolicy,
    /// Time the repair loop may take beyond the release policy (its pass scheduling).
    pub claim_slack: Duration,
    /// Leftovers whose owner is gone (a DetachOnDelete object's rules, ASG or prefix, told
    /// by the owner UID in the rule description or the resource's tags) are notes, not
    /// violations.
    pub allow_detached: bool,
    /// ARM's accepted writes per lower-cased resource ID at the end of the run (armsim's
    /// counters), for (e).
    pub writes: Option<BTreeMap<String, u64>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            release: ReleasePolicy {
                grace: DEFAULT_GRACE,
                confirm_after: DEFAULT_CONFIRM_AFTER,
            },
            claim_slack: Duration::from_secs(5),
            allow_detached: false,
            writes: None,
        }
    }
}

/// The operator's default grace period for unbound claims
/// (`poolnet_operator::hostports::repair::DEFAULT_GRACE`).
pub const DEFAULT_GRACE: Duration = poolnet_operator::hostports::repair::DEFAULT_GRACE;
/// The operator's confirmation delay before releasing an orphan claim.
pub const DEFAULT_CONFIRM_AFTER: Duration =
    poolnet_operator::hostports::repair::DEFAULT_CONFIRM_AFTER;

/// The invariants of issue 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// (a) Foreign rules, routes and agent-pool fields are byte for byte what their writer left.
    #[serde(rename = "a")]
    Foreign,
    /// (b) What ARM holds of poolnet's equals what the live objects record.
    #[serde(rename = "b")]
    Owned,
    /// (c) Host ports: no key held twice, every claim held or inside its grace, every
    /// reserved key held through a claim or recorded by its pod inside a block.
    #[serde(rename = "c")]
    HostPorts,
    /// (d) Every object Ready at its current generation.
    #[serde(rename = "d")]
    Ready,
}

impl Invariant {
    pub fn letter(self) -> char {
        match self {
            Invariant::Foreign => 'a',
            Invariant::Owned => 'b',
            Invariant::HostPorts => 'c',
            Invariant::Ready => 'd',
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Invariant::Foreign => "foreign entries untouched",
            Invariant::Owned => "ARM equals the recorded ownership",
            Invariant::HostPorts => "host ports unique and held",
            Invariant::Ready => "objects Ready at their generation",
        }
    }
}

/// What exactly is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    // (a)
    /// A resource the baseline recorded is gone.
    ResourceGone,
    /// A foreign entry of the baseline is gone.
    ForeignEntryRemoved,
    /// A foreign entry differs from the baseline.
    ForeignEntryChanged,
    /// A field of the resource itself (not poolnet's) differs from the baseline.
    ForeignFieldChanged,
    // (b)
    /// An entry a live object wants (and records) is not there.
    Missing,
    /// An entry of poolnet's is there with other properties than its owner wants.
    Differs,
    /// An entry recorded by a writing object that nothing wants any more.
    Stale,
    /// An entry or resource named or tagged like this installation's that no live object
    /// records (stranded).
    Unrecorded,
    /// An entry a live object wants that its status.owned does not record.
    NotRecorded,
    /// status.owned names an entry or resource ARM does not hold.
    RecordedAbsent,
    // (c)
    /// Two live pods hold one host-port key.
    Duplicate,
    /// A claim bound to a pod that is gone.
    ClaimPodGone,
    /// A claim no pod holds, past its grace period and confirmation.
    OrphanClaim,
    /// A live pod holds a key whose claim names another holder.
    ForeignHolder,
    /// A live pod holds a key in a reserved range without a claim, and without recording it
    /// in its `poolnet.dev/host-ports` annotation inside an existing HostPortBlock's span.
    Unclaimed,
    // (d)
    /// Ready is not True.
    NotReady,
    /// status.observedGeneration is not metadata.generation.
    StaleGeneration,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub invariant: Invariant,
    pub kind: Kind,
    /// The Kubernetes object or ARM resource (ID) concerned.
    pub subject: String,
    /// The entry inside it: a rule or route name, a field path, a host-port key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<Value>,
    /// One sentence for people.
    pub message: String,
}

impl Violation {
    pub fn new(invariant: Invariant, kind: Kind, subject: impl Into<String>) -> Self {
        Self {
            invariant,
            kind,
            subject: subject.into(),
            entry: None,
            expected: None,
            found: None,
            message: String::new(),
        }
    }

    pub fn entry(mut self, entry: impl Into<String>) -> Self {
        self.entry = Some(entry.into());
        self
    }

    pub fn expected(mut self, v: Value) -> Self {
        self.expected = Some(v);
        self
    }

    pub fn found(mut self, v: Value) -> Self {
        self.found = Some(v);
        self
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}) {:?} {}",
            self.invariant.letter(),
            self.kind,
            self.subject
        )?;
        if let Some(e) = &self.entry {
            write!(f, " [{e}]")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// (e): ARM writes over resources that changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Amplification {
    /// Accepted ARM writes between the baseline and the check.
    pub writes: u64,
    /// Distinct resources whose state (without read-only fields) differs.
    pub changed: usize,
    /// `writes / changed`; `None` when nothing changed.
    pub ratio: Option<f64>,
    /// Per resource: writes, and whether it changed.
    pub resources: Vec<ResourceWrites>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceWrites {
    pub id: String,
    pub writes: u64,
    pub changed: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Things worth knowing that break nothing (detached leftovers, skipped comparisons).
    pub notes: Vec<String>,
    /// Inputs the checker could not interpret: the check is incomplete (exit code 2).
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amplification: Option<Amplification>,
    /// What was looked at: objects, claims, resources.
    pub checked: Checked,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    pub node_pool_networks: usize,
    pub host_port_policies: usize,
    pub host_port_claims: usize,
    #[serde(default)]
    pub host_port_blocks: usize,
    pub pods: usize,
    pub arm_resources: usize,
    pub baseline_resources: usize,
}

impl Report {
    /// Violations of one invariant.
    pub fn of(&self, invariant: Invariant) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.invariant == invariant)
            .collect()
    }

    /// 0: all invariants hold; 1: violations; 2: the check could not be completed.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if !self.violations.is_empty() {
            1
        } else {
            0
        }
    }
}

/// What a baseline records of one resource: the parts that are not poolnet's, as ARM
/// returned them without read-only fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineResource {
    /// ARM ID as the objects spell it.
    pub id: String,
    pub kind: ResourceClass,
    /// The resource without its entries (rules, routes), poolnet's tag and the fields
    /// poolnet writes (`excluded`).
    pub fields: Value,
    /// Foreign entries: name → entry as ARM returned it.
    #[serde(default)]
    pub entries: BTreeMap<String, Value>,
    /// JSON pointers left out of `fields` because poolnet writes them (agent pools of
    /// writing objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

/// The shared resources whose foreign parts (a) covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceClass {
    NetworkSecurityGroup,
    RouteTable,
    AgentPool,
}

/// The state before a run: foreign parts for (a), every resource's state and ARM's write
/// counters for (e).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub version: u32,
    /// RFC 3339.
    pub taken_at: String,
    pub resources: Vec<BaselineResource>,
    /// Lower-cased ID → the resource without read-only fields (`null`: absent).
    #[serde(default)]
    pub state: BTreeMap<String, Value>,
    /// Accepted writes per lower-cased resource ID when the baseline was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<BTreeMap<String, u64>>,
}

/// Format version of [`Baseline`] files.
pub const BASELINE_VERSION: u32 = 1;
