//! Between ARM's SDK models and the planners' pure views, for the resources a
//! NodePoolNetwork owns or reads whole: agent pools, public IP prefixes, ASGs and the tags
//! poolnet writes on what it creates. Request bodies for these are assembled here and nowhere
//! else (NSG rules and routes: [`crate::writers::convert`]).

use kube::ResourceExt;
use poolnet_api::portspec::{self, PortRange, Protocol};
use poolnet_api::v1alpha1::{IpTag, IpVersion, ManagedPrefix, NodePoolNetwork};
use poolnet_arm::AgentPool;
use poolnet_arm::models::{
    ApplicationSecurityGroup, IpTag as ArmIpTag, IpVersion as ArmIpVersion, ProvisioningState,
    PublicIpPrefix, PublicIpPrefixPropertiesFormat, PublicIpPrefixSku, Resource,
    public_ip_prefix_sku,
};
use poolnet_plan::agent_pool::{ObservedPool, canonical_ports, sorted_ids};
use poolnet_plan::new_pool::{NewPool, PoolShape};
use poolnet_plan::prefix::ObservedPrefix;

use crate::writers::convert::{set_tag, tag_value};

pub use poolnet_api::ownership::OWNER_TAG;
use poolnet_api::ownership::{CLUSTER_TAG, OWNER_UID_TAG, owner_tag_value};

fn owner_tag(npn: &NodePoolNetwork) -> String {
    owner_tag_value(&npn.name_any())
}

/// Whether poolnet created `resource` for `npn` in `cluster` (its ARM ID): the owner tag
/// names the object, the cluster tag this cluster, and the UID tag, where present, this very
/// object. Another cluster's poolnet names its objects alike (a pool `game` in both), so the
/// name alone proves nothing. Resources created before the UID tag existed carry none; the
/// name and cluster then decide.
pub fn ours(resource: &Resource, npn: &NodePoolNetwork, cluster: &str) -> bool {
    ours_by_tags(|t| tag_value(resource, t), npn, cluster)
}

/// [`ours`] for an agent pool, whose tags are `properties.tags`. Stricter: every pool poolnet
/// creates carries the UID tag (there are no older ones), so a pool without it, or of an
/// object without a UID, is never this object's.
pub fn pool_ours(pool: &AgentPool, npn: &NodePoolNetwork, cluster: &str) -> bool {
    let tags = pool.properties.extra.get("tags");
    let tag = |t: &str| {
        tags.and_then(|m| m.get(t))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let same_uid = tag(OWNER_UID_TAG).is_some_and(|u| npn.metadata.uid.as_deref() == Some(&u));
    same_uid && ours_by_tags(tag, npn, cluster)
}

fn ours_by_tags(
    tag: impl Fn(&str) -> Option<String>,
    npn: &NodePoolNetwork,
    cluster: &str,
) -> bool {
    let owner = tag(OWNER_TAG).as_deref() == Some(owner_tag(npn).as_str());
    let same_cluster = tag(CLUSTER_TAG).is_some_and(|c| c.eq_ignore_ascii_case(cluster));
    let same_object = match (tag(OWNER_UID_TAG), npn.metadata.uid.as_deref()) {
        (Some(tagged), Some(uid)) => tagged == uid,
        (Some(_), None) => false,
        (None, _) => true,
    };
    owner && same_cluster && same_object
}

/// Tag a resource poolnet creates with its owner (name and UID) and cluster.
fn owned_tags(resource: &mut Resource, npn: &NodePoolNetwork, cluster: &str) {
    set_tag(resource, OWNER_TAG, &owner_tag(npn));
    set_tag(resource, CLUSTER_TAG, cluster);
    if let Some(uid) = npn.metadata.uid.as_deref() {
        set_tag(resource, OWNER_UID_TAG, uid);
    }
}

fn ip_tags(tags: impl IntoIterator<Item = (Option<String>, Option<String>)>) -> Vec<IpTag> {
    tags.into_iter()
        .map(|(t, v)| IpTag {
            ip_tag_type: t.unwrap_or_default(),
            tag: v.unwrap_or_default(),
        })
        .collect()
}

/// The pool's allowedHostPorts in canonical form.
fn pool_ports(pool: &AgentPool) -> String {
    let specs: Vec<portspec::HostPortSpec> = pool
        .properties
        .network_profile
        .as_ref()
        .and_then(|n| n.allowed_host_ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let protocol = r.protocol.as_deref()?.parse::<Protocol>().ok()?;
            let range = PortRange::new(r.port_start?, r.port_end?)?;
            Some(portspec::HostPortSpec { protocol, range })
        })
        .collect();
    canonical_ports(&specs)
}

