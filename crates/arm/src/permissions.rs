//! The Azure RBAC actions behind every ARM request the client sends, in one table.
//!
//! The client's pipeline policy classifies each request by this table ([`classify`]): it counts
//! requests per row ([`ArmStats::by_permission`]) and, when ARM answers 403, names the action the
//! identity lacks. `docs/azure-role.json`, the custom role poolnet's identity is given, lists
//! exactly [`role_actions`]: a test compares the two, and the armsim tests drive every
//! [`ArmNetwork`] method and check that each request the client sent has its row here (and that
//! every row is sent). So the role cannot drift from the code.
//!
//! [`ArmStats::by_permission`]: crate::ArmStats::by_permission
//! [`ArmNetwork`]: crate::ArmNetwork

use std::collections::BTreeSet;

use crate::stats::CallMethod;

/// One kind of request and the action ARM authorizes it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub method: CallMethod,
    /// The resource type the request path addresses, e.g. `Microsoft.Network/routeTables` or
    /// `Microsoft.Network/locations/operations` (compared case-insensitively).
    pub resource_type: &'static str,
    pub action: &'static str,
    /// Whether the operator sends it. `false`: the client offers it (tests use it) but poolnet
    /// never does, so the role leaves it out.
    pub in_role: bool,
    /// What poolnet does with it.
    pub why: &'static str,
}

/// An action ARM checks on a resource a request's body links to ("linked access check"), not on
/// the resource the request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkedPermission {
    pub action: &'static str,
    /// The request whose body carries the link.
    pub method: CallMethod,
    pub resource_type: &'static str,
    pub why: &'static str,
}

const fn row(
    method: CallMethod,
    resource_type: &'static str,
    action: &'static str,
    why: &'static str,
) -> Permission {
    Permission {
        method,
        resource_type,
        action,
        in_role: true,
        why,
    }
}

use CallMethod::{Delete, Get, Put};

/// Every request the client can send.
pub const PERMISSIONS: &[Permission] = &[
    row(
        Get,
        "Microsoft.Network/networkSecurityGroups",
        "Microsoft.Network/networkSecurityGroups/read",
        "read the NSGs a NodePoolNetwork or HostPortPolicy names (rules, ETag)",
    ),
    row(
        Put,
        "Microsoft.Network/networkSecurityGroups",
        "Microsoft.Network/networkSecurityGroups/write",
        "write poolnet's rules into those NSGs (read-modify-write with If-Match)",
    ),
    Permission {
        in_role: false,
        ..row(
            Delete,
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/networkSecurityGroups/delete",
            "never by the operator: poolnet does not own NSGs (tests delete them)",
        )
    },
    row(
        Get,
        "Microsoft.Network/applicationSecurityGroups",
        "Microsoft.Network/applicationSecurityGroups/read",
        "read the managed ASG (owner tags) and check custom ASGs exist",
    ),
    row(
        Put,
        "Microsoft.Network/applicationSecurityGroups",
        "Microsoft.Network/applicationSecurityGroups/write",
        "create the managed ASG of a pool",
    ),
    row(
        Delete,
        "Microsoft.Network/applicationSecurityGroups",
        "Microsoft.Network/applicationSecurityGroups/delete",
        "delete the managed ASG poolnet created (owner-tagged) when its object goes",
    ),
    row(
        Get,
        "Microsoft.Network/publicIPPrefixes",
        "Microsoft.Network/publicIPPrefixes/read",
        "adopt an existing prefix or read the managed one",
    ),
    row(
        Put,
        "Microsoft.Network/publicIPPrefixes",
        "Microsoft.Network/publicIPPrefixes/write",
        "create a managed public IP prefix (If-None-Match)",
    ),
    row(
        Delete,
        "Microsoft.Network/publicIPPrefixes",
        "Microsoft.Network/publicIPPrefixes/delete",
        "delete the managed prefix poolnet created (owner-tagged) when its object goes",
    ),
    row(
        Get,
        "Microsoft.Network/routeTables",
        "Microsoft.Network/routeTables/read",
        "read a bring-your-own kubenet route table",
    ),
    row(
        Put,
        "Microsoft.Network/routeTables",
        "Microsoft.Network/routeTables/write",
        "merge poolnet's routes into it (read-modify-write with If-Match)",
    ),
    row(
        Get,
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/virtualNetworks/read",
        "preflight: the address space of a pool's VNet (route destinations inside it)",
    ),
    row(
        Get,
        "Microsoft.Compute/virtualMachineScaleSets/publicIPAddresses",
        "Microsoft.Compute/virtualMachineScaleSets/publicIPAddresses/read",
        "list the node public IPs of a pool's scale set for status.nodes",
    ),
    row(
        Get,
        "Microsoft.ContainerService/managedClusters",
        "Microsoft.ContainerService/managedClusters/read",
        "read the cluster's location, node resource group, network profile, version and pools",
    ),
    row(
        Get,
        "Microsoft.ContainerService/managedClusters/agentPools",
        "Microsoft.ContainerService/managedClusters/agentPools/read",
        "read an agent pool (allowed host ports, ASGs, IP tags, eTag)",
    ),
    row(
        Put,
        "Microsoft.ContainerService/managedClusters/agentPools",
        "Microsoft.ContainerService/managedClusters/agentPools/write",
        "set allowedHostPorts and ASGs on an agent pool, restore them on delete, and create a pool from spec.nodePool.template (If-None-Match)",
    ),
    row(
        Delete,
        "Microsoft.ContainerService/managedClusters/agentPools",
        "Microsoft.ContainerService/managedClusters/agentPools/delete",
        "delete an agent pool poolnet created (status.owned.agentPoolId) when its object goes",
    ),
    row(
        Get,
        "Microsoft.Features/providers/features",
        "Microsoft.Features/providers/features/read",
        "read whether AKS's PodHostPortAutoAssignPreview is registered (it would assign host ports beside poolnet)",
    ),
    row(
        Get,
        "Microsoft.Network/locations/operations",
        "Microsoft.Network/locations/operations/read",
        "poll long-running network writes (Azure-AsyncOperation)",
    ),
    row(
        Get,
        "Microsoft.Network/locations/operationResults",
        "Microsoft.Network/locations/operationResults/read",
        "poll long-running network writes (Location)",
    ),
    row(
        Get,
        "Microsoft.ContainerService/locations/operations",
        "Microsoft.ContainerService/locations/operations/read",
        "poll long-running agent pool writes (Azure-AsyncOperation)",
    ),
    row(
        Get,
        "Microsoft.ContainerService/locations/operationresults",
        "Microsoft.ContainerService/locations/operationresults/read",
        "poll long-running agent pool writes (Location)",
    ),
];

