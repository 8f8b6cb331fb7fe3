//! The union property of docs/ownership.md, over whole histories: random NodePoolNetworks
//! (Manage, Observe, DetachOnDelete) and HostPortPolicies sharing two NSGs, random spec
//! edits and deletions, random foreign rules (some named like poolnet's), each reconcile
//! following the controllers' protocol (record intent, write the union under the lock, trim
//! the record). After every step:
//! - every foreign rule, every Observe object's and every detached object's rule is in its
//!   NSG byte-for-byte (name, priority, content);
//! - every rule with this cluster's prefix is either such a frozen rule or recorded by a live
//!   object that lets poolnet write (nothing stranded, nothing forgotten);
//!
//! and once every live object has reconciled again, poolnet's rules in each NSG are exactly
//! the contributions of the live Manage and DetachOnDelete objects.

// The model indexes NSGs, their rules and their frozen rules by the same number.
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use poolnet_api::ownership::cluster_rule_prefix;
use poolnet_api::v1alpha1::{
    AsgStatus, HostPortPolicy, HostPortPolicySpec, NodePoolNetwork, NodePoolNetworkSpec, Owned,
    PolicyNamespaces, ReconcilePolicy,
};
use poolnet_plan::desired::{
    cluster_of, nsg_union, policy_rules, pool_asgs, pool_rules, writes_for,
};
use poolnet_plan::nsg::{Direction, ExistingRule, NsgPlan, Owner, plan_nsg};
use proptest::prelude::*;

const SUB: &str = "00000000-1111-2222-3333-444444444444";
const NSGS: [&str; 2] = ["nsg-a", "nsg-b"];

fn nsg_id(n: usize) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/{}",
        NSGS[n]
    )
}

fn cluster() -> String {
    cluster_of(&format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/x"
    ))
    .unwrap()
}

#[derive(Debug, Clone)]
struct PoolSpec {
    policy: ReconcilePolicy,
    /// Bit i: names NSG i.
    nsgs: u8,
    /// Allowed host port (tcp), and whether udp 53 too.
    port: u16,
    udp: bool,
    /// Source: Internet or a /24.
    internet: bool,
}

fn pool(i: usize, uid: u32, s: &PoolSpec) -> NodePoolNetwork {
    let mut yaml = format!(
        "nodePool: {{agentPoolId: /subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/p{i}}}\n\
         allowedHostPorts: ['{}/tcp{}', '40000-40100/tcp']\n\
         reconcilePolicy: {:?}\n\
         hostPortPolicies: {{from: All}}\n\
         networkSecurityGroups:\n",
        s.port,
        if s.udp { ",53/udp" } else { "" },
        s.policy
    );
    for n in 0..NSGS.len() {
        if s.nsgs & (1 << n) != 0 {
            yaml += &format!(
                "  - id: {}\n    priorities: {{from: 100, to: 199}}\n    sourceAddressPrefixes: [{}]\n",
                nsg_id(n),
                if s.internet {
                    "'*'"
                } else {
                    "'203.0.113.0/24'"
                }
            );
        }
    }
    let spec: NodePoolNetworkSpec = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        spec.host_port_policies.as_ref().map(|h| h.from),
        Some(PolicyNamespaces::All)
    );
    let mut p = NodePoolNetwork::new(&format!("p{i}"), spec);
    p.metadata.uid = Some(format!("uid-{uid}"));
    let asgs = pool_asgs(&p)
        .into_iter()
        .map(|id| AsgStatus { id, managed: true })
        .collect();
    p.status = Some(poolnet_api::v1alpha1::NodePoolNetworkStatus {
        application_security_groups: asgs,
        ..Default::default()
    });
    p
}

fn policy(i: usize, uid: u32, pool: usize, port: u16) -> HostPortPolicy {
    let spec: HostPortPolicySpec = serde_yaml::from_str(&format!(
        "nodePoolNetwork: p{pool}\npodSelector: {{matchLabels: {{app: x}}}}\nhostPortRange: {{start: 40000, end: 40100}}\nports: [{{containerPort: 8080, hostPort: {port}}}]"
    ))
    .unwrap();
    let mut h = HostPortPolicy::new(&format!("h{i}"), spec);
    h.metadata.namespace = Some("games".into());
    h.metadata.uid = Some(format!("uid-h{uid}"));
    h
}

