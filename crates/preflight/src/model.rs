//! The network plan: what `kubectl poolnet plan -f` reads (YAML or JSON, camelCase keys) and
//! what the checks take as input. Addresses are kept as written (see `net`) so that a bad
//! value becomes a finding with its field path. The format is documented in
//! `docs/plan-format.md`.

use serde::{Deserialize, Serialize};

use super::net::{Address, AddressRange, PortRange, Prefix};

/// AKS's defaults when a cluster leaves its ranges out.
pub const AKS_DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
pub const AKS_DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/16";
pub const AKS_DEFAULT_DNS_SERVICE_IP: &str = "10.0.0.10";

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPlan {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub vnets: Vec<VirtualNetwork>,
    #[serde(default)]
    pub route_tables: Vec<RouteTable>,
    #[serde(default)]
    pub on_premises: Vec<OnPremisesRange>,
    #[serde(default)]
    pub clusters: Vec<AksCluster>,
    #[serde(default)]
    pub arc: Option<ArcPlan>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Extra nodes an upgrade adds at once (AKS max surge); default 1.
    #[serde(default = "default_surge")]
    pub surge_nodes: u32,
    /// Routes per route table; Azure's limit is 400 and being raised, hence configurable.
    #[serde(default = "default_route_limit")]
    pub route_limit: u32,
}

pub const DEFAULT_SURGE_NODES: u32 = 1;
pub const DEFAULT_ROUTE_LIMIT: u32 = 400;

fn default_surge() -> u32 {
    DEFAULT_SURGE_NODES
}

