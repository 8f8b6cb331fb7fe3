//! The simulated ARM state: subscriptions, resource groups, resources (as their ARM JSON),
//! long-running operations, the public address pool and agent-pool nodes.

use crate::error::{CloudError, CloudResult};
use crate::pool::AddressPool;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// The resource types armsim stores as top-level resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Nsg,
    Asg,
    PublicIpPrefix,
    PublicIp,
    RouteTable,
    VirtualNetwork,
    ManagedCluster,
    AgentPool,
}

pub const NETWORK_API_VERSIONS: &[&str] = &["2024-03-01"];
pub const AKS_API_VERSIONS: &[&str] = &[
    "2023-10-01",
    "2023-11-01",
    "2024-01-01",
    "2024-02-01",
    "2024-05-01",
    "2024-07-01",
    "2024-08-01",
    "2024-09-01",
    "2024-10-01",
    "2025-01-01",
];
/// The first AKS api-version whose spec documents an agent pool ETag: the read-only
/// `properties.eTag`, `If-Match` / `If-None-Match` on `AgentPools_CreateOrUpdate` and `If-Match`
/// on `AgentPools_Delete` (specification/containerservice/resource-manager/Microsoft.ContainerService/
/// aks/stable/2024-10-01/managedClusters.json). 2024-09-01 and every older version in
/// [`AKS_API_VERSIONS`] document none of them; 2024-10-01 documents no `ETag` response header.
pub const AGENT_POOL_ETAG_SINCE: &str = "2024-10-01";

/// Whether AKS answers agent pools at `api_version` with an eTag and honours the conditional
/// headers (`api_version` is one of [`AKS_API_VERSIONS`]; dates compare as strings).
pub fn agent_pool_etags(api_version: &str) -> bool {
    api_version >= AGENT_POOL_ETAG_SINCE
}
/// The VMSS public-IP and NIC listings are Network operations; the spec pins 2018-10-01 but
/// current SDKs (azure-mgmt-network 27) send the package's version, which the service accepts.
pub const VMSS_NETWORK_API_VERSIONS: &[&str] = &["2017-03-30", "2018-10-01", "2024-03-01"];
pub const COMPUTE_API_VERSIONS: &[&str] = &[
    "2023-03-01",
    "2023-07-01",
    "2023-09-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
];
pub const RESOURCES_API_VERSIONS: &[&str] = &[
    "2019-10-01",
    "2020-06-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-03-01",
    "2025-04-01",
];
/// api-versions of `Microsoft.Features/providers/features`.
pub const FEATURES_API_VERSIONS: &[&str] = &["2015-12-01", "2021-07-01"];

pub const SUBSCRIPTION_API_VERSIONS: &[&str] = &[
    "2016-06-01",
    "2020-01-01",
    "2021-01-01",
    "2022-12-01",
    "2024-11-01",
];

impl Kind {
    /// From the lower-cased `namespace/type` of a path.
    pub fn from_type_key(key: &str) -> Option<Kind> {
        Some(match key {
            "microsoft.network/networksecuritygroups" => Kind::Nsg,
            "microsoft.network/applicationsecuritygroups" => Kind::Asg,
            "microsoft.network/publicipprefixes" => Kind::PublicIpPrefix,
            "microsoft.network/publicipaddresses" => Kind::PublicIp,
            "microsoft.network/routetables" => Kind::RouteTable,
            "microsoft.network/virtualnetworks" => Kind::VirtualNetwork,
            "microsoft.containerservice/managedclusters" => Kind::ManagedCluster,
            "microsoft.containerservice/managedclusters/agentpools" => Kind::AgentPool,
            _ => return None,
        })
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Nsg => "Microsoft.Network/networkSecurityGroups",
            Kind::Asg => "Microsoft.Network/applicationSecurityGroups",
            Kind::PublicIpPrefix => "Microsoft.Network/publicIPPrefixes",
            Kind::PublicIp => "Microsoft.Network/publicIPAddresses",
            Kind::RouteTable => "Microsoft.Network/routeTables",
            Kind::VirtualNetwork => "Microsoft.Network/virtualNetworks",
            Kind::ManagedCluster => "Microsoft.ContainerService/managedClusters",
            Kind::AgentPool => "Microsoft.ContainerService/managedClusters/agentPools",
        }
    }

    pub fn is_aks(self) -> bool {
        matches!(self, Kind::ManagedCluster | Kind::AgentPool)
    }

    pub fn namespace(self) -> &'static str {
        if self.is_aks() {
            "Microsoft.ContainerService"
        } else {
            "Microsoft.Network"
        }
    }

    pub fn api_versions(self) -> &'static [&'static str] {
        if self.is_aks() {
            AKS_API_VERSIONS
        } else {
            NETWORK_API_VERSIONS
        }
    }

    /// Operation name used in async-operation messages, as the Network RP words them.
    pub fn op_noun(self) -> &'static str {
        match self {
            Kind::Nsg => "NetworkSecurityGroup",
            Kind::Asg => "ApplicationSecurityGroup",
            Kind::PublicIpPrefix => "PublicIpPrefix",
            Kind::PublicIp => "PublicIpAddress",
            Kind::RouteTable => "RouteTable",
            Kind::VirtualNetwork => "VirtualNetwork",
            Kind::ManagedCluster => "ManagedCluster",
            Kind::AgentPool => "AgentPool",
        }
    }
}

/// Child collections stored inside their parent's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    SecurityRule,
    DefaultSecurityRule,
    Route,
    Subnet,
}

impl ChildKind {
    pub fn from_key(key: &str) -> Option<ChildKind> {
        Some(match key {
            "microsoft.network/networksecuritygroups/securityrules" => ChildKind::SecurityRule,
            "microsoft.network/networksecuritygroups/defaultsecurityrules" => {
                ChildKind::DefaultSecurityRule
            }
            "microsoft.network/routetables/routes" => ChildKind::Route,
            "microsoft.network/virtualnetworks/subnets" => ChildKind::Subnet,
            _ => return None,
        })
    }

