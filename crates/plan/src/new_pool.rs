//! Declarative node pools (docs/node-pools.md): the pool `spec.nodePool.template` describes,
//! as AKS names its fields; what differs from a live pool in the fields AKS fixes at
//! creation; the `az aks nodepool add` command that would create the right pool; and whether
//! the public IP prefix has room for it.
//!
//! Pure: the controller converts to and from ARM's model at the edge (`arm_models`).

use std::collections::BTreeMap;

use poolnet_api::v1alpha1::agent_pool_template::{addresses_needed, surge_nodes};
use poolnet_api::v1alpha1::{AgentPoolTemplate, IpTag, NodePoolNetwork};
use poolnet_api::validation::allowed_host_ports;

use crate::agent_pool::canonical_ports;
use crate::desired::pool_asgs;
use crate::prefix::{spec_ip_tags, wanted_prefix_id};

/// The size and machine of an agent pool, as AKS names the fields (read from a live pool, or
/// taken from a template).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolShape {
    pub vm_size: Option<String>,
    pub count: Option<i32>,
    /// (minCount, maxCount) when the cluster autoscaler sizes the pool.
    pub autoscaling: Option<(i32, i32)>,
    pub max_surge: Option<String>,
    pub mode: Option<String>,
    pub os_type: Option<String>,
    pub orchestrator_version: Option<String>,
    pub vnet_subnet_id: Option<String>,
    pub availability_zones: Vec<String>,
    pub max_pods: Option<i32>,
    pub node_labels: BTreeMap<String, String>,
    pub node_taints: Vec<String>,
}

impl From<&AgentPoolTemplate> for PoolShape {
    fn from(t: &AgentPoolTemplate) -> Self {
        let mut zones = t.availability_zones.clone();
        zones.sort();
        PoolShape {
            vm_size: Some(t.vm_size.clone()),
            count: Some(t.initial_count()),
            autoscaling: t.autoscaling.map(|a| (a.min_count, a.max_count)),
            max_surge: Some(t.max_surge().to_string()),
            mode: Some(t.mode.unwrap_or_default().as_str().to_string()),
            os_type: Some(t.os_type.unwrap_or_default().as_str().to_string()),
            orchestrator_version: t.orchestrator_version.clone(),
            vnet_subnet_id: t.vnet_subnet_id.clone(),
            availability_zones: zones,
            max_pods: t.max_pods,
            node_labels: t.node_labels.clone(),
            node_taints: t.node_taints.clone(),
        }
    }
}

/// Everything poolnet sends to create the pool: the template's shape and this object's
/// network settings, the ones AKS takes only at creation included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPool {
    pub shape: PoolShape,
    pub enable_node_public_ip: bool,
    pub node_public_ip_prefix_id: Option<String>,
    /// Sorted.
    pub node_public_ip_tags: Vec<IpTag>,
    /// Canonical host-port list.
    pub allowed_host_ports: String,
    pub application_security_groups: Vec<String>,
}

/// The pool `npn` describes. Its ASGs are all of the spec's: creation waits until they exist.
pub fn new_pool(npn: &NodePoolNetwork, template: &AgentPoolTemplate) -> NewPool {
    let public_ip = npn.spec.node_public_ip.as_ref().is_some_and(|n| n.enabled);
    NewPool {
        shape: PoolShape::from(template),
        enable_node_public_ip: public_ip,
        node_public_ip_prefix_id: wanted_prefix_id(npn).filter(|_| public_ip),
        node_public_ip_tags: if public_ip {
            spec_ip_tags(npn)
        } else {
            Vec::new()
        },
        allowed_host_ports: canonical_ports(&allowed_host_ports(&npn.spec)),
        application_security_groups: pool_asgs(npn),
    }
}

