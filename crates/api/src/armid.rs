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

    /// RE2 pattern (for CEL `matches`) that an ID of this kind must match, case-insensitive.
    pub fn cel_pattern(self) -> String {
        let (ns, types) = self.provider_and_types();
        let mut s = String::from(
            r"^(?i)/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-\w.()]{1,90}/providers/",
        );
        s.push_str(&ns.replace('.', r"\."));
        for t in types {
            s.push_str(&format!("/{t}/[^/]{{1,80}}"));
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn prefix_id(name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/myResourceGroup3/providers/Microsoft.Network/publicIPPrefixes/{name}"
        )
    }

    #[test]
    fn parses_seed_prefix_id_case_insensitively() {
        let raw = format!(
            "/subscriptions/{SUB}/resourcegroups/MyResourceGroup3/providers/Microsoft.Network/publicIPPrefixes/MyPublicIPPrefix"
        );
        let id = ResourceId::parse_kind(&raw, ResourceKind::PublicIpPrefix).unwrap();
        assert_eq!(id.name(), "MyPublicIPPrefix");
        assert_eq!(id.resource_group, "MyResourceGroup3");
        assert!(id.same_resource(&ResourceId::parse(&prefix_id("mypublicipprefix")).unwrap()));
    }

    #[test]
    fn agent_pool_parent_is_cluster() {
        let raw = format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1/agentPools/game"
        );
        let id = ResourceId::parse_kind(&raw, ResourceKind::AgentPool).unwrap();
        assert_eq!(id.name(), "game");
        let cluster = id.parent().unwrap();
        assert_eq!(cluster.name(), "aks1");
        assert!(cluster.to_string().ends_with("managedClusters/aks1"));
    }

    #[test]
    fn rejects_with_reason_and_template() {
        let cases = [
            ("subscriptions/x", "starts with '/'"),
            (
                &format!("/subscriptions/{SUB}/resourceGroups/rg"),
                "too few segments",
            ),
            (
                "/subscriptions/nope/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p",
                "not a GUID",
            ),
            (
                &format!(
                    "/subscriptions/{SUB}/resourceGroups/rg./providers/Microsoft.Network/publicIPPrefixes/p"
                ),
                "resource group name",
            ),
            (
                &format!(
                    "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes"
                ),
                "has no resource name after it",
            ),
            (
                &format!(
                    "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p/"
                ),
                "empty path segment",
            ),
            (
                &format!(
                    "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt"
                ),
                "not a PublicIpPrefix",
            ),
            (
                &format!(
                    "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/-bad"
                ),
                "name \"-bad\" is invalid",
            ),
        ];
        for (raw, problem) in cases {
            let e = ResourceId::parse_kind(raw, ResourceKind::PublicIpPrefix).unwrap_err();
            assert!(e.problem.contains(problem), "{raw}: {e}");
            assert!(
                e.expected.contains("publicIPPrefixes/<name>")
                    || e.expected.contains("1-80 characters"),
                "{e}"
            );
        }
    }

    #[test]
    fn cel_pattern_agrees_with_parser_on_examples() {
        let re = regex::Regex::new(&ResourceKind::PublicIpPrefix.cel_pattern()).unwrap();
        assert!(re.is_match(&prefix_id("MyPublicIPPrefix")));
        assert!(re.is_match(&prefix_id("MyPublicIPPrefix").to_lowercase()));
        assert!(!re.is_match(&prefix_id("a/b")));
        let rt = regex::Regex::new(&ResourceKind::Subnet.cel_pattern()).unwrap();
        assert!(rt.is_match(&format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s")));
    }

    #[test]
    fn accessors_walk_the_segments() {
        let raw = format!(
            "/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/7/networkInterfaces/nic/ipConfigurations/ipconfig1"
        );
        let id = ResourceId::parse(&raw).unwrap();
        assert_eq!(id.resource_type(), "ipConfigurations");
        assert_eq!(id.name(), "ipconfig1");
        assert_eq!(id.name_of("VIRTUALMACHINES"), Some("7"));
        assert_eq!(id.name_of("subnets"), None);
        let vmss = id.ancestor("virtualmachinescalesets").unwrap();
        assert_eq!(
            vmss.to_string(),
            format!(
                "/subscriptions/{SUB}/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v"
            )
        );
        assert!(vmss.is_type(COMPUTE, &["VirtualMachineScaleSets"]));
        assert!(!vmss.is_type(NETWORK, &["virtualMachineScaleSets"]));
        assert!(vmss.parent().is_none());
        assert_eq!(
            vmss.type_path(),
            "Microsoft.Compute/virtualMachineScaleSets"
        );
    }

    #[test]
    fn top_level_displays_like_a_parsed_id() {
        let id = ResourceId::top_level(SUB, "myResourceGroup3", NETWORK, "publicIPPrefixes", "p");
        assert_eq!(id.to_string(), prefix_id("p"));
        assert_eq!(ResourceId::parse(&prefix_id("p")).unwrap(), id);
    }

    #[test]
    fn grammar_alone_leaves_the_values_to_the_caller() {
        let id =
            ResourceId::parse_grammar("/subscriptions/s/resourcegroups/rg./providers/Network/a/b")
                .unwrap();
        assert_eq!(
            (
                id.subscription.as_str(),
                id.resource_group.as_str(),
                id.provider.as_str()
            ),
            ("s", "rg.", "Network")
        );
        let cases = [
            ("subscriptions/s", GrammarError::NoLeadingSlash),
            (
                "/subscriptions/s/resourceGroups/rg/providers/N.s/a/b/",
                GrammarError::EmptySegment,
            ),
            (
                "/subscriptions/s/resourceGroups/rg",
                GrammarError::TooFewSegments,
            ),
            (
                "/subscriptions/s/resourceGroup/rg/providers/N.s/a/b",
                GrammarError::Keyword {
                    expected: "resourceGroups",
                    found: "resourceGroup".into(),
                },
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/N.s/a/b/c",
                GrammarError::TypeWithoutName {
                    resource_type: "c".into(),
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(ResourceId::parse_grammar(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn user_input_reports_the_leftmost_problem() {
        // Both the GUID and the `resourceGroups` keyword are wrong; the GUID comes first.
        let e = ResourceId::parse(
            "/subscriptions/nope/resourceGroupz/rg/providers/Microsoft.Network/routeTables/rt",
        )
        .unwrap_err();
        assert!(e.problem.contains("not a GUID"), "{e}");
    }

    static SUBNET_RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(&ResourceKind::Subnet.cel_pattern()).unwrap()
    });
    static ROUTE_TABLE_RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(&ResourceKind::RouteTable.cel_pattern()).unwrap()
    });

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}[a-zA-Z0-9_]"
    }

    proptest! {
        #[test]
        fn display_round_trips(rg in "[a-zA-Z0-9_()-]{1,20}", a in arb_name(), b in arb_name()) {
            let raw = format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{a}/subnets/{b}");
            let id = ResourceId::parse_kind(&raw, ResourceKind::Subnet).unwrap();
            prop_assert_eq!(id.to_string(), raw.clone());
            prop_assert!(SUBNET_RE.is_match(&raw));
        }

        #[test]
        fn equality_ignores_ascii_case(
            rg in "[a-zA-Z0-9_()-]{1,20}", a in arb_name(), b in arb_name(), flips in prop::collection::vec(prop::bool::ANY, 200),
        ) {
            let raw = format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{a}/subnets/{b}");
            let flipped: String = raw
                .chars()
                .zip(flips.iter().cycle())
                .map(|(c, &f)| if f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            let id = ResourceId::parse_kind(&raw, ResourceKind::Subnet).unwrap();
            let other = ResourceId::parse_kind(&flipped, ResourceKind::Subnet).unwrap();
            prop_assert!(id.same_resource(&other));
            // Display keeps the values' spelling; only the fixed keywords are canonical.
            prop_assert!(other.to_string().eq_ignore_ascii_case(&flipped));
            prop_assert_eq!(other.name(), &flipped[flipped.len() - b.len()..]);
            let renamed = ResourceId::parse(&format!("{raw}x")).unwrap();
            prop_assert!(!id.same_resource(&renamed));
        }

        #[test]
        fn grammar_round_trips_any_values(
            values in prop::collection::vec("[^/]{1,12}", 5..11),
        ) {
            let raw = format!(
                "/subscriptions/{}/resourceGroups/{}/providers/{}/{}",
                values[0], values[1], values[2], values[3..].join("/")
            );
            match ResourceId::parse_grammar(&raw) {
                Ok(id) => prop_assert_eq!(id.to_string(), raw),
                Err(e) => prop_assert!(values.len() % 2 == 0, "{raw}: {e}"),
            }
        }

        #[test]
        fn parser_never_panics(s in "(/[a-zA-Z0-9.-]{0,12}){0,10}") {
            let _ = ResourceId::parse(&s);
            let _ = ResourceId::parse_kind(&s, ResourceKind::AgentPool);
        }

        #[test]
        fn accepted_ids_match_the_cel_pattern(sub_ok in prop::bool::ANY, name in "[a-zA-Z0-9_.()/-]{1,12}") {
            let sub = if sub_ok { SUB } else { "1234" };
            let raw = format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/routeTables/{name}");
            if ResourceId::parse_kind(&raw, ResourceKind::RouteTable).is_ok() {
                prop_assert!(ROUTE_TABLE_RE.is_match(&raw), "{raw}");
            }
        }
    }
}
