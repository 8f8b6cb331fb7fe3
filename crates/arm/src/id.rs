//! Typed ARM resource IDs.
//!
//! ARM treats IDs case-insensitively (`resourceGroups` vs `resourcegroups`, names in any case), so
//! equality and hashing here ignore ASCII case while `Display` keeps the spelling we were given.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Provider namespace of the networking resources poolnet manages.
pub const NETWORK: &str = "Microsoft.Network";
/// Provider namespace of AKS managed clusters and agent pools.
pub const CONTAINER_SERVICE: &str = "Microsoft.ContainerService";
/// Provider namespace of virtual machine scale sets.
pub const COMPUTE: &str = "Microsoft.Compute";

/// One `{type}/{name}` pair below the top-level resource.
#[derive(Debug, Clone)]
pub struct ChildSegment {
    pub resource_type: String,
    pub name: String,
}

/// A resource-group scoped ARM resource ID:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{childType}/{childName}]*`.
#[derive(Debug, Clone)]
pub struct ResourceId {
    subscription: String,
    resource_group: String,
    provider: String,
    resource_type: String,
    name: String,
    children: Vec<ChildSegment>,
}

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
        let id = ResourceId {
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            provider: provider.into(),
            resource_type: resource_type.into(),
            name: name.into(),
            children: Vec::new(),
        };
        id.validate()?;
        Ok(id)
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
        mut self,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> Result<Self, ResourceIdError> {
        self.children.push(ChildSegment {
            resource_type: resource_type.into(),
            name: name.into(),
        });
        self.validate()?;
        Ok(self)
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The top-level type, e.g. `networkSecurityGroups` or `managedClusters`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }
    /// The top-level name.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn children(&self) -> &[ChildSegment] {
        &self.children
    }
    /// The name of the innermost resource (the child's name for a child resource).
    pub fn leaf_name(&self) -> &str {
        self.children.last().map_or(&self.name, |c| &c.name)
    }
    /// The full type path, e.g. `managedClusters/agentPools`.
    pub fn type_path(&self) -> String {
        let mut t = self.resource_type.clone();
        for c in &self.children {
            t.push('/');
            t.push_str(&c.resource_type);
        }
        t
    }

    /// True when this ID is of `provider` and the `/`-joined type path `type_path` (ASCII case-insensitive).
    pub fn is_type(&self, provider: &str, type_path: &str) -> bool {
        self.provider.eq_ignore_ascii_case(provider)
            && self.type_path().eq_ignore_ascii_case(type_path)
    }

    /// Checks the ID designates the expected kind before a request is built from it.
    pub fn expect_type(&self, provider: &str, type_path: &str) -> Result<(), ResourceIdError> {
        if self.is_type(provider, type_path) {
            Ok(())
        } else {
            Err(ResourceIdError {
                input: self.to_string(),
                reason: format!(
                    "expected a {provider}/{type_path} ID, got {}/{}",
                    self.provider,
                    self.type_path()
                ),
            })
        }
    }

    pub fn kind(&self) -> ResourceKind {
        ResourceKind::of_path(&self.to_string())
    }

    fn validate(&self) -> Result<(), ResourceIdError> {
        let err = |reason: String| ResourceIdError {
            input: self.to_string(),
            reason,
        };
        let segments = [
            ("subscription", &self.subscription),
            ("resource group", &self.resource_group),
            ("provider", &self.provider),
            ("resource type", &self.resource_type),
            ("name", &self.name),
        ];
        for (what, value) in segments {
            check_segment(what, value).map_err(err)?;
        }
        for c in &self.children {
            check_segment("child resource type", &c.resource_type).map_err(err)?;
            check_segment("child name", &c.name).map_err(err)?;
        }
        if !self.provider.contains('.') {
            return Err(err(format!(
                "provider namespace {:?} has no '.' (expected e.g. Microsoft.Network)",
                self.provider
            )));
        }
        Ok(())
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
        let err = |reason: &str| ResourceIdError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = input
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/subscriptions/'"))?;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if parts.len() < 7 {
            return Err(err(
                "expected /subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}",
            ));
        }
        let keyword = |i: usize, want: &str| {
            if parts[i].eq_ignore_ascii_case(want) {
                Ok(())
            } else {
                Err(err(&format!(
                    "segment {} is {:?}, expected {want:?}",
                    i + 1,
                    parts[i]
                )))
            }
        };
        keyword(0, "subscriptions")?;
        keyword(2, "resourceGroups")?;
        keyword(4, "providers")?;
        let tail = &parts[6..];
        if !tail.len().is_multiple_of(2) {
            return Err(err(
                "resource types and names must come in {type}/{name} pairs",
            ));
        }
        let mut id = ResourceId {
            subscription: parts[1].to_owned(),
            resource_group: parts[3].to_owned(),
            provider: parts[5].to_owned(),
            resource_type: tail[0].to_owned(),
            name: tail[1].to_owned(),
            children: Vec::new(),
        };
        for pair in tail[2..].chunks(2) {
            id.children.push(ChildSegment {
                resource_type: pair[0].to_owned(),
                name: pair[1].to_owned(),
            });
        }
        id.validate().map_err(|e| err(&e.reason))?;
        Ok(id)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.subscription, self.resource_group, self.provider, self.resource_type, self.name
        )?;
        for c in &self.children {
            write!(f, "/{}/{}", c.resource_type, c.name)?;
        }
        Ok(())
    }
}