/// Actions ARM checks on resources that poolnet's request bodies name.
pub const LINKED_PERMISSIONS: &[LinkedPermission] = &[
    LinkedPermission {
        action: "Microsoft.Network/applicationSecurityGroups/joinNetworkSecurityRule/action",
        method: Put,
        resource_type: "Microsoft.Network/networkSecurityGroups",
        why: "NSG rules poolnet writes name ASGs (the managed one, custom ones) as destination",
    },
    LinkedPermission {
        action: "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action",
        method: Put,
        resource_type: "Microsoft.ContainerService/managedClusters/agentPools",
        why: "an agent pool's networkProfile.applicationSecurityGroups puts its nodes' IP configurations in those ASGs",
    },
    LinkedPermission {
        action: "Microsoft.Network/virtualNetworks/subnets/join/action",
        method: Put,
        resource_type: "Microsoft.ContainerService/managedClusters/agentPools",
        why: "a pool created from spec.nodePool.template with vnetSubnetId puts its nodes in that subnet",
    },
    LinkedPermission {
        action: "Microsoft.Network/publicIPPrefixes/join/action",
        method: Put,
        resource_type: "Microsoft.ContainerService/managedClusters/agentPools",
        why: "a pool created with nodePublicIPPrefixID takes its node public IPs from that prefix",
    },
];

/// The row of a request, from its method and URL path: the resource type is the provider
/// namespace followed by every type segment (`/providers/{ns}/{type}/{name}/{type}...`), so an
/// ID, a collection below one and an operation monitor each find theirs.
pub fn classify(method: CallMethod, path: &str) -> Option<usize> {
    let resource_type = resource_type_of(path)?;
    PERMISSIONS
        .iter()
        .position(|p| p.method == method && p.resource_type.eq_ignore_ascii_case(&resource_type))
}

/// `Microsoft.Network/networkSecurityGroups` for
/// `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n`.
pub fn resource_type_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // `/subscriptions/s/providers/Microsoft.Features/providers/{ns}/features/{name}`: the
    // feature's provider namespace is a name here, not the type's.
    if segments.windows(2).any(|w| {
        w[0].eq_ignore_ascii_case("providers") && w[1].eq_ignore_ascii_case("Microsoft.Features")
    }) && segments.iter().any(|s| s.eq_ignore_ascii_case("features"))
    {
        return Some("Microsoft.Features/providers/features".into());
    }
    let at = segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))?;
    let namespace = segments.get(at + 1)?;
    let types: Vec<&str> = segments[at + 2..].iter().step_by(2).copied().collect();
    if types.is_empty() {
        return None;
    }
    Some(format!("{namespace}/{}", types.join("/")))
}