/// An agent pool as the planner sees it.
pub fn observed_pool(pool: &AgentPool) -> ObservedPool {
    let props = &pool.properties;
    let profile = props.network_profile.as_ref();
    ObservedPool {
        enable_node_public_ip: props.enable_node_public_ip.unwrap_or(false),
        node_public_ip_prefix_id: props.node_public_ip_prefix_id.clone(),
        node_public_ip_tags: ip_tags(
            profile
                .and_then(|n| n.node_public_ip_tags.as_ref())
                .into_iter()
                .flatten()
                .map(|t| (t.ip_tag_type.clone(), t.tag.clone())),
        ),
        allowed_host_ports: pool_ports(pool),
        application_security_groups: sorted_ids(
            &profile
                .and_then(|n| n.application_security_groups.clone())
                .unwrap_or_default(),
        ),
        shape: PoolShape {
            vm_size: props.vm_size.clone(),
            count: props.count,
            autoscaling: match (props.enable_auto_scaling, props.min_count, props.max_count) {
                (Some(true), Some(min), Some(max)) => Some((min, max)),
                _ => None,
            },
            max_surge: props
                .upgrade_settings
                .as_ref()
                .and_then(|u| u.max_surge.clone()),
            mode: props.mode.clone(),
            os_type: props.os_type.clone(),
            orchestrator_version: props.orchestrator_version.clone(),
            vnet_subnet_id: props.vnet_subnet_id.clone(),
            availability_zones: props.availability_zones.clone().unwrap_or_default(),
            max_pods: props.max_pods,
            node_labels: props.node_labels.clone().unwrap_or_default(),
            node_taints: props.node_taints.clone().unwrap_or_default(),
        },
    }
}

/// The create request of the pool `new` describes, tagged (`properties.tags`, which AKS
/// passes on to the scale set) with its owner and cluster like everything poolnet creates.
pub fn new_agent_pool_body(new: &NewPool, npn: &NodePoolNetwork, cluster: &str) -> AgentPool {
    let shape = &new.shape;
    let mut tags = serde_json::Map::new();
    tags.insert(OWNER_TAG.into(), owner_tag(npn).into());
    tags.insert(CLUSTER_TAG.into(), cluster.into());
    if let Some(uid) = npn.metadata.uid.as_deref() {
        tags.insert(OWNER_UID_TAG.into(), uid.into());
    }
    let mut extra = serde_json::Map::new();
    extra.insert("tags".into(), serde_json::Value::Object(tags));
    extra.insert("type".into(), "VirtualMachineScaleSets".into());
    let mut pool = AgentPool {
        properties: poolnet_arm::AgentPoolProperties {
            count: shape.count,
            vm_size: shape.vm_size.clone(),
            os_type: shape.os_type.clone(),
            mode: shape.mode.clone(),
            enable_auto_scaling: shape.autoscaling.map(|_| true),
            min_count: shape.autoscaling.map(|(min, _)| min),
            max_count: shape.autoscaling.map(|(_, max)| max),
            max_pods: shape.max_pods,
            vnet_subnet_id: shape.vnet_subnet_id.clone(),
            availability_zones: Some(shape.availability_zones.clone()).filter(|z| !z.is_empty()),
            node_labels: Some(shape.node_labels.clone()).filter(|l| !l.is_empty()),
            node_taints: Some(shape.node_taints.clone()).filter(|t| !t.is_empty()),
            orchestrator_version: shape.orchestrator_version.clone(),
            upgrade_settings: shape
                .max_surge
                .clone()
                .map(|m| poolnet_arm::UpgradeSettings {
                    max_surge: Some(m),
                    extra: Default::default(),
                }),
            enable_node_public_ip: Some(new.enable_node_public_ip),
            node_public_ip_prefix_id: new.node_public_ip_prefix_id.clone(),
            extra,
            ..Default::default()
        },
        ..Default::default()
    };
    let profile = pool.network_profile_mut();
    if !new.node_public_ip_tags.is_empty() {
        profile.node_public_ip_tags = Some(
            new.node_public_ip_tags
                .iter()
                .map(|t| poolnet_arm::IpTag {
                    ip_tag_type: Some(t.ip_tag_type.clone()),
                    tag: Some(t.tag.clone()),
                    extra: Default::default(),
                })
                .collect(),
        );
    }
    if !new.allowed_host_ports.is_empty() {
        profile.allowed_host_ports = Some(aks_port_ranges(&new.allowed_host_ports));
    }
    if !new.application_security_groups.is_empty() {
        profile.application_security_groups = Some(new.application_security_groups.clone());
    }
    pool
}