#[derive(Debug, Clone)]
enum Step {
    /// Create pool i (or edit it when it exists) with this spec.
    Pool(usize, PoolSpec),
    /// Create policy i on pool j with a static port (or move it when it exists).
    Policy(usize, usize, u16),
    Reconcile(usize),
    ReconcilePolicy(usize),
    DeletePool(usize),
    DeletePolicy(usize),
    /// A foreign rule in NSG n: hand-made (`false`) or named like poolnet's (`true`).
    Foreign(usize, bool, u16),
}

fn arb_pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        prop_oneof![
            3 => Just(ReconcilePolicy::Manage),
            1 => Just(ReconcilePolicy::Observe),
            1 => Just(ReconcilePolicy::DetachOnDelete)
        ],
        1u8..4,
        prop_oneof![Just(80u16), Just(443), Just(8080)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(policy, nsgs, port, udp, internet)| PoolSpec {
            policy,
            nsgs,
            port,
            udp,
            internet,
        })
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..4, arb_pool_spec()).prop_map(|(i, s)| Step::Pool(i, s)),
        2 => (0usize..3, 0usize..4, 40000u16..40010).prop_map(|(i, j, p)| Step::Policy(i, j, p)),
        6 => (0usize..4).prop_map(Step::Reconcile),
        3 => (0usize..3).prop_map(Step::ReconcilePolicy),
        2 => (0usize..4).prop_map(Step::DeletePool),
        1 => (0usize..3).prop_map(Step::DeletePolicy),
        1 => (0usize..2, any::<bool>(), 100u16..200).prop_map(|(n, p, prio)| Step::Foreign(n, p, prio)),
    ]
}

/// The NSGs a reconcile writes: those `pool`'s spec names and those `owned` records.
fn targets(pool: Option<&NodePoolNetwork>, owned: &Owned) -> Vec<usize> {
    (0..NSGS.len())
        .filter(|n| {
            let id = nsg_id(*n);
            pool.is_some_and(|p| p.spec.network_security_groups.iter().any(|t| t.id == id))
                || owned.security_rules.iter().any(|e| e.id == id)
        })
        .collect()
}

/// The world: the objects, the NSGs in ARM, and the rules that must stay as they are.
#[derive(Default)]
struct World {
    pools: BTreeMap<usize, NodePoolNetwork>,
    policies: BTreeMap<usize, HostPortPolicy>,
    nsgs: Vec<Vec<ExistingRule>>,
    /// NSG → rule name → the rule as it must stay.
    frozen: Vec<BTreeMap<String, ExistingRule>>,
    next_uid: u32,
    foreign_seq: u32,
}

fn deleting() -> Option<Time> {
    Some(Time(k8s_openapi::jiff::Timestamp::from_second(1).unwrap()))
}

impl World {
    fn new() -> Self {
        Self {
            nsgs: vec![Vec::new(); NSGS.len()],
            frozen: vec![BTreeMap::new(); NSGS.len()],
            ..Self::default()
        }
    }

    fn pools(&self) -> Vec<NodePoolNetwork> {
        self.pools.values().cloned().collect()
    }

    fn policies(&self) -> Vec<HostPortPolicy> {
        self.policies.values().cloned().collect()
    }

    fn admitted(h: &HostPortPolicy, p: &NodePoolNetwork) -> bool {
        poolnet_api::validation::fits_pool(h, p)
    }

    /// One write of NSG `n` under its lock: the union of this moment, planned and applied.
    fn write(&mut self, n: usize) -> NsgPlan {
        let union = nsg_union(
            &cluster(),
            &nsg_id(n),
            &self.pools(),
            &self.policies(),
            &Self::admitted,
        );
        let plan = plan_nsg(&self.nsgs[n], &union.wanted, &union.scope);
        let mut after: Vec<ExistingRule> = self.nsgs[n]
            .iter()
            .filter(|r| !union.scope.owns(&r.name))
            .cloned()
            .collect();
        after.extend(plan.rules.iter().map(|p| ExistingRule {
            name: p.rule.name.clone(),
            priority: p.priority,
            direction: Direction::Inbound,
            content: Some(p.rule.content.clone()),
            canonical: true,
            description: None,
        }));
        self.nsgs[n] = after;
        plan
    }

    fn owned_of_pool(&mut self, i: usize) -> &mut Owned {
        self.pools
            .get_mut(&i)
            .unwrap()
            .status
            .get_or_insert_with(Default::default)
            .owned
            .get_or_insert_with(Default::default)
    }

