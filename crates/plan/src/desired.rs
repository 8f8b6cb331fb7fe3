//! What poolnet wants in each shared Azure resource, gathered from every object that targets
//! it: one NSG or route table is written once for all its NodePoolNetworks and
//! HostPortPolicies, so changes to many objects coalesce into one write.

use std::collections::{BTreeMap, BTreeSet};

use poolnet_api::armid::{NETWORK, ResourceId, ResourceKind};
use poolnet_api::one_per_pool;
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork, NsgTarget, Owned, ReconcilePolicy};
use poolnet_api::validation::{allowed_host_ports, managed_asg_enabled};

use crate::nsg::{DesiredRule, Owner, consolidate};
use crate::scope::Scope;
use poolnet_api::ownership::{ROUTE_PREFIX, cluster_rule_prefix, managed_asg_name, route_name};

use crate::routes::{DesiredRoute, Route};

/// The managed cluster an agent pool belongs to (lower-cased ARM ID), or `None` if the ID is
/// not an agent pool ID.
pub fn cluster_of(agent_pool_id: &str) -> Option<String> {
    ResourceId::parse_kind(agent_pool_id, ResourceKind::AgentPool)
        .ok()
        .and_then(|id| id.parent())
        .map(|c| c.to_string().to_ascii_lowercase())
}

/// ARM ID of the managed ASG: in the cluster's resource group, named after the object.
pub fn managed_asg_id(npn: &NodePoolNetwork) -> Option<String> {
    let pool =
        ResourceId::parse_kind(&npn.spec.node_pool.agent_pool_id, ResourceKind::AgentPool).ok()?;
    let name = npn.metadata.name.as_deref()?;
    Some(
        ResourceId::top_level(
            pool.subscription,
            pool.resource_group,
            NETWORK,
            "applicationSecurityGroups",
            managed_asg_name(name),
        )
        .to_string(),
    )
}

/// The ASGs NSG rules of this pool target: the managed one when enabled, else the custom ones.
pub fn destination_asgs(npn: &NodePoolNetwork) -> Vec<String> {
    if managed_asg_enabled(&npn.spec) {
        managed_asg_id(npn).into_iter().collect()
    } else {
        npn.spec
            .application_security_groups
            .as_ref()
            .map(|a| a.custom_ids.clone())
            .unwrap_or_default()
    }
}

/// Every ASG the pool's NICs join: the managed one (if enabled) and the custom ones.
pub fn pool_asgs(npn: &NodePoolNetwork) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if managed_asg_enabled(&npn.spec)
        && let Some(id) = managed_asg_id(npn)
    {
        out.push(id);
    }
    if let Some(a) = &npn.spec.application_security_groups {
        out.extend(a.custom_ids.iter().cloned());
    }
    out
}

fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The pool's spec entry for NSG `nsg_id`, if it names it.
fn nsg_target<'a>(npn: &'a NodePoolNetwork, nsg_id: &str) -> Option<&'a NsgTarget> {
    npn.spec
        .network_security_groups
        .iter()
        .find(|t| same_id(&t.id, nsg_id))
}

/// Ports a HostPortPolicy opens: its range for each protocol of its automatic ports, and its
/// static host ports.
pub fn policy_ports(hpp: &HostPortPolicy) -> Vec<(Protocol, PortRange)> {
    let mut out = Vec::new();
    let range = PortRange::new(hpp.spec.host_port_range.start, hpp.spec.host_port_range.end);
    for p in &hpp.spec.ports {
        let proto = Protocol::from(p.protocol);
        match p.host_port {
            Some(hp) => out.extend(PortRange::single(hp).map(|r| (proto, r))),
            None => out.extend(range.map(|r| (proto, r))),
        }
    }
    out
}

/// What the writer of one shared NSG or route table is given, computed under its lock:
/// the entries poolnet may touch and what they must become (docs/ownership.md).
#[derive(Debug, Clone, Default)]
pub struct Union<T> {
    /// Contributions of live, accepted Manage objects, each restricted to its own record.
    pub wanted: Vec<T>,
    /// Entries poolnet may change or remove: recorded by an object that lets it write.
    pub scope: Scope,
}

pub type NsgUnion = Union<DesiredRule>;
pub type RouteUnion = Union<DesiredRoute>;

