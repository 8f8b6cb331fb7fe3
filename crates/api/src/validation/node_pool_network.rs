//! NodePoolNetwork: the spec validator (prefix, IP tags, host ports, ASGs, NSGs, policy
//! admission, route table) and the immutability rules on update.

use std::collections::{BTreeMap, BTreeSet};

use super::{MAX_ASGS_PER_NIC, MAX_NAME_LEN, PRIORITY_BAND, managed_asg_enabled, validate_sources};
use crate::armid::{ResourceId, ResourceKind};
use crate::cidr::parse_address_prefix;
use crate::error::{FieldError, FieldErrors};
use crate::iptag::validate_ip_tag;
use crate::names::{
    AGENT_POOL_NAME_RULE, is_agent_pool_name, is_dns1123_subdomain, is_label_key, is_label_value,
    validate_label_selector,
};
use crate::portspec::{self, HostPortSpec, Protocol};
use crate::route::{NextHopKind, validate_route};
use crate::v1alpha1::{
    IpTag, IpVersion, ManagedPrefix, NodePoolNetwork, NodePoolNetworkSpec, PolicyNamespaces,
    PrefixSource,
};

/// Validate a NodePoolNetwork on create (`old = None`) or update.
pub fn validate_node_pool_network(
    new: &NodePoolNetwork,
    old: Option<&NodePoolNetwork>,
) -> Result<(), FieldErrors> {
    let mut errs = FieldErrors::new();
    if let Some(name) = new.metadata.name.as_deref() {
        if name.len() > MAX_NAME_LEN {
            errs.push(FieldError::new(
                "metadata.name",
                name,
                format!("{} characters is too long", name.len()),
                format!(
                    "at most {MAX_NAME_LEN} characters (the name is embedded in Azure resource names)"
                ),
            ));
        }
        // The API server checks this too; the CLI validates files it has not seen.
        if !is_dns1123_subdomain(name) {
            errs.push(FieldError::new(
                "metadata.name",
                name,
                "not a DNS-1123 subdomain",
                "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            ));
        }
    }
    errs.extend(validate_node_pool_network_spec(&new.spec));
    if let Some(old) = old {
        errs.extend(immutable_node_pool_network(&new.spec, &old.spec));
    }
    errs.into_result()
}

fn validate_node_pool_network_spec(spec: &NodePoolNetworkSpec) -> FieldErrors {
    let mut errs = FieldErrors::new();

    match ResourceId::parse_kind(&spec.node_pool.agent_pool_id, ResourceKind::AgentPool) {
        Err(e) => errs.push(e.at("spec.nodePool.agentPoolId")),
        // Case-sensitive although ARM IDs are not: AKS names pools in lower case, and the
        // name is the value of the kubernetes.azure.com/agentpool label nodes are selected by.
        Ok(id) if !is_agent_pool_name(id.name()) => errs.push(FieldError::new(
            "spec.nodePool.agentPoolId",
            &spec.node_pool.agent_pool_id,
            format!(
                "agent pool name {:?} is not a valid AKS node pool name",
                id.name()
            ),
            AGENT_POOL_NAME_RULE,
        )),
        Ok(_) => {}
    }

    errs.extend(super::agent_pool_template::validate(spec));

    for (k, v) in &spec.node_pool.node_selector {
        if !is_label_key(k) {
            errs.push(FieldError::new(
                "spec.nodePool.nodeSelector",
                k,
                "not a valid label key",
                "a label key, e.g. kubernetes.azure.com/agentpool",
            ));
        }
        if !is_label_value(v) {
            errs.push(FieldError::new(
                format!("spec.nodePool.nodeSelector[{k}]"),
                v,
                "not a valid label value",
                "a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
    }

    if let Some(nip) = &spec.node_public_ip {
        if let Some(prefix) = &nip.prefix {
            match (&prefix.existing_id, &prefix.managed) {
                (Some(_), Some(_)) | (None, None) => errs.push(FieldError::new(
                    "spec.nodePublicIP.prefix",
                    "",
                    "exactly one of existingId or managed must be set",
                    "prefix.existingId (adopt an existing prefix) or prefix.managed (poolnet creates one)",
                )),
                _ => {}
            }
            if let Some(id) = &prefix.existing_id
                && let Err(e) = ResourceId::parse_kind(id, ResourceKind::PublicIpPrefix)
            {
                errs.push(e.at("spec.nodePublicIP.prefix.existingId"));
            }
            if let Some(m) = &prefix.managed {
                let p = "spec.nodePublicIP.prefix.managed";
                if !crate::armid::valid_resource_name(&m.name) {
                    errs.push(FieldError::new(
                        format!("{p}.name"),
                        &m.name,
                        "not a valid Azure resource name",
                        crate::armid::RESOURCE_NAME_RULE,
                    ));
                }
                let rg_ok = !m.resource_group.is_empty()
                    && m.resource_group.len() <= 90
                    && !m.resource_group.ends_with('.')
                    && m.resource_group
                        .chars()
                        .all(|c| c.is_alphanumeric() || "_-.()".contains(c));
                if !rg_ok {
                    errs.push(FieldError::new(
                        format!("{p}.resourceGroup"),
                        &m.resource_group,
                        "not a valid resource group name",
                        "1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'",
                    ));
                }
                if m.location.is_empty()
                    || !m
                        .location
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                {
                    errs.push(FieldError::new(
                        format!("{p}.location"),
                        &m.location,
                        "not an Azure region name",
                        "a region in lower case without blanks, e.g. eastus",
                    ));
                }
                let (lo, hi, fam) = match m.ip_version {
                    IpVersion::IPv4 => (28, 31, "IPv4"),
                    IpVersion::IPv6 => (124, 127, "IPv6"),
                };
                if !(lo..=hi).contains(&m.prefix_length) {
                    errs.push(FieldError::new(
                        format!("{p}.prefixLength"),
                        m.prefix_length.to_string(),
                        format!("Azure public IP prefixes for {fam} are /{lo} to /{hi}"),
                        format!("{lo}-{hi} for {fam}"),
                    ));
                }
                let mut seen = BTreeSet::new();
                for (i, z) in m.zones.iter().enumerate() {
                    if !["1", "2", "3"].contains(&z.as_str()) || !seen.insert(z) {
                        errs.push(FieldError::new(
                            format!("{p}.zones[{i}]"),
                            z,
                            "not a zone, or listed twice",
                            "distinct zones from \"1\", \"2\", \"3\"",
                        ));
                    }
                }
            }
        }
        if let Some(tags) = &nip.ip_tags {
            let mut types = BTreeSet::new();
            for (i, t) in tags.iter().enumerate() {
                let path = format!("spec.nodePublicIP.ipTags[{i}]");
                if let Err(e) = validate_ip_tag(&t.ip_tag_type, &t.tag) {
                    errs.push(e.at(path.clone()));
                }
                if !types.insert(t.ip_tag_type.as_str()) {
                    errs.push(FieldError::new(
                        format!("{path}.ipTagType"),
                        &t.ip_tag_type,
                        "this tag type is listed twice",
                        "one tag per ipTagType",
                    ));
                }
            }
        }
    }

    let host_ports = match portspec::parse_items(&spec.allowed_host_ports, "spec.allowedHostPorts")
    {
        Ok(specs) => {
            let flat: Vec<HostPortSpec> = specs.iter().map(|(_, s)| *s).collect();
            for (a, b) in portspec::find_overlaps(&flat) {
                let (ia, sa) = specs[a];
                let (ib, sb) = specs[b];
                errs.push(FieldError::new(
                    format!("spec.allowedHostPorts[{ib}]"),
                    sb.to_string(),
                    format!("overlaps {sa} in spec.allowedHostPorts[{ia}]"),
                    "entries that share no port on the same protocol (merge them into one range)",
                ));
            }
            flat
        }
        Err(e) => {
            errs.extend(e);
            Vec::new()
        }
    };

    let managed_asg = managed_asg_enabled(spec);
    let mut custom_asgs = 0;
    if let Some(asg) = &spec.application_security_groups {
        let mut seen = BTreeSet::new();
        for (i, id) in asg.custom_ids.iter().enumerate() {
            let path = format!("spec.applicationSecurityGroups.customIds[{i}]");
            match ResourceId::parse_kind(id, ResourceKind::ApplicationSecurityGroup) {
                Ok(_) if !seen.insert(id.to_ascii_lowercase()) => errs.push(FieldError::new(
                    path,
                    id,
                    "this ASG is listed twice (ARM IDs are case-insensitive)",
                    "each ASG once",
                )),
                Ok(_) => {}
                Err(e) => errs.push(e.at(path)),
            }
        }
        custom_asgs = asg.custom_ids.len();
    }
    let total_asgs = custom_asgs + usize::from(managed_asg);
    if total_asgs > MAX_ASGS_PER_NIC {
        errs.push(FieldError::new(
            "spec.applicationSecurityGroups",
            format!("{total_asgs} ASGs"),
            format!(
                "a NIC can be in at most {MAX_ASGS_PER_NIC} application security groups ({custom_asgs} custom{})",
                if managed_asg { " + 1 managed" } else { "" }
            ),
            format!("at most {MAX_ASGS_PER_NIC} in total: remove custom IDs or set managed: false"),
        ));
    }

    if !spec.network_security_groups.is_empty() {
        if host_ports.is_empty() && spec.allowed_host_ports.is_empty() {
            errs.push(FieldError::new(
                "spec.networkSecurityGroups",
                format!("{} NSGs", spec.network_security_groups.len()),
                "there are NSGs to write rules into but no allowedHostPorts to open",
                "spec.allowedHostPorts set, or no networkSecurityGroups",
            ));
        }
        if !managed_asg && custom_asgs == 0 {
            errs.push(FieldError::new(
                "spec.applicationSecurityGroups",
                "managed: false",
                "NSG rules need the pool's ASG as destination, and there is none",
                "managed: true (the default) or at least one customIds entry",
            ));
        }
    }
    let protocols: BTreeSet<Protocol> = host_ports.iter().map(|s| s.protocol).collect();
    let mut nsg_ids = BTreeSet::new();
    for (i, nsg) in spec.network_security_groups.iter().enumerate() {
        let path = format!("spec.networkSecurityGroups[{i}]");
        match ResourceId::parse_kind(&nsg.id, ResourceKind::NetworkSecurityGroup) {
            Ok(_) if !nsg_ids.insert(nsg.id.to_ascii_lowercase()) => errs.push(FieldError::new(
                format!("{path}.id"),
                &nsg.id,
                "this NSG is listed twice (ARM IDs are case-insensitive)",
                "each NSG once, with all its sources in one entry",
            )),
            Ok(_) => {}
            Err(e) => errs.push(e.at(format!("{path}.id"))),
        }
        errs.extend(validate_sources(
            &nsg.source_address_prefixes,
            &format!("{path}.sourceAddressPrefixes"),
        ));
        if nsg.source_address_prefixes.is_empty() {
            errs.push(FieldError::new(
                format!("{path}.sourceAddressPrefixes"),
                "[]",
                "no sources: the rules would allow nothing",
                "at least one source, e.g. Internet or 203.0.113.0/24",
            ));
        }
        let band = nsg.priorities;
        if band.from > band.to || band.from < PRIORITY_BAND.0 || band.to > PRIORITY_BAND.1 {
            errs.push(FieldError::new(
                format!("{path}.priorities"),
                format!("{}-{}", band.from, band.to),
                "the band must be low-high and inside 100-499",
                "a band inside 100-499 (AKS and the cloud controller use 500-4096)",
            ));
        } else if usize::from(band.to - band.from + 1) < protocols.len() {
            errs.push(FieldError::new(
                format!("{path}.priorities"),
                format!("{}-{}", band.from, band.to),
                format!(
                    "the band has room for {} rules but {} are needed (one per protocol)",
                    band.to - band.from + 1,
                    protocols.len()
                ),
                format!("a band of at least {} priorities", protocols.len()),
            ));
        }
    }

    if let Some(hp) = &spec.host_port_policies
        && (hp.from == PolicyNamespaces::Selector) != hp.selector.is_some()
    {
        errs.push(FieldError::new(
            "spec.hostPortPolicies.selector",
            format!("from: {:?}", hp.from),
            "selector is required when from is Selector, and only then",
            "from: Selector with a selector, or from: All / None without one",
        ));
    }
    if let Some(sel) = spec
        .host_port_policies
        .as_ref()
        .and_then(|h| h.selector.as_ref())
    {
        errs.extend(validate_label_selector(
            sel,
            "spec.hostPortPolicies.selector",
        ));
    }

    if let Some(rt) = &spec.route_table {
        if let Err(e) = ResourceId::parse_kind(&rt.id, ResourceKind::RouteTable) {
            errs.push(e.at("spec.routeTable.id"));
        }
        let mut names = BTreeMap::new();
        let mut prefixes = BTreeMap::new();
        for (i, r) in rt.routes.iter().enumerate() {
            let path = format!("spec.routeTable.routes[{i}]");
            errs.extend(validate_route(
                &path,
                &r.name,
                &r.address_prefix,
                NextHopKind::from(r.next_hop_type),
                r.next_hop_ip_address.as_deref(),
            ));
            if let Some(j) = names.insert(r.name.to_ascii_lowercase(), i) {
                errs.push(FieldError::new(
                    format!("{path}.name"),
                    &r.name,
                    format!("the same name as spec.routeTable.routes[{j}] (Azure names are case-insensitive)"),
                    "a unique name per route",
                ));
            }
            let key = match parse_address_prefix(&r.address_prefix) {
                Ok(p) => p.to_string(),
                Err(_) => r.address_prefix.clone(),
            };
            if let Some(j) = prefixes.insert(key, i) {
                errs.push(FieldError::new(
                    format!("{path}.addressPrefix"),
                    &r.address_prefix,
                    format!("the same prefix as spec.routeTable.routes[{j}]"),
                    "one route per address prefix",
                ));
            }
        }
        if !(1..=1000).contains(&rt.route_limit) {
            errs.push(FieldError::new(
                "spec.routeTable.routeLimit",
                rt.route_limit.to_string(),
                "out of range",
                "1-1000 (Azure's default limit is 400)",
            ));
        } else if rt.routes.len() > rt.route_limit as usize {
            errs.push(FieldError::new(
                "spec.routeTable.routes",
                format!("{} routes", rt.routes.len()),
                format!("more routes than routeLimit {}", rt.route_limit),
                format!(
                    "at most {} routes, fewer nodes' worth (kubenet adds one route per node)",
                    rt.route_limit
                ),
            ));
        }
    }
    errs
}

fn immutable_node_pool_network(
    new: &NodePoolNetworkSpec,
    old: &NodePoolNetworkSpec,
) -> FieldErrors {
    let mut errs = FieldErrors::new();
    // ARM IDs are case-insensitive: a change of letter case names the same resource.
    if !new
        .node_pool
        .agent_pool_id
        .eq_ignore_ascii_case(&old.node_pool.agent_pool_id)
    {
        errs.push(FieldError::new(
            "spec.nodePool.agentPoolId",
            &new.node_pool.agent_pool_id,
            "agentPoolId is immutable",
            format!(
                "the original value {}; create another NodePoolNetwork for another pool",
                old.node_pool.agent_pool_id
            ),
        ));
    }
    const RECREATE: &str = "AKS sets enableNodePublicIP, the public IP prefix and IP tags only when a node pool is created";
    if old.node_public_ip.is_none()
        && let Some(new_nip) = &new.node_public_ip
    {
        errs.push(FieldError::new(
            "spec.nodePublicIP",
            format!("{new_nip:?}"),
            format!("spec.nodePublicIP cannot be added after creation: {RECREATE}"),
            "no nodePublicIP; recreate the node pool, then create a new NodePoolNetwork with nodePublicIP",
        ));
    }
    if let Some(old_nip) = &old.node_public_ip {
        match &new.node_public_ip {
            None => errs.push(FieldError::new(
                "spec.nodePublicIP",
                "",
                "spec.nodePublicIP cannot be removed: AKS fixes a pool's public IP prefix and IP tags at creation",
                "the original nodePublicIP; delete and recreate the NodePoolNetwork (and the node pool) instead",
            )),
            Some(new_nip) => {
                if new_nip.enabled != old_nip.enabled {
                    errs.push(FieldError::new(
                        "spec.nodePublicIP.enabled",
                        new_nip.enabled.to_string(),
                        "nodePublicIP.enabled is immutable: AKS sets enableNodePublicIP only when a node pool is created",
                        format!(
                            "the original value {}; recreate the node pool, then create a new NodePoolNetwork with the setting you want",
                            old_nip.enabled
                        ),
                    ));
                }
                if !same_prefix(new_nip.prefix.as_ref(), old_nip.prefix.as_ref()) {
                    errs.push(FieldError::new(
                        "spec.nodePublicIP.prefix",
                        format!("{:?}", new_nip.prefix),
                        "nodePublicIP.prefix is immutable: Azure fixes a prefix's length, version, zones and IP tags at creation",
                        "the original prefix; create a new NodePoolNetwork and node pool for another",
                    ));
                }
                if !same_ip_tags(new_nip.ip_tags.as_deref(), old_nip.ip_tags.as_deref()) {
                    errs.push(FieldError::new(
                        "spec.nodePublicIP.ipTags",
                        format!("{:?}", new_nip.ip_tags),
                        "nodePublicIP.ipTags is immutable: Azure fixes IP tags (including RoutingPreference) at creation",
                        "the original ipTags",
                    ));
                }
            }
        }
    }
    errs
}

/// Prefix sources are the same when the managed prefix is identical, or the existing prefix
/// IDs differ at most in letter case (ARM IDs are case-insensitive).
fn same_prefix(a: Option<&PrefixSource>, b: Option<&PrefixSource>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            same_managed_prefix(a.managed.as_ref(), b.managed.as_ref())
                && match (&a.existing_id, &b.existing_id) {
                    (None, None) => true,
                    (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// IP tags compare as CEL compares a list of type map: regardless of order.
fn same_ip_tags(a: Option<&[IpTag]>, b: Option<&[IpTag]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort();
            b.sort();
            a == b
        }
        _ => false,
    }
}

/// Managed prefixes compare as CEL compares them: zones (a list of type set) regardless of
/// order.
fn same_managed_prefix(a: Option<&ManagedPrefix>, b: Option<&ManagedPrefix>) -> bool {
    let norm = |m: &ManagedPrefix| {
        let mut m = m.clone();
        m.zones.sort();
        m
    };
    a.map(norm) == b.map(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "/subscriptions/3f2c1a9e-0d4b-4c6f-9a8e-5b7d2e1f0a11/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";
    const PREFIX: &str = "/subscriptions/3f2c1a9e-0d4b-4c6f-9a8e-5b7d2e1f0a11/resourceGroups/rg-net/providers/Microsoft.Network/publicIPPrefixes/pip-game";

    fn npn(agent_pool_id: &str, rest: serde_json::Value) -> NodePoolNetwork {
        let mut spec = serde_json::json!({"nodePool": {"agentPoolId": agent_pool_id}});
        spec.as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
            "metadata": {"name": "game"}, "spec": spec,
        }))
        .unwrap()
    }

    fn paths(r: Result<(), FieldErrors>) -> Vec<String> {
        r.err()
            .map(|e| e.iter().map(|e| e.path.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn node_public_ip_enabled_and_adding_it_are_immutable() {
        let none = npn(POOL, serde_json::json!({}));
        let on = npn(POOL, serde_json::json!({"nodePublicIP": {}}));
        let off = npn(
            POOL,
            serde_json::json!({"nodePublicIP": {"enabled": false}}),
        );
        assert_eq!(
            paths(validate_node_pool_network(&off, Some(&on))),
            ["spec.nodePublicIP.enabled"]
        );
        let e = validate_node_pool_network(&on, Some(&none)).unwrap_err();
        assert_eq!(e.0[0].path, "spec.nodePublicIP");
        assert!(
            e.to_string().contains("cannot be added after creation"),
            "{e}"
        );
        assert!(e.to_string().contains("recreate the node pool"), "{e}");
        // Writing out the default is no change.
        let explicit = npn(POOL, serde_json::json!({"nodePublicIP": {"enabled": true}}));
        assert!(validate_node_pool_network(&explicit, Some(&on)).is_ok());
    }

    #[test]
    fn arm_ids_are_immutable_up_to_letter_case() {
        let cluster_upper = POOL.replace("/managedClusters/aks", "/MANAGEDCLUSTERS/AKS");
        let a = npn(POOL, serde_json::json!({}));
        let b = npn(
            &cluster_upper.to_ascii_uppercase().replace("/GAME", "/game"),
            serde_json::json!({}),
        );
        assert!(validate_node_pool_network(&b, Some(&a)).is_ok());
        let other = npn(&POOL.replace("/game", "/other"), serde_json::json!({}));
        assert_eq!(
            paths(validate_node_pool_network(&other, Some(&a))),
            ["spec.nodePool.agentPoolId"]
        );

        let prefix = |id: &str| {
            npn(
                POOL,
                serde_json::json!({"nodePublicIP": {"prefix": {"existingId": id}}}),
            )
        };
        assert!(
            validate_node_pool_network(
                &prefix(&PREFIX.to_ascii_uppercase()),
                Some(&prefix(PREFIX))
            )
            .is_ok()
        );
        assert_eq!(
            paths(validate_node_pool_network(
                &prefix(&PREFIX.replace("pip-game", "pip-other")),
                Some(&prefix(PREFIX))
            )),
            ["spec.nodePublicIP.prefix"]
        );
    }

    #[test]
    fn agent_pool_names_follow_aks() {
        for ok in ["game", "gamepool1234", "a1"] {
            let n = npn(
                &POOL.replace("/game", &format!("/{ok}")),
                serde_json::json!({}),
            );
            assert!(validate_node_pool_network(&n, None).is_ok(), "{ok}");
        }
        for bad in ["gamepool12345", "game-1", "1game", "Game", "game_1"] {
            let n = npn(
                &POOL.replace("/game", &format!("/{bad}")),
                serde_json::json!({}),
            );
            assert_eq!(
                paths(validate_node_pool_network(&n, None)),
                ["spec.nodePool.agentPoolId"],
                "{bad}"
            );
        }
    }

    #[test]
    fn the_managed_asg_counts_only_when_in_use() {
        let ids: Vec<String> = (0..20)
            .map(|i| format!("/subscriptions/3f2c1a9e-0d4b-4c6f-9a8e-5b7d2e1f0a11/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg{i}"))
            .collect();
        let twenty = npn(
            POOL,
            serde_json::json!({"applicationSecurityGroups": {"customIds": ids}}),
        );
        assert!(
            validate_node_pool_network(&twenty, None).is_ok(),
            "no host ports: no managed ASG"
        );
        let with_ports = npn(
            POOL,
            serde_json::json!({"applicationSecurityGroups": {"customIds": ids}, "allowedHostPorts": ["80/tcp"]}),
        );
        assert_eq!(
            paths(validate_node_pool_network(&with_ports, None)),
            ["spec.applicationSecurityGroups"]
        );
    }
}
