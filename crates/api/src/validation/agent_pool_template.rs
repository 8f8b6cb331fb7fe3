//! `spec.nodePool.template`: the webhook's copy of the CEL rules on the template, and what
//! CEL cannot do (the managed prefix's room for the pool at its largest plus surge, a Windows
//! pool's name).

use crate::armid::{ResourceId, ResourceKind};
use crate::error::{FieldError, FieldErrors};
use crate::names::{is_label_key, is_label_value};
use crate::v1alpha1::agent_pool_template::{MAX_POOL_NODES, addresses_needed, surge_nodes};
use crate::v1alpha1::{IpVersion, NodePoolNetworkSpec, OsType, PoolMode};

const P: &str = "spec.nodePool.template";

fn is_vm_size(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

/// `1`..`1000` or `1%`..`100%`, without leading zeros.
fn is_max_surge(s: &str) -> bool {
    let (digits, pct) = match s.strip_suffix('%') {
        Some(d) => (d, true),
        None => (s, false),
    };
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    surge_nodes(s, 100).is_some()
        && digits
            .parse::<u32>()
            .is_ok_and(|n| n <= if pct { 100 } else { 1000 })
}

/// `key=value:Effect` or `key:Effect`.
fn is_taint(s: &str) -> bool {
    let Some((kv, effect)) = s.rsplit_once(':') else {
        return false;
    };
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return false;
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    is_label_key(key) && is_label_value(value)
}

fn is_k8s_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

pub(super) fn validate(spec: &NodePoolNetworkSpec) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let Some(t) = &spec.node_pool.template else {
        return errs;
    };
    if !is_vm_size(&t.vm_size) {
        errs.push(FieldError::new(
            format!("{P}.vmSize"),
            &t.vm_size,
            "not an Azure VM size",
            "a VM size such as Standard_D4s_v5: letters, digits and '_', at most 64 characters",
        ));
    }
    match (t.count, t.autoscaling) {
        (None, None) => errs.push(FieldError::new(
            P,
            "",
            "neither count nor autoscaling is set",
            "count (a fixed number of nodes) or autoscaling (minCount and maxCount)",
        )),
        (Some(c), Some(a)) if c < a.min_count || c > a.max_count => errs.push(FieldError::new(
            format!("{P}.count"),
            c.to_string(),
            format!(
                "outside autoscaling's bounds {}..{}",
                a.min_count, a.max_count
            ),
            "with autoscaling, count is the initial size and must lie between minCount and maxCount",
        )),
        _ => {}
    }
    if let Some(c) = t.count
        && !(0..=MAX_POOL_NODES).contains(&c)
    {
        errs.push(FieldError::new(
            format!("{P}.count"),
            c.to_string(),
            "out of range",
            format!("0 to {MAX_POOL_NODES} nodes"),
        ));
    }
    if let Some(a) = t.autoscaling {
        if !(0..=MAX_POOL_NODES).contains(&a.min_count) {
            errs.push(FieldError::new(
                format!("{P}.autoscaling.minCount"),
                a.min_count.to_string(),
                "out of range",
                format!("0 to {MAX_POOL_NODES}"),
            ));
        }
        if !(1..=MAX_POOL_NODES).contains(&a.max_count) {
            errs.push(FieldError::new(
                format!("{P}.autoscaling.maxCount"),
                a.max_count.to_string(),
                "out of range",
                format!("1 to {MAX_POOL_NODES}"),
            ));
        }
        if a.min_count > a.max_count {
            errs.push(FieldError::new(
                format!("{P}.autoscaling"),
                format!("{}..{}", a.min_count, a.max_count),
                "minCount is greater than maxCount",
                "minCount <= maxCount",
            ));
        }
    }
    if let Some(m) = &t.max_surge
        && !is_max_surge(m)
    {
        errs.push(FieldError::new(
            format!("{P}.maxSurge"),
            m,
            "not a node count or a percentage",
            "a node count from 1 to 1000 (e.g. \"3\") or a percentage from 1% to 100% (e.g. \"33%\")",
        ));
    }
    if t.mode == Some(PoolMode::System)
        && (t.count.is_some_and(|c| c < 1) || t.autoscaling.is_some_and(|a| a.min_count < 1))
    {
        errs.push(FieldError::new(
            format!("{P}.mode"),
            "System",
            "a System pool needs at least one node",
            "count and autoscaling.minCount at least 1 for a System pool, or mode: User",
        ));
    }
    let os = t.os_type.unwrap_or_default();
    if t.mode == Some(PoolMode::System) && os != OsType::Linux {
        errs.push(FieldError::new(
            format!("{P}.mode"),
            "System",
            "a System pool must run Linux",
            "mode: User for a Windows pool, or osType: Linux",
        ));
    }
    if os == OsType::Windows
        && let Ok(id) =
            ResourceId::parse_kind(&spec.node_pool.agent_pool_id, ResourceKind::AgentPool)
        && id.name().len() > 6
    {
        errs.push(FieldError::new(
            "spec.nodePool.agentPoolId",
            &spec.node_pool.agent_pool_id,
            format!(
                "Windows agent pool name {:?} is longer than 6 characters",
                id.name()
            ),
            "a Windows pool name of 1-6 lower-case letters and digits, starting with a letter",
        ));
    }
    if let Some(v) = &t.orchestrator_version
        && !is_k8s_version(v)
    {
        errs.push(FieldError::new(
            format!("{P}.orchestratorVersion"),
            v,
            "not a Kubernetes version",
            "a version such as 1.30 or 1.30.3",
        ));
    }
    if let Some(s) = &t.vnet_subnet_id
        && let Err(e) = ResourceId::parse_kind(s, ResourceKind::Subnet)
    {
        errs.push(e.at(format!("{P}.vnetSubnetId")));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, z) in t.availability_zones.iter().enumerate() {
        if !["1", "2", "3"].contains(&z.as_str()) || !seen.insert(z) {
            errs.push(FieldError::new(
                format!("{P}.availabilityZones[{i}]"),
                z,
                "not a zone, or listed twice",
                "zones chosen once each from \"1\", \"2\" and \"3\"",
            ));
        }
    }
    if let Some(m) = t.max_pods
        && !(10..=250).contains(&m)
    {
        errs.push(FieldError::new(
            format!("{P}.maxPods"),
            m.to_string(),
            "out of range",
            "10 to 250 pods per node",
        ));
    }
    for (k, v) in &t.node_labels {
        if !is_label_key(k) || !is_label_value(v) {
            errs.push(FieldError::new(
                format!("{P}.nodeLabels[{k}]"),
                v,
                "not a valid label",
                "label keys and values as Kubernetes defines them",
            ));
        }
    }
    for (i, taint) in t.node_taints.iter().enumerate() {
        if !is_taint(taint) {
            errs.push(FieldError::new(
                format!("{P}.nodeTaints[{i}]"),
                taint,
                "not a taint",
                "key=value:Effect or key:Effect, e.g. sku=gpu:NoSchedule, with Effect NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
    }
    // The managed prefix is created with this pool: its size is known here.
    if let Some(nip) = spec.node_public_ip.as_ref().filter(|n| n.enabled)
        && let Some(m) = nip.prefix.as_ref().and_then(|p| p.managed.as_ref())
    {
        if m.ip_version == IpVersion::IPv6 {
            errs.push(FieldError::new(
                "spec.nodePublicIP.prefix.managed.ipVersion",
                "IPv6",
                "AKS takes node public IPs from an IPv4 prefix",
                "ipVersion: IPv4 for a pool created from spec.nodePool.template",
            ));
        } else if (28..=31).contains(&m.prefix_length)
            && let Some(needed) = addresses_needed(t)
        {
            let size = 1u32 << (32 - u32::from(m.prefix_length));
            if needed > size {
                let nodes = t.max_nodes();
                errs.push(FieldError::new(
                    "spec.nodePublicIP.prefix.managed.prefixLength",
                    m.prefix_length.to_string(),
                    format!(
                        "a /{} has {size} addresses but the pool needs {needed}: {nodes} node(s) at most plus {} surge node(s) (maxSurge {})",
                        m.prefix_length,
                        surge_nodes(t.max_surge(), nodes).unwrap_or(0),
                        t.max_surge()
                    ),
                    "a shorter prefixLength (28 gives 16 addresses), or a lower count/autoscaling.maxCount or maxSurge in spec.nodePool.template",
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::NodePoolNetwork;
    use proptest::prelude::*;

    const POOL: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";

    fn spec(template: serde_json::Value, rest: serde_json::Value) -> NodePoolNetworkSpec {
        let mut spec = rest;
        spec["nodePool"] = serde_json::json!({"agentPoolId": POOL, "template": template});
        let n: NodePoolNetwork = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
            "metadata": {"name": "game"}, "spec": spec,
        }))
        .unwrap();
        n.spec
    }

    fn paths(errs: FieldErrors) -> Vec<String> {
        errs.into_result()
            .err()
            .map(|e| e.0.iter().map(|f| f.path.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_good_template_passes() {
        let s = spec(
            serde_json::json!({
                "vmSize": "Standard_D4s_v5", "count": 3, "autoscaling": {"minCount": 1, "maxCount": 12},
                "maxSurge": "33%", "mode": "User", "osType": "Linux", "orchestratorVersion": "1.30",
                "availabilityZones": ["1", "3"], "maxPods": 50,
                "nodeLabels": {"team": "games"}, "nodeTaints": ["dedicated=games:NoSchedule", "spot:PreferNoSchedule"],
            }),
            serde_json::json!({"nodePublicIP": {"prefix": {"managed": {"name": "p", "resourceGroup": "rg", "location": "eastus", "prefixLength": 28}}}}),
        );
        assert_eq!(paths(validate(&s)), Vec::<String>::new());
    }

    #[test]
    fn each_bad_field_is_named() {
        let s = spec(
            serde_json::json!({
                "vmSize": "Standard D4", "count": 20, "autoscaling": {"minCount": 5, "maxCount": 10},
                "maxSurge": "0%", "mode": "System", "osType": "Windows", "orchestratorVersion": "v1.30",
                "availabilityZones": ["1", "1"], "maxPods": 5, "nodeTaints": ["dedicated=games"],
            }),
            serde_json::json!({}),
        );
        assert_eq!(
            paths(validate(&s)),
            [
                "spec.nodePool.template.vmSize",
                "spec.nodePool.template.count",
                "spec.nodePool.template.maxSurge",
                "spec.nodePool.template.mode",
                "spec.nodePool.template.orchestratorVersion",
                "spec.nodePool.template.availabilityZones[1]",
                "spec.nodePool.template.maxPods",
                "spec.nodePool.template.nodeTaints[0]",
            ]
        );
    }

    #[test]
    fn a_windows_pool_name_has_at_most_six_characters() {
        let mut s = spec(
            serde_json::json!({"vmSize": "S", "count": 1, "osType": "Windows"}),
            serde_json::json!({}),
        );
        assert!(paths(validate(&s)).is_empty(), "game: 4 characters");
        s.node_pool.agent_pool_id = POOL.replace("/game", "/gamewin1");
        assert_eq!(paths(validate(&s)), ["spec.nodePool.agentPoolId"]);
    }

    #[test]
    fn a_managed_prefix_must_hold_the_largest_pool_plus_surge() {
        let managed = |len: u8| serde_json::json!({"nodePublicIP": {"prefix": {"managed": {"name": "p", "resourceGroup": "rg", "location": "eastus", "prefixLength": len}}}});
        // 14 nodes + 10% surge (2) = 16: a /28 holds it, a /29 does not.
        let t = serde_json::json!({"vmSize": "S", "autoscaling": {"minCount": 1, "maxCount": 14}});
        assert!(paths(validate(&spec(t.clone(), managed(28)))).is_empty());
        let errs = validate(&spec(t, managed(29)));
        let text = errs.to_string();
        assert!(
            text.contains("a /29 has 8 addresses but the pool needs 16: 14 node(s) at most plus 2 surge node(s)"),
            "{text}"
        );
        assert_eq!(
            paths(errs),
            ["spec.nodePublicIP.prefix.managed.prefixLength"]
        );
    }

    proptest! {
        #[test]
        fn max_surge_accepts_exactly_counts_and_percentages(n in 0u32..1200, pct in any::<bool>(), zero in any::<bool>()) {
            let s = format!("{}{n}{}", if zero { "0" } else { "" }, if pct { "%" } else { "" });
            let want = !zero && n >= 1 && n <= if pct { 100 } else { 1000 };
            prop_assert_eq!(is_max_surge(&s), want, "{}", s);
        }
    }
}