/// Whether poolnet may change what `npn` recorded: Observe never writes, and a
/// DetachOnDelete object being deleted leaves what it wrote (it becomes foreign).
pub fn writes_for(npn: &NodePoolNetwork) -> bool {
    match npn.spec.reconcile_policy {
        ReconcilePolicy::Manage => true,
        ReconcilePolicy::Observe => false,
        ReconcilePolicy::DetachOnDelete => npn.metadata.deletion_timestamp.is_none(),
    }
}

fn recorded_rules<'a>(owned: Option<&'a Owned>, nsg_id: &str) -> &'a [String] {
    owned.map_or(&[], |o| Owned::names_in(&o.security_rules, nsg_id))
}

fn only_recorded<T>(items: Vec<T>, recorded: &[String], name: impl Fn(&T) -> &str) -> Vec<T> {
    items
        .into_iter()
        .filter(|x| recorded.iter().any(|r| r.eq_ignore_ascii_case(name(x))))
        .collect()
}

/// The rules one pool wants in one of its NSG targets (before the record restricts them).
pub fn pool_rules(cluster: &str, npn: &NodePoolNetwork, target: &NsgTarget) -> Vec<DesiredRule> {
    let ports: Vec<(Protocol, PortRange)> = allowed_host_ports(&npn.spec)
        .iter()
        .map(|s| (s.protocol, s.range))
        .collect();
    if ports.is_empty() {
        return Vec::new();
    }
    consolidate(
        cluster,
        &Owner::NodePoolNetwork {
            name: npn.metadata.name.clone().unwrap_or_default(),
        },
        npn.metadata.uid.as_deref().unwrap_or_default(),
        &ports,
        &target.source_address_prefixes,
        &destination_asgs(npn),
        (target.priorities.from, target.priorities.to),
    )
}

/// The rules one policy wants in one NSG target of its pool (before the record restricts
/// them): its ports, from its sources (the pool's when it names none), to the pool's ASGs.
pub fn policy_rules(
    cluster: &str,
    pool: &NodePoolNetwork,
    target: &NsgTarget,
    hpp: &HostPortPolicy,
) -> Vec<DesiredRule> {
    let sources = if hpp.spec.source_address_prefixes.is_empty() {
        &target.source_address_prefixes
    } else {
        &hpp.spec.source_address_prefixes
    };
    consolidate(
        cluster,
        &Owner::HostPortPolicy {
            namespace: hpp.metadata.namespace.clone().unwrap_or_default(),
            name: hpp.metadata.name.clone().unwrap_or_default(),
        },
        hpp.metadata.uid.as_deref().unwrap_or_default(),
        &policy_ports(hpp),
        sources,
        &destination_asgs(pool),
        (target.priorities.from, target.priorities.to),
    )
}

/// Whether `npn` contributes to shared resources now: a live, writing object of `cluster`
/// that no older object displaced from its agent pool.
fn contributes(npn: &NodePoolNetwork, cluster: &str, refused: &BTreeSet<&str>) -> bool {
    npn.metadata.deletion_timestamp.is_none()
        && npn.spec.reconcile_policy != ReconcilePolicy::Observe
        && cluster_of(&npn.spec.node_pool.agent_pool_id).as_deref() == Some(cluster)
        && npn
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| !refused.contains(n))
}

/// Whether every ASG the pool's rules target is known to exist (its status lists it): ARM
/// refuses a rule naming an ASG that does not exist (400 `InvalidResourceReference`), and one
/// such rule would fail the NSG write of every object sharing the NSG.
fn asgs_known(npn: &NodePoolNetwork) -> bool {
    let known = npn
        .status
        .as_ref()
        .map(|s| s.application_security_groups.as_slice())
        .unwrap_or_default();
    destination_asgs(npn)
        .iter()
        .all(|d| known.iter().any(|k| same_id(&k.id, d)))
}