impl ResourceId {
    fn folded_segments(&self) -> impl Iterator<Item = &str> {
        [
            self.subscription.as_str(),
            &self.resource_group,
            &self.provider,
            &self.resource_type,
            &self.name,
        ]
        .into_iter()
        .chain(
            self.children
                .iter()
                .flat_map(|c| [c.resource_type.as_str(), c.name.as_str()]),
        )
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.children.len() == other.children.len()
            && self
                .folded_segments()
                .zip(other.folded_segments())
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for s in self.folded_segments() {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NSG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/MC_rg_aks_westeurope/providers/Microsoft.Network/networkSecurityGroups/aks-agentpool-123-nsg";

    #[test]
    fn parses_a_top_level_resource() {
        let id: ResourceId = NSG.parse().unwrap();
        assert_eq!(id.subscription(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(id.resource_group(), "MC_rg_aks_westeurope");
        assert_eq!(id.provider(), "Microsoft.Network");
        assert_eq!(id.resource_type(), "networkSecurityGroups");
        assert_eq!(id.name(), "aks-agentpool-123-nsg");
        assert!(id.children().is_empty());
        assert_eq!(id.to_string(), NSG);
        assert_eq!(id.kind(), ResourceKind::NetworkSecurityGroup);
    }

    #[test]
    fn parses_child_resources_and_keywords_in_any_case() {
        let id: ResourceId = "/SUBSCRIPTIONS/s/resourcegroups/rg/PROVIDERS/Microsoft.ContainerService/managedClusters/aks/agentPools/np1"
            .parse()
            .unwrap();
        assert_eq!(id.children().len(), 1);
        assert_eq!(id.leaf_name(), "np1");
        assert_eq!(id.type_path(), "managedClusters/agentPools");
        assert!(id.is_type(CONTAINER_SERVICE, "managedclusters/agentpools"));
        assert_eq!(id.kind(), ResourceKind::AgentPool);
        assert_eq!(id, ResourceId::agent_pool("s", "rg", "aks", "np1").unwrap());
        assert_eq!(
            id.to_string(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/np1"
        );
    }

    #[test]
    fn equality_and_hash_ignore_case() {
        use std::collections::HashSet;
        let a: ResourceId = NSG.parse().unwrap();
        let b: ResourceId = NSG.to_ascii_lowercase().parse().unwrap();
        assert_eq!(a, b);
        let set: HashSet<ResourceId> = [a, b].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn rejects_malformed_ids_with_a_reason() {
        for bad in [
            "",
            "subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/x/y",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/a/b/c",
            "/subscriptions/s/resourcegroup/rg/providers/Microsoft.Network/a/b",
            "/subscriptions//resourceGroups/rg/providers/Microsoft.Network/a/b",
            "/subscriptions/s/resourceGroups/rg/providers/Network/a/b",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/a/..",
            "/subscriptions/s/resourceGroups/r%2Fg/providers/Microsoft.Network/a/b",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/a/b?x=1",
        ] {
            let e = bad.parse::<ResourceId>().unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn expect_type_names_both_types() {
        let id: ResourceId = NSG.parse().unwrap();
        id.expect_type(NETWORK, "networkSecurityGroups").unwrap();
        let e = id.expect_type(NETWORK, "routeTables").unwrap_err();
        assert!(e.reason.contains("routeTables") && e.reason.contains("networkSecurityGroups"));
    }

    #[test]
    fn kinds_of_request_paths() {
        let k = ResourceKind::of_path;
        assert_eq!(
            k(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v/publicipaddresses"
            ),
            ResourceKind::VmssPublicIps
        );
        assert_eq!(
            k("/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operations/abc"),
            ResourceKind::Operation
        );
        assert_eq!(
            k("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt"),
            ResourceKind::RouteTable
        );
        assert_eq!(k("/subscriptions/s/resourceGroups/rg"), ResourceKind::Other);
    }

    #[test]
    fn serde_round_trip_as_string() {
        let id: ResourceId = NSG.parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{NSG}\""));
        let back: ResourceId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ResourceId>("\"/nope\"").is_err());
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.()-]{1,20}".prop_filter("not a traversal", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(
            sub in segment(), rg in segment(), ns in "[A-Za-z]{1,10}\\.[A-Za-z]{1,10}",
            ty in segment(), name in segment(),
            children in proptest::collection::vec((segment(), segment()), 0..3),
        ) {
            let mut id = ResourceId::new(sub, rg, ns, ty, name).unwrap();
            for (t, n) in children {
                id = id.child(t, n).unwrap();
            }
            let text = id.to_string();
            let back: ResourceId = text.parse().unwrap();
            prop_assert_eq!(&back, &id);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = s.parse::<ResourceId>();
        }
    }
}
