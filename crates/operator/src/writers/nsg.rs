//! The NSG writer.

use futures::future::BoxFuture;

use poolnet_arm::models::NetworkSecurityGroup;
use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, Precondition, ResourceId};
use poolnet_plan::desired::NsgUnion;
use poolnet_plan::nsg::{NsgPlan, plan_nsg};

use super::Freshness;
use super::convert::{apply_nsg_plan, existing_rules};
use super::rmw::{Synced, Target, Writer};

/// Result of one NSG sync.
pub type NsgSync = Synced<NsgPlan>;

/// poolnet's rules in one NSG (those in the union's scope), to become exactly what the union
/// wants; the union is computed when planning, under the NSG's lock.
struct NsgTarget<'a> {
    union: &'a (dyn Fn() -> NsgUnion + Send + Sync),
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

    fn plan(&self, current: &NetworkSecurityGroup) -> NsgPlan {
        let union = (self.union)();
        plan_nsg(
            &existing_rules(current, union.scope.prefix()),
            &union.wanted,
            &union.scope,
        )
    }

    fn needs_write(plan: &NsgPlan) -> bool {
        plan.needs_write()
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
        let target = NsgTarget { union: &union };
        self.sync_target(id, &target, freshness).await
    }
}
