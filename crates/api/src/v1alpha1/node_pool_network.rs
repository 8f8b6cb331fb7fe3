//! `NodePoolNetwork`: how one AKS node pool is exposed to the network (cluster-scoped).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{IpTag, ReconcilePolicy};

/// Desired network exposure of one AKS node pool: node public IPs from a public IP prefix,
/// IP tags, allowed host ports, application security groups, NSG allow rules and custom
/// routes. One NodePoolNetwork per node pool.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "poolnet.dev",
    version = "v1alpha1",
    kind = "NodePoolNetwork",
    plural = "nodepoolnetworks",
    singular = "nodepoolnetwork",
    shortname = "npn",
    category = "poolnet",
    status = "NodePoolNetworkStatus",
    derive = "PartialEq",
    doc = "NodePoolNetwork declares how one AKS node pool is exposed to the network: node public IPs from a public IP prefix, IP tags, allowed host ports, application security groups, NSG allow rules and custom routes.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Prefix","type":"string","jsonPath":".status.publicIPPrefix.cidr"}"#,
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodeCount"}"#,
    printcolumn = r#"{"name":"Host-Ports","type":"string","jsonPath":".status.hostPorts"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","priority":1,"jsonPath":".spec.reconcilePolicy"}"#,
    printcolumn = r#"{"name":"Agent-Pool","type":"string","priority":1,"jsonPath":".spec.nodePool.agentPoolId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it is embedded in Azure rule and ASG names"),
)]
#[x_kube(
    validation = Rule::new("has(oldSelf.nodePublicIP) || !has(self.nodePublicIP)").message("spec.nodePublicIP cannot be added after creation: AKS sets enableNodePublicIP, the public IP prefix and IP tags only when a node pool is created; recreate the node pool, then create a new NodePoolNetwork with nodePublicIP"),
    validation = Rule::new("!has(oldSelf.nodePublicIP) || has(self.nodePublicIP)").message("spec.nodePublicIP cannot be removed: AKS fixes a node pool's public IP prefix and IP tags when the pool is created; delete and recreate the NodePoolNetwork (and the node pool) instead"),
    validation = Rule::new("!has(self.routeTable) || size(self.routeTable.routes) <= self.routeTable.routeLimit").message("spec.routeTable.routes has more routes than spec.routeTable.routeLimit allows (Azure allows 400 routes per route table by default)"),
    validation = Rule::new("!has(self.applicationSecurityGroups) || !has(self.applicationSecurityGroups.customIds) || size(self.applicationSecurityGroups.customIds) + ((has(self.applicationSecurityGroups.managed) ? self.applicationSecurityGroups.managed : (has(self.allowedHostPorts) && size(self.allowedHostPorts) > 0)) ? 1 : 0) <= 20").message("spec.applicationSecurityGroups: a NIC can be in at most 20 application security groups, and the managed ASG (in use when managed is true, or unset with allowedHostPorts set) counts as one; remove custom IDs or set managed: false"),
)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolNetworkSpec {
    /// The AKS node pool this object applies to.
    pub node_pool: NodePoolRef,

    /// Node public IPs: each node of the pool gets its own public IP, optionally from a
    /// public IP prefix and carrying IP tags. AKS sets these only when the pool is created;
    /// poolnet reports a mismatch with the live pool as condition AgentPoolReady=False,
    /// reason RequiresNodePoolRecreate.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nodePublicIP"
    )]
    pub node_public_ip: Option<NodePublicIp>,

    /// Host ports the pool's nodes accept traffic on, in the AKS format: entries
    /// `port/protocol` or `start-end/protocol` with protocol tcp or udp. Each item may hold one
    /// entry or a comma-separated list, e.g. ["80/tcp,443/tcp", "53/udp", "40000-60000/tcp"].
    /// Entries must not overlap. poolnet writes them to the agent pool's
    /// networkProfile.allowedHostPorts and opens them in the NSGs listed in
    /// networkSecurityGroups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new(r"self.all(s, s.matches('^\\s*(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?/(?i:tcp|udp)\\s*(,\\s*(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?/(?i:tcp|udp)\\s*)*$'))").message("each allowedHostPorts item must be entries like 80/tcp or 40000-60000/tcp (protocol tcp or udp, port numbers without leading zeros), separated by commas"))]
    pub allowed_host_ports: Vec<String>,

    /// Application security groups the pool's NICs join. NSG rules target the managed ASG,
    /// so only this pool's nodes are reachable on the allowed host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_security_groups: Option<AsgSpec>,

    /// NSGs to write allow rules into, e.g. the subnet NSG of a bring-your-own VNet, which
    /// AKS never touches. poolnet adds one rule per protocol and source set (all ports in
    /// destinationPortRanges) with the pool's ASG as destination, named `poolnet-<name>-…`,
    /// at priorities inside the given band. Rules it does not own are never changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["id".into()]),
        validation = Rule::new("self.all(a, self.exists_one(b, a.id.lowerAscii() == b.id.lowerAscii()))").message("an NSG is listed twice in networkSecurityGroups (ARM IDs are case-insensitive); list each NSG once, with all its sources in one entry"),
    )]
    pub network_security_groups: Vec<NsgTarget>,

    /// Which namespaces may attach HostPortPolicies to this pool. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port_policies: Option<PolicyAdmission>,

    /// A bring-your-own route table (kubenet) to merge custom routes into. Routes poolnet
    /// does not own (node routes written by the cloud provider, your own) are never touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<RouteTableSpec>,

    /// What poolnet does with Azure: Manage (create, update, delete what it owns), Observe
    /// (read and report only, never write) or DetachOnDelete (manage, but leave Azure
    /// resources in place when this object is deleted).
    #[serde(default)]
    pub reconcile_policy: ReconcilePolicy,
}

