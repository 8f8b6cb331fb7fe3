use proptest::prelude::*;

use super::*;
use crate::Severity;

const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";
const RT: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt";

fn spec(extra: &str) -> NodePoolNetworkSpec {
    serde_yaml::from_str(&format!("nodePool: {{agentPoolId: {POOL}}}\n{extra}")).expect("test spec")
}

fn with_routes(routes: &str) -> NodePoolNetworkSpec {
    spec(&format!(
        "routeTable: {{id: {RT}, routes: [{{name: default, addressPrefix: 0.0.0.0/0, nextHopType: Internet}}, {routes}]}}"
    ))
}

fn pool(name: &str, count: u32) -> PoolFacts {
    PoolFacts {
        name: name.into(),
        os_type: Some("Linux".into()),
        count,
        max_surge: Some("1".into()),
        orchestrator_version: Some("1.30.3".into()),
        ..PoolFacts::default()
    }
}

fn kubenet() -> LiveFacts {
    LiveFacts {
        cluster: ClusterFacts {
            name: "aks".into(),
            network_plugin: Some("kubenet".into()),
            pod_cidr: Some("10.244.0.0/16".into()),
            service_cidr: Some("10.0.0.0/16".into()),
            kubernetes_version: Some("1.30.3".into()),
        },
        pool: Some(pool("game", 3)),
        other_pools: vec![pool("system", 2)],
        vnet_address_space: vec!["10.224.0.0/12".into()],
        existing_routes: None,
        host_port_feature_registered: None,
    }
}

fn azure_cni() -> LiveFacts {
    let mut f = kubenet();
    f.cluster.network_plugin = Some("azure".into());
    f.cluster.pod_cidr = None;
    f
}

fn fields(findings: &[Finding]) -> Vec<(&str, Severity, CheckId)> {
    findings
        .iter()
        .map(|f| (f.field.as_str(), f.severity, f.check))
        .collect()
}

#[test]
fn a_sound_spec_on_a_sound_cluster_passes() {
    let s = with_routes(
        "{name: hub, addressPrefix: 192.168.0.0/16, nextHopType: VirtualNetworkGateway}",
    );
    assert_eq!(check(&s, &kubenet()), vec![]);
    assert_eq!(
        check(&spec("allowedHostPorts: ['80/tcp']"), &azure_cni()),
        vec![]
    );
}

#[test]
fn a_route_table_needs_kubenet() {
    let s = with_routes(
        "{name: hub, addressPrefix: 192.168.0.0/16, nextHopType: VirtualNetworkGateway}",
    );
    let f = check(&s, &azure_cni());
    assert_eq!(
        fields(&f),
        [(
            "spec.routeTable",
            Severity::Error,
            CheckId::RoutesNeedKubenet
        )]
    );
    assert!(f[0].problem.contains("network plugin azure"), "{}", f[0]);
    assert!(f[0].problem.contains("no node route table"), "{}", f[0]);
    assert!(blocks_routes(&f[0]));
    // An unknown plugin judges nothing.
    let mut unknown = azure_cni();
    unknown.cluster.network_plugin = None;
    assert_eq!(check(&s, &unknown), vec![]);
}

#[test]
fn windows_pools_need_azure_cni() {
    let mut facts = kubenet();
    facts.pool.as_mut().expect("pool").os_type = Some("Windows".into());
    let f = check(&spec(""), &facts);
    assert_eq!(
        fields(&f),
        [(
            "spec.nodePool.agentPoolId",
            Severity::Error,
            CheckId::PoolWindowsNeedsCni
        )]
    );
    assert!(f[0].expected.contains("Azure CNI"), "{}", f[0]);
    assert!(!blocks_routes(&f[0]));
    facts.cluster.network_plugin = Some("azure".into());
    assert_eq!(check(&spec(""), &facts), vec![]);
}

#[test]
fn routes_into_the_pod_or_service_cidr_are_errors() {
    let s = with_routes(
        "{name: pods, addressPrefix: 10.244.3.0/24, nextHopType: VirtualAppliance, nextHopIpAddress: 10.224.0.4}, {name: svc, addressPrefix: 10.0.0.0/16, nextHopType: VirtualAppliance, nextHopIpAddress: 10.224.0.4}, {name: wide, addressPrefix: 10.0.0.0/8, nextHopType: VirtualAppliance, nextHopIpAddress: 10.224.0.4}",
    );
    let f = check(&s, &kubenet());
    assert_eq!(
        fields(&f),
        [
            (
                "spec.routeTable.routes[1].addressPrefix",
                Severity::Error,
                CheckId::RoutesClusterRange
            ),
            (
                "spec.routeTable.routes[2].addressPrefix",
                Severity::Error,
                CheckId::RoutesClusterRange
            ),
        ]
    );
    assert!(f[0].problem.contains("pod CIDR 10.244.0.0/16"), "{}", f[0]);
    assert!(
        f[1].problem.contains("service CIDR 10.0.0.0/16"),
        "{}",
        f[1]
    );
    assert!(f.iter().all(blocks_routes));
}

