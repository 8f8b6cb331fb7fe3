//! The NSG writer.

use futures::future::BoxFuture;

use poolnet_arm::models::NetworkSecurityGroup;
use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, Precondition, ResourceId};
use poolnet_plan::desired::NsgUnion;
use poolnet_plan::nsg::{NsgPlan, plan_nsg};

use super::Freshness;
use super::convert::{apply_nsg_plan, existing_rules};
use super::rmw::{Refusals, Synced, Target, Writer};

/// Fingerprint of a rule's content: a refusal holds while the content is the same.
fn fingerprint(content: &poolnet_plan::nsg::RuleContent) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut h);
    h.finish()
}

/// Result of one NSG sync.
pub type NsgSync = Synced<NsgPlan>;

/// poolnet's rules in one NSG (those in the union's scope), to become exactly what the union
/// wants; the union is computed when planning, under the NSG's lock.
struct NsgTarget<'a> {
    union: &'a (dyn Fn() -> NsgUnion + Send + Sync),
    hold: &'a (dyn Fn() -> Option<std::time::Duration> + Send + Sync),
}

impl Target for NsgTarget<'_> {
    type Resource = NetworkSecurityGroup;
    type Plan = NsgPlan;
    const KIND: &'static str = "NSG";

    fn get<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
    ) -> BoxFuture<'a, Result<Etagged<NetworkSecurityGroup>, ArmError>> {
        arm.get_nsg(id)
    }

    fn put<'a>(
        &'a self,
        arm: &'a dyn ArmNetwork,
        id: &'a ResourceId,
        resource: &'a NetworkSecurityGroup,
        precondition: Precondition,
    ) -> BoxFuture<'a, Result<Lro<Etagged<NetworkSecurityGroup>>, ArmError>> {
        arm.put_nsg(id, resource, precondition)
    }

    fn plan(&self, current: &NetworkSecurityGroup, refused: &Refusals) -> NsgPlan {
        let mut union = (self.union)();
        union.wanted.retain(|d| {
            refused
                .get(&d.name.to_ascii_lowercase())
                .is_none_or(|r| r.fingerprint != fingerprint(&d.content))
        });
        plan_nsg(
            &existing_rules(current, union.scope.prefix()),
            &union.wanted,
            &union.scope,
        )
    }

    fn refused_entry(&self, plan: &NsgPlan, message: &str) -> Option<(String, u64)> {
        // ARM names the rule by its ID (`.../securityRules/<name>`) or its name; the longest
        // name found wins (a name may be a prefix of another).
        let lower = message.to_ascii_lowercase();
        plan.rules
            .iter()
            .filter(|p| lower.contains(&p.rule.name.to_ascii_lowercase()))
            .max_by_key(|p| p.rule.name.len())
            .map(|p| (p.rule.name.clone(), fingerprint(&p.rule.content)))
    }

    fn needs_write(plan: &NsgPlan) -> bool {
        plan.needs_write()
    }

    fn hold(&self) -> Option<std::time::Duration> {
        (self.hold)()
    }

    fn apply(&self, current: &NetworkSecurityGroup, plan: &NsgPlan) -> NetworkSecurityGroup {
        apply_nsg_plan(current, plan)
    }

    fn counts(plan: &NsgPlan) -> (usize, usize, usize) {
        (plan.added.len(), plan.changed.len(), plan.removed.len())
    }
}

/// Writes NSGs for one cluster's poolnet; see the module docs of `writers`.
pub type NsgWriter = Writer<NetworkSecurityGroup>;

impl NsgWriter {
    /// Make poolnet's rules in `id` (those in the union's scope) exactly what the union
    /// wants: every owner's recorded rules, from the informer caches (docs/ownership.md).
    pub async fn sync(
        &self,
        id: &ResourceId,
        union: impl Fn() -> NsgUnion + Send + Sync,
        freshness: Freshness,
    ) -> Result<NsgSync, ArmError> {
        self.sync_or_hold(id, union, || None, freshness).await
    }

    /// [`NsgWriter::sync`], but a needed write is held while `hold` says so (evaluated under
    /// the NSG's lock, only when the NSG needs a write; `writers::batch`).
    pub async fn sync_or_hold(
        &self,
        id: &ResourceId,
        union: impl Fn() -> NsgUnion + Send + Sync,
        hold: impl Fn() -> Option<std::time::Duration> + Send + Sync,
        freshness: Freshness,
    ) -> Result<NsgSync, ArmError> {
        let target = NsgTarget {
            union: &union,
            hold: &hold,
        };
        self.sync_target(id, &target, freshness).await
    }
}