    fn owned_of_policy(&mut self, i: usize) -> &mut Owned {
        self.policies
            .get_mut(&i)
            .unwrap()
            .status
            .get_or_insert_with(Default::default)
            .owned
            .get_or_insert_with(Default::default)
    }

    /// A NodePoolNetwork reconcile (or its finalizer, when deleting).
    fn reconcile_pool(&mut self, i: usize) {
        let Some(p) = self.pools.get(&i).cloned() else {
            return;
        };
        let c = cluster();
        let deleting = p.metadata.deletion_timestamp.is_some();
        if deleting && p.spec.reconcile_policy != ReconcilePolicy::Manage {
            // Observe and DetachOnDelete leave what is there: it becomes foreign for good.
            self.forget_pool(i);
            return;
        }
        if !writes_for(&p) {
            return; // Observe: read and report only.
        }
        // 1. Intent.
        if !deleting {
            for t in &p.spec.network_security_groups {
                let names = pool_rules(&c, &p, t).into_iter().map(|r| r.name);
                Owned::record(&mut self.owned_of_pool(i).security_rules, &t.id, names);
            }
        }
        // 2. Write every NSG of the spec and of the record; 3. trim.
        let targets = targets(Some(&p), &self.owned_of_pool(i).clone());
        let owner = Owner::NodePoolNetwork {
            name: format!("p{i}"),
        };
        for n in targets {
            let plan = self.write(n);
            let mine = plan
                .rules_of(&owner)
                .map(|r| r.rule.name.clone())
                .collect::<Vec<_>>();
            Owned::settle(&mut self.owned_of_pool(i).security_rules, &nsg_id(n), mine);
        }
        if deleting {
            self.forget_pool(i);
        }
    }

    /// Names recorded in NSG `n` by pool `i` and by the policies on it.
    fn recorded_by_pool(&self, i: usize, n: usize) -> Vec<String> {
        let of = |o: Option<&Owned>| {
            o.map(|o| Owned::names_in(&o.security_rules, &nsg_id(n)).to_vec())
                .unwrap_or_default()
        };
        let mut out = of(self.pools[&i]
            .status
            .as_ref()
            .and_then(|s| s.owned.as_ref()));
        for h in self
            .policies
            .values()
            .filter(|h| h.spec.node_pool_network == format!("p{i}"))
        {
            out.extend(of(h.status.as_ref().and_then(|s| s.owned.as_ref())));
        }
        out
    }

    fn freeze_recorded_by_pool(&mut self, i: usize) {
        for n in 0..NSGS.len() {
            let names = self.recorded_by_pool(i, n);
            for r in self.nsgs[n].iter().filter(|r| names.contains(&r.name)) {
                self.frozen[n].insert(r.name.clone(), r.clone());
            }
        }
    }

    fn thaw_recorded_by_pool(&mut self, i: usize) {
        for n in 0..NSGS.len() {
            for name in self.recorded_by_pool(i, n) {
                self.frozen[n].remove(&name);
            }
        }
    }

    fn forget_pool(&mut self, i: usize) {
        // Its policies' rules are theirs: with the pool gone no pool admits them, and they go
        // (their records are in scope again), also after an Observe pool froze them.
        for n in 0..NSGS.len() {
            for h in self
                .policies
                .values()
                .filter(|h| h.spec.node_pool_network == format!("p{i}"))
            {
                let names = h
                    .status
                    .as_ref()
                    .and_then(|s| s.owned.as_ref())
                    .map(|o| Owned::names_in(&o.security_rules, &nsg_id(n)).to_vec())
                    .unwrap_or_default();
                for name in names {
                    self.frozen[n].remove(&name);
                }
            }
        }
        let p = self.pools.remove(&i).unwrap();
        // What a deleting Observe / DetachOnDelete object leaves is foreign from now on.
        let owner = format!("p{i}");
        for n in 0..NSGS.len() {
            for r in &self.nsgs[n] {
                let recorded = p
                    .status
                    .as_ref()
                    .and_then(|s| s.owned.as_ref())
                    .is_some_and(|o| {
                        Owned::names_in(&o.security_rules, &nsg_id(n)).contains(&r.name)
                    });
                if recorded {
                    assert_ne!(
                        p.spec.reconcile_policy,
                        ReconcilePolicy::Manage,
                        "a Manage object's finalizer left {} of {owner} in {}",
                        r.name,
                        NSGS[n]
                    );
                    self.frozen[n].insert(r.name.clone(), r.clone());
                }
            }
        }
    }