#[test]
fn routes_into_the_vnet_depend_on_the_next_hop() {
    let s = with_routes(
        "{name: a, addressPrefix: 10.225.0.0/16, nextHopType: None}, {name: b, addressPrefix: 10.226.0.0/16, nextHopType: VirtualAppliance, nextHopIpAddress: 10.224.0.4}, {name: c, addressPrefix: 10.227.0.0/16, nextHopType: VnetLocal}",
    );
    let f = check(&s, &kubenet());
    assert_eq!(
        fields(&f),
        [
            (
                "spec.routeTable.routes[1].addressPrefix",
                Severity::Error,
                CheckId::RoutesClusterRange
            ),
            (
                "spec.routeTable.routes[2].addressPrefix",
                Severity::Warning,
                CheckId::RoutesClusterRange
            ),
        ]
    );
    assert!(f[0].problem.contains("next hop None"), "{}", f[0]);
    // Without the VNet's address space nothing is said.
    let mut facts = kubenet();
    facts.vnet_address_space.clear();
    assert_eq!(check(&s, &facts), vec![]);
}

#[test]
fn routes_into_reserved_ranges_are_errors() {
    let s = with_routes(
        "{name: meta, addressPrefix: 169.254.169.254/32, nextHopType: VirtualAppliance, nextHopIpAddress: 10.224.0.4}",
    );
    let f = check(&s, &kubenet());
    assert_eq!(
        fields(&f),
        [(
            "spec.routeTable.routes[1].addressPrefix",
            Severity::Error,
            CheckId::RoutesReservedPrefix
        )]
    );
    assert!(blocks_routes(&f[0]));
}

#[test]
fn the_route_budget_counts_max_count_surge_and_other_pools() {
    let s = with_routes(
        "{name: hub, addressPrefix: 192.168.0.0/16, nextHopType: VirtualNetworkGateway}",
    );
    let mut facts = kubenet();
    // 2 custom routes; game scales to 300, surge 33% of 300 = 99; system 2 nodes: 403 > 400.
    let game = facts.pool.as_mut().expect("pool");
    game.enable_auto_scaling = true;
    game.max_count = Some(300);
    game.max_surge = Some("33%".into());
    let f = check(&s, &facts);
    assert_eq!(
        fields(&f),
        [(
            "spec.routeTable.routes",
            Severity::Error,
            CheckId::RoutesLimit
        )]
    );
    assert!(f[0].problem.contains("403 routes"), "{}", f[0]);
    assert!(f[0].problem.contains("autoscaler maxCount 300"), "{}", f[0]);
    assert!(f[0].problem.contains("maxSurge 33% = 99 nodes"), "{}", f[0]);
    // The route writer judges what fits now; this is what may come.
    assert!(!blocks_routes(&f[0]));
    // 32% of 300 = 96: 2 + 300 + 96 + 2 = 400 fits.
    facts.pool.as_mut().expect("pool").max_surge = Some("32%".into());
    assert_eq!(check(&s, &facts), vec![]);
    // Autoscaling off: the count is what counts.
    facts.pool.as_mut().expect("pool").enable_auto_scaling = false;
    facts.pool.as_mut().expect("pool").max_surge = Some("100%".into());
    assert_eq!(check(&s, &facts), vec![]);
    // Under Azure CNI nodes have no routes (and the table is refused for that instead).
    let mut cni = facts.clone();
    cni.cluster.network_plugin = Some("azure".into());
    cni.pool.as_mut().expect("pool").enable_auto_scaling = true;
    assert!(
        check(&s, &cni)
            .iter()
            .all(|f| f.check != CheckId::RoutesLimit)
    );
}

#[test]
fn a_pool_not_created_yet_counts_only_the_others() {
    let s = with_routes(
        "{name: hub, addressPrefix: 192.168.0.0/16, nextHopType: VirtualNetworkGateway}",
    );
    let mut facts = kubenet();
    facts.pool = None;
    facts.other_pools = vec![pool("system", 398)];
    assert_eq!(check(&s, &facts), vec![]);
    facts.other_pools[0].count = 399;
    let f = check(&s, &facts);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].problem.contains("pool not created yet"), "{}", f[0]);
    // A Windows check needs the pool: nothing to say without it.
    assert!(f.iter().all(|f| f.check != CheckId::PoolWindowsNeedsCni));
}

