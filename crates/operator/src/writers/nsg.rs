//! The NSG writer.

use futures::future::BoxFuture;

use poolnet_arm::models::NetworkSecurityGroup;
use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, Precondition, ResourceId};
use poolnet_plan::nsg::{DesiredRule, NsgPlan, plan_nsg};

use super::Freshness;
use super::convert::{apply_nsg_plan, existing_rules};
use super::rmw::{Synced, Target, Writer};

/// Result of one NSG sync.
pub type NsgSync = Synced<NsgPlan>;

/// poolnet's rules (`owned_prefix…`) in one NSG, to become exactly what `desired` returns
/// when planning.
struct NsgTarget<'a> {
    desired: &'a (dyn Fn() -> Vec<DesiredRule> + Send + Sync),
    owned_prefix: &'a str,
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
        plan_nsg(
            &existing_rules(current, self.owned_prefix),
            &(self.desired)(),
            self.owned_prefix,
        )
    }

    fn needs_write(plan: &NsgPlan) -> bool {
        plan.needs_write()
    }

    fn apply(&self, current: &NetworkSecurityGroup, plan: &NsgPlan) -> NetworkSecurityGroup {
        apply_nsg_plan(current, plan, self.owned_prefix)
    }

    fn counts(plan: &NsgPlan) -> (usize, usize, usize) {
        (plan.added.len(), plan.changed.len(), plan.removed.len())
    }
}

/// Writes NSGs for one cluster's poolnet; see the module docs of `writers`.
pub type NsgWriter = Writer<NetworkSecurityGroup>;

impl NsgWriter {
    /// Make poolnet's rules in `id` (those named `owned_prefix…`) exactly what `desired`
    /// returns: the union of every owner's rules, from the informer caches.
    pub async fn sync(
        &self,
        id: &ResourceId,
        desired: impl Fn() -> Vec<DesiredRule> + Send + Sync,
        owned_prefix: &str,
        freshness: Freshness,
    ) -> Result<NsgSync, ArmError> {
        let target = NsgTarget {
            desired: &desired,
            owned_prefix,
        };
        self.sync_target(id, &target, freshness).await
    }
}
