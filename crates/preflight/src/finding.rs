//! What a check reports: one `Finding` per problem, naming the field, the bad value and what
//! would be valid, so the CLI, the webhook and status conditions can all show it verbatim.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; the plan still works.
    Warning,
    /// The plan fails at Azure or breaks the cluster.
    Error,
}

/// Stable identifiers of the checks; the strings are part of the CLI's JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckId {
    PlanAddress,
    PlanReference,
    CapacityMaxPods,
    CapacitySubnet,
    CapacityPodCidr,
    RangesReserved,
    RangesOverlap,
    RangesSubnetInVnet,
    RangesDnsServiceIp,
    SubnetShared,
    RoutesLimit,
    RoutesSharedTable,
    RoutesDefaultRoute,
    RoutesReservedPrefix,
    NsgReservedSource,
    RoutesClusterRange,
    RoutesNeedKubenet,
    PoolWindowsNeedsCni,
    AksVersion,
    HostPortAutoAssign,
    ApiServerDelegation,
    ApiServerSize,
    ApiServerFreeAddresses,
    ApiServerDedicated,
    ApiServerVnet,
    ArcGateway,
    ArcIpPool,
    ArcPoolCapacity,
    ArcControlPlaneIp,
    ArcLoadBalancerIp,
    ArcLoadBalancerCount,
    ArcCrossVlan,
}