/// Whether an operation on the pool is still running (AKS refuses a PUT meanwhile).
pub fn pool_updating(pool: &AgentPool) -> bool {
    pool.properties
        .provisioning_state
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded") && !s.eq_ignore_ascii_case("Failed"))
}

fn aks_port_ranges(canonical: &str) -> Vec<poolnet_arm::PortRange> {
    portspec::parse_list(canonical)
        .unwrap_or_default()
        .into_iter()
        .map(|s| poolnet_arm::PortRange {
            port_start: Some(s.range.start()),
            port_end: Some(s.range.end()),
            protocol: Some(s.protocol.as_kubernetes().to_string()),
            extra: Default::default(),
        })
        .collect()
}

/// The pool with its two writable network fields set to `ports` (canonical host-port list)
/// and `asgs`, every other field as read (a read-modify-write body).
pub fn agent_pool_body(current: &AgentPool, ports: &str, asgs: &[String]) -> AgentPool {
    let mut next = current.clone();
    let profile = next
        .properties
        .network_profile
        .get_or_insert_with(Default::default);
    profile.allowed_host_ports = Some(aks_port_ranges(ports));
    profile.application_security_groups = Some(asgs.to_vec());
    next
}

/// A public IP prefix as the planner sees it.
pub fn observed_prefix(p: &PublicIpPrefix) -> ObservedPrefix {
    let props = p.properties.as_ref();
    let mut tags = ip_tags(
        props
            .map(|pp| pp.ip_tags.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|t| (t.ip_tag_type.clone(), t.tag.clone())),
    );
    tags.sort();
    ObservedPrefix {
        ip_tags: tags,
        cidr: props.and_then(|pp| pp.ip_prefix.clone()),
        updating: matches!(
            props.and_then(|pp| pp.provisioning_state.as_ref()),
            Some(ProvisioningState::Updating)
        ),
        addresses_in_use: props
            .map(|pp| u32::try_from(pp.public_ip_addresses.len()).unwrap_or(u32::MAX))
            .unwrap_or(0),
    }
}

/// The body that creates the managed prefix of `npn` (Standard, regional, with the spec's
/// IP tags, which Azure fixes at creation).
pub fn managed_prefix_body(
    npn: &NodePoolNetwork,
    m: &ManagedPrefix,
    tags: &[IpTag],
    cluster: &str,
) -> PublicIpPrefix {
    let mut prefix = PublicIpPrefix::default();
    prefix.resource.location = Some(m.location.clone());
    owned_tags(&mut prefix.resource, npn, cluster);
    prefix.sku = Some(PublicIpPrefixSku {
        name: Some(public_ip_prefix_sku::Name::Standard),
        tier: Some(public_ip_prefix_sku::Tier::Regional),
    });
    prefix.zones = m.zones.clone();
    let mut props = PublicIpPrefixPropertiesFormat::new();
    props.prefix_length = Some(i32::from(m.prefix_length));
    props.public_ip_address_version = Some(match m.ip_version {
        IpVersion::IPv4 => ArmIpVersion::IPv4,
        IpVersion::IPv6 => ArmIpVersion::IPv6,
    });
    props.ip_tags = tags
        .iter()
        .map(|t| ArmIpTag {
            ip_tag_type: Some(t.ip_tag_type.clone()),
            tag: Some(t.tag.clone()),
        })
        .collect();
    prefix.properties = Some(props);
    prefix
}

