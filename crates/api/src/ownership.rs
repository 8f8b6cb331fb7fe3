//! How poolnet marks what it owns in Azure, and the Azure limits it plans within.
//!
//! Everything here is a fact other code relies on staying the same across releases and
//! processes: a rule named with another prefix, a tag spelled differently or a hash that
//! changed would make poolnet lose track of what it wrote (and leave it behind) or take
//! over what another cluster wrote.
//!
//! | what | value | who relies on it |
//! |---|---|---|
//! | NSG rule names | `poolnet-<cluster hash>-<owner>-<proto>-<hash>` | `plan::nsg` (only rules with this cluster's prefix are ever changed) |
//! | route names | `poolnet-<spec name>` | `plan::routes` |
//! | managed ASG name | `poolnet-<object name>` | `plan::desired` |
//! | owner tag | `poolnet.dev/owner: NodePoolNetwork/<name>` on what poolnet creates | operator (adopt / delete only its own) |
//! | cluster tag | `poolnet.dev/cluster: <cluster ARM ID, lower case>` | route tables, created resources |
//! | owner UID tag | `poolnet.dev/owner-uid: <object UID>` on what poolnet creates | operator (a same-named later object is another owner) |
//! | priority band | 100-499 by default (AKS and the cloud controller use 500-4096) | validation, `plan::nsg::priority` |

/// Name prefix of every NSG rule poolnet owns; followed by [`cluster_tag`] and a dash.
pub const RULE_PREFIX: &str = "poolnet-";
/// Name prefix of the routes poolnet owns in a shared route table. AKS (kubenet) names its
/// node routes `aks-<node>-...`; the default route and hand-made routes have other names.
pub const ROUTE_PREFIX: &str = "poolnet-";
/// Name prefix of the ASG poolnet creates for a NodePoolNetwork.
pub const MANAGED_ASG_PREFIX: &str = "poolnet-";

/// Tag on Azure resources poolnet created, naming the object: `NodePoolNetwork/<name>`.
pub const OWNER_TAG: &str = "poolnet.dev/owner";
/// Tag naming the cluster (lower-cased ARM ID) on what poolnet creates and on route tables it
/// writes to: a route table must not be shared between clusters (kubenet writes every node's
/// route into it).
pub const CLUSTER_TAG: &str = "poolnet.dev/cluster";

/// Tag naming the UID of the object that created a resource: a later object of the same name
/// (after a `DetachOnDelete`, say) is another owner.
pub const OWNER_UID_TAG: &str = "poolnet.dev/owner-uid";

/// Value of [`OWNER_TAG`] for a NodePoolNetwork.
pub fn owner_tag_value(npn_name: &str) -> String {
    format!("NodePoolNetwork/{npn_name}")
}

/// poolnet's default and widest NSG priority band (AKS and the cloud controller use 500-4096).
pub const PRIORITY_BAND: (u16, u16) = (100, 499);
/// Priorities Azure accepts for NSG rules.
pub const PRIORITY_RANGE: (u16, u16) = (100, 4096);

/// Azure's limit of rules per NSG (default rules excluded).
pub const MAX_RULES_PER_NSG: usize = 1000;
/// Azure's limit of source addresses (prefixes, tags) over all rules of one NSG.
pub const MAX_SOURCE_ADDRESSES_PER_NSG: usize = 4000;
/// Azure's limit on NSG rule names.
pub const MAX_RULE_NAME: usize = 80;
/// ASGs one NIC ip-configuration can join.
pub const MAX_ASGS_PER_NIC: usize = 20;
/// Routes a route table holds by default (being raised to 1000).
pub const DEFAULT_ROUTES_PER_TABLE: u32 = 400;
/// The highest route limit a spec may declare.
pub const MAX_ROUTES_PER_TABLE: u32 = 1000;

/// A stable 32-bit FNV-1a hash, printed as 8 hex digits: names must not change between
/// releases or processes, so std's randomised hasher is no use here.
pub fn short_hash(parts: &[&str]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    format!("{h:08x}")
}

/// The cluster part of rule names: 6 hex digits of the lower-cased cluster ARM ID.
pub fn cluster_tag(cluster_id: &str) -> String {
    short_hash(&[&cluster_id.to_ascii_lowercase()])[..6].to_string()
}

/// Prefix of the rules one cluster's poolnet owns: `poolnet-<cluster>-`.
pub fn cluster_rule_prefix(cluster_id: &str) -> String {
    format!("{RULE_PREFIX}{}-", cluster_tag(cluster_id))
}

/// Azure name of a spec route: `poolnet-<name>`.
pub fn route_name(spec_name: &str) -> String {
    format!("{ROUTE_PREFIX}{spec_name}")
}

/// Name of the ASG poolnet creates for a NodePoolNetwork.
pub fn managed_asg_name(npn_name: &str) -> String {
    format!("{MANAGED_ASG_PREFIX}{npn_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_names_are_stable() {
        // These values are in Azure already: changing them orphans every rule poolnet wrote.
        assert_eq!(short_hash(&["game"]), short_hash(&["game"]));
        assert_ne!(short_hash(&["a", "b"]), short_hash(&["ab"]));
        let cluster = "/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/AKS";
        assert_eq!(cluster_tag(cluster), cluster_tag(&cluster.to_lowercase()));
        assert_eq!(
            cluster_rule_prefix(cluster),
            format!("poolnet-{}-", cluster_tag(cluster))
        );
        assert_eq!(short_hash(&[]), "811c9dc5");
        assert_eq!(route_name("default"), "poolnet-default");
        assert_eq!(managed_asg_name("game"), "poolnet-game");
        assert_eq!(owner_tag_value("game"), "NodePoolNetwork/game");
    }

    #[test]
    fn the_default_band_is_inside_azures_range_and_below_aks() {
        assert!(PRIORITY_RANGE.0 <= PRIORITY_BAND.0 && PRIORITY_BAND.1 < 500);
        assert!(PRIORITY_BAND.1 <= PRIORITY_RANGE.1);
    }
}
