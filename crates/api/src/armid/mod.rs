//! Azure Resource Manager resource IDs:
//! `/subscriptions/{guid}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{childType}/{childName}...]`.
//!
//! ARM treats IDs case-insensitively; we keep the user's spelling for display and compare
//! with [`ResourceId::same_resource`].

use std::fmt;
use std::str::FromStr;

use crate::error::FieldError;

/// The resource kinds poolnet's users reference, with the ID shape each one must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    AgentPool,
    PublicIpPrefix,
    ApplicationSecurityGroup,
    NetworkSecurityGroup,
    RouteTable,
    VirtualNetwork,
    Subnet,
}

impl ResourceKind {
    /// Provider namespace and type chain, e.g. `("Microsoft.Network", &["publicIPPrefixes"])`.
    pub fn provider_and_types(self) -> (&'static str, &'static [&'static str]) {
        match self {
            ResourceKind::AgentPool => (CONTAINER_SERVICE, &["managedClusters", "agentPools"]),
            ResourceKind::PublicIpPrefix => (NETWORK, &["publicIPPrefixes"]),
            ResourceKind::ApplicationSecurityGroup => (NETWORK, &["applicationSecurityGroups"]),
            ResourceKind::NetworkSecurityGroup => (NETWORK, &["networkSecurityGroups"]),
            ResourceKind::RouteTable => (NETWORK, &["routeTables"]),
            ResourceKind::VirtualNetwork => (NETWORK, &["virtualNetworks"]),
            ResourceKind::Subnet => (NETWORK, &["virtualNetworks", "subnets"]),
        }
    }

    /// A template users can copy, e.g.
    /// `/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/publicIPPrefixes/<name>`.
    pub fn template(self) -> String {
        let (ns, types) = self.provider_and_types();
        let mut s = format!(
            "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/{ns}"
        );
        for t in types {
            s.push_str(&format!("/{t}/<name>"));
        }
        s
    }

    /// RE2 pattern (for CEL `matches`) that an ID of this kind must match, case-insensitive:
    /// the resource group and the names as [`ResourceId::parse_kind`] checks them (ASCII
    /// only: the parser also accepts resource groups with non-ASCII letters, as Azure does).
    pub fn cel_pattern(self) -> String {
        let (ns, types) = self.provider_and_types();
        let mut s = String::from(
            r"^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/providers/",
        );
        s.push_str(&ns.replace('.', r"\."));
        for t in types {
            s.push_str(&format!("/{t}/{NAME_PATTERN}"));
        }
        s.push('$');
        s
    }
}

/// Provider namespace of the networking resources poolnet manages.
pub const NETWORK: &str = "Microsoft.Network";
/// Provider namespace of AKS managed clusters and agent pools.
pub const CONTAINER_SERVICE: &str = "Microsoft.ContainerService";
/// Provider namespace of virtual machine scale sets.
pub const COMPUTE: &str = "Microsoft.Compute";

/// A parsed ARM resource ID.
///
/// This is the one parser of the ID grammar in poolnet: [`ResourceId::parse`] adds the rules
/// for user input, `poolnet_arm::ResourceId` the rules for request paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    pub provider: String,
    /// `(type, name)` pairs from the top-level resource down to the addressed child.
    pub segments: Vec<(String, String)>,
}

/// Which value of an ID a rule is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdPart {
    Subscription,
    ResourceGroup,
    Provider,
    Type,
    Name,
}

/// A break in the ID grammar itself, found before any rule about the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrammarError {
    NoLeadingSlash,
    EmptySegment,
    TooFewSegments,
    /// One of the fixed words `subscriptions`, `resourceGroups`, `providers` is not in its place.
    Keyword {
        expected: &'static str,
        found: String,
    },
    /// The last type has no name after it.
    TypeWithoutName {
        resource_type: String,
    },
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrammarError::NoLeadingSlash => f.write_str("an ARM resource ID starts with '/'"),
            GrammarError::EmptySegment => {
                f.write_str("empty path segment (doubled or trailing '/')")
            }
            GrammarError::TooFewSegments => f.write_str("too few segments for a resource ID"),
            GrammarError::Keyword { expected, found } => {
                write!(f, "expected '{expected}', found {found:?}")
            }
            GrammarError::TypeWithoutName { resource_type } => {
                write!(f, "type {resource_type:?} has no resource name after it")
            }
        }
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Azure resource group names: 1-90 of letters, digits, `_-.()`, not ending in `.`.
fn valid_resource_group(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 90
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
}

