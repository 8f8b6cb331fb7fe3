//! HostPortPolicy: the policy's own fields, and (with a [`PolicyContext`] from the webhook)
//! the cross-object checks against its NodePoolNetwork and the other policies.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Selector, SelectorExt};

use super::{MAX_NAME_LEN, allowed_host_ports, validate_sources};
use crate::error::{FieldError, FieldErrors};
use crate::names::{is_dns1123_subdomain, validate_label_selector};
use crate::portspec::{self, PortRange, PortSet, Protocol};
use crate::v1alpha1::{HostPortPolicy, NodePoolNetwork, PolicyNamespaces};

/// Cross-object facts a HostPortPolicy is checked against (gathered by the webhook).
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The NodePoolNetwork named by spec.nodePoolNetwork, if it exists.
    pub pool: Option<&'a NodePoolNetwork>,
    /// Labels of the policy's namespace.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// Every other HostPortPolicy in the cluster (static ports are cluster-unique).
    pub other_policies: &'a [HostPortPolicy],
}

/// Validate a HostPortPolicy on create or update; `ctx` adds the cross-object checks.
pub fn validate_host_port_policy(
    new: &HostPortPolicy,
    old: Option<&HostPortPolicy>,
    ctx: Option<&PolicyContext<'_>>,
) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::new();
    let spec = &new.spec;
    let pool_name = &spec.node_pool_network;
    // Exactly the names a NodePoolNetwork may have: a DNS-1123 subdomain (the API server's
    // rule for cluster-scoped objects) of at most 63 characters (poolnet's).
    if pool_name.len() > MAX_NAME_LEN || !is_dns1123_subdomain(pool_name) {
        errs.push(FieldError::new(
            "spec.nodePoolNetwork",
            pool_name,
            "not a NodePoolNetwork name",
            "a name of lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 63 characters",
        ));
    }
    errs.extend(validate_label_selector(
        &spec.pod_selector,
        "spec.podSelector",
    ));
    if spec.ports.is_empty() {
        errs.push(FieldError::new(
            "spec.ports",
            "[]",
            "no ports to assign",
            "at least one containerPort, e.g. {containerPort: 8080, protocol: TCP}",
        ));
    }
    let range = PortRange::new(spec.host_port_range.start, spec.host_port_range.end);
    if range.is_none() {
        errs.push(FieldError::new(
            "spec.hostPortRange",
            format!(
                "{}-{}",
                spec.host_port_range.start, spec.host_port_range.end
            ),
            "start must be at least 1 and not greater than end",
            "a range such as 40000-59999",
        ));
    }
    let mut keys = BTreeMap::new();
    let mut statics = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        if p.container_port == 0 {
            errs.push(FieldError::new(
                format!("{path}.containerPort"),
                "0",
                "port 0",
                "1-65535",
            ));
        }
        if let Some(j) = keys.insert((p.container_port, p.protocol), i) {
            errs.push(FieldError::new(
                format!("{path}.containerPort"),
                format!("{}/{:?}", p.container_port, p.protocol),
                format!("listed twice (also spec.ports[{j}])"),
                "each containerPort and protocol once",
            ));
        }
        if let Some(hp) = p.host_port {
            if hp == 0 {
                errs.push(FieldError::new(
                    format!("{path}.hostPort"),
                    "0",
                    "port 0",
                    "1-65535",
                ));
            }
            if let Some(j) = statics.insert((hp, p.protocol), i) {
                errs.push(FieldError::new(
                    format!("{path}.hostPort"),
                    hp.to_string(),
                    format!("the same static hostPort and protocol as spec.ports[{j}]"),
                    "each static hostPort once per protocol",
                ));
            }
        }
    }
    errs.extend(validate_sources(
        &spec.source_address_prefixes,
        "spec.sourceAddressPrefixes",
    ));

    if let Some(old) = old
        && old.spec.node_pool_network != spec.node_pool_network
    {
        errs.push(FieldError::new(
            "spec.nodePoolNetwork",
            pool_name,
            "nodePoolNetwork is immutable",
            format!(
                "the original value {:?}; create a new HostPortPolicy for another pool",
                old.spec.node_pool_network
            ),
        ));
    }

    if let Some(ctx) = ctx {
        errs.extend(validate_policy_against_context(new, range, ctx));
    }
    errs.into_result()
}

