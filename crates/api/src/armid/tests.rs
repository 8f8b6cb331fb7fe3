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
    let id = ResourceId::parse_grammar("/subscriptions/s/resourcegroups/rg./providers/Network/a/b")
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

static SUBNET_RE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(&ResourceKind::Subnet.cel_pattern()).unwrap());
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
    fn accepted_ids_match_the_cel_pattern(sub_ok in prop::bool::ANY, rg in "[a-zA-Z0-9_.()-]{1,6}", name in "[a-zA-Z0-9_.()/!-]{1,12}") {
        // Both ways: the API server and the webhook accept the same IDs (ASCII names).
        let sub = if sub_ok { SUB } else { "1234" };
        let raw = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/routeTables/{name}");
        prop_assert_eq!(
            ResourceId::parse_kind(&raw, ResourceKind::RouteTable).is_ok(),
            ROUTE_TABLE_RE.is_match(&raw),
            "{}", raw
        );
    }
}

#[test]
fn the_crd_rules_use_these_patterns() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_string(&crate::v1alpha1::NodePoolNetwork::crd()).unwrap();
    for kind in [
        ResourceKind::AgentPool,
        ResourceKind::PublicIpPrefix,
        ResourceKind::ApplicationSecurityGroup,
        ResourceKind::NetworkSecurityGroup,
        ResourceKind::RouteTable,
    ] {
        // A CEL string literal escapes backslashes; JSON escapes them again.
        let literal = kind.cel_pattern().replace('\\', "\\\\");
        let json = serde_json::to_string(&literal).unwrap();
        assert!(
            crd.contains(json.trim_matches('"')),
            "no CEL rule uses the {kind:?} pattern {}",
            kind.cel_pattern()
        );
    }
}