    pub fn parent(self) -> Kind {
        match self {
            ChildKind::SecurityRule | ChildKind::DefaultSecurityRule => Kind::Nsg,
            ChildKind::Route => Kind::RouteTable,
            ChildKind::Subnet => Kind::VirtualNetwork,
        }
    }

    /// Name of the array in the parent's `properties`.
    pub fn array(self) -> &'static str {
        match self {
            ChildKind::SecurityRule => "securityRules",
            ChildKind::DefaultSecurityRule => "defaultSecurityRules",
            ChildKind::Route => "routes",
            ChildKind::Subnet => "subnets",
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            ChildKind::SecurityRule => "Microsoft.Network/networkSecurityGroups/securityRules",
            ChildKind::DefaultSecurityRule => {
                "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
            }
            ChildKind::Route => "Microsoft.Network/routeTables/routes",
            ChildKind::Subnet => "Microsoft.Network/virtualNetworks/subnets",
        }
    }

    pub fn writable(self) -> bool {
        self != ChildKind::DefaultSecurityRule
    }

    pub fn op_noun(self) -> &'static str {
        match self {
            ChildKind::SecurityRule | ChildKind::DefaultSecurityRule => "SecurityRule",
            ChildKind::Route => "Route",
            ChildKind::Subnet => "Subnet",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub display_name: String,
    pub resource_groups: BTreeMap<String, ResourceGroup>,
    /// Preview features registered (`az feature register`), as `Namespace/Name`, lower-cased.
    #[serde(default)]
    pub registered_features: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceGroup {
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub managed_by: Option<String>,
    /// Set while a DELETE of the group runs.
    pub deleting: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub kind: Kind,
    /// The ARM body as GET returns it, minus fields computed at read time.
    pub body: Value,
    /// The async operation currently running on this resource.
    pub op: Option<String>,
}

impl Resource {
    pub fn etag(&self) -> &str {
        self.body.get("etag").and_then(Value::as_str).unwrap_or("")
    }

    pub fn props(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.body
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn props_mut(&mut self) -> &mut Map<String, Value> {
        if !self.body.get("properties").is_some_and(Value::is_object) {
            self.body["properties"] = Value::Object(Map::new());
        }
        match self.body.get_mut("properties") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("properties was just made an object"),
        }
    }

    pub fn location(&self) -> &str {
        self.body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.body.get("name").and_then(Value::as_str).unwrap_or("")
    }

    pub fn provisioning_state(&self) -> &str {
        self.props()
            .get("provisioningState")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn set_provisioning_state(&mut self, state: &str) {
        self.props_mut()
            .insert("provisioningState".into(), Value::String(state.into()));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed => "Failed",
            OpStatus::Canceled => "Canceled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    Put,
    /// Deletion of the resource itself.
    Delete,
    /// Deletion of a child (rule, route, subnet): the parent stays.
    DeleteChild,
    DeleteResourceGroup,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AsyncOp {
    pub id: String,
    pub namespace: String,
    pub subscription: String,
    pub location: String,
    /// Lower-cased ID of the resource the operation changes (the parent for child writes).
    pub resource_key: String,
    pub kind: OpKind,
    pub status: OpStatus,
    pub error: Option<CloudError>,
    pub planned_failure: Option<CloudError>,
    /// Extra running time a `stall_operation` fault gave the operation, in milliseconds.
    #[serde(default)]
    pub planned_delay_ms: u64,
    pub start_time: String,
    pub end_time: Option<String>,
    /// e.g. `PutNetworkSecurityGroupOperation`, for cancellation messages.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub instance_id: u32,
    pub public_ip: Option<IpAddr>,
}

/// Everything armsim knows. One lock guards it: ARM writes to one resource are serialised anyway.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub subscriptions: BTreeMap<String, Subscription>,
    pub resources: BTreeMap<String, Resource>,
    pub ops: HashMap<String, AsyncOp>,
    pub pool: AddressPool,
    /// Agent pool (lower-cased ID) → its VMSS instances.
    pub nodes: BTreeMap<String, Vec<Node>>,
}

pub fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

pub fn new_etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4())
}

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl State {
    pub fn subscription(&self, sub: &str) -> CloudResult<&Subscription> {
        self.subscriptions.get(&key(sub)).ok_or_else(|| {
            CloudError::new(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{sub}' could not be found."),
            )
        })
    }

    pub fn resource_group(&self, sub: &str, rg: &str) -> CloudResult<&ResourceGroup> {
        self.subscription(sub)?
            .resource_groups
            .get(&key(rg))
            .ok_or_else(|| {
                CloudError::new(
                    404,
                    "ResourceGroupNotFound",
                    format!("Resource group '{rg}' could not be found."),
                )
            })
    }

    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&key(id))
    }

    /// The resource `id` if it exists and is of `kind`.
    pub fn get_kind(&self, id: &str, kind: Kind) -> Option<&Resource> {
        self.get(id).filter(|r| r.kind == kind)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    /// Resources whose ID starts with `prefix` (lower-cased), e.g. a cluster's agent pools.
    pub fn under<'a>(&'a self, prefix: &str) -> impl Iterator<Item = &'a Resource> + 'a {
        let p = format!("{}/", key(prefix));
        self.resources
            .range(p.clone()..)
            .take_while(move |(k, _)| k.starts_with(&p))
            .map(|(_, r)| r)
    }
}

/// RFC 3339 UTC timestamp of now, as ARM writes `startTime`/`endTime`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let micros = now.subsec_micros();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