/// The fields AKS fixes at creation where the template and the live pool differ, one
/// sentence each. Fields the template leaves to AKS's default (subnet, maxPods) are not
/// compared; zones are: an empty list means no zone, as in the template's documentation.
pub fn template_differences(template: &AgentPoolTemplate, pool: &PoolShape) -> Vec<String> {
    let want = PoolShape::from(template);
    let mut out = Vec::new();
    let mut text = |field: &str, have: Option<&str>, want: Option<&str>, ignore_case: bool| {
        let Some(want) = want else { return };
        let same = have.is_some_and(|h| {
            if ignore_case {
                h.eq_ignore_ascii_case(want)
            } else {
                h == want
            }
        });
        if !same {
            out.push(format!(
                "{field} is {} on the pool but {want} in spec.nodePool.template",
                have.unwrap_or("unset")
            ));
        }
    };
    text(
        "vmSize",
        pool.vm_size.as_deref(),
        want.vm_size.as_deref(),
        true,
    );
    text(
        "osType",
        pool.os_type.as_deref(),
        want.os_type.as_deref(),
        true,
    );
    text(
        "vnetSubnetID",
        pool.vnet_subnet_id.as_deref(),
        want.vnet_subnet_id.as_deref(),
        true,
    );
    let max_pods = want.max_pods.map(|m| m.to_string());
    text(
        "maxPods",
        pool.max_pods.map(|m| m.to_string()).as_deref(),
        max_pods.as_deref(),
        false,
    );
    let mut have_zones = pool.availability_zones.clone();
    have_zones.sort();
    if have_zones != want.availability_zones {
        out.push(format!(
            "availabilityZones are {have_zones:?} on the pool but {:?} in spec.nodePool.template",
            want.availability_zones
        ));
    }
    out
}

/// Whether a public IP prefix of `cidr` (IPv4), of which `in_use` addresses are taken by
/// others, has room for the pool `template` describes at its largest plus surge. The error
/// says what is missing and what to change.
pub fn prefix_room(template: &AgentPoolTemplate, cidr: &str, in_use: u32) -> Result<(), String> {
    let Ok(net) = cidr.parse::<ipnet::IpNet>() else {
        return Err(format!("the prefix's range {cidr:?} is not a CIDR"));
    };
    let size: u64 = match net {
        ipnet::IpNet::V4(n) => 1u64 << (32 - u32::from(n.prefix_len())),
        ipnet::IpNet::V6(_) => {
            return Err(format!(
                "the prefix {cidr} is IPv6; AKS takes node public IPs from an IPv4 prefix"
            ));
        }
    };
    let Some(needed) = addresses_needed(template) else {
        return Err(format!("maxSurge {:?} is not valid", template.max_surge()));
    };
    let free = size.saturating_sub(u64::from(in_use));
    if u64::from(needed) <= free {
        return Ok(());
    }
    let nodes = template.max_nodes();
    let surge = surge_nodes(template.max_surge(), nodes).unwrap_or(0);
    Err(format!(
        "the prefix {cidr} has {free} free address(es) ({size} in all, {in_use} in use) but the pool needs {needed}: {nodes} node(s) at most plus {surge} surge node(s) (maxSurge {}); use a larger prefix, or lower count/autoscaling.maxCount or maxSurge",
        template.max_surge()
    ))
}

