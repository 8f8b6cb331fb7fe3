//! ARM resource IDs as request paths.
//!
//! The grammar is parsed once, by [`poolnet_api::armid::ResourceId`]; this type adds what a
//! request needs: no value may change the shape of the URL path it goes into. ARM treats IDs
//! case-insensitively (`resourceGroups` vs `resourcegroups`, names in any case), so equality and
//! hashing here ignore ASCII case while `Display` keeps the spelling we were given.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use poolnet_api::armid;
pub use poolnet_api::armid::{COMPUTE, CONTAINER_SERVICE, NETWORK};

/// A resource-group scoped ARM resource ID whose every value is safe in a request path:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{childType}/{childName}]*`.
#[derive(Debug, Clone)]
pub struct ResourceId(armid::ResourceId);

/// Why a string is not a resource ID we can address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ARM resource ID {input:?}: {reason}")]
pub struct ResourceIdError {
    pub input: String,
    pub reason: String,
}

/// Which of the resource kinds poolnet talks about an ID designates; the label used in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    NetworkSecurityGroup,
    ApplicationSecurityGroup,
    PublicIpPrefix,
    RouteTable,
    VmssPublicIps,
    AgentPool,
    /// Status monitors of long-running operations (`Azure-AsyncOperation` / `Location` URLs).
    Operation,
    Other,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 8] = [
        ResourceKind::NetworkSecurityGroup,
        ResourceKind::ApplicationSecurityGroup,
        ResourceKind::PublicIpPrefix,
        ResourceKind::RouteTable,
        ResourceKind::VmssPublicIps,
        ResourceKind::AgentPool,
        ResourceKind::Operation,
        ResourceKind::Other,
    ];

    /// Stable, low-cardinality label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::NetworkSecurityGroup => "network_security_group",
            ResourceKind::ApplicationSecurityGroup => "application_security_group",
            ResourceKind::PublicIpPrefix => "public_ip_prefix",
            ResourceKind::RouteTable => "route_table",
            ResourceKind::VmssPublicIps => "vmss_public_ips",
            ResourceKind::AgentPool => "agent_pool",
            ResourceKind::Operation => "operation",
            ResourceKind::Other => "other",
        }
    }

    /// Classifies a request path (an ID, a collection below one, or an operation monitor).
    pub fn of_path(path: &str) -> ResourceKind {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let has = |s: &str| segments.iter().any(|x| x == s);
        if has("operations") || has("operationresults") || has("operationstatuses") {
            ResourceKind::Operation
        } else if has("agentpools") {
            ResourceKind::AgentPool
        } else if has("virtualmachinescalesets") && has("publicipaddresses") {
            ResourceKind::VmssPublicIps
        } else if has("networksecuritygroups") {
            ResourceKind::NetworkSecurityGroup
        } else if has("applicationsecuritygroups") {
            ResourceKind::ApplicationSecurityGroup
        } else if has("publicipprefixes") {
            ResourceKind::PublicIpPrefix
        } else if has("routetables") {
            ResourceKind::RouteTable
        } else {
            ResourceKind::Other
        }
    }
}

impl ResourceId {
    /// A top-level resource of `provider`.
    pub fn new(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        provider: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        armid::ResourceId::top_level(subscription, resource_group, provider, resource_type, name)
            .try_into()
    }

    /// A `Microsoft.Network` resource, e.g. `network(sub, rg, "networkSecurityGroups", "nsg1")`.
    pub fn network(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        Self::new(subscription, resource_group, NETWORK, resource_type, name)
    }

    /// `Microsoft.ContainerService/managedClusters/{cluster}/agentPools/{pool}`.
    pub fn agent_pool(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        cluster: impl Into<String>,
        pool: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        Self::new(
            subscription,
            resource_group,
            CONTAINER_SERVICE,
            "managedClusters",
            cluster,
        )?
        .child("agentPools", pool)
    }

    /// `Microsoft.Compute/virtualMachineScaleSets/{vmss}`.
    pub fn vmss(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        Self::new(
            subscription,
            resource_group,
            COMPUTE,
            "virtualMachineScaleSets",
            name,
        )
    }

    /// This ID with one more `{type}/{name}` child segment.
    pub fn child(
        self,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        let mut id = self.0;
        id.segments.push((resource_type.into(), name.into()));
        id.try_into()
    }

    pub fn subscription(&self) -> &str {
        &self.0.subscription
    }
    pub fn resource_group(&self) -> &str {
        &self.0.resource_group
    }
    pub fn provider(&self) -> &str {
        &self.0.provider
    }
    /// The type of the addressed (innermost) resource, e.g. `networkSecurityGroups` or
    /// `agentPools`.
    pub fn resource_type(&self) -> &str {
        self.0.resource_type()
    }
    /// The name of the addressed (innermost) resource: the pool's name for an agent pool ID.
    pub fn name(&self) -> &str {
        self.0.name()
    }
    /// `(type, name)` pairs from the top-level resource down to the addressed one.
    pub fn segments(&self) -> &[(String, String)] {
        &self.0.segments
    }
    /// The full type path, e.g. `Microsoft.ContainerService/managedClusters/agentPools`.
    pub fn type_path(&self) -> String {
        self.0.type_path()
    }
    /// The parent resource, e.g. the managed cluster of an agent pool.
    pub fn parent(&self) -> Option<ResourceId> {
        self.0.parent().map(Self)
    }
    /// The name this ID gives to its first segment of `resource_type` (ASCII case ignored).
    pub fn name_of(&self, resource_type: &str) -> Option<&str> {
        self.0.name_of(resource_type)
    }
    /// The enclosing resource of `resource_type`: this ID cut after that segment.
    pub fn ancestor(&self, resource_type: &str) -> Option<ResourceId> {
        self.0.ancestor(resource_type).map(Self)
    }
    /// The parsed form, for code that speaks `poolnet_api`'s type.
    pub fn as_parsed(&self) -> &armid::ResourceId {
        &self.0
    }