/// The body that creates the managed ASG of `npn`.
pub fn managed_asg_body(
    npn: &NodePoolNetwork,
    location: Option<String>,
    cluster: &str,
) -> ApplicationSecurityGroup {
    let mut asg = ApplicationSecurityGroup::default();
    asg.resource.location = location;
    owned_tags(&mut asg.resource, npn, cluster);
    asg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aks_port_ranges_round_trip() {
        let current = AgentPool::default();
        let pool = agent_pool_body(&current, "80/tcp,53/udp,40000-60000/tcp", &[]);
        assert_eq!(pool_ports(&pool), "80/tcp,40000-60000/tcp,53/udp");
        assert_eq!(
            observed_pool(&pool).allowed_host_ports,
            "80/tcp,40000-60000/tcp,53/udp"
        );
    }

    #[test]
    fn pool_bodies_keep_what_poolnet_does_not_manage() {
        let mut current = AgentPool::default();
        current.properties.count = Some(3);
        current
            .properties
            .extra
            .insert("nodeLabels".into(), serde_json::json!({"a": "b"}));
        let next = agent_pool_body(&current, "", &["/x".into()]);
        assert_eq!(next.properties.count, Some(3));
        assert_eq!(next.properties.extra, current.properties.extra);
        let profile = next.properties.network_profile.unwrap();
        assert_eq!(profile.application_security_groups.unwrap(), ["/x"]);
        assert_eq!(profile.allowed_host_ports.unwrap(), []);
    }

    #[test]
    fn ours_needs_the_name_the_cluster_and_a_matching_uid() {
        const CLUSTER: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks";
        let mut npn: NodePoolNetwork = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1",
            "kind": "NodePoolNetwork",
            "metadata": {"name": "game", "uid": "u-1"},
            "spec": {"nodePool": {"agentPoolId": "x"}},
        }))
        .unwrap();
        let created = managed_asg_body(&npn, None, CLUSTER);
        assert!(ours(&created.resource, &npn, CLUSTER));
        assert!(ours(&created.resource, &npn, &CLUSTER.to_uppercase()));
        // Another cluster's object of the same name.
        assert!(!ours(
            &created.resource,
            &npn,
            &CLUSTER.replace("aks", "other")
        ));
        // A later object of the same name.
        npn.metadata.uid = Some("u-2".into());
        assert!(!ours(&created.resource, &npn, CLUSTER));
        // Made before the UID tag existed: name and cluster decide.
        let mut legacy = created.resource.clone();
        crate::writers::convert::remove_tag(&mut legacy, OWNER_UID_TAG);
        assert!(ours(&legacy, &npn, CLUSTER));
        let mut untagged = legacy.clone();
        crate::writers::convert::remove_tag(&mut untagged, CLUSTER_TAG);
        assert!(
            !ours(&untagged, &npn, CLUSTER),
            "no cluster tag: not provably ours"
        );
    }

    #[test]
    fn updating_means_neither_succeeded_nor_failed() {
        let mut pool = AgentPool::default();
        assert!(!pool_updating(&pool));
        for (state, updating) in [
            ("Succeeded", false),
            ("failed", false),
            ("Updating", true),
            ("Creating", true),
        ] {
            pool.properties.provisioning_state = Some(state.into());
            assert_eq!(pool_updating(&pool), updating, "{state}");
        }
    }
}
