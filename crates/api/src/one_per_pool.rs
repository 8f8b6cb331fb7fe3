//! One agent pool, one NodePoolNetwork. Two objects on one pool would each rewrite the pool's
//! allowedHostPorts and ASGs and each restore their own "original" values on delete, so the
//! webhook refuses the second ([`validate_unique_agent_pool`]) and, for what a race or a
//! webhook outage lets through, the controllers let only the oldest one act ([`holder`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::error::{FieldError, FieldErrors};
use crate::v1alpha1::NodePoolNetwork;

const FIELD: &str = "spec.nodePool.agentPoolId";

/// Whether two objects name the same agent pool (ARM IDs compare case-insensitively).
pub fn same_agent_pool(a: &NodePoolNetwork, b: &NodePoolNetwork) -> bool {
    a.spec
        .node_pool
        .agent_pool_id
        .eq_ignore_ascii_case(&b.spec.node_pool.agent_pool_id)
}

/// Whether `npn` still holds its pool: it exists, or is being deleted and its finalizers
/// (poolnet's cleanup among them) have not all finished. One whose finalizers are all gone is
/// only waiting to vanish from a cache.
fn holds(npn: &NodePoolNetwork) -> bool {
    npn.metadata.deletion_timestamp.is_none()
        || npn
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
}

/// Age order: earlier creationTimestamp first (an object not created yet is the youngest),
/// the name breaking ties (timestamps have one-second resolution).
fn age(npn: &NodePoolNetwork) -> (bool, Option<&Time>, &str) {
    let created = npn.metadata.creation_timestamp.as_ref();
    (
        created.is_none(),
        created,
        npn.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The object that holds `npn`'s agent pool instead of it: the oldest other object in `pools`
/// naming the same pool, if that one is older than `npn`. `None` means `npn` may act.
pub fn holder<'a>(
    npn: &NodePoolNetwork,
    pools: impl IntoIterator<Item = &'a NodePoolNetwork>,
) -> Option<&'a NodePoolNetwork> {
    let me = age(npn);
    pools
        .into_iter()
        .filter(|p| p.metadata.name != npn.metadata.name && holds(p) && same_agent_pool(p, npn))
        .filter(|p| age(p) < me)
        .min_by(|a, b| age(a).cmp(&age(b)))
}