    /// True when this ID is of `provider` and the `/`-joined type path `type_path` (ASCII case-insensitive).
    pub fn is_type(&self, provider: &str, type_path: &str) -> bool {
        let types: Vec<&str> = type_path.split('/').collect();
        self.0.is_type(provider, &types)
    }

    /// Checks the ID designates the expected kind before a request is built from it.
    pub fn expect_type(&self, provider: &str, type_path: &str) -> Result<(), ResourceIdError> {
        if self.is_type(provider, type_path) {
            Ok(())
        } else {
            Err(ResourceIdError {
                input: self.to_string(),
                reason: format!(
                    "expected a {provider}/{type_path} ID, got {}",
                    self.type_path()
                ),
            })
        }
    }

    pub fn kind(&self) -> ResourceKind {
        ResourceKind::of_path(&self.to_string())
    }
}

/// Checks every value is safe in a request path; the grammar is already known to hold.
impl TryFrom<armid::ResourceId> for ResourceId {
    type Error = ResourceIdError;

    fn try_from(id: armid::ResourceId) -> Result<Self, Self::Error> {
        let err = |reason: String| ResourceIdError {
            input: id.to_string(),
            reason,
        };
        let top = [
            ("subscription", &id.subscription),
            ("resource group", &id.resource_group),
            ("provider", &id.provider),
        ];
        for (what, value) in top {
            check_segment(what, value).map_err(err)?;
        }
        for (i, (t, n)) in id.segments.iter().enumerate() {
            let (what_type, what_name) = if i == 0 {
                ("resource type", "name")
            } else {
                ("child resource type", "child name")
            };
            check_segment(what_type, t).map_err(err)?;
            check_segment(what_name, n).map_err(err)?;
        }
        if id.segments.is_empty() {
            return Err(err("no resource type and name".into()));
        }
        if !id.provider.contains('.') {
            return Err(err(format!(
                "provider namespace {:?} has no '.' (expected e.g. Microsoft.Network)",
                id.provider
            )));
        }
        Ok(Self(id))
    }
}

impl From<ResourceId> for armid::ResourceId {
    fn from(id: ResourceId) -> Self {
        id.0
    }
}

/// A segment must be non-empty and must not change the shape of the URL path it goes into.
fn check_segment(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_control())
    {
        return Err(format!("{what} {value:?} contains {c:?}"));
    }
    if value == "." || value == ".." {
        return Err(format!("{what} {value:?} is a path traversal"));
    }
    Ok(())
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let id = parse_grammar(input).map_err(|e| ResourceIdError {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
        ResourceId::try_from(id).map_err(|e| ResourceIdError {
            input: input.to_owned(),
            reason: e.reason,
        })
    }
}

/// The shared grammar, with trailing '/'s dropped first: they name the same resource in a
/// request path, so IDs read back from ARM or Kubernetes may carry them (user input may not).
fn parse_grammar(input: &str) -> Result<armid::ResourceId, armid::GrammarError> {
    let trimmed = match input.strip_prefix('/') {
        Some(rest) => &input[..1 + rest.trim_end_matches('/').len()],
        None => input,
    };
    armid::ResourceId::parse_grammar(trimmed)
}

const SCALE_SETS: &str = "virtualMachineScaleSets";
const SCALE_SET_VMS: &str = "virtualMachines";

/// A scale-set VM as a Kubernetes Node's `spec.providerID` names it:
/// `azure:///subscriptions/…/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{instance}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VmssInstance {
    pub vmss: ResourceId,
    pub instance: String,
}

impl VmssInstance {
    /// `None` when the node is no scale-set VM (another cloud, a standalone VM, no ID at all);
    /// an error when it is one but its scale set's ID cannot go into a request.
    pub fn from_provider_id(provider_id: &str) -> Option<Result<Self, ResourceIdError>> {
        let id = parse_grammar(provider_id.strip_prefix("azure://")?).ok()?;
        let instance = instance_in(&id)?.to_owned();
        let vmss = id.ancestor(SCALE_SETS)?;
        Some(ResourceId::try_from(vmss).map(|vmss| VmssInstance { vmss, instance }))
    }

    /// The instance ID in the ID of something inside a scale-set VM, e.g. a VMSS public IP's
    /// ipConfiguration: `…/virtualMachineScaleSets/v/virtualMachines/7/networkInterfaces/v/ipConfigurations/ipconfig1` → `7`.
    pub fn instance_of(id: &str) -> Option<String> {
        instance_in(&parse_grammar(id).ok()?).map(str::to_owned)
    }
}

/// `{instance}` of `virtualMachineScaleSets/{vmss}/virtualMachines/{instance}` in `id`.
fn instance_in(id: &armid::ResourceId) -> Option<&str> {
    let at = id
        .segments
        .iter()
        .position(|(t, _)| t.eq_ignore_ascii_case(SCALE_SETS))?;
    match id.segments.get(at + 1) {
        Some((t, instance)) if t.eq_ignore_ascii_case(SCALE_SET_VMS) => Some(instance),
        _ => None,
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_resource(&other.0)
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for s in self.0.values() {
            for b in s.bytes() {
                state.write_u8(b.to_ascii_lowercase());
            }
            state.write_u8(b'/');
        }
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