    /// A HostPortPolicy reconcile (or its finalizer, when deleting).
    fn reconcile_policy(&mut self, i: usize) {
        let Some(h) = self.policies.get(&i).cloned() else {
            return;
        };
        let c = cluster();
        let deleting = h.metadata.deletion_timestamp.is_some();
        let pool = self
            .pools
            .get(&h.spec.node_pool_network[1..].parse::<usize>().unwrap())
            .cloned();
        if let Some(pool) = &pool
            && !writes_for(pool)
        {
            if deleting {
                self.forget_policy(i);
            }
            return;
        }
        if !deleting
            && let Some(pool) = &pool
            && pool.metadata.deletion_timestamp.is_none()
            && Self::admitted(&h, pool)
        {
            for t in &pool.spec.network_security_groups {
                let names = policy_rules(&c, pool, t, &h).into_iter().map(|r| r.name);
                Owned::record(&mut self.owned_of_policy(i).security_rules, &t.id, names);
            }
        }
        let targets = targets(pool.as_ref(), &self.owned_of_policy(i).clone());
        let owner = Owner::HostPortPolicy {
            namespace: "games".into(),
            name: format!("h{i}"),
        };
        for n in targets {
            let plan = self.write(n);
            let mine = plan
                .rules_of(&owner)
                .map(|r| r.rule.name.clone())
                .collect::<Vec<_>>();
            Owned::settle(
                &mut self.owned_of_policy(i).security_rules,
                &nsg_id(n),
                mine,
            );
        }
        if deleting {
            self.forget_policy(i);
        }
    }

