//! `HostPortPolicy`: host ports for an app team's pods (namespaced).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::PortProtocol;

/// Host ports for the pods of one workload: automatic, cluster-unique assignment from a
/// range (or static ports), and NSG allow rules in the node pool's NSGs that make them
/// reachable.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "poolnet.dev",
    version = "v1alpha1",
    kind = "HostPortPolicy",
    plural = "hostportpolicies",
    singular = "hostportpolicy",
    shortname = "hpp",
    category = "poolnet",
    namespaced,
    status = "HostPortPolicyStatus",
    derive = "PartialEq",
    doc = "HostPortPolicy gives the pods it selects host ports on a NodePoolNetwork's nodes, assigned automatically and uniquely across the cluster (or static), and opens them in the pool's NSGs.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.nodePoolNetwork"}"#,
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.podCount"}"#,
    printcolumn = r#"{"name":"Ports-In-Use","type":"string","jsonPath":".status.portsInUse"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostPortPolicySpec {
    /// Name of the (cluster-scoped) NodePoolNetwork whose nodes and NSGs this policy uses.
    /// It must admit this namespace (spec.hostPortPolicies). Any NodePoolNetwork name: a
    /// DNS-1123 subdomain of at most 63 characters. Immutable.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("nodePoolNetwork must be the name of a NodePoolNetwork: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"),
        validation = Rule::new("self == oldSelf").message("nodePoolNetwork is immutable: ports are allocated and opened on one pool; create a new HostPortPolicy for another pool"),
    )]
    pub node_pool_network: String,

    /// Pods (in this namespace) the policy applies to. Checked as the API server checks a
    /// Deployment's selector: label keys and values, operators In, NotIn (with values),
    /// Exists and DoesNotExist (without).
    #[schemars(schema_with = "super::selector::label_selector_schema")]
    pub pod_selector: LabelSelector,

    /// Container ports that get host ports.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["containerPort".into(), "protocol".into()]),
        validation = Rule::new("self.all(p, !has(p.hostPort) || self.exists_one(q, has(q.hostPort) && q.hostPort == p.hostPort && q.protocol == p.protocol))").message("two ports ask for the same static hostPort and protocol; each static hostPort may be used once"),
    )]
    pub ports: Vec<PolicyPort>,

    /// Range automatic host ports are drawn from. Default 40000-59999 (as AKS). Must lie
    /// inside the NodePoolNetwork's allowedHostPorts for each protocol used.
    #[serde(default)]
    pub host_port_range: HostPortRange,

    /// Sources allowed to reach the ports (CIDRs, IPs, '*' or service tags). Default: the
    /// sourceAddressPrefixes of each NSG in the NodePoolNetwork.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 64)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub source_address_prefixes: Vec<String>,
}

/// A container port that gets a host port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// The containerPort in the pod spec.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: u16,
    /// TCP (default) or UDP.
    #[serde(default)]
    pub protocol: PortProtocol,
    /// A static host port to reserve instead of an automatic one. It must be inside the
    /// NodePoolNetwork's allowedHostPorts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub host_port: Option<u16>,
}

/// Inclusive host-port range.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start <= self.end").message("hostPortRange.start must not be greater than hostPortRange.end"))]
pub struct HostPortRange {
    /// First port.
    #[schemars(range(min = 1, max = 65535))]
    pub start: u16,
    /// Last port.
    #[schemars(range(min = 1, max = 65535))]
    pub end: u16,
}

impl Default for HostPortRange {
    fn default() -> Self {
        Self {
            start: 40000,
            end: 59999,
        }
    }
}

/// What poolnet has assigned and opened for a HostPortPolicy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostPortPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (kstatus) plus Accepted, PortsAllocated and SecurityRulesReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Pods holding host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_count: Option<i32>,

    /// Pod → assigned host ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<PodAllocation>,

    /// Used / total per protocol and range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utilization: Vec<RangeUtilization>,

    /// Summary for kubectl get, e.g. "6/20000".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports_in_use: Option<String>,

    /// NSG rules opened for this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_rules: Vec<RuleRef>,

    /// What this policy has written into NSGs (recorded before each write): its finalizer
    /// removes exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<super::common::Owned>,
}

/// Host ports held by one pod.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodAllocation {
    /// Pod name.
    pub pod: String,
    /// Assigned ports.
    pub ports: Vec<AllocatedPort>,
}

/// One assigned host port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AllocatedPort {
    /// Container port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// Host port.
    pub host_port: u16,
}

/// Utilisation of one range.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RangeUtilization {
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// e.g. "40000-59999".
    pub range: String,
    /// Ports held.
    pub used: i64,
    /// Ports in the range.
    pub total: i64,
}

/// An NSG rule opened for the policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// NSG ARM ID.
    pub nsg_id: String,
    /// Rule name.
    pub name: String,
    /// Rule priority.
    pub priority: i32,
}