#[test]
fn ip_tags_and_host_ports_need_1_24() {
    let s = spec(
        "allowedHostPorts: ['80/tcp']\nnodePublicIP: {ipTags: [{ipTagType: RoutingPreference, tag: Internet}]}",
    );
    let mut facts = azure_cni();
    facts.pool.as_mut().expect("pool").orchestrator_version = Some("1.23.12".into());
    let f = check(&s, &facts);
    assert_eq!(
        fields(&f),
        [
            (
                "spec.nodePublicIP.ipTags",
                Severity::Error,
                CheckId::AksVersion
            ),
            (
                "spec.allowedHostPorts",
                Severity::Error,
                CheckId::AksVersion
            ),
        ]
    );
    assert!(f[0].problem.contains("pool game runs 1.23.12"), "{}", f[0]);
    // A new pool gets the cluster's version.
    facts.pool = None;
    facts.cluster.kubernetes_version = Some("1.22.4".into());
    let f = check(&s, &facts);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].problem.contains("cluster aks runs 1.22.4"), "{}", f[0]);
    facts.cluster.kubernetes_version = Some("1.24.0".into());
    assert_eq!(check(&s, &facts), vec![]);
    assert_eq!(check(&spec(""), &facts), vec![]);
}

#[test]
fn aks_host_port_assignment_next_to_poolnets_warns() {
    let s = spec("hostPortPolicies: {from: All}");
    let mut facts = azure_cni();
    assert_eq!(check(&s, &facts), vec![]);
    facts.host_port_feature_registered = Some(false);
    assert_eq!(check(&s, &facts), vec![]);
    facts.host_port_feature_registered = Some(true);
    let f = check(&s, &facts);
    assert_eq!(
        fields(&f),
        [(
            "spec.hostPortPolicies",
            Severity::Warning,
            CheckId::HostPortAutoAssign
        )]
    );
    assert_eq!(check(&spec(""), &facts), vec![]);
}

#[test]
fn versions_parse() {
    assert_eq!(major_minor("1.29.4"), Some((1, 29)));
    assert_eq!(major_minor("v1.24"), Some((1, 24)));
    assert_eq!(major_minor("latest"), None);
}

#[test]
fn surge_examples() {
    assert_eq!(surge_nodes(Some("33%"), 10), 4);
    assert_eq!(surge_nodes(Some("100%"), 7), 7);
    assert_eq!(surge_nodes(Some("5"), 3), 5);
    assert_eq!(surge_nodes(None, 3), 1);
    assert_eq!(surge_nodes(None, 0), 0);
    assert_eq!(surge_nodes(Some("lots"), 3), 1);
}

proptest! {
    /// AKS rounds a percentage up: the surge covers at least that share, by less than a node.
    #[test]
    fn percent_surge_rounds_up(p in 0u32..=100, nodes in 0u32..=5000) {
        let s = surge_nodes(Some(&format!("{p}%")), nodes);
        let exact = u64::from(nodes) * u64::from(p);
        prop_assert!(u64::from(s) * 100 >= exact);
        prop_assert!(u64::from(s) * 100 < exact + 100);
    }

    /// The budget finding appears exactly when nodes + surge + other pools + routes pass the limit.
    #[test]
    fn the_route_limit_is_exact(count in 0u32..500, max in 0u32..500, auto in any::<bool>(), surge in 0u32..=100, other in 0u32..400, limit in 10u32..1000) {
        let s = spec(&format!(
            "routeTable: {{id: {RT}, routeLimit: {limit}, routes: [{{name: default, addressPrefix: 0.0.0.0/0, nextHopType: Internet}}]}}"
        ));
        let mut facts = kubenet();
        facts.pool = Some(PoolFacts {
            enable_auto_scaling: auto,
            max_count: Some(max),
            max_surge: Some(format!("{surge}%")),
            ..pool("game", count)
        });
        facts.other_pools = vec![pool("system", other)];
        let nodes = if auto { max.max(count) } else { count };
        let needed = u64::from(nodes) + (u64::from(nodes) * u64::from(surge)).div_ceil(100) + u64::from(other) + 1;
        let over = check(&s, &facts).iter().any(|f| f.check == CheckId::RoutesLimit);
        prop_assert_eq!(over, needed > u64::from(limit));
    }

    /// A destination inside the pod CIDR is refused whatever its next hop; one that only
    /// contains it (a broader route) never is.
    #[test]
    fn pod_cidr_containment_decides(len in 0u8..=32, host in any::<u32>()) {
        let pod: Ipv4Net = "10.244.0.0/16".parse().expect("pod");
        let dest = Ipv4Net::new(std::net::Ipv4Addr::from(host), len).expect("len").trunc();
        let s = with_routes(&format!("{{name: r, addressPrefix: {dest}, nextHopType: VirtualAppliance, nextHopIpAddress: 192.168.0.4}}"));
        let mut facts = kubenet();
        facts.cluster.service_cidr = None;
        facts.vnet_address_space.clear();
        let hit = check(&s, &facts).iter().any(|f| f.check == CheckId::RoutesClusterRange);
        prop_assert_eq!(hit, pod.contains(&dest));
    }
}
