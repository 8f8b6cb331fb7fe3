//! What the themes share: the armsim fixture, a client pointed at it, IDs and rule builders.

pub use std::time::Duration;

pub use armsim::{
    FaultAction, FaultRule, Fixture, LroConfig, OtherWriter, OtherWriterAction, RunningSim,
    SimConfig, ThrottleConfig,
};
pub use poolnet_arm::models::{
    ApplicationSecurityGroup, IpTag, PublicIpPrefix, PublicIpPrefixPropertiesFormat,
    PublicIpPrefixSku, Route, RouteNextHopType, RoutePropertiesFormat, RouteTable, SecurityRule,
    SecurityRuleAccess, SecurityRuleDirection, SecurityRulePropertiesFormat, public_ip_prefix_sku,
    security_rule_properties_format::Protocol,
};
pub use poolnet_arm::{
    ArmClient, ArmConfig, ArmError, ArmNetwork, BudgetConfig, CallMethod, CredentialConfig, Lro,
    NotFoundExt, OperationHandle, PortRange, Precondition, ResourceId, ResourceKind, Secret,
    ThrottleSource, Url,
};

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const RG: &str = "rg-poolnet";
pub const NODE_RG: &str = "MC_rg-poolnet_aks_westeurope";

pub fn fixture() -> Fixture {
    let yaml = format!(
        r#"
subscriptions:
  - id: {SUB}
    resourceGroups:
      - name: {RG}
        location: westeurope
resources:
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks
    location: westeurope
    properties:
      kubernetesVersion: "1.30.3"
      agentPoolProfiles:
        - name: system
          count: 1
          vmSize: Standard_D2s_v5
          osType: Linux
          mode: System
        - name: games
          count: 3
          vmSize: Standard_D4s_v5
          osType: Linux
          mode: User
          enableNodePublicIP: true
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/byo-nsg
    location: westeurope
    properties:
      securityRules:
        - name: k8s-azure-lb_allow_IPv4_80
          properties:
            protocol: Tcp
            access: Allow
            direction: Inbound
            priority: 500
            sourceAddressPrefix: Internet
            sourcePortRange: "*"
            destinationAddressPrefix: "*"
            destinationPortRange: "80"
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/byo-vnet
    location: westeurope
    properties:
      addressSpace:
        addressPrefixes: [10.224.0.0/12]
  - id: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/routeTables/byo-rt
    location: westeurope
    properties:
      routes:
        - name: default
          properties:
            addressPrefix: 0.0.0.0/0
            nextHopType: Internet
"#
    );
    Fixture::from_yaml(&yaml).expect("test fixture parses")
}

pub struct Env {
    pub sim: RunningSim,
    pub arm: ArmClient,
}

pub fn env_with(config: SimConfig, budget: BudgetConfig) -> Env {
    let sim = armsim::start(
        SimConfig {
            seed: Some(fixture()),
            tls: true,
            ..config
        },
        "127.0.0.1:0".parse().expect("loopback address"),
    )
    .expect("armsim starts");
    let arm = client_for(&sim, budget);
    Env { sim, arm }
}

/// A client of `sim` of its own (a second writer has its own client).
pub fn client_for(sim: &RunningSim, budget: BudgetConfig) -> ArmClient {
    let mut config = ArmConfig::new(Url::parse(&sim.base_url()).expect("armsim URL"));
    config.transport.extra_ca_pem = sim.ca_pem();
    config.budget = budget;
    ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("armsim-token")),
    )
    .expect("client builds")
}

pub fn env() -> Env {
    env_with(SimConfig::default(), BudgetConfig::default())
}

pub fn nsg_id() -> ResourceId {
    ResourceId::network(SUB, RG, "networkSecurityGroups", "byo-nsg").unwrap()
}

pub fn rt_id() -> ResourceId {
    ResourceId::network(SUB, RG, "routeTables", "byo-rt").unwrap()
}

pub fn pool_id(pool: &str) -> ResourceId {
    ResourceId::agent_pool(SUB, RG, "aks", pool).unwrap()
}

/// AKS names a pool's scale set `aks-<pool>-<8 digits>-vmss`, the digits a hash of the cluster
/// ID; armsim uses FNV-1a of the lower-cased ID so fixtures can name it.
pub fn vmss_name(pool: &str) -> String {
    let cluster = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/managedClusters/aks"
    );
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster.to_ascii_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("aks-{pool}-{:08}-vmss", h % 100_000_000)
}

pub fn rule(name: &str, priority: i32, port: &str) -> SecurityRule {
    let mut props = SecurityRulePropertiesFormat::new(
        Protocol::Tcp,
        SecurityRuleAccess::Allow,
        priority,
        SecurityRuleDirection::Inbound,
    );
    props.source_address_prefix = Some("Internet".into());
    props.source_port_range = Some("*".into());
    props.destination_address_prefix = Some("*".into());
    props.destination_port_range = Some(port.into());
    let mut r = SecurityRule::new();
    r.name = Some(name.into());
    r.properties = Some(props);
    r
}

/// The NSG with one more security rule.
pub fn with_rule(
    nsg: &poolnet_arm::models::NetworkSecurityGroup,
    rule: SecurityRule,
) -> poolnet_arm::models::NetworkSecurityGroup {
    let mut nsg = nsg.clone();
    nsg.properties
        .get_or_insert_with(Default::default)
        .security_rules
        .push(rule);
    nsg
}

/// Waits for a write that may have been accepted asynchronously.
pub async fn settle<T>(arm: &dyn ArmNetwork, lro: Lro<T>) {
    if let Lro::Pending(handle) = lro {
        arm.wait(handle, Duration::from_secs(10))
            .await
            .expect("operation completes");
    }
}

pub fn rule_names(nsg: &poolnet_arm::models::NetworkSecurityGroup) -> Vec<String> {
    nsg.properties
        .as_ref()
        .map(|p| {
            p.security_rules
                .iter()
                .filter_map(|r| r.name.clone())
                .collect()
        })
        .unwrap_or_default()
}