    fn forget_policy(&mut self, i: usize) {
        let h = self.policies.remove(&i).unwrap();
        for n in 0..NSGS.len() {
            for r in &self.nsgs[n] {
                if h.status
                    .as_ref()
                    .and_then(|s| s.owned.as_ref())
                    .is_some_and(|o| {
                        Owned::names_in(&o.security_rules, &nsg_id(n)).contains(&r.name)
                    })
                {
                    self.frozen[n].insert(r.name.clone(), r.clone());
                }
            }
        }
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Pool(i, spec) => {
                self.next_uid += 1;
                let existing = self.pools.get(i).cloned();
                match existing {
                    Some(old) if old.metadata.deletion_timestamp.is_none() => {
                        // An edit: same object, new spec (its reconcilePolicy too).
                        let mut new = pool(*i, 0, spec);
                        new.metadata.uid = old.metadata.uid.clone();
                        new.status.get_or_insert_with(Default::default).owned =
                            old.status.as_ref().and_then(|s| s.owned.clone());
                        let was_observe = old.spec.reconcile_policy == ReconcilePolicy::Observe;
                        let is_observe = spec.policy == ReconcilePolicy::Observe;
                        self.pools.insert(*i, new);
                        if is_observe && !was_observe {
                            // What it wrote stays exactly as it is while it observes...
                            self.freeze_recorded_by_pool(*i);
                        } else if was_observe && !is_observe {
                            // ...and is managed again once it manages.
                            self.thaw_recorded_by_pool(*i);
                        }
                    }
                    Some(_) => {}
                    None => {
                        self.pools.insert(*i, pool(*i, self.next_uid, spec));
                    }
                }
            }
            Step::Policy(i, j, port) => {
                if !self.policies.contains_key(i) {
                    self.next_uid += 1;
                    self.policies
                        .insert(*i, policy(*i, self.next_uid, *j, *port));
                } else if let Some(h) = self.policies.get_mut(i)
                    && h.metadata.deletion_timestamp.is_none()
                {
                    h.spec.ports[0].host_port = Some(*port);
                }
            }
            Step::Reconcile(i) => self.reconcile_pool(*i),
            Step::ReconcilePolicy(i) => self.reconcile_policy(*i),
            // Deletion starts here; the finalizer runs at the object's next reconcile, and
            // other objects' writes may come in between.
            Step::DeletePool(i) => {
                if let Some(p) = self.pools.get_mut(i)
                    && p.metadata.deletion_timestamp.is_none()
                {
                    p.metadata.deletion_timestamp = deleting();
                    if p.spec.reconcile_policy == ReconcilePolicy::DetachOnDelete {
                        // Detached from the moment deletion starts.
                        self.freeze_recorded_by_pool(*i);
                    }
                }
            }
            Step::DeletePolicy(i) => {
                if let Some(h) = self.policies.get_mut(i) {
                    h.metadata.deletion_timestamp = deleting();
                }
            }
            Step::Foreign(n, named_like_ours, priority) => {
                self.foreign_seq += 1;
                let name = if *named_like_ours {
                    format!(
                        "{}copy-tcp-{:06}",
                        cluster_rule_prefix(&cluster()),
                        self.foreign_seq
                    )
                } else {
                    format!("allow-ops-{}", self.foreign_seq)
                };
                let taken = self.nsgs[*n].iter().any(|r| r.priority == *priority);
                if !taken {
                    let rule = ExistingRule {
                        name: name.clone(),
                        priority: *priority,
                        direction: Direction::Inbound,
                        content: None,
                        canonical: false,
                        description: None,
                    };
                    self.nsgs[*n].push(rule.clone());
                    self.frozen[*n].insert(name, rule);
                }
            }
        }
    }

    /// Names recorded by live objects that let poolnet write, per NSG.
    fn recorded(&self, n: usize) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in self.pools.values().filter(|p| writes_for(p)) {
            if let Some(o) = p.status.as_ref().and_then(|s| s.owned.as_ref()) {
                out.extend(
                    Owned::names_in(&o.security_rules, &nsg_id(n))
                        .iter()
                        .cloned(),
                );
            }
        }
        for h in self.policies.values() {
            let pool = self
                .pools
                .get(&h.spec.node_pool_network[1..].parse::<usize>().unwrap());
            if pool.is_none_or(writes_for)
                && let Some(o) = h.status.as_ref().and_then(|s| s.owned.as_ref())
            {
                out.extend(
                    Owned::names_in(&o.security_rules, &nsg_id(n))
                        .iter()
                        .cloned(),
                );
            }
        }
        out
    }

    fn check_always(&self) -> Result<(), TestCaseError> {
        let prefix = cluster_rule_prefix(&cluster());
        for n in 0..NSGS.len() {
            for (name, rule) in &self.frozen[n] {
                prop_assert!(
                    self.nsgs[n].contains(rule),
                    "{name} in {} changed or vanished: {:?}",
                    NSGS[n],
                    self.nsgs[n].iter().find(|r| &r.name == name)
                );
            }
            let recorded = self.recorded(n);
            for r in self.nsgs[n].iter().filter(|r| r.name.starts_with(&prefix)) {
                prop_assert!(
                    self.frozen[n].contains_key(&r.name) || recorded.contains(&r.name),
                    "{} in {} is recorded by no one: stranded",
                    r.name,
                    NSGS[n]
                );
            }
        }
        Ok(())
    }

    /// Once quiet: poolnet's (non-frozen) rules are exactly the contributions.
    fn check_converged(&self) -> Result<(), TestCaseError> {
        let c = cluster();
        for n in 0..NSGS.len() {
            let mut want = BTreeSet::new();
            for p in self.pools.values() {
                if p.spec.reconcile_policy == ReconcilePolicy::Observe {
                    continue;
                }
                for t in p
                    .spec
                    .network_security_groups
                    .iter()
                    .filter(|t| t.id == nsg_id(n))
                {
                    want.extend(pool_rules(&c, p, t).into_iter().map(|r| r.name));
                    for h in self.policies.values().filter(|h| {
                        h.spec.node_pool_network == p.metadata.name.clone().unwrap()
                            && Self::admitted(h, p)
                    }) {
                        want.extend(policy_rules(&c, p, t, h).into_iter().map(|r| r.name));
                    }
                }
            }
            let have: BTreeSet<String> = self.nsgs[n]
                .iter()
                .filter(|r| !self.frozen[n].contains_key(&r.name))
                .map(|r| r.name.clone())
                .collect();
            prop_assert_eq!(
                have,
                want,
                "poolnet's rules in {} are not the contributions",
                NSGS[n]
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn union_writes_foreign_entries_unchanged_plus_exactly_the_manage_contributions(
        steps in proptest::collection::vec(arb_step(), 1..40)
    ) {
        let mut w = World::new();
        for s in &steps {
            w.step(s);
            w.check_always()?;
        }
        // Quiet: every live object reconciles (twice: a policy's rules wait for its pool's
        // record, and a pool's edit for its policies').
        for _ in 0..2 {
            let pools: Vec<usize> = w.pools.keys().copied().collect();
            for i in pools {
                w.reconcile_pool(i);
            }
            let policies: Vec<usize> = w.policies.keys().copied().collect();
            for i in policies {
                w.reconcile_policy(i);
            }
            w.check_always()?;
        }
        w.check_converged()?;
    }
}