/// The node pool a NodePoolNetwork applies to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.template) || !has(self.template.osType) || self.template.osType != 'Windows' || self.agentPoolId.matches('/(?i:agentPools)/[a-z][a-z0-9]{0,5}$')").message("a Windows agent pool name (last segment of agentPoolId) must be 1-6 lower-case letters and digits, starting with a letter, as AKS requires"))]
pub struct NodePoolRef {
    /// ARM ID of the AKS agent pool:
    /// /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<cluster>/agentPools/<pool>.
    /// The pool name must follow AKS's rule: 1-12 lower-case letters and digits, starting
    /// with a letter (Windows pools allow only 6; poolnet cannot tell the OS at admission).
    /// Immutable, except for the letter case of the cluster part (ARM IDs are
    /// case-insensitive).
    #[schemars(length(max = 512))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.ContainerService/managedClusters/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?/agentPools/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')").message("agentPoolId must be an AKS agent pool ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.ContainerService/managedClusters/<cluster>/agentPools/<pool>"),
        validation = Rule::new(r"!self.matches('(?i)/agentPools/[^/]+$') || self.matches('/(?i:agentPools)/[a-z][a-z0-9]{0,11}$')").message("the agent pool name (last segment of agentPoolId) must be 1-12 lower-case letters and digits, starting with a letter, as AKS requires of node pool names (Windows pools: at most 6)"),
        validation = Rule::new("self.lowerAscii() == oldSelf.lowerAscii()").message("agentPoolId is immutable: a NodePoolNetwork belongs to one node pool for its whole life; create another NodePoolNetwork for another pool (a change of letter case only is allowed: ARM IDs are case-insensitive)"),
    )]
    pub agent_pool_id: String,

    /// Labels that select the pool's Kubernetes nodes. Default:
    /// {"kubernetes.azure.com/agentpool": "<pool name from agentPoolId>"}, the label AKS puts
    /// on every node. Keys and values must be label keys and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::selector::label_map_schema")]
    pub node_selector: BTreeMap<String, String>,

    /// Create the agent pool from this template when it does not exist, with this object's
    /// node public IP settings, allowed host ports and ASGs set at creation. poolnet deletes
    /// on deletion only a pool it created (recorded in status.owned.agentPoolId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<super::AgentPoolTemplate>,
}