/// Network resource names: 1-80 chars, start alphanumeric, end alphanumeric or `_`, inside
/// letters, digits, `_`, `-`, `.`.
pub fn valid_resource_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 80
        && b[0].is_ascii_alphanumeric()
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// RE2 pattern of [`valid_resource_name`].
const NAME_PATTERN: &str = r"[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,78}[a-zA-Z0-9_])?";

/// What a valid network resource name looks like, for error messages.
pub const RESOURCE_NAME_RULE: &str = "1-80 characters of letters, digits, '_', '-' or '.', starting with a letter or digit and ending with a letter, digit or '_'";

impl ResourceId {
    /// A top-level resource: `/subscriptions/{s}/resourceGroups/{rg}/providers/{provider}/{type}/{name}`.
    /// Nothing is checked; parse the display form, or use `poolnet_arm::ResourceId`'s builders,
    /// where the values come from users or the network.
    pub fn top_level(
        subscription: impl Into<String>,
        resource_group: impl Into<String>,
        provider: impl Into<String>,
        resource_type: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            subscription: subscription.into(),
            resource_group: resource_group.into(),
            provider: provider.into(),
            segments: vec![(resource_type.into(), name.into())],
        }
    }

    /// Walks the grammar once, left to right, handing each value to `check` as soon as its
    /// place is known, so the first problem reported is the leftmost one.
    fn walk<E>(
        raw: &str,
        grammar: impl Fn(GrammarError) -> E,
        mut check: impl FnMut(IdPart, &str) -> Result<(), E>,
    ) -> Result<Self, E> {
        let rest = raw
            .strip_prefix('/')
            .ok_or_else(|| grammar(GrammarError::NoLeadingSlash))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(grammar(GrammarError::EmptySegment));
        }
        if parts.len() < 7 {
            return Err(grammar(GrammarError::TooFewSegments));
        }
        let keyword = |i: usize, expected: &'static str| {
            if parts[i].eq_ignore_ascii_case(expected) {
                Ok(())
            } else {
                Err(grammar(GrammarError::Keyword {
                    expected,
                    found: parts[i].to_string(),
                }))
            }
        };
        keyword(0, "subscriptions")?;
        check(IdPart::Subscription, parts[1])?;
        keyword(2, "resourceGroups")?;
        check(IdPart::ResourceGroup, parts[3])?;
        keyword(4, "providers")?;
        check(IdPart::Provider, parts[5])?;
        let tail = &parts[6..];
        if !tail.len().is_multiple_of(2) {
            return Err(grammar(GrammarError::TypeWithoutName {
                resource_type: tail[tail.len() - 1].to_string(),
            }));
        }
        let mut segments = Vec::with_capacity(tail.len() / 2);
        for pair in tail.chunks(2) {
            check(IdPart::Type, pair[0])?;
            check(IdPart::Name, pair[1])?;
            segments.push((pair[0].to_string(), pair[1].to_string()));
        }
        Ok(Self {
            subscription: parts[1].to_string(),
            resource_group: parts[3].to_string(),
            provider: parts[5].to_string(),
            segments,
        })
    }

    /// The grammar alone: keywords in place, no empty segment, types and names in pairs. The
    /// values are not checked; callers add their own rules.
    pub fn parse_grammar(raw: &str) -> Result<Self, GrammarError> {
        Self::walk(raw, |e| e, |_, _| Ok(()))
    }

    /// Parse any ARM resource ID (not a bare subscription or resource group) a user wrote.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |problem: String| {
            FieldError::new(
                "",
                raw,
                problem,
                "an ARM resource ID like /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/<Namespace>/<type>/<name>",
            )
        };
        Self::walk(
            raw,
            |e| bad(e.to_string()),
            |part, value| match part {
                IdPart::Subscription if !is_guid(value) => {
                    Err(bad(format!("subscription ID {value:?} is not a GUID")))
                }
                IdPart::ResourceGroup if !valid_resource_group(value) => Err(bad(format!(
                    "resource group name {value:?} is invalid (1-90 letters, digits, '_-.()', not ending in '.')"
                ))),
                IdPart::Provider
                    if !value.contains('.')
                        || !value
                            .split('.')
                            .all(|p| !p.is_empty() && p.chars().all(char::is_alphanumeric)) =>
                {
                    Err(bad(format!(
                        "provider namespace {value:?} is invalid (e.g. Microsoft.Network)"
                    )))
                }
                _ => Ok(()),
            },
        )
    }

    /// Parse and require the ID to address a resource of `kind`, with a valid name.
    pub fn parse_kind(raw: &str, kind: ResourceKind) -> Result<Self, FieldError> {
        let id = Self::parse(raw).map_err(|e| FieldError {
            expected: kind.template(),
            ..e
        })?;
        let (ns, types) = kind.provider_and_types();
        if !id.is_type(ns, types) {
            return Err(FieldError::new(
                "",
                raw,
                format!("this ID addresses a {}, not a {kind:?}", id.type_path()),
                kind.template(),
            ));
        }
        // AKS agent pool names are stricter than network names, but the cluster name and
        // the network names share the general rule; ARM has the final word on the rest.
        for (t, name) in &id.segments {
            if !valid_resource_name(name) {
                return Err(FieldError::new(
                    "",
                    raw,
                    format!("{t} name {name:?} is invalid"),
                    RESOURCE_NAME_RULE,
                ));
            }
        }
        Ok(id)
    }

    /// `Microsoft.Network/virtualNetworks/subnets` style type path.
    pub fn type_path(&self) -> String {
        let mut s = self.provider.clone();
        for (t, _) in &self.segments {
            s.push('/');
            s.push_str(t);
        }
        s
    }

    /// True when the ID is of `provider` with exactly the type chain `types`, e.g.
    /// `(CONTAINER_SERVICE, &["managedClusters", "agentPools"])`; ASCII case is ignored.
    pub fn is_type(&self, provider: &str, types: &[&str]) -> bool {
        self.provider.eq_ignore_ascii_case(provider)
            && self.segments.len() == types.len()
            && self
                .segments
                .iter()
                .zip(types)
                .all(|((t, _), want)| t.eq_ignore_ascii_case(want))
    }

    /// Type of the addressed (innermost) resource, e.g. `agentPools`.
    pub fn resource_type(&self) -> &str {
        self.segments.last().map(|(t, _)| t.as_str()).unwrap_or("")
    }

    /// Name of the addressed (innermost) resource.
    pub fn name(&self) -> &str {
        self.segments.last().map(|(_, n)| n.as_str()).unwrap_or("")
    }

    /// The name this ID gives to its first segment of `resource_type` (ASCII case ignored),
    /// e.g. the scale set's name in a VMSS VM's ID for `"virtualMachineScaleSets"`.
    pub fn name_of(&self, resource_type: &str) -> Option<&str> {
        self.position_of(resource_type)
            .map(|i| self.segments[i].1.as_str())
    }

    /// The ID cut after its first segment of `resource_type`: the enclosing resource of that
    /// type, e.g. the scale set of a VMSS VM's network interface.
    pub fn ancestor(&self, resource_type: &str) -> Option<ResourceId> {
        self.position_of(resource_type).map(|i| ResourceId {
            segments: self.segments[..=i].to_vec(),
            ..self.clone()
        })
    }

    fn position_of(&self, resource_type: &str) -> Option<usize> {
        self.segments
            .iter()
            .position(|(t, _)| t.eq_ignore_ascii_case(resource_type))
    }

    /// The ID of the parent resource (e.g. the managed cluster of an agent pool).
    pub fn parent(&self) -> Option<ResourceId> {
        (self.segments.len() > 1).then(|| ResourceId {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
            ..self.clone()
        })
    }

    /// ARM IDs are case-insensitive: equal when every value is equal ignoring ASCII case.
    pub fn same_resource(&self, other: &ResourceId) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .values()
                .zip(other.values())
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// Every value in order (subscription, resource group, provider, then types and names),
    /// for case-insensitive comparison and hashing.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [
            self.subscription.as_str(),
            &self.resource_group,
            &self.provider,
        ]
        .into_iter()
        .chain(
            self.segments
                .iter()
                .flat_map(|(t, n)| [t.as_str(), n.as_str()]),
        )
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription, self.resource_group, self.provider
        )?;
        for (t, n) in &self.segments {
            write!(f, "/{t}/{n}")?;
        }
        Ok(())
    }
}

impl FromStr for ResourceId {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests;