impl CheckId {
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckId::PlanAddress => "plan.address",
            CheckId::PlanReference => "plan.reference",
            CheckId::CapacityMaxPods => "capacity.max-pods",
            CheckId::CapacitySubnet => "capacity.subnet",
            CheckId::CapacityPodCidr => "capacity.pod-cidr",
            CheckId::RangesReserved => "ranges.reserved",
            CheckId::RangesOverlap => "ranges.overlap",
            CheckId::RangesSubnetInVnet => "ranges.subnet-in-vnet",
            CheckId::RangesDnsServiceIp => "ranges.dns-service-ip",
            CheckId::SubnetShared => "subnet.shared",
            CheckId::RoutesLimit => "routes.limit",
            CheckId::RoutesSharedTable => "routes.shared-table",
            CheckId::RoutesDefaultRoute => "routes.default-route",
            CheckId::RoutesReservedPrefix => "routes.reserved-prefix",
            CheckId::NsgReservedSource => "nsg.reserved-source",
            CheckId::RoutesClusterRange => "routes.cluster-range",
            CheckId::RoutesNeedKubenet => "routes.kubenet-only",
            CheckId::PoolWindowsNeedsCni => "pool.windows-cni",
            CheckId::AksVersion => "aks.version",
            CheckId::HostPortAutoAssign => "hostports.auto-assign",
            CheckId::ApiServerDelegation => "apiserver.delegation",
            CheckId::ApiServerSize => "apiserver.size",
            CheckId::ApiServerFreeAddresses => "apiserver.free-addresses",
            CheckId::ApiServerDedicated => "apiserver.dedicated",
            CheckId::ApiServerVnet => "apiserver.vnet",
            CheckId::ArcGateway => "arc.gateway",
            CheckId::ArcIpPool => "arc.ip-pool",
            CheckId::ArcPoolCapacity => "arc.pool-capacity",
            CheckId::ArcControlPlaneIp => "arc.control-plane-ip",
            CheckId::ArcLoadBalancerIp => "arc.load-balancer-ip",
            CheckId::ArcLoadBalancerCount => "arc.load-balancer-count",
            CheckId::ArcCrossVlan => "arc.cross-vlan",
        }
    }

    /// One line on what the check guards, for the CLI's check table.
    pub const fn summary(self) -> &'static str {
        match self {
            CheckId::PlanAddress => "addresses and prefixes parse as aligned IPv4",
            CheckId::PlanReference => "referenced subnets and route tables exist",
            CheckId::CapacityMaxPods => "max pods per node within the plugin's limits",
            CheckId::CapacitySubnet => "node subnet holds nodes + surge (+ pod IPs on CNI)",
            CheckId::CapacityPodCidr => "kubenet pod CIDR has a /24 per node",
            CheckId::RangesReserved => "no AKS-reserved ranges in VNet, pod or service CIDRs",
            CheckId::RangesOverlap => "VNet, pod, service and on-premises ranges are disjoint",
            CheckId::RangesSubnetInVnet => "subnets lie inside their VNet and are big enough",
            CheckId::RangesDnsServiceIp => "DNS service IP inside service CIDR, not reserved",
            CheckId::SubnetShared => "no kubenet cluster shares its node subnet",
            CheckId::RoutesLimit => "kubenet nodes + custom routes within the route limit",
            CheckId::RoutesSharedTable => "each route table serves one cluster",
            CheckId::RoutesDefaultRoute => "0.0.0.0/0 present and pointing at an egress hop",
            CheckId::RoutesReservedPrefix => "custom routes avoid AKS-reserved ranges",
            CheckId::NsgReservedSource => "NSG sources avoid AKS-reserved ranges",
            CheckId::RoutesClusterRange => {
                "custom routes avoid the pod and service CIDRs, VNet sanely"
            }
            CheckId::RoutesNeedKubenet => "a route table to merge into only on kubenet clusters",
            CheckId::PoolWindowsNeedsCni => "Windows node pools need Azure CNI",
            CheckId::AksVersion => "node public IP tags and allowed host ports need AKS >= 1.24",
            CheckId::HostPortAutoAssign => "one host-port assigner: poolnet or AKS's preview",
            CheckId::ApiServerDelegation => "API server subnet delegated to AKS",
            CheckId::ApiServerSize => "API server subnet at least /28",
            CheckId::ApiServerFreeAddresses => "API server subnet keeps 9 free IPs per cluster",
            CheckId::ApiServerDedicated => "API server subnet runs no other workload",
            CheckId::ApiServerVnet => "API server subnet in the node VNet",
            CheckId::ArcGateway => "gateway inside the prefix and outside the IP pool",
            CheckId::ArcIpPool => "IP pool inside the prefix and well-formed",
            CheckId::ArcPoolCapacity => "IP pool holds node VMs + one upgrade IP per cluster",
            CheckId::ArcControlPlaneIp => "control-plane IPs in the prefix, outside the pool",
            CheckId::ArcLoadBalancerIp => "load-balancer IPs overlap nothing",
            CheckId::ArcLoadBalancerCount => "enough load-balancer IPs per service port",
            CheckId::ArcCrossVlan => "cross-VLAN ports 22/6443/55000/65000 allowed",
        }
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CheckId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem found by a check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub check: CheckId,
    /// Path of the offending field in the input, e.g. `clusters[0].dnsServiceIp`.
    pub field: String,
    /// The offending value as the user wrote it (or as defaulted).
    pub value: String,
    /// What is wrong, in one sentence.
    pub problem: String,
    /// What would be valid instead.
    pub expected: String,
}

impl Finding {
    pub fn error(check: CheckId, field: impl Into<String>, value: impl Into<String>) -> Finding {
        Finding::new(Severity::Error, check, field, value)
    }

    pub fn warning(check: CheckId, field: impl Into<String>, value: impl Into<String>) -> Finding {
        Finding::new(Severity::Warning, check, field, value)
    }

    fn new(
        severity: Severity,
        check: CheckId,
        field: impl Into<String>,
        value: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            check,
            field: field.into(),
            value: value.into(),
            problem: String::new(),
            expected: String::new(),
        }
    }

    pub fn problem(mut self, problem: impl Into<String>) -> Finding {
        self.problem = problem.into();
        self
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Finding {
        self.expected = expected.into();
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {:?}: {}; valid: {}",
            self.field, self.value, self.problem, self.expected
        )
    }
}