/// Node public IPs of the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.enabled) ? self.enabled : true) == (has(oldSelf.enabled) ? oldSelf.enabled : true)").message("nodePublicIP.enabled is immutable: AKS sets enableNodePublicIP only when a node pool is created; recreate the node pool, then create a new NodePoolNetwork with the setting you want"),
    validation = Rule::new("has(self.prefix) == has(oldSelf.prefix)").message("nodePublicIP.prefix cannot be added or removed after creation: AKS sets a node pool's public IP prefix only when the pool is created"),
    validation = Rule::new("has(self.ipTags) == has(oldSelf.ipTags)").message("nodePublicIP.ipTags cannot be added or removed after creation: Azure fixes IP tags when the prefix and the node IPs are created"),
)]
pub struct NodePublicIp {
    /// Give each node its own public IP (AKS enableNodePublicIP). Default true. Immutable:
    /// AKS sets it only when the pool is created.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Where node public IPs come from. Omit to let AKS draw them from Azure's pool.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("has(self.existingId) == has(oldSelf.existingId) && has(self.managed) == has(oldSelf.managed)").message("nodePublicIP.prefix is immutable: Azure fixes a prefix's length, version, zones and IP tags when it is created, and AKS fixes a pool's prefix when the pool is created"))]
    pub prefix: Option<PrefixSource>,

    /// IP tags on the node public IPs and the managed prefix, e.g.
    /// [{ipTagType: RoutingPreference, tag: Internet}]. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["ipTagType".into()]),
        validation = Rule::new("size(self) == size(oldSelf) && self.all(t, oldSelf.exists(o, o.ipTagType == t.ipTagType && o.tag == t.tag))").message("nodePublicIP.ipTags is immutable: Azure fixes IP tags (including RoutingPreference) when the public IPs are created"),
        validation = Rule::new("self.all(t, t.ipTagType.matches('^[A-Za-z][A-Za-z0-9]*$'))").message("ipTagType must be letters and digits, starting with a letter, e.g. RoutingPreference"),
        validation = Rule::new("self.all(t, t.ipTagType != 'RoutingPreference' || t.tag == 'Internet')").message("RoutingPreference supports only the tag Internet (the Microsoft-network path is the default and has no tag)"),
    )]
    pub ip_tags: Option<Vec<IpTag>>,
}

fn default_true() -> bool {
    true
}

/// Exactly one of existingId or managed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.existingId) != has(self.managed)").message("set exactly one of prefix.existingId (adopt an existing public IP prefix) or prefix.managed (let poolnet create one)"))]
pub struct PrefixSource {
    /// ARM ID of an existing public IP prefix to adopt (poolnet never deletes it). Immutable,
    /// except for letter case (ARM IDs are case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(
        validation = Rule::new("self.lowerAscii() == oldSelf.lowerAscii()").message("nodePublicIP.prefix is immutable: AKS fixes a pool's prefix when the pool is created (a change of letter case only is allowed: ARM IDs are case-insensitive)"),
        validation = Rule::new(r"self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.Network/publicIPPrefixes/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')").message("existingId must be a public IP prefix ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Network/publicIPPrefixes/<name>"))]
    pub existing_id: Option<String>,

    /// A public IP prefix poolnet creates, owns and deletes with this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Field by field, zones as a set: `self == oldSelf` ignores list order in the API server
    // but not in every CEL evaluator. A new ManagedPrefix field must be added here.
    #[x_kube(validation = Rule::new("self.name == oldSelf.name && self.resourceGroup == oldSelf.resourceGroup && self.location == oldSelf.location && (has(self.ipVersion) ? self.ipVersion : 'IPv4') == (has(oldSelf.ipVersion) ? oldSelf.ipVersion : 'IPv4') && self.prefixLength == oldSelf.prefixLength && (has(self.zones) ? size(self.zones) : 0) == (has(oldSelf.zones) ? size(oldSelf.zones) : 0) && (!has(self.zones) || self.zones.all(z, has(oldSelf.zones) && z in oldSelf.zones))").message("nodePublicIP.prefix is immutable: Azure fixes a prefix's length, version, zones and IP tags when it is created, and AKS fixes a pool's prefix when the pool is created"))]
    pub managed: Option<ManagedPrefix>,
}