/// What this cluster's poolnet may touch in NSG `nsg_id` and what it must hold there, from
/// every NodePoolNetwork and HostPortPolicy (docs/ownership.md):
/// - scope: the names recorded by pools that let poolnet write ([`writes_for`]) and by the
///   policies of such pools (or of pools that are gone);
/// - wanted: the rules of live, writing, accepted pools that name the NSG and whose ASGs
///   exist, and of the policies such a pool admits (`admitted`: namespace admission and
///   [`poolnet_api::validation::fits_pool`]), each restricted to its owner's record.
pub fn nsg_union(
    cluster: &str,
    nsg_id: &str,
    pools: &[NodePoolNetwork],
    policies: &[HostPortPolicy],
    admitted: &dyn Fn(&HostPortPolicy, &NodePoolNetwork) -> bool,
) -> NsgUnion {
    let mut union = NsgUnion {
        wanted: Vec::new(),
        scope: Scope::new(&cluster_rule_prefix(cluster), Vec::<String>::new()),
    };
    let refused = one_per_pool::refused(pools);
    let by_name: BTreeMap<&str, &NodePoolNetwork> = pools
        .iter()
        .filter_map(|p| Some((p.metadata.name.as_deref()?, p)))
        .collect();
    for npn in pools {
        if writes_for(npn) {
            union.scope.extend(recorded_rules(
                npn.status.as_ref().and_then(|s| s.owned.as_ref()),
                nsg_id,
            ));
        }
        if !contributes(npn, cluster, &refused) || !asgs_known(npn) {
            continue;
        }
        let Some(target) = nsg_target(npn, nsg_id) else {
            continue;
        };
        let recorded = recorded_rules(npn.status.as_ref().and_then(|s| s.owned.as_ref()), nsg_id);
        union.wanted.extend(only_recorded(
            pool_rules(cluster, npn, target),
            recorded,
            |r| &r.name,
        ));
    }
    for hpp in policies {
        let pool = by_name.get(hpp.spec.node_pool_network.as_str()).copied();
        let recorded = recorded_rules(hpp.status.as_ref().and_then(|s| s.owned.as_ref()), nsg_id);
        if pool.is_none_or(writes_for) {
            union.scope.extend(recorded);
        }
        let Some(pool) = pool else { continue };
        if hpp.metadata.deletion_timestamp.is_some()
            || !contributes(pool, cluster, &refused)
            || !asgs_known(pool)
            || !admitted(hpp, pool)
        {
            continue;
        }
        let Some(target) = nsg_target(pool, nsg_id) else {
            continue;
        };
        union.wanted.extend(only_recorded(
            policy_rules(cluster, pool, target, hpp),
            recorded,
            |r| &r.name,
        ));
    }
    union
}

/// The other objects still on their way into NSG `nsg_id`'s union: live, writing, accepted
/// pools of this cluster that name the NSG and want rules in it, but whose rules the union
/// does not hold yet (their ASGs are not in their status, or their record lacks some of the
/// rule names) and that are not `Stalled` (they would never arrive). `me` is left out.
///
/// A writer that finds such objects may hold its write for them, so that objects that
/// converge together (an operator start, a GitOps sync of many pools) write the NSG once
/// instead of once each (docs/arm-traffic.md).
pub fn joining(cluster: &str, nsg_id: &str, pools: &[NodePoolNetwork], me: &str) -> Vec<String> {
    let refused = one_per_pool::refused(pools);
    let mut out = Vec::new();
    for npn in pools {
        let Some(name) = npn.metadata.name.as_deref() else {
            continue;
        };
        if name == me || !contributes(npn, cluster, &refused) || stalled(npn) {
            continue;
        }
        let Some(target) = nsg_target(npn, nsg_id) else {
            continue;
        };
        let wanted = pool_rules(cluster, npn, target);
        if wanted.is_empty() {
            continue;
        }
        let recorded = recorded_rules(npn.status.as_ref().and_then(|s| s.owned.as_ref()), nsg_id);
        let joined = asgs_known(npn)
            && wanted
                .iter()
                .all(|w| recorded.iter().any(|r| r.eq_ignore_ascii_case(&w.name)));
        if !joined {
            out.push(name.to_string());
        }
    }
    out
}

/// Whether the object's status says it cannot progress without someone's change.
fn stalled(npn: &NodePoolNetwork) -> bool {
    npn.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == poolnet_api::v1alpha1::conditions::STALLED && c.status == "True")
    })
}

