//! Claims shared by the pods of one DaemonSet (pure decisions).
//!
//! A DaemonSet runs one pod per node, so its pods may all write the same static host port:
//! they hold one claim together, recorded on it (`spec.daemonSet`: name and UID). Any other
//! pod is refused the port as before. The claim has no single pod to bind to, so it is kept
//! while any pod of that DaemonSet holds the port, and released (two passes apart, after a
//! live check, with a resourceVersion precondition) once none does and the last admission
//! that gave the port out is older than the grace period: that admission's pod may still be
//! stored until the API server's request deadline. An admission that shares the claim writes
//! `status.admittedAt` before it answers, which both restarts the grace period and makes a
//! release that read the claim earlier fail its precondition.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use poolnet_plan::hostports::ReleasePolicy;

/// The DaemonSet controlling a pod, as its `ownerReferences` say: `(name, uid)`.
pub fn daemon_set_of(pod: &Pod) -> Option<(&str, &str)> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "DaemonSet" && o.api_version == "apps/v1")
        .map(|o| (o.name.as_str(), o.uid.as_str()))
}

/// What the repair loop knows about one shared claim.
#[derive(Debug, Clone, Copy)]
pub struct SharedFacts {
    /// A pod of the claim's DaemonSet holds the port (informer cache).
    pub held: bool,
    /// Time since the claim was created or last given out, whichever is later.
    pub since_admitted: Duration,
    /// Time since a pass marked it as an orphan, if one did.
    pub marked_for: Option<Duration>,
}

/// One step of repair for one shared claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedRepair {
    Keep,
    /// A pod holds it again: clear the orphan mark.
    Unmark,
    Mark,
    /// Delete it, after a live read confirms no pod of the DaemonSet holds the port.
    Release,
}

pub fn decide_shared(facts: &SharedFacts, policy: &ReleasePolicy) -> SharedRepair {
    if facts.held {
        return if facts.marked_for.is_some() {
            SharedRepair::Unmark
        } else {
            SharedRepair::Keep
        };
    }
    if facts.since_admitted < policy.grace {
        return SharedRepair::Keep;
    }
    match facts.marked_for {
        None => SharedRepair::Mark,
        Some(t) if t >= policy.confirm_after => SharedRepair::Release,
        Some(_) => SharedRepair::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn owned(kind: &str, controller: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: kind.into(),
                    name: "agent".into(),
                    uid: "ds-1".into(),
                    controller: Some(controller),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn only_a_controlling_daemon_set_counts() {
        assert_eq!(
            daemon_set_of(&owned("DaemonSet", true)),
            Some(("agent", "ds-1"))
        );
        assert_eq!(daemon_set_of(&owned("DaemonSet", false)), None);
        assert_eq!(daemon_set_of(&owned("ReplicaSet", true)), None);
        assert_eq!(daemon_set_of(&Pod::default()), None);
    }

    #[test]
    fn kept_while_held_or_young_released_over_two_passes() {
        let policy = ReleasePolicy {
            grace: Duration::from_secs(39),
            confirm_after: Duration::from_secs(2),
        };
        let f = |held, since, marked: Option<u64>| SharedFacts {
            held,
            since_admitted: Duration::from_secs(since),
            marked_for: marked.map(Duration::from_secs),
        };
        assert_eq!(
            decide_shared(&f(true, 999, None), &policy),
            SharedRepair::Keep
        );
        assert_eq!(
            decide_shared(&f(true, 999, Some(5)), &policy),
            SharedRepair::Unmark
        );
        assert_eq!(
            decide_shared(&f(false, 10, None), &policy),
            SharedRepair::Keep,
            "an admission may still be storing its pod"
        );
        assert_eq!(
            decide_shared(&f(false, 40, None), &policy),
            SharedRepair::Mark
        );
        assert_eq!(
            decide_shared(&f(false, 41, Some(1)), &policy),
            SharedRepair::Keep
        );
        assert_eq!(
            decide_shared(&f(false, 42, Some(2)), &policy),
            SharedRepair::Release
        );
    }
}
