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
    assert_eq!(id.segments().len(), 1);
    assert_eq!(id.to_string(), NSG);
    assert_eq!(id.kind(), ResourceKind::NetworkSecurityGroup);
}

#[test]
fn parses_child_resources_and_keywords_in_any_case() {
    let id: ResourceId = "/SUBSCRIPTIONS/s/resourcegroups/rg/PROVIDERS/Microsoft.ContainerService/managedClusters/aks/agentPools/np1"
        .parse()
        .unwrap();
    assert_eq!(id.segments().len(), 2);
    assert_eq!(id.name(), "np1");
    assert_eq!(id.resource_type(), "agentPools");
    assert_eq!(id.name_of("managedclusters"), Some("aks"));
    assert_eq!(
        id.type_path(),
        "Microsoft.ContainerService/managedClusters/agentPools"
    );
    assert_eq!(
        id.parent().unwrap(),
        ResourceId::new("s", "rg", CONTAINER_SERVICE, "managedClusters", "aks").unwrap()
    );
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

#[test]
fn provider_ids_map_to_vmss_instances() {
    let pid = "azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-game-1-vmss/virtualMachines/2";
    let VmssInstance { vmss, instance } = VmssInstance::from_provider_id(pid).unwrap().unwrap();
    assert!(
        vmss.to_string()
            .ends_with("virtualMachineScaleSets/aks-game-1-vmss")
    );
    assert_eq!(
        vmss,
        ResourceId::vmss("s", "mc_rg", "aks-game-1-vmss").unwrap()
    );
    assert_eq!(instance, "2");
    assert!(VmssInstance::from_provider_id("azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1").is_none());
    let cfg = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/7/networkInterfaces/v/ipConfigurations/ipconfig1";
    assert_eq!(VmssInstance::instance_of(cfg).as_deref(), Some("7"));
}

#[test]
fn provider_ids_of_other_nodes_are_none_and_unsafe_ones_errors() {
    for other in [
        "kind://docker/kind/kind-worker",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/1",
        "azure://not-an-id",
        "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v",
    ] {
        assert!(VmssInstance::from_provider_id(other).is_none(), "{other}");
    }
    let traversal = "azure:///subscriptions/s/resourceGroups/../providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/1";
    let e = VmssInstance::from_provider_id(traversal)
        .unwrap()
        .unwrap_err();
    assert!(e.reason.contains("path traversal"), "{e}");
    assert_eq!(
        VmssInstance::instance_of(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
        ),
        None
    );
}

#[test]
fn trailing_slashes_are_dropped_and_user_rules_are_not_applied() {
    let id: ResourceId = format!("{NSG}//").parse().unwrap();
    assert_eq!(id.to_string(), NSG);
    // Not a GUID, a resource group name users could not write: still a request path.
    let id: ResourceId = "/subscriptions/s/resourceGroups/rg./providers/A.B/t/n"
        .parse()
        .unwrap();
    assert_eq!(id.resource_group(), "rg.");
}

#[test]
fn parsed_ids_convert_only_when_path_safe() {
    let parsed = armid::ResourceId::parse_grammar(NSG).unwrap();
    let id = ResourceId::try_from(parsed.clone()).unwrap();
    assert_eq!(id.as_parsed(), &parsed);
    assert_eq!(armid::ResourceId::from(id), parsed);
    let mut bad = parsed;
    bad.segments[0].1 = "a?b".into();
    assert!(ResourceId::try_from(bad.clone()).is_err());
    bad.segments.clear();
    assert!(ResourceId::try_from(bad).is_err());
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
    fn path_unsafe_values_are_refused(
        at in 0usize..7, prefix in segment(), bad in "[/?#%\\\\\u{0}-\u{1f}\u{7f}]", suffix in segment(),
    ) {
        let mut values: Vec<String> =
            ["s", "rg", "A.B", "t", "n", "c", "m"].iter().map(|v| v.to_string()).collect();
        values[at] = format!("{prefix}{bad}{suffix}");
        let built = ResourceId::new(&values[0], &values[1], &values[2], &values[3], &values[4])
            .and_then(|id| id.child(&values[5], &values[6]));
        prop_assert!(built.is_err(), "{:?}", values);
        let raw = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}/{}/{}",
            values[0], values[1], values[2], values[3], values[4], values[5], values[6]
        );
        prop_assert!(raw.parse::<ResourceId>().is_err(), "{raw}");
    }

    #[test]
    fn equality_and_hash_ignore_ascii_case(
        sub in segment(), rg in segment(), ty in segment(), name in segment(), upper in prop::bool::ANY,
    ) {
        use std::collections::hash_map::DefaultHasher;
        let id = ResourceId::new(&sub, &rg, NETWORK, &ty, &name).unwrap();
        let text = id.to_string();
        let recased = if upper { text.to_ascii_uppercase() } else { text.to_ascii_lowercase() };
        let other: ResourceId = recased.parse().unwrap();
        prop_assert_eq!(&other, &id);
        let hash = |id: &ResourceId| {
            let mut h = DefaultHasher::new();
            id.hash(&mut h);
            h.finish()
        };
        prop_assert_eq!(hash(&other), hash(&id));
        prop_assert_ne!(id.clone().child("x", "y").unwrap(), id);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,120}") {
        let _ = s.parse::<ResourceId>();
    }
}