/// A public IP prefix for poolnet to create.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.ipVersion == 'IPv4' ? (self.prefixLength >= 28 && self.prefixLength <= 31) : (self.prefixLength >= 124 && self.prefixLength <= 127)").message("prefixLength must be 28-31 for IPv4 (16 to 2 addresses) or 124-127 for IPv6"))]
pub struct ManagedPrefix {
    /// Name of the prefix resource.
    #[schemars(length(min = 1, max = 80))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,78}[a-zA-Z0-9_])?$')").message("name must be 1-80 letters, digits, '_', '-' or '.', start with a letter or digit and end with a letter, digit or '_'"))]
    pub name: String,

    /// Resource group to create it in (usually the cluster's node resource group, MC_…).
    #[schemars(length(min = 1, max = 90))]
    #[x_kube(validation = Rule::new(r"self.matches('^[-\\w.()]*[-\\w()]$')").message("resourceGroup must be 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'"))]
    pub resource_group: String,

    /// Azure region, e.g. eastus. Must be the cluster's region.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+$')").message("location must be an Azure region name in lower case without blanks, e.g. eastus or chinaeast2"))]
    pub location: String,

    /// IPv4 or IPv6. Default IPv4.
    #[serde(default)]
    pub ip_version: IpVersion,

    /// Prefix length: 28-31 for IPv4 (16, 8, 4 or 2 addresses), 124-127 for IPv6. A pool
    /// needs one address per node, surge nodes included.
    #[schemars(range(min = 28, max = 127))]
    pub prefix_length: u8,

    /// Availability zones of the prefix, e.g. ["1","2","3"]. Empty means no zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(z, z in ['1', '2', '3'])").message("zones must be chosen from \"1\", \"2\" and \"3\""),
    )]
    pub zones: Vec<String>,
}

/// IP version of a public IP prefix.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IpVersion {
    #[default]
    IPv4,
    IPv6,
}

/// Application security groups of the pool's NICs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AsgSpec {
    /// Create and use an ASG owned by this object. Default: true when allowedHostPorts is
    /// set. NSG rules use it as their destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,

    /// ARM IDs of existing ASGs the pool's NICs also join. At most 20 ASGs per NIC in total,
    /// the managed one included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 512)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(a, self.exists_one(b, a.lowerAscii() == b.lowerAscii()))").message("an ASG is listed twice in customIds (ARM IDs are case-insensitive); list each ASG once"),
        validation = Rule::new(r"self.all(id, id.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.Network/applicationSecurityGroups/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$'))").message("each customIds item must be an ASG ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Network/applicationSecurityGroups/<name>"),
    )]
    pub custom_ids: Vec<String>,
}

/// An NSG poolnet writes allow rules into.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NsgTarget {
    /// ARM ID of the network security group.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.Network/networkSecurityGroups/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')").message("id must be an NSG ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Network/networkSecurityGroups/<name>"))]
    pub id: String,

    /// Source address prefixes allowed in: CIDRs, IP addresses, '*' or service tags such as
    /// Internet. Default ["Internet"].
    #[serde(default = "default_sources")]
    #[schemars(length(min = 1, max = 256), inner(length(max = 64)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub source_address_prefixes: Vec<String>,

    /// Priority band for poolnet's rules in this NSG. Default 100-499: below AKS and the
    /// cloud controller, whose rules use 500-4096.
    #[serde(default)]
    pub priorities: PriorityBand,
}

fn default_sources() -> Vec<String> {
    vec!["Internet".to_string()]
}

/// An inclusive range of NSG rule priorities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from <= self.to").message("priorities.from must not be greater than priorities.to"))]
pub struct PriorityBand {
    /// Lowest priority number poolnet may use (100 is the highest precedence Azure allows).
    #[schemars(range(min = 100, max = 499))]
    pub from: u16,
    /// Highest priority number poolnet may use; at most 499 so poolnet never competes with
    /// AKS and cloud-controller rules (500-4096).
    #[schemars(range(min = 100, max = 499))]
    pub to: u16,
}

impl Default for PriorityBand {
    fn default() -> Self {
        Self { from: 100, to: 499 }
    }
}

