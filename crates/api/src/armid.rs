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
            ResourceKind::AgentPool => (
                "Microsoft.ContainerService",
                &["managedClusters", "agentPools"],
            ),
            ResourceKind::PublicIpPrefix => ("Microsoft.Network", &["publicIPPrefixes"]),
            ResourceKind::ApplicationSecurityGroup => {
                ("Microsoft.Network", &["applicationSecurityGroups"])
            }
            ResourceKind::NetworkSecurityGroup => ("Microsoft.Network", &["networkSecurityGroups"]),
            ResourceKind::RouteTable => ("Microsoft.Network", &["routeTables"]),
            ResourceKind::VirtualNetwork => ("Microsoft.Network", &["virtualNetworks"]),
            ResourceKind::Subnet => ("Microsoft.Network", &["virtualNetworks", "subnets"]),
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

/// A parsed ARM resource ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    pub provider: String,
    /// `(type, name)` pairs from the top-level resource down to the addressed child.
    pub segments: Vec<(String, String)>,
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
    /// Parse any ARM resource ID (not a bare subscription or resource group).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |problem: String| {
            FieldError::new(
                "",
                raw,
                problem,
                "an ARM resource ID like /subscriptions/<subscription-id>/resourceGroups/<resource-group>/providers/<Namespace>/<type>/<name>",
            )
        };
        let rest = raw
            .strip_prefix('/')
            .ok_or_else(|| bad("an ARM resource ID starts with '/'".into()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("empty path segment (doubled or trailing '/')".into()));
        }
        if parts.len() < 7 {
            return Err(bad("too few segments for a resource ID".into()));
        }
        if !parts[0].eq_ignore_ascii_case("subscriptions") {
            return Err(bad(format!(
                "expected 'subscriptions', found {:?}",
                parts[0]
            )));
        }
        if !is_guid(parts[1]) {
            return Err(bad(format!("subscription ID {:?} is not a GUID", parts[1])));
        }
        if !parts[2].eq_ignore_ascii_case("resourceGroups") {
            return Err(bad(format!(
                "expected 'resourceGroups', found {:?}",
                parts[2]
            )));
        }
        if !valid_resource_group(parts[3]) {
            return Err(bad(format!(
                "resource group name {:?} is invalid (1-90 letters, digits, '_-.()', not ending in '.')",
                parts[3]
            )));
        }
        if !parts[4].eq_ignore_ascii_case("providers") {
            return Err(bad(format!("expected 'providers', found {:?}", parts[4])));
        }
        let provider = parts[5];
        if !provider.contains('.')
            || !provider
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(char::is_alphanumeric))
        {
            return Err(bad(format!(
                "provider namespace {provider:?} is invalid (e.g. Microsoft.Network)"
            )));
        }
        let tail = &parts[6..];
        if !tail.len().is_multiple_of(2) {
            return Err(bad(format!(
                "type {:?} has no resource name after it",
                tail[tail.len() - 1]
            )));
        }
        let segments = tail
            .chunks(2)
            .map(|c| (c[0].to_string(), c[1].to_string()))
            .collect();
        Ok(Self {
            subscription: parts[1].to_string(),
            resource_group: parts[3].to_string(),
            provider: provider.to_string(),
            segments,
        })
    }

    /// Parse and require the ID to address a resource of `kind`, with a valid name.
    pub fn parse_kind(raw: &str, kind: ResourceKind) -> Result<Self, FieldError> {
        let id = Self::parse(raw).map_err(|e| FieldError {
            expected: kind.template(),
            ..e
        })?;
        let (ns, types) = kind.provider_and_types();
        let types_match = id.segments.len() == types.len()
            && id
                .segments
                .iter()
                .zip(types)
                .all(|((t, _), want)| t.eq_ignore_ascii_case(want));
        if !id.provider.eq_ignore_ascii_case(ns) || !types_match {
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

    /// Name of the addressed (innermost) resource.
    pub fn name(&self) -> &str {
        self.segments.last().map(|(_, n)| n.as_str()).unwrap_or("")
    }

    /// The ID of the parent resource (e.g. the managed cluster of an agent pool).
    pub fn parent(&self) -> Option<ResourceId> {
        (self.segments.len() > 1).then(|| ResourceId {
            segments: self.segments[..self.segments.len() - 1].to_vec(),
            ..self.clone()
        })
    }

    /// ARM IDs are case-insensitive.
    pub fn same_resource(&self, other: &ResourceId) -> bool {
        self.to_string().eq_ignore_ascii_case(&other.to_string())
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
