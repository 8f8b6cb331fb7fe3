use super::*;

const GAME: &str = include_str!("../../../../config/samples/game-pool.yaml");
const SUB: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-poolnet-demo/providers/Microsoft.Network";

fn game(status: serde_json::Value) -> NodePoolNetwork {
    let mut npn: NodePoolNetwork = serde_yaml::from_str(GAME).expect("sample");
    npn.metadata.generation = Some(2);
    npn.status = Some(serde_json::from_value(status).expect("status"));
    npn
}

fn policy(name: &str, status: serde_json::Value) -> HostPortPolicy {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1",
        "kind": "HostPortPolicy",
        "metadata": {"name": name, "namespace": "games", "generation": 1},
        "spec": {
            "nodePoolNetwork": "game",
            "podSelector": {"matchLabels": {"app": name}},
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "hostPortRange": {"start": 45000, "end": 45001}
        },
        "status": status
    }))
    .expect("policy")
}

fn converged() -> PoolView {
    let npn = game(serde_json::json!({
        "observedGeneration": 2,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "every part is reconciled", "lastTransitionTime": "2026-11-27T10:00:00Z"},
            {"type": "PrefixReady", "status": "True", "reason": "Reconciled", "message": "prefix pipp-game 20.61.12.16/28", "lastTransitionTime": "2026-11-27T10:00:00Z"}
        ],
        "publicIPPrefix": {"id": format!("{SUB}/publicIPPrefixes/pipp-game"), "cidr": "20.61.12.16/28",
            "ipTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}], "managed": false},
        "nodeCount": 2,
        "nodes": [
            {"nodeName": "aks-game-47472799-vmss000000", "publicIP": "20.61.12.16"},
            {"nodeName": "aks-game-47472799-vmss000001", "publicIP": "20.61.12.17"}
        ],
        "applicationSecurityGroups": [
            {"id": format!("{SUB}/applicationSecurityGroups/poolnet-1a2b3c-game"), "managed": true},
            {"id": format!("{SUB}/applicationSecurityGroups/asg-game-custom"), "managed": false}
        ],
        "securityGroups": [{"id": format!("{SUB}/networkSecurityGroups/nsg-snet-aks"),
            "rules": [{"name": "poolnet-1a2b3c-game-tcp-4d5e6f", "priority": 200, "protocol": "Tcp",
                "destinationPortRanges": ["80", "443", "40000-60000"], "sourceAddressPrefixes": ["Internet"]}],
            "unrecordedRules": ["poolnet-1a2b3c-old-tcp-000000"]}],
        "agentPool": {"enableNodePublicIP": true, "allowedHostPorts": "53/udp,80/tcp,443/tcp,40000-60000/tcp"}
    }));
    let full = policy(
        "tiny",
        serde_json::json!({
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-11-27T10:00:00Z"},
                {"type": "PortsAllocated", "status": "False", "reason": "RangeExhausted", "message": "full", "lastTransitionTime": "2026-11-27T10:00:00Z"}
            ],
            "podCount": 2,
            "allocations": [
                {"pod": "tiny-a", "ports": [{"containerPort": 8080, "protocol": "TCP", "hostPort": 45000}]},
                {"pod": "tiny-b", "ports": [{"containerPort": 8080, "protocol": "TCP", "hostPort": 45001}]}
            ],
            "utilization": [{"protocol": "TCP", "range": "45000-45001", "used": 2, "total": 2}],
            "securityRules": [{"nsgId": format!("{SUB}/networkSecurityGroups/nsg-snet-aks"), "name": "poolnet-1a2b3c-tiny-tcp-777777", "priority": 201}],
            "portsInUse": "2/2"
        }),
    );
    PoolView {
        node_pool_network: npn,
        host_port_policies: vec![full],
    }
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