/// Names of the objects in `pools` that [`holder`] refuses: each one has an older object
/// holding its pool. One pass, for callers that judge every object of a large list.
pub fn refused(pools: &[NodePoolNetwork]) -> BTreeSet<&str> {
    let mut oldest: BTreeMap<String, (bool, Option<&Time>, &str)> = BTreeMap::new();
    for p in pools.iter().filter(|p| holds(p)) {
        let key = p.spec.node_pool.agent_pool_id.to_ascii_lowercase();
        let a = age(p);
        oldest
            .entry(key)
            .and_modify(|o| *o = (*o).min(a))
            .or_insert(a);
    }
    pools
        .iter()
        .filter(|p| {
            oldest
                .get(&p.spec.node_pool.agent_pool_id.to_ascii_lowercase())
                .is_some_and(|o| *o < age(p))
        })
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

/// What an object that is not the holder of its pool is told.
pub fn conflict_message(holder: &NodePoolNetwork) -> String {
    format!(
        "{FIELD}: agent pool {:?} is already managed by NodePoolNetwork {:?}; this one writes nothing to Azure. One NodePoolNetwork per agent pool: move this spec into {:?} or delete {:?} first (this one takes over once it is gone)",
        holder.spec.node_pool.agent_pool_id,
        holder.metadata.name.as_deref().unwrap_or(""),
        holder.metadata.name.as_deref().unwrap_or(""),
        holder.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Admission of a new object: refused when another object in `others` names the same agent
/// pool. Updates need no check: agentPoolId is immutable.
pub fn validate_unique_agent_pool(
    new: &NodePoolNetwork,
    others: &[NodePoolNetwork],
) -> Result<(), FieldErrors> {
    let Some(other) = others
        .iter()
        .find(|o| o.metadata.name != new.metadata.name && holds(o) && same_agent_pool(o, new))
    else {
        return Ok(());
    };
    let other_name = other.metadata.name.as_deref().unwrap_or("");
    let deleting = if other.metadata.deletion_timestamp.is_some() {
        " (it is being deleted: wait until it is gone)"
    } else {
        ""
    };
    Err(FieldError::new(
        FIELD,
        &new.spec.node_pool.agent_pool_id,
        format!("the agent pool is already managed by NodePoolNetwork {other_name:?}{deleting}"),
        format!(
            "one NodePoolNetwork per agent pool: edit NodePoolNetwork {other_name:?} instead, or delete it first"
        ),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::NodePoolNetworkSpec;
    use k8s_openapi::jiff::Timestamp;

    const POOL: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks/agentPools/game";

    fn npn(name: &str, pool: &str, created: Option<i64>) -> NodePoolNetwork {
        let spec: NodePoolNetworkSpec =
            serde_json::from_value(serde_json::json!({"nodePool": {"agentPoolId": pool}}))
                .expect("a minimal spec");
        let mut n = NodePoolNetwork::new(name, spec);
        n.metadata.creation_timestamp =
            created.map(|s| Time(Timestamp::from_second(s).expect("a valid second")));
        n
    }

    fn deleting(mut n: NodePoolNetwork, finalizers: &[&str]) -> NodePoolNetwork {
        n.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        n.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        n
    }

    fn name(n: Option<&NodePoolNetwork>) -> Option<&str> {
        n.and_then(|n| n.metadata.name.as_deref())
    }

    #[test]
    fn a_second_object_on_the_same_pool_is_refused_naming_the_field_the_other_and_the_fix() {
        let first = npn("first", POOL, Some(100));
        let second = npn("second", &POOL.to_ascii_uppercase(), None);
        let errs = validate_unique_agent_pool(&second, std::slice::from_ref(&first))
            .expect_err("the same pool, spelled in another case");
        let msg = errs.to_string();
        assert!(msg.contains("spec.nodePool.agentPoolId"), "{msg}");
        assert!(msg.contains("NodePoolNetwork \"first\""), "{msg}");
        assert!(msg.contains("one NodePoolNetwork per agent pool"), "{msg}");
        assert!(msg.contains("delete it first"), "{msg}");
    }

    #[test]
    fn other_pools_and_the_object_itself_are_no_conflict() {
        let other_pool = npn("other", &POOL.replace("/game", "/kubenet"), Some(100));
        let me_before = npn("me", POOL, Some(50));
        let me = npn("me", POOL, None);
        assert!(validate_unique_agent_pool(&me, &[other_pool, me_before]).is_ok());
    }

    #[test]
    fn an_object_being_deleted_holds_its_pool_until_its_finalizers_finish() {
        let cleaning = deleting(npn("old", POOL, Some(100)), &["poolnet.dev/cleanup"]);
        let msg =
            validate_unique_agent_pool(&npn("new", POOL, None), std::slice::from_ref(&cleaning))
                .expect_err("cleanup still writes to the pool")
                .to_string();
        assert!(msg.contains("being deleted"), "{msg}");
        let young = npn("new", POOL, Some(200));
        assert_eq!(name(holder(&young, [&cleaning])), Some("old"));

        let vanishing = deleting(npn("old", POOL, Some(100)), &[]);
        assert!(
            validate_unique_agent_pool(&npn("new", POOL, None), std::slice::from_ref(&vanishing))
                .is_ok()
        );
        assert_eq!(name(holder(&young, [&vanishing])), None);
    }

    #[test]
    fn the_oldest_object_holds_the_pool_and_every_younger_one_names_it() {
        let a = npn("a", POOL, Some(100));
        let b = npn("b", &POOL.to_ascii_lowercase(), Some(200));
        let c = npn("c", POOL, Some(300));
        let elsewhere = npn("elsewhere", &POOL.replace("/game", "/kubenet"), Some(1));
        let all = [&a, &b, &c, &elsewhere];
        assert_eq!(name(holder(&a, all)), None);
        assert_eq!(name(holder(&b, all)), Some("a"));
        assert_eq!(name(holder(&c, all)), Some("a"));
        assert_eq!(name(holder(&elsewhere, all)), None);
    }

    #[test]
    fn refused_agrees_with_holder_for_every_object() {
        let all = vec![
            npn("a", POOL, Some(100)),
            npn("b", &POOL.to_ascii_uppercase(), Some(200)),
            npn("b2", POOL, Some(200)),
            deleting(npn("gone", POOL, Some(1)), &[]),
            deleting(
                npn("cleaning", &POOL.replace("/game", "/kubenet"), Some(300)),
                &["f"],
            ),
            npn("late", &POOL.replace("/game", "/kubenet"), Some(400)),
            npn("alone", &POOL.replace("/game", "/other"), Some(1)),
        ];
        let refused = refused(&all);
        for p in &all {
            let n = p.metadata.name.as_deref().unwrap_or_default();
            assert_eq!(refused.contains(n), holder(p, &all).is_some(), "{n}");
        }
        assert_eq!(refused, BTreeSet::from(["b", "b2", "late"]));
    }

    #[test]
    fn objects_created_in_the_same_second_are_ordered_by_name() {
        let x = npn("x", POOL, Some(100));
        let y = npn("y", POOL, Some(100));
        assert_eq!(name(holder(&y, [&x, &y])), Some("x"));
        assert_eq!(name(holder(&x, [&x, &y])), None);
    }

    #[test]
    fn the_conflict_message_names_the_field_the_holder_and_the_fix() {
        let msg = conflict_message(&npn("first", POOL, Some(1)));
        assert!(msg.starts_with("spec.nodePool.agentPoolId"), "{msg}");
        assert!(msg.contains("\"first\""), "{msg}");
        assert!(msg.contains("One NodePoolNetwork per agent pool"), "{msg}");
    }
}