/// The routes one pool wants in its route table (before the record restricts them).
pub fn pool_routes(npn: &NodePoolNetwork) -> Vec<DesiredRoute> {
    let Some(rt) = &npn.spec.route_table else {
        return Vec::new();
    };
    let owner = format!(
        "NodePoolNetwork {}",
        npn.metadata.name.as_deref().unwrap_or("")
    );
    rt.routes
        .iter()
        .map(|r| DesiredRoute {
            owner: owner.clone(),
            route: Route {
                name: route_name(&r.name),
                address_prefix: r.address_prefix.clone(),
                next_hop_type: r.next_hop_type.into(),
                next_hop_ip: r.next_hop_ip_address.clone(),
            },
        })
        .collect()
}

/// What this cluster's poolnet may touch in route table `table_id` and what it must hold
/// there: as [`nsg_union`], for the routes of NodePoolNetworks.
pub fn route_union(cluster: &str, table_id: &str, pools: &[NodePoolNetwork]) -> RouteUnion {
    let mut union = RouteUnion {
        wanted: Vec::new(),
        scope: Scope::new(ROUTE_PREFIX, Vec::<String>::new()),
    };
    let refused = one_per_pool::refused(pools);
    for npn in pools {
        let recorded = npn
            .status
            .as_ref()
            .and_then(|s| s.owned.as_ref())
            .map_or(&[][..], |o| Owned::names_in(&o.routes, table_id));
        // Routes of pools of other clusters are not ours, whatever they record.
        let ours = cluster_of(&npn.spec.node_pool.agent_pool_id).as_deref() == Some(cluster);
        if ours && writes_for(npn) {
            union.scope.extend(recorded);
        }
        if !contributes(npn, cluster, &refused)
            || !npn
                .spec
                .route_table
                .as_ref()
                .is_some_and(|rt| same_id(&rt.id, table_id))
        {
            continue;
        }
        union
            .wanted
            .extend(only_recorded(pool_routes(npn), recorded, |r| &r.route.name));
    }
    union
}