#[test]
fn one_screen_joins_the_pool_its_policies_and_azure() {
    let text = render(&converged());
    assert!(text.starts_with("NodePoolNetwork game\n"), "{text}");
    assert!(line_with(&text, "Agent pool:").ends_with("aks-demo/game"));
    assert!(line_with(&text, "Ready:").ends_with("True  Reconciled"));
    assert!(line_with(&text, "Generation:").ends_with(" 2"));
    assert!(line_with(&text, "Prefix:").ends_with("20.61.12.16/28  pipp-game  (adopted)"));
    assert!(line_with(&text, "IP tags:").ends_with("RoutingPreference=Internet"));
    assert!(line_with(&text, "aks-game-47472799-vmss000001").ends_with("20.61.12.17"));
    assert!(line_with(&text, "Allowed (spec):").ends_with("80/tcp,443/tcp,53/udp,40000-60000/tcp"));
    assert!(line_with(&text, "In use:").contains("2 port(s) held by 2 pod(s) of 1 HostPortPolicy"));
    let policy_row = line_with(&text, "games/tiny");
    assert!(
        policy_row.contains("True")
            && policy_row.contains("45000-45001")
            && policy_row.contains("2/2 TCP"),
        "{policy_row}"
    );
    assert!(line_with(&text, "games/tiny-b").ends_with("8080/TCP → 45001"));
    assert!(line_with(&text, "ASGs:").contains("poolnet-1a2b3c-game (managed), asg-game-custom"));
    let rule = line_with(&text, "poolnet-1a2b3c-game-tcp-4d5e6f");
    assert!(
        rule.contains("200") && rule.contains("80,443,40000-60000") && rule.ends_with("Internet"),
        "{rule}"
    );
    assert!(line_with(&text, "not recorded").contains("poolnet-1a2b3c-old-tcp-000000"));
    assert!(
        line_with(&text, "poolnet-1a2b3c-tiny-tcp-777777")
            .ends_with("(201, HostPortPolicy games/tiny)")
    );
    assert!(line_with(&text, "Route table:").ends_with("none"));
    let cond = line_with(&text, "PrefixReady");
    assert!(
        cond.contains("True") && cond.ends_with("prefix pipp-game 20.61.12.16/28"),
        "{cond}"
    );
}

#[test]
fn columns_line_up() {
    let text = render(&converged());
    let header = line_with(&text, "RULE ");
    let row = line_with(&text, "poolnet-1a2b3c-game-tcp-4d5e6f");
    assert_eq!(
        header.find("PRIORITY"),
        row.find("200"),
        "\n{header}\n{row}"
    );
}

#[test]
fn a_pool_without_status_says_so() {
    let mut npn: NodePoolNetwork = serde_yaml::from_str(GAME).expect("sample");
    npn.metadata.generation = Some(1);
    let text = render(&PoolView {
        node_pool_network: npn,
        host_port_policies: Vec::new(),
    });
    assert!(line_with(&text, "Ready:").contains("is poolnet-operator running?"));
    assert!(line_with(&text, "Generation:").contains("not observed yet"));
    assert!(line_with(&text, "NSG nsg-snet-aks").contains("declared, nothing written yet"));
    line_with(&text, "Conditions");
    assert!(text.contains("  none yet"));
}

#[test]
fn a_pending_generation_and_a_failing_part_are_spelled_out() {
    let mut view = converged();
    view.node_pool_network.metadata.generation = Some(3);
    if let Some(st) = view.node_pool_network.status.as_mut() {
        st.conditions[0].status = "False".into();
        st.conditions[0].reason = "Throttled".into();
        st.conditions[0].message = "ASGReady: ARM is throttling requests (will retry)".into();
    }
    let text = render(&view);
    assert!(line_with(&text, "Generation:").contains("3 (status describes 2"));
    assert!(
        line_with(&text, "Ready:")
            .ends_with("False  Throttled: ASGReady: ARM is throttling requests (will retry)")
    );
}

#[test]
fn a_pool_poolnet_created_or_must_recreate_says_so() {
    let created = game(serde_json::json!({
        "agentPool": {"enableNodePublicIP": true, "created": true, "provisioningState": "Creating"}
    }));
    let text = render(&PoolView {
        node_pool_network: created,
        host_port_policies: vec![],
    });
    assert!(
        line_with(&text, "Agent pool:")
            .ends_with("aks-demo/game  (created by poolnet from spec.nodePool.template, Creating)"),
        "{text}"
    );
    assert!(!text.contains("Recreate with:"), "{text}");
    let found = game(serde_json::json!({
        "agentPool": {"enableNodePublicIP": false, "requiresRecreate": ["enableNodePublicIP is false on the pool but true in spec.nodePublicIP.enabled"],
                      "recreateCommand": "az aks nodepool add --name game --enable-node-public-ip", "provisioningState": "Succeeded"}
    }));
    let text = render(&PoolView {
        node_pool_network: found,
        host_port_policies: vec![],
    });
    assert!(
        line_with(&text, "Agent pool:").ends_with("aks-demo/game"),
        "{text}"
    );
    assert!(
        line_with(&text, "Recreate with:")
            .ends_with("az aks nodepool add --name game --enable-node-public-ip"),
        "{text}"
    );
}
