//! The NSG writer.

use std::sync::Arc;

use futures::future::BoxFuture;

use poolnet_arm::models::NetworkSecurityGroup;
use poolnet_arm::{ArmError, ArmNetwork, Etagged, Lro, Precondition, ResourceId};
use poolnet_plan::nsg::{DesiredRule, NsgPlan, plan_nsg};

use super::Freshness;
use super::convert::{apply_nsg_plan, existing_rules};
use super::rmw::{Rmw, Synced, Target};

/// Result of one NSG sync.
pub type NsgSync = Synced<NsgPlan>;

/// poolnet's rules (`owned_prefix…`) in one NSG, to become exactly `desired`.
struct NsgTarget<'a> {
    desired: &'a [DesiredRule],
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
            self.desired,
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
#[derive(Debug)]
pub struct NsgWriter {
    arm: Arc<dyn ArmNetwork>,
    rmw: Rmw<NetworkSecurityGroup>,
}

impl NsgWriter {
    pub fn new(arm: Arc<dyn ArmNetwork>) -> Self {
        Self {
            arm,
            rmw: Rmw::new(),
        }
    }

    /// Make poolnet's rules in `id` (those named `owned_prefix…`) exactly `desired`.
    pub async fn sync(
        &self,
        id: &ResourceId,
        desired: &[DesiredRule],
        owned_prefix: &str,
        freshness: Freshness,
    ) -> Result<NsgSync, ArmError> {
        let target = NsgTarget {
            desired,
            owned_prefix,
        };
        self.rmw
            .sync(self.arm.as_ref(), id, &target, freshness)
            .await
    }

    /// Forget what is remembered about `id` (after an out-of-band change).
    pub async fn forget(&self, id: &ResourceId) {
        self.rmw.forget(id).await;
    }
}