/// The actions of poolnet's custom role (`docs/azure-role.json`): every request the operator
/// sends, and every linked action its bodies trigger.
pub fn role_actions() -> BTreeSet<&'static str> {
    PERMISSIONS
        .iter()
        .filter(|p| p.in_role)
        .map(|p| p.action)
        .chain(LINKED_PERMISSIONS.iter().map(|l| l.action))
        .collect()
}

/// What a 403 on this request means for the operator's setup.
pub(crate) fn forbidden_hint(method: CallMethod, path: &str) -> String {
    let linked: Vec<&str> = resource_type_of(path)
        .map(|t| {
            LINKED_PERMISSIONS
                .iter()
                .filter(|l| l.method == method && l.resource_type.eq_ignore_ascii_case(&t))
                .map(|l| l.action)
                .collect()
        })
        .unwrap_or_default();
    let own = classify(method, path).map(|i| PERMISSIONS[i].action);
    let mut needed: Vec<&str> = own.into_iter().collect();
    needed.extend(linked);
    if needed.is_empty() {
        return "poolnet's identity lacks a permission (docs/azure-role.json lists what it needs)"
            .to_string();
    }
    format!(
        "poolnet's identity needs {} here: assign the role in docs/azure-role.json on this scope",
        needed.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NSG: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg";

    #[test]
    fn requests_find_their_row() {
        let row = |m, p: &str| classify(m, p).map(|i| PERMISSIONS[i].action);
        assert_eq!(
            row(Put, NSG),
            Some("Microsoft.Network/networkSecurityGroups/write")
        );
        assert_eq!(
            row(
                Get,
                "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/aks-game-vmss/publicipaddresses"
            ),
            Some("Microsoft.Compute/virtualMachineScaleSets/publicIPAddresses/read")
        );
        assert_eq!(
            row(
                Get,
                "/subscriptions/s/providers/Microsoft.Network/locations/westeurope/operations/abc"
            ),
            Some("Microsoft.Network/locations/operations/read")
        );
        assert_eq!(
            row(
                Put,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game"
            ),
            Some("Microsoft.ContainerService/managedClusters/agentPools/write")
        );
        assert_eq!(
            row(
                Delete,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt"
            ),
            None
        );
        assert_eq!(row(Get, "/subscriptions/s/resourceGroups/rg"), None);
    }

    #[test]
    fn one_row_per_request_and_actions_name_their_type() {
        for (i, p) in PERMISSIONS.iter().enumerate() {
            assert_eq!(
                PERMISSIONS.iter().position(|q| q.method == p.method
                    && q.resource_type.eq_ignore_ascii_case(p.resource_type)),
                Some(i),
                "{p:?}"
            );
            assert!(
                p.action
                    .to_ascii_lowercase()
                    .starts_with(&format!("{}/", p.resource_type.to_ascii_lowercase())),
                "{p:?}"
            );
        }
    }

    #[test]
    fn forbidden_hint_names_the_action_and_the_linked_one() {
        let hint = forbidden_hint(Put, NSG);
        assert!(
            hint.contains("Microsoft.Network/networkSecurityGroups/write"),
            "{hint}"
        );
        assert!(hint.contains("joinNetworkSecurityRule/action"), "{hint}");
        assert!(hint.contains("docs/azure-role.json"), "{hint}");
    }

    #[test]
    fn the_role_leaves_out_what_the_operator_never_sends() {
        let role = role_actions();
        assert!(!role.contains("Microsoft.Network/networkSecurityGroups/delete"));
        assert!(role.contains("Microsoft.Network/networkSecurityGroups/write"));
        assert!(role.contains(
            "Microsoft.Network/applicationSecurityGroups/joinNetworkSecurityRule/action"
        ));
    }

    /// `docs/azure-role.json` (the `az role definition create` format) grants exactly what the
    /// table says poolnet needs.
    #[test]
    fn docs_role_definition_equals_the_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/azure-role.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let role: serde_json::Value = serde_json::from_str(&text).unwrap();
        let list = |key: &str| -> Vec<String> {
            role[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key} in {}", path.display()))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let actions = list("Actions");
        let granted: BTreeSet<&str> = actions.iter().map(String::as_str).collect();
        assert_eq!(
            granted,
            role_actions(),
            "{} must list exactly poolnet_arm::permissions::role_actions()",
            path.display()
        );
        assert_eq!(
            actions.len(),
            granted.len(),
            "duplicates in {}",
            path.display()
        );
        for key in ["NotActions", "DataActions", "NotDataActions"] {
            assert!(list(key).is_empty(), "{key} in {}", path.display());
        }
        assert_eq!(role["IsCustom"], true);
    }
}