/// Quote `s` for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,%@+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `az aks nodepool add` command that creates the pool `npn` describes under the name of
/// `agent_pool_id`, shaped like `shape` (the template's, or the live pool's so the new pool
/// resembles the old one). `None` when the ID is not an agent pool ID.
pub fn nodepool_add_command(
    npn: &NodePoolNetwork,
    agent_pool_id: &str,
    shape: &PoolShape,
) -> Option<String> {
    let id: poolnet_api::armid::ResourceId = agent_pool_id.parse().ok()?;
    let cluster = id.name_of("managedClusters")?;
    let mut args: Vec<(String, Option<String>)> = vec![
        ("--subscription".into(), Some(id.subscription.clone())),
        ("--resource-group".into(), Some(id.resource_group.clone())),
        ("--cluster-name".into(), Some(cluster.to_string())),
        ("--name".into(), Some(id.name().to_string())),
    ];
    let mut arg = |flag: &str, value: Option<String>| args.push((flag.to_string(), value));
    if let Some(v) = &shape.mode {
        arg("--mode", Some(v.clone()));
    }
    if let Some(v) = &shape.os_type {
        arg("--os-type", Some(v.clone()));
    }
    if let Some(v) = &shape.vm_size {
        arg("--node-vm-size", Some(v.clone()));
    }
    if let Some(v) = shape.count {
        arg("--node-count", Some(v.to_string()));
    }
    if let Some((min, max)) = shape.autoscaling {
        arg("--enable-cluster-autoscaler", None);
        arg("--min-count", Some(min.to_string()));
        arg("--max-count", Some(max.to_string()));
    }
    if let Some(v) = &shape.max_surge {
        arg("--max-surge", Some(v.clone()));
    }
    if let Some(v) = &shape.orchestrator_version {
        arg("--kubernetes-version", Some(v.clone()));
    }
    if let Some(v) = &shape.vnet_subnet_id {
        arg("--vnet-subnet-id", Some(v.clone()));
    }
    if !shape.availability_zones.is_empty() {
        arg("--zones", Some(shape.availability_zones.join(" ")));
    }
    if let Some(v) = shape.max_pods {
        arg("--max-pods", Some(v.to_string()));
    }
    if !shape.node_labels.is_empty() {
        let labels: Vec<String> = shape
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        arg("--labels", Some(labels.join(" ")));
    }
    if !shape.node_taints.is_empty() {
        arg("--node-taints", Some(shape.node_taints.join(",")));
    }
    if let Some(nip) = &npn.spec.node_public_ip
        && nip.enabled
    {
        arg("--enable-node-public-ip", None);
        if let Some(prefix) = wanted_prefix_id(npn) {
            arg("--node-public-ip-prefix-id", Some(prefix));
        }
        let tags = spec_ip_tags(npn);
        if !tags.is_empty() {
            let tags: Vec<String> = tags
                .iter()
                .map(|t| format!("{}={}", t.ip_tag_type, t.tag))
                .collect();
            arg("--node-public-ip-tags", Some(tags.join(" ")));
        }
    }
    let ports = canonical_ports(&allowed_host_ports(&npn.spec));
    if !ports.is_empty() {
        arg("--allowed-host-ports", Some(ports));
    }
    let asgs = pool_asgs(npn);
    if !asgs.is_empty() {
        arg("--asg-ids", Some(asgs.join(",")));
    }
    let mut out = String::from("az aks nodepool add");
    for (flag, value) in args {
        out.push(' ');
        out.push_str(&flag);
        if let Some(v) = value {
            // Multi-value flags (--zones, --labels, --node-public-ip-tags) take words.
            let multi = matches!(
                flag.as_str(),
                "--zones" | "--labels" | "--node-public-ip-tags"
            );
            out.push(' ');
            if multi {
                let words: Vec<String> = v.split(' ').map(shell_word).collect();
                out.push_str(&words.join(" "));
            } else {
                out.push_str(&shell_word(&v));
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";
    const PREFIX: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/publicIPPrefixes/p";

    fn npn(template: serde_json::Value) -> NodePoolNetwork {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "game"},
            "spec": {
                "nodePool": {"agentPoolId": POOL, "template": template},
                "nodePublicIP": {
                    "prefix": {"existingId": PREFIX},
                    "ipTags": [{"ipTagType": "RoutingPreference", "tag": "Internet"}],
                },
                "allowedHostPorts": ["443/tcp,80/tcp"],
            },
        }))
        .unwrap()
    }

    fn template(n: &NodePoolNetwork) -> &AgentPoolTemplate {
        n.spec.node_pool.template.as_ref().unwrap()
    }

    #[test]
    fn the_new_pool_carries_the_creation_time_network_settings() {
        let n = npn(serde_json::json!({"vmSize": "Standard_D4s_v5", "count": 3}));
        let p = new_pool(&n, template(&n));
        assert!(p.enable_node_public_ip);
        assert_eq!(p.node_public_ip_prefix_id.as_deref(), Some(PREFIX));
        assert_eq!(p.node_public_ip_tags.len(), 1);
        assert_eq!(p.allowed_host_ports, "80/tcp,443/tcp");
        assert_eq!(p.application_security_groups.len(), 1, "the managed ASG");
        assert_eq!(p.shape.count, Some(3));
        assert_eq!(p.shape.max_surge.as_deref(), Some("10%"));
        assert_eq!(p.shape.mode.as_deref(), Some("User"));
    }

    #[test]
    fn the_command_recreates_the_pool_the_spec_describes() {
        let n = npn(serde_json::json!({
            "vmSize": "Standard_D4s_v5",
            "count": 3,
            "autoscaling": {"minCount": 1, "maxCount": 5},
            "availabilityZones": ["2", "1"],
            "nodeLabels": {"team": "games"},
            "nodeTaints": ["dedicated=games:NoSchedule"],
        }));
        let cmd = nodepool_add_command(&n, POOL, &PoolShape::from(template(&n))).unwrap();
        assert_eq!(
            cmd,
            format!(
                "az aks nodepool add --subscription 00000000-0000-0000-0000-000000000001 --resource-group rg --cluster-name aks --name game \
                 --mode User --os-type Linux --node-vm-size Standard_D4s_v5 --node-count 3 \
                 --enable-cluster-autoscaler --min-count 1 --max-count 5 --max-surge 10% \
                 --zones 1 2 --labels team=games --node-taints dedicated=games:NoSchedule \
                 --enable-node-public-ip --node-public-ip-prefix-id {PREFIX} \
                 --node-public-ip-tags RoutingPreference=Internet --allowed-host-ports 80/tcp,443/tcp \
                 --asg-ids {}",
                crate::desired::managed_asg_id(&n).unwrap()
            )
        );
    }

    #[test]
    fn differences_name_only_creation_time_fields_the_template_sets() {
        let n = npn(serde_json::json!({"vmSize": "Standard_D4s_v5", "count": 3, "maxPods": 50}));
        let live = PoolShape {
            vm_size: Some("standard_d4s_v5".into()),
            count: Some(7),
            os_type: Some("Linux".into()),
            max_pods: Some(110),
            vnet_subnet_id: Some("/some/subnet".into()),
            ..Default::default()
        };
        let diffs = template_differences(template(&n), &live);
        assert_eq!(
            diffs,
            ["maxPods is 110 on the pool but 50 in spec.nodePool.template"],
            "count is not fixed at creation; vmSize differs only in letter case; no subnet in the template"
        );
    }

    #[test]
    fn a_prefix_needs_room_for_the_largest_pool_plus_surge() {
        let n =
            npn(serde_json::json!({"vmSize": "S", "autoscaling": {"minCount": 1, "maxCount": 14}}));
        // 14 + ceil(1.4) = 16: a /28 has exactly 16.
        assert_eq!(prefix_room(template(&n), "20.1.2.0/28", 0), Ok(()));
        let err = prefix_room(template(&n), "20.1.2.0/28", 1).unwrap_err();
        assert!(
            err.contains("has 15 free address(es) (16 in all, 1 in use) but the pool needs 16: 14 node(s) at most plus 2 surge node(s)"),
            "{err}"
        );
        assert!(prefix_room(template(&n), "2001:db8::/124", 0).is_err());
    }

    proptest! {
        #[test]
        fn room_matches_the_arithmetic(max in 1i32..=64, pct in 1u32..=100, len in 26u8..=31, in_use in 0u32..=64) {
            let n = npn(serde_json::json!({
                "vmSize": "S", "autoscaling": {"minCount": 0, "maxCount": max}, "maxSurge": format!("{pct}%"),
            }));
            let size = 1u32 << (32 - u32::from(len));
            let surge = (max as u32 * pct).div_ceil(100);
            let fits = max as u32 + surge + in_use <= size;
            prop_assert_eq!(prefix_room(template(&n), &format!("20.0.0.0/{len}"), in_use).is_ok(), fits);
        }

        #[test]
        fn shell_words_round_trip_through_single_quotes(s in "[ -~]{0,20}") {
            let w = shell_word(&s);
            if w.starts_with('\'') {
                let inner = &w[1..w.len() - 1];
                prop_assert_eq!(inner.replace(r"'\''", "'"), s);
            } else {
                prop_assert_eq!(w, s);
            }
        }
    }
}