/// Which namespaces may attach HostPortPolicies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from == 'Selector' ? has(self.selector) : !has(self.selector)").message("hostPortPolicies.selector is required when from is Selector, and only then"))]
pub struct PolicyAdmission {
    /// None (default), All, or Selector (namespaces whose labels match selector).
    #[serde(default)]
    pub from: PolicyNamespaces,
    /// Namespace label selector, used when from is Selector. Checked as the API server
    /// checks a Deployment's selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::selector::optional_label_selector_schema")]
    pub selector: Option<LabelSelector>,
}

/// Which namespaces may attach HostPortPolicies.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyNamespaces {
    #[default]
    None,
    All,
    Selector,
}

/// A bring-your-own route table and the routes to merge into it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.routes) || self.routes.all(r, self.routes.exists_one(q, q.addressPrefix == r.addressPrefix))").message("two routes have the same addressPrefix: Azure allows one route per prefix in a route table"))]
pub struct RouteTableSpec {
    /// ARM ID of the route table (associated with the pool's subnet).
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"self.matches('^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/Microsoft\\.Network/routeTables/[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?$')").message("id must be a route table ID: /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/Microsoft.Network/routeTables/<name>"))]
    pub id: String,

    /// Routes to add. poolnet names them `poolnet-<name>` in Azure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 400))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub routes: Vec<RouteSpec>,

    /// Routes a table may hold: Azure's limit, 400 by default (being raised to 1000).
    /// kubenet also writes one route per node into the table, so routes + nodes must fit.
    #[serde(default = "default_route_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub route_limit: u32,
}

fn default_route_limit() -> u32 {
    400
}

/// One user-defined route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.nextHopType == 'VirtualAppliance' ? has(self.nextHopIpAddress) : !has(self.nextHopIpAddress)").message("nextHopIpAddress is required when nextHopType is VirtualAppliance, and not allowed otherwise"))]
pub struct RouteSpec {
    /// Route name (1-72 characters; poolnet prefixes it with "poolnet-" in Azure).
    #[schemars(length(min = 1, max = 72))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-zA-Z0-9]([a-zA-Z0-9_.-]*[a-zA-Z0-9_])?$')").message("route name must be letters, digits, '_', '-' or '.', start with a letter or digit and end with a letter, digit or '_'"))]
    pub name: String,
    /// Destination CIDR (e.g. 0.0.0.0/0) or service tag.
    #[schemars(length(min = 1, max = 64))]
    pub address_prefix: String,
    /// VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance or None.
    pub next_hop_type: NextHopType,
    /// Appliance address, only for VirtualAppliance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    pub next_hop_ip_address: Option<String>,
}

/// ARM route next hop type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHopType {
    VirtualNetworkGateway,
    VnetLocal,
    Internet,
    VirtualAppliance,
    None,
}

impl From<NextHopType> for crate::route::NextHopKind {
    fn from(t: NextHopType) -> Self {
        use crate::route::NextHopKind as K;
        match t {
            NextHopType::VirtualNetworkGateway => K::VirtualNetworkGateway,
            NextHopType::VnetLocal => K::VnetLocal,
            NextHopType::Internet => K::Internet,
            NextHopType::VirtualAppliance => K::VirtualAppliance,
            NextHopType::None => K::None,
        }
    }
}

/// What poolnet has learned and done for a NodePoolNetwork.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolNetworkStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (kstatus) plus one condition per part: PrefixReady, AgentPoolReady, ASGReady,
    /// SecurityRulesReady, RoutesReady, NodeIPsReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The public IP prefix in use.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "publicIPPrefix"
    )]
    pub public_ip_prefix: Option<PrefixStatus>,

    /// Number of nodes in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,

    /// Node name → public IP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeAddress>,

    /// Allowed host ports in canonical form, e.g. "80/tcp,443/tcp,40000-60000/tcp".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<String>,

    /// ASGs the pool's NICs are in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_security_groups: Vec<AsgStatus>,

    /// poolnet's rules per NSG.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<NsgStatus>,

    /// Total number of NSG rules poolnet owns for this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<i32>,

    /// Route table usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<RouteTableStatus>,

    /// What the AKS agent pool reports for the fields poolnet manages or compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_pool: Option<AgentPoolStatus>,

    /// What this object has written into shared Azure resources (recorded before each
    /// write): clean-up after spec edits and deletion remove exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned: Option<super::common::Owned>,

    /// reconcilePolicy Observe: the exact changes poolnet would make, each rule, route and
    /// agent-pool field with its old and new value (`kubectl poolnet diff NAME`). Empty when
    /// Azure already matches, and for objects poolnet manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_changes: Vec<super::common::PendingChange>,
}