fn default_route_limit() -> u32 {
    DEFAULT_ROUTE_LIMIT
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            surge_nodes: DEFAULT_SURGE_NODES,
            route_limit: DEFAULT_ROUTE_LIMIT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNetwork {
    pub name: String,
    pub address_space: Vec<Prefix>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subnet {
    pub name: String,
    pub address_prefix: Prefix,
    /// Name of the route table associated with the subnet (an entry of `routeTables`).
    #[serde(default)]
    pub route_table: Option<String>,
    /// Service delegations, e.g. `Microsoft.ContainerService/managedClusters`.
    #[serde(default)]
    pub delegations: Vec<String>,
    /// Addresses already taken by things outside this plan (VMs, private endpoints, ...).
    #[serde(default)]
    pub used_addresses: u64,
    /// Names of non-AKS workloads placed in the subnet.
    #[serde(default)]
    pub other_workloads: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTable {
    pub name: String,
    /// The custom routes (not the per-node routes the cloud provider adds).
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub address_prefix: Prefix,
    /// ARM next hop type: `Internet`, `VirtualAppliance`, `VirtualNetworkGateway`,
    /// `VnetLocal` or `None`.
    pub next_hop_type: String,
    #[serde(default)]
    pub next_hop_ip_address: Option<Address>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnPremisesRange {
    pub name: String,
    pub address_prefix: Prefix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPlugin {
    Kubenet,
    /// Azure CNI (ARM calls it `azure`), each pod taking a subnet address.
    #[serde(alias = "azure-cni", alias = "cni")]
    Azure,
}

impl NetworkPlugin {
    pub const fn label(self) -> &'static str {
        match self {
            NetworkPlugin::Kubenet => "kubenet",
            NetworkPlugin::Azure => "azure CNI",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AksCluster {
    pub name: String,
    pub network_plugin: NetworkPlugin,
    /// Node subnet as `<vnet>/<subnet>`.
    pub subnet: String,
    pub node_count: u32,
    #[serde(default)]
    pub max_pods: Option<u32>,
    /// Overrides `settings.surgeNodes` for this cluster.
    #[serde(default)]
    pub max_surge: Option<u32>,
    #[serde(default)]
    pub pod_cidr: Option<Prefix>,
    #[serde(default)]
    pub service_cidr: Option<Prefix>,
    #[serde(default)]
    pub dns_service_ip: Option<Address>,
    /// API server VNet integration subnet as `<vnet>/<subnet>`.
    #[serde(default)]
    pub api_server_subnet: Option<String>,
}

impl AksCluster {
    pub fn surge(&self, settings: &Settings) -> u32 {
        self.max_surge.unwrap_or(settings.surge_nodes)
    }

    /// The pod CIDR in effect and whether it is AKS's default. Only kubenet uses one here.
    pub fn effective_pod_cidr(&self) -> (Prefix, bool) {
        match &self.pod_cidr {
            Some(p) => (p.clone(), false),
            None => (Prefix::from(AKS_DEFAULT_POD_CIDR), true),
        }
    }

    pub fn effective_service_cidr(&self) -> (Prefix, bool) {
        match &self.service_cidr {
            Some(p) => (p.clone(), false),
            None => (Prefix::from(AKS_DEFAULT_SERVICE_CIDR), true),
        }
    }

    pub fn effective_dns_service_ip(&self) -> (Address, bool) {
        match &self.dns_service_ip {
            Some(a) => (a.clone(), false),
            None => (Address::from(AKS_DEFAULT_DNS_SERVICE_IP), true),
        }
    }
}

/// An AKS Arc (Azure Stack HCI) deployment on one static logical network (seed 004).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArcPlan {
    pub logical_network: LogicalNetwork,
    /// The management network of Azure Stack HCI and the Arc resource bridge.
    #[serde(default)]
    pub management_network: Option<ManagementNetwork>,
    #[serde(default)]
    pub clusters: Vec<ArcCluster>,
    /// Firewall allow rules between the VLANs, checked against the ports AKS Arc needs.
    #[serde(default)]
    pub allow_rules: Vec<AllowRule>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogicalNetwork {
    pub name: String,
    pub address_prefix: Prefix,
    pub gateway: Address,
    #[serde(default)]
    pub dns_servers: Vec<Address>,
    pub ip_pool: IpPool,
    #[serde(default)]
    pub vlan: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPool {
    pub start: Address,
    pub end: Address,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementNetwork {
    pub address_prefix: Prefix,
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The block of (at least six) static management IPs used by Azure Stack HCI and the Arc
    /// resource bridge; when absent the whole management prefix stands in for it.
    #[serde(default)]
    pub infrastructure_ips: Option<AddressRange>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArcCluster {
    pub name: String,
    pub control_plane_nodes: u32,
    #[serde(default)]
    pub node_pools: Vec<ArcNodePool>,
    pub control_plane_ip: Address,
    #[serde(default)]
    pub load_balancer_ips: Vec<AddressRange>,
    #[serde(default)]
    pub load_balancer_services: Vec<LoadBalancerService>,
}

impl ArcCluster {
    pub fn worker_nodes(&self) -> u64 {
        self.node_pools
            .iter()
            .map(|p| u64::from(p.node_count))
            .sum()
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArcNodePool {
    pub name: String,
    pub node_count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[serde(alias = "TCP", alias = "Tcp")]
    Tcp,
    #[serde(alias = "UDP", alias = "Udp")]
    Udp,
}

impl Protocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

fn default_instances() -> u32 {
    1
}

/// Load-balanced services of one application: `instances` services listening on `port`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerService {
    pub name: String,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default = "default_instances")]
    pub instances: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    #[serde(alias = "TCP", alias = "Tcp")]
    Tcp,
    #[serde(alias = "UDP", alias = "Udp")]
    Udp,
    #[serde(alias = "Any", alias = "ANY", alias = "*")]
    Any,
}

impl RuleProtocol {
    pub fn allows(self, p: Protocol) -> bool {
        matches!(
            (self, p),
            (RuleProtocol::Any, _)
                | (RuleProtocol::Tcp, Protocol::Tcp)
                | (RuleProtocol::Udp, Protocol::Udp)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowRule {
    pub name: String,
    pub protocol: RuleProtocol,
    pub sources: Vec<AddressRange>,
    pub destinations: Vec<AddressRange>,
    pub ports: Vec<PortRange>,
}