fn validate_policy_against_context(
    new: &HostPortPolicy,
    range: Option<PortRange>,
    ctx: &PolicyContext<'_>,
) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let spec = &new.spec;
    let ns = new.metadata.namespace.as_deref().unwrap_or("");
    let Some(pool) = ctx.pool else {
        errs.push(FieldError::new(
            "spec.nodePoolNetwork",
            &spec.node_pool_network,
            "no NodePoolNetwork has this name",
            "the name of an existing NodePoolNetwork (kubectl get nodepoolnetworks)",
        ));
        return errs;
    };
    let admitted = match pool.spec.host_port_policies.as_ref() {
        None => false,
        Some(a) => match a.from {
            PolicyNamespaces::None => false,
            PolicyNamespaces::All => true,
            PolicyNamespaces::Selector => a
                .selector
                .clone()
                .and_then(|s| Selector::try_from(s).ok())
                .is_some_and(|s| s.matches(ctx.namespace_labels)),
        },
    };
    if !admitted {
        errs.push(FieldError::new(
            "spec.nodePoolNetwork",
            &spec.node_pool_network,
            format!("NodePoolNetwork {:?} does not admit HostPortPolicies from namespace {ns:?}", spec.node_pool_network),
            "a pool whose spec.hostPortPolicies admits this namespace (from: All, or from: Selector matching its labels)",
        ));
    }
    errs.extend(policy_fits_pool(new, range, pool));
    for (i, p) in spec.ports.iter().enumerate() {
        let Some(hp) = p.host_port else { continue };
        let proto = Protocol::from(p.protocol);
        for other in ctx.other_policies {
            let same = other.metadata.namespace == new.metadata.namespace
                && other.metadata.name == new.metadata.name;
            if same {
                continue;
            }
            if other
                .spec
                .ports
                .iter()
                .any(|q| q.host_port == Some(hp) && q.protocol == p.protocol)
            {
                errs.push(FieldError::new(
                    format!("spec.ports[{i}].hostPort"),
                    format!("{hp}/{proto}"),
                    format!(
                        "already reserved statically by HostPortPolicy {}/{}",
                        other.metadata.namespace.as_deref().unwrap_or(""),
                        other.metadata.name.as_deref().unwrap_or("")
                    ),
                    "a static host port no other policy reserves, or an automatic one",
                ));
            }
        }
    }
    errs
}

/// Whether the policy stays inside what its pool allows: its automatic range and static
/// ports inside the pool's allowedHostPorts, and its sources inside the sources the pool
/// opens in each of its NSGs. Checked at admission and again by the controllers on every
/// change of the pool: a policy the pool no longer allows opens nothing.
pub fn policy_fits_pool(
    new: &HostPortPolicy,
    range: Option<PortRange>,
    pool: &NodePoolNetwork,
) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let spec = &new.spec;
    let allowed = PortSet::from_specs(&allowed_host_ports(&pool.spec));
    let auto_protocols: BTreeSet<Protocol> = spec
        .ports
        .iter()
        .filter(|p| p.host_port.is_none())
        .map(|p| Protocol::from(p.protocol))
        .collect();
    if let Some(range) = range {
        for proto in auto_protocols {
            if !allowed.contains_range(proto, range) {
                errs.push(FieldError::new(
                    "spec.hostPortRange",
                    format!("{range}/{proto}"),
                    format!(
                        "not inside the allowed host ports of NodePoolNetwork {:?} ({})",
                        spec.node_pool_network,
                        portspec::format_list(&allowed.to_specs())
                    ),
                    format!("a range inside one allowedHostPorts entry for {proto}"),
                ));
            }
        }
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let Some(hp) = p.host_port else { continue };
        let proto = Protocol::from(p.protocol);
        if !allowed.contains(proto, hp) {
            errs.push(FieldError::new(
                format!("spec.ports[{i}].hostPort"),
                format!("{hp}/{proto}"),
                format!(
                    "not in the allowed host ports of NodePoolNetwork {:?}",
                    spec.node_pool_network
                ),
                format!(
                    "a port inside {}",
                    portspec::format_list(&allowed.to_specs())
                ),
            ));
        }
    }
    for target in &pool.spec.network_security_groups {
        for (i, src) in spec.source_address_prefixes.iter().enumerate() {
            if !target
                .source_address_prefixes
                .iter()
                .any(|allowed| crate::cidr::covers(allowed, src))
            {
                errs.push(FieldError::new(
                    format!("spec.sourceAddressPrefixes[{i}]"),
                    src,
                    format!(
                        "wider than what NodePoolNetwork {:?} opens in NSG {} ({})",
                        spec.node_pool_network,
                        target.id,
                        target.source_address_prefixes.join(", ")
                    ),
                    "sources inside the pool's sourceAddressPrefixes for that NSG, or none (the pool's own)",
                ));
            }
        }
    }
    errs
}