/// The public IP prefix in use.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrefixStatus {
    /// ARM ID.
    pub id: String,
    /// Allocated CIDR, e.g. 20.1.2.16/28.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// IP tags on the prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_tags: Vec<IpTag>,
    /// True when poolnet created it and will delete it.
    #[serde(default)]
    pub managed: bool,
    /// Public IPs allocated from it (this pool's nodes and any other user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_in_use: Option<u32>,
}

/// One node and its public IP.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// Kubernetes node name (VMSS computer name).
    pub node_name: String,
    /// Public IP address.
    #[serde(rename = "publicIP")]
    pub public_ip: String,
}

/// One ASG of the pool.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AsgStatus {
    /// ARM ID.
    pub id: String,
    /// True for the ASG poolnet created for this object.
    #[serde(default)]
    pub managed: bool,
}

/// poolnet's rules in one NSG.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NsgStatus {
    /// NSG ARM ID.
    pub id: String,
    /// Rules poolnet owns there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleStatus>,
    /// Rules named like this cluster's poolnet that no object records (left by a
    /// DetachOnDelete deletion, or copied by hand): poolnet leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unrecorded_rules: Vec<String>,
}

/// One NSG rule poolnet owns.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// Rule name in Azure.
    pub name: String,
    /// Rule priority.
    pub priority: i32,
    /// Tcp or Udp.
    pub protocol: String,
    /// Ports or ranges, e.g. ["80", "40000-60000"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_port_ranges: Vec<String>,
    /// Sources allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_address_prefixes: Vec<String>,
}

/// Route table usage.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteTableStatus {
    /// ARM ID.
    pub id: String,
    /// Routes poolnet owns there (Azure names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_routes: Vec<String>,
    /// Routes named like poolnet's that no object records (left by a DetachOnDelete
    /// deletion, or made by hand): poolnet leaves them alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unrecorded_routes: Vec<String>,
    /// All routes in the table.
    pub route_count: i32,
    /// Routes the table may hold.
    pub route_limit: i32,
}

/// What the agent pool reports.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolStatus {
    /// enableNodePublicIP on the pool.
    #[serde(default, rename = "enableNodePublicIP")]
    pub enable_node_public_ip: bool,
    /// nodePublicIPPrefixID on the pool.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "nodePublicIPPrefixID"
    )]
    pub node_public_ip_prefix_id: Option<String>,
    /// nodePublicIPTags on the pool.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "nodePublicIPTags"
    )]
    pub node_public_ip_tags: Vec<IpTag>,
    /// networkProfile.allowedHostPorts, canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_host_ports: Option<String>,
    /// networkProfile.applicationSecurityGroups on the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_security_groups: Vec<String>,
    /// Creation-only fields that differ from the spec (the pool must be recreated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires_recreate: Vec<String>,
    /// When requiresRecreate is set: the `az aks nodepool add` command that creates the pool
    /// the spec describes (after `az aks nodepool delete` of this one, or under a new name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreate_command: Option<String>,
    /// The pool's provisioningState (Succeeded, Creating, Updating, Scaling, Deleting, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// True when poolnet created this pool from spec.nodePool.template (and deletes it with
    /// this object, unless reconcilePolicy is DetachOnDelete).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// What the pool held before poolnet first changed it; restored when this object is
    /// deleted (reconcilePolicy Manage), so deletion leaves the pool as it found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<AgentPoolOriginal>,
}

/// The agent pool's own settings before poolnet changed them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolOriginal {
    /// networkProfile.allowedHostPorts, canonical form ("" when none).
    #[serde(default)]
    pub allowed_host_ports: String,
    /// networkProfile.applicationSecurityGroups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_security_groups: Vec<String>,
}