/// Every NSG (lower-cased ID → ID as written) the given pools name.
pub fn nsgs_of(pools: &[&NodePoolNetwork]) -> BTreeMap<String, String> {
    pools
        .iter()
        .flat_map(|p| p.spec.network_security_groups.iter())
        .map(|t| (t.id.to_ascii_lowercase(), t.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolnet_api::v1alpha1::{HostPortPolicySpec, NodePoolNetworkSpec};

    const SUB: &str = "00000000-1111-2222-3333-444444444444";

    fn npn(name: &str, yaml: &str) -> NodePoolNetwork {
        let spec: NodePoolNetworkSpec = serde_yaml::from_str(&yaml.replace("SUB", SUB)).unwrap();
        NodePoolNetwork::new(name, spec)
    }

    /// `p` as reconciled once its ASGs exist: status lists them.
    fn with_asgs(mut p: NodePoolNetwork) -> NodePoolNetwork {
        let asgs = pool_asgs(&p)
            .into_iter()
            .map(|id| poolnet_api::v1alpha1::AsgStatus { id, managed: true })
            .collect();
        p.status = Some(poolnet_api::v1alpha1::NodePoolNetworkStatus {
            application_security_groups: asgs,
            ..Default::default()
        });
        p
    }

    /// Every object as after its own intent step: its record holds all it wants.
    fn settle(
        pools: &[NodePoolNetwork],
        policies: &[HostPortPolicy],
    ) -> (Vec<NodePoolNetwork>, Vec<HostPortPolicy>) {
        let cluster =
            |p: &NodePoolNetwork| cluster_of(&p.spec.node_pool.agent_pool_id).unwrap_or_default();
        let pools: Vec<NodePoolNetwork> = pools
            .iter()
            .cloned()
            .map(|mut p| {
                let mut owned = Owned::default();
                for t in &p.spec.network_security_groups {
                    Owned::record(
                        &mut owned.security_rules,
                        &t.id,
                        pool_rules(&cluster(&p), &p, t).into_iter().map(|r| r.name),
                    );
                }
                if let Some(rt) = &p.spec.route_table {
                    Owned::record(
                        &mut owned.routes,
                        &rt.id,
                        pool_routes(&p).into_iter().map(|r| r.route.name),
                    );
                }
                p.status.get_or_insert_with(Default::default).owned = Some(owned);
                p
            })
            .collect();
        let policies = policies
            .iter()
            .cloned()
            .map(|mut h| {
                let mut owned = Owned::default();
                for p in pools
                    .iter()
                    .filter(|p| p.metadata.name.as_deref() == Some(&h.spec.node_pool_network))
                {
                    for t in &p.spec.network_security_groups {
                        Owned::record(
                            &mut owned.security_rules,
                            &t.id,
                            policy_rules(&cluster(p), p, t, &h)
                                .into_iter()
                                .map(|r| r.name),
                        );
                    }
                }
                h.status.get_or_insert_with(Default::default).owned = Some(owned);
                h
            })
            .collect();
        (pools, policies)
    }

    /// What the union wants once every object recorded its intent.
    fn desired_rules_for_nsg(
        cluster: &str,
        nsg: &str,
        pools: &[NodePoolNetwork],
        policies: &[HostPortPolicy],
        admitted: &dyn Fn(&HostPortPolicy, &NodePoolNetwork) -> bool,
    ) -> Vec<DesiredRule> {
        let (pools, policies) = settle(pools, policies);
        nsg_union(cluster, nsg, &pools, &policies, admitted).wanted
    }

    fn desired_routes_for_table(
        cluster: &str,
        table: &str,
        pools: &[NodePoolNetwork],
    ) -> Vec<DesiredRoute> {
        let (pools, _) = settle(pools, &[]);
        route_union(cluster, table, &pools).wanted
    }

    fn pool_yaml(pool: &str) -> String {
        format!(
            "nodePool: {{agentPoolId: /subscriptions/SUB/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/{pool}}}
allowedHostPorts: ['80/tcp,53/udp', '40000-59999/tcp']
networkSecurityGroups:
  - id: /subscriptions/SUB/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg
    priorities: {{from: 200, to: 210}}
"
        )
    }

    fn hpp(ns: &str, name: &str, pool: &str, sources: &[&str]) -> HostPortPolicy {
        let spec: HostPortPolicySpec = serde_yaml::from_str(&format!(
            "nodePoolNetwork: {pool}\npodSelector: {{matchLabels: {{app: x}}}}\nports: [{{containerPort: 8080}}, {{containerPort: 9000, protocol: UDP, hostPort: 45000}}]\nsourceAddressPrefixes: {sources:?}"
        ))
        .unwrap();
        let mut h = HostPortPolicy::new(name, spec);
        h.metadata.namespace = Some(ns.into());
        h
    }

    #[test]
    fn gathers_pool_and_policy_rules_for_one_nsg() {
        let pools = [
            with_asgs(npn("game", &pool_yaml("game"))),
            with_asgs(npn("other", &pool_yaml("other"))),
        ];
        let cluster = cluster_of(&pools[0].spec.node_pool.agent_pool_id).unwrap();
        assert!(cluster.ends_with("managedclusters/aks"));
        let nsg = format!(
            "/subscriptions/{SUB}/resourcegroups/RG/providers/Microsoft.Network/networkSecurityGroups/NSG"
        );
        let policies = [
            hpp("games", "echo", "game", &["203.0.113.0/24"]),
            hpp("games", "denied", "game", &[]),
        ];
        let admitted =
            |h: &HostPortPolicy, _: &NodePoolNetwork| h.metadata.name.as_deref() != Some("denied");
        let rules = desired_rules_for_nsg(&cluster, &nsg, &pools, &policies, &admitted);
        // game: tcp + udp; other: tcp + udp; echo: tcp (range) + udp (static 45000).
        assert_eq!(rules.len(), 6, "{rules:#?}");
        let echo: Vec<&DesiredRule> = rules
            .iter()
            .filter(|r| matches!(&r.owner, Owner::HostPortPolicy { name, .. } if name == "echo"))
            .collect();
        assert_eq!(echo.len(), 2);
        assert!(
            echo.iter()
                .all(|r| r.content.sources == ["203.0.113.0/24"] && r.band == (200, 210))
        );
        let udp = echo
            .iter()
            .find(|r| r.content.protocol == Protocol::Udp)
            .unwrap();
        assert_eq!(udp.content.port_strings(), ["45000"]);
        let game_tcp = rules
            .iter()
            .find(|r| {
                r.owner
                    == Owner::NodePoolNetwork {
                        name: "game".into(),
                    }
                    && r.content.protocol == Protocol::Tcp
            })
            .unwrap();
        assert_eq!(game_tcp.content.sources, ["Internet"], "default source");
        assert_eq!(
            game_tcp.content.destination_asgs,
            [format!(
                "/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.network/applicationsecuritygroups/poolnet-game"
            )]
        );
        // Another cluster's pools contribute nothing.
        assert!(
            desired_rules_for_nsg("/subscriptions/x/other", &nsg, &pools, &policies, &admitted)
                .is_empty()
        );
    }

    #[test]
    fn pools_join_once_their_asgs_exist() {
        let ready = with_asgs(npn("game", &pool_yaml("game")));
        let fresh = npn("other", &pool_yaml("other"));
        let cluster = cluster_of(&ready.spec.node_pool.agent_pool_id).unwrap();
        let nsg = ready.spec.network_security_groups[0].id.clone();
        let policies = [hpp("games", "echo", "other", &[])];
        let rules = desired_rules_for_nsg(
            &cluster,
            &nsg,
            &[ready.clone(), fresh.clone()],
            &policies,
            &|_, _| true,
        );
        assert!(!rules.is_empty());
        assert!(
            rules.iter().all(|r| r.owner
                == Owner::NodePoolNetwork {
                    name: "game".into()
                }),
            "no rule (of the pool or its policies) names an ASG not known to exist: {rules:#?}"
        );
        let both = desired_rules_for_nsg(
            &cluster,
            &nsg,
            &[ready, with_asgs(fresh)],
            &policies,
            &|_, _| true,
        );
        assert_eq!(both.len(), rules.len() * 3, "{both:#?}");
    }

    #[test]
    fn deleted_pools_drop_out() {
        let mut p = with_asgs(npn("game", &pool_yaml("game")));
        let cluster = cluster_of(&p.spec.node_pool.agent_pool_id).unwrap();
        let nsg = p.spec.network_security_groups[0].id.clone();
        assert!(!desired_rules_for_nsg(&cluster, &nsg, &[p.clone()], &[], &|_, _| true).is_empty());
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        assert!(desired_rules_for_nsg(&cluster, &nsg, &[p], &[], &|_, _| true).is_empty());
    }

    #[test]
    fn an_object_refused_for_its_agent_pool_contributes_no_rule_and_no_route() {
        let table = "\nrouteTable:\n  id: /subscriptions/SUB/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt\n  routes: [{name: NAME, addressPrefix: 10.9.0.0/16, nextHopType: VnetLocal}]\n";
        let with_table = |name: &str| {
            let mut p = with_asgs(npn(
                name,
                &(pool_yaml("game") + &table.replace("NAME", name)),
            ));
            p.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(if name == "older" { 1 } else { 2 })
                        .unwrap(),
                ));
            p
        };
        // "younger" sorts first by name: age, not name, decides.
        let pools = [with_table("younger"), with_table("older")];
        let cluster = cluster_of(&pools[0].spec.node_pool.agent_pool_id).unwrap();
        let nsg = pools[0].spec.network_security_groups[0].id.clone();
        let rules = desired_rules_for_nsg(&cluster, &nsg, &pools, &[], &|_, _| true);
        assert!(!rules.is_empty());
        assert!(
            rules.iter().all(|r| r.owner
                == Owner::NodePoolNetwork {
                    name: "older".into()
                }),
            "{rules:#?}"
        );
        let rt = pools[0].spec.route_table.as_ref().unwrap().id.clone();
        let routes = desired_routes_for_table(&cluster, &rt, &pools);
        assert_eq!(
            routes.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>(),
            ["NodePoolNetwork older"]
        );
    }

    #[test]
    fn routes_are_prefixed_and_owned() {
        let p = npn(
            "kubenet",
            "nodePool: {agentPoolId: /subscriptions/SUB/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/system}
routeTable:
  id: /subscriptions/SUB/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt
  routes: [{name: default, addressPrefix: 0.0.0.0/0, nextHopType: VirtualAppliance, nextHopIpAddress: 10.0.2.4}]
",
        );
        let cluster = cluster_of(&p.spec.node_pool.agent_pool_id).unwrap();
        let id = p.spec.route_table.as_ref().unwrap().id.to_uppercase();
        let routes = desired_routes_for_table(&cluster, &id, &[p]);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].route.name, "poolnet-default");
        assert_eq!(routes[0].owner, "NodePoolNetwork kubenet");
    }

    /// A pool in one of the states an object passes through on its way into an NSG.
    #[derive(Debug, Clone, Copy)]
    enum Stage {
        /// Never reconciled: no status.
        New,
        /// Its ASGs exist, its rules are not recorded yet.
        AsgsOnly,
        /// Recorded and its ASGs known: in the union.
        Joined,
        /// Cannot progress (`Stalled=True`).
        Stalled,
        /// `reconcilePolicy: Observe`.
        Observe,
    }

    fn staged(name: &str, stage: Stage) -> NodePoolNetwork {
        let mut p = npn(name, &pool_yaml(name));
        p.metadata.uid = Some(format!("uid-{name}"));
        match stage {
            Stage::New => {}
            Stage::AsgsOnly => p = with_asgs(p),
            Stage::Joined => {
                let (settled, _) = settle(&[with_asgs(p)], &[]);
                p = settled.into_iter().next().unwrap();
            }
            Stage::Stalled => {
                p.status = Some(poolnet_api::v1alpha1::NodePoolNetworkStatus {
                    conditions: vec![
                        serde_json::from_value(serde_json::json!({
                            "type": poolnet_api::v1alpha1::conditions::STALLED,
                            "status": "True",
                            "reason": "AgentPoolNotFound",
                            "message": "",
                            "lastTransitionTime": "2026-11-28T00:00:00Z",
                        }))
                        .unwrap(),
                    ],
                    ..Default::default()
                })
            }
            Stage::Observe => p.spec.reconcile_policy = ReconcilePolicy::Observe,
        }
        p
    }

    fn nsg_of_pool_yaml() -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg"
        )
    }

    #[test]
    fn joining_lists_the_writing_objects_whose_rules_are_not_in_the_union_yet() {
        let pools = [
            staged("me", Stage::New),
            staged("new", Stage::New),
            staged("asgs-only", Stage::AsgsOnly),
            staged("joined", Stage::Joined),
            staged("stalled", Stage::Stalled),
            staged("observe", Stage::Observe),
        ];
        let cluster = cluster_of(&pools[0].spec.node_pool.agent_pool_id).unwrap();
        let mut names = joining(&cluster, &nsg_of_pool_yaml(), &pools, "me");
        names.sort();
        assert_eq!(names, ["asgs-only", "new"]);
        // Another NSG: nobody is on the way.
        assert!(joining(&cluster, "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/other", &pools, "me").is_empty());
    }

    proptest::proptest! {
        /// `joining` agrees with `nsg_union`: an object is on its way exactly when it may write,
        /// is not stalled, and some rule it wants is not in the union yet. So a writer that
        /// waits for nobody in `joining` writes a union that holds every such object's rules.
        #[test]
        fn joining_is_exactly_who_the_union_still_lacks(stages in proptest::collection::vec(0u8..5, 1..8)) {
            let pools: Vec<NodePoolNetwork> = stages
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let stage = [Stage::New, Stage::AsgsOnly, Stage::Joined, Stage::Stalled, Stage::Observe][*s as usize];
                    staged(&format!("p{i}"), stage)
                })
                .collect();
            let cluster = cluster_of(&pools[0].spec.node_pool.agent_pool_id).unwrap();
            let nsg = nsg_of_pool_yaml();
            let union = nsg_union(&cluster, &nsg, &pools, &[], &|_, _| true);
            let on_the_way = joining(&cluster, &nsg, &pools, "p0");
            for p in pools.iter().skip(1) {
                let name = p.metadata.name.clone().unwrap();
                let wants = pool_rules(&cluster, p, &p.spec.network_security_groups[0]);
                let lacking = wants.iter().any(|w| !union.wanted.iter().any(|u| u.name == w.name));
                let may_write = p.spec.reconcile_policy != ReconcilePolicy::Observe && !stalled(p);
                proptest::prop_assert_eq!(
                    on_the_way.contains(&name),
                    may_write && lacking,
                    "{}: {:?}", name, stages
                );
            }
        }
    }
}