/// [`policy_fits_pool`] as a verdict: what the controllers ask before a policy's rules join
/// an NSG.
pub fn fits_pool(policy: &HostPortPolicy, pool: &NodePoolNetwork) -> bool {
    let range = PortRange::new(
        policy.spec.host_port_range.start,
        policy.spec.host_port_range.end,
    );
    policy_fits_pool(policy, range, pool).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(sources: &str) -> NodePoolNetwork {
        serde_yaml::from_str(&format!(
            "apiVersion: poolnet.dev/v1alpha1\nkind: NodePoolNetwork\nmetadata: {{name: game}}\nspec:\n  nodePool: {{agentPoolId: /subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game}}\n  allowedHostPorts: ['40000-40100/tcp']\n  networkSecurityGroups:\n    - id: /subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg\n      sourceAddressPrefixes: {sources}\n"
        ))
        .unwrap()
    }

    fn policy(sources: &str, range: (u16, u16)) -> HostPortPolicy {
        serde_yaml::from_str(&format!(
            "apiVersion: poolnet.dev/v1alpha1\nkind: HostPortPolicy\nmetadata: {{name: echo, namespace: games}}\nspec:\n  nodePoolNetwork: game\n  podSelector: {{matchLabels: {{app: echo}}}}\n  ports: [{{containerPort: 8080}}]\n  hostPortRange: {{start: {}, end: {}}}\n  sourceAddressPrefixes: {sources}\n",
            range.0, range.1
        ))
        .unwrap()
    }

    #[test]
    fn any_node_pool_network_name_can_be_referenced_and_selectors_are_checked() {
        let mut p = policy("[]", (40000, 40100));
        for name in ["game.eu-west", "g", &"a".repeat(63)] {
            p.spec.node_pool_network = name.to_string();
            assert!(validate_host_port_policy(&p, None, None).is_ok(), "{name}");
        }
        for name in ["Game", "game_eu", "game.", ".game", &"a".repeat(64)] {
            p.spec.node_pool_network = name.to_string();
            let e = validate_host_port_policy(&p, None, None).unwrap_err();
            assert_eq!(e.0[0].path, "spec.nodePoolNetwork", "{name}");
        }
        p.spec.node_pool_network = "game".into();
        p.spec.pod_selector = serde_json::from_value(serde_json::json!(
            {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}
        ))
        .unwrap();
        let e = validate_host_port_policy(&p, None, None).unwrap_err();
        assert_eq!(e.0[0].path, "spec.podSelector.matchExpressions[0].values");
    }

    #[test]
    fn a_policy_stays_inside_its_pools_ports_and_sources() {
        let p = pool("['203.0.113.0/24']");
        assert!(
            fits_pool(&policy("[]", (40000, 40100)), &p),
            "no sources: the pool's"
        );
        assert!(fits_pool(
            &policy("['203.0.113.128/25']", (40000, 40050)),
            &p
        ));
        let wide = policy_fits_pool(
            &policy("['*']", (40000, 40100)),
            PortRange::new(40000, 40100),
            &p,
        );
        let e = wide.iter().next().expect("refused");
        assert_eq!(e.path, "spec.sourceAddressPrefixes[0]");
        assert!(e.to_string().contains("203.0.113.0/24"), "{e}");
        assert!(
            !fits_pool(&policy("[]", (39000, 40100)), &p),
            "range outside allowedHostPorts"
        );
        assert!(fits_pool(
            &policy("['Internet']", (40000, 40100)),
            &pool("['*']")
        ));
    }
}
