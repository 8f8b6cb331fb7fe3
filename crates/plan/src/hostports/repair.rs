//! What the repair loop does with each claim, decided from API facts alone (S5).
//!
//! A claim is created by the webhook before the pod exists (the pod has no UID during
//! admission), so it starts unbound; the loop binds it once a pod carrying the claim's
//! reservation token appears. Release (S3) happens only when
//! - the bound pod is gone (Terminating pods still exist, so they still hold), or
//! - the claim was never bound, is older than the grace period, and was found orphaned by
//!   two passes at least `confirm_after` apart (the first pass marks it on the object, the
//!   second deletes it with a resourceVersion precondition, so a bind in between wins).
//!
//! The grace period must exceed the longest time between a webhook's answer and the pod
//! being stored (the API server's request timeout), so an admission still in flight is never
//! mistaken for an orphan.

use std::time::Duration;

use super::key::Key;

/// A pod, as far as claims are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What the loop knows about one claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimFacts<'a> {
    pub key: Key,
    /// Reservation token written by the admission that created the claim.
    pub token: &'a str,
    pub pod_namespace: &'a str,
    /// UID of the pod the claim is bound to.
    pub bound_uid: Option<&'a str>,
    /// Time since the claim was created.
    pub age: Duration,
    /// Time since a pass marked it as an orphan, if one did.
    pub marked_for: Option<Duration>,
}

/// The loop's view of pods (an informer cache: possibly stale, so releases are confirmed
/// against the API server before they are written).
pub trait PodView {
    /// A pod with this UID exists (Terminating included).
    fn has_uid(&self, uid: &str) -> bool;
    /// The pod in `namespace` carrying reservation `token`, if any.
    fn with_token(&self, namespace: &str, token: &str) -> Option<PodRef>;
}

/// When unbound claims may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleasePolicy {
    /// Minimum age of a never-bound claim before it is marked.
    pub grace: Duration,
    /// Minimum time between the marking pass and the releasing pass.
    pub confirm_after: Duration,
}

impl Default for ReleasePolicy {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(300),
            confirm_after: Duration::from_secs(30),
        }
    }
}

/// Why a claim is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Its pod is gone.
    PodGone,
    /// No pod ever carried its token, confirmed over two passes.
    NeverBound,
}

/// One step of repair for one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    Keep,
    Bind(PodRef),
    /// Record on the claim that this pass found it orphaned.
    Mark,
    /// Delete it, after confirming the reason against the API server.
    Release(ReleaseReason),
}

pub fn decide(claim: &ClaimFacts<'_>, pods: &impl PodView, policy: &ReleasePolicy) -> Repair {
    if let Some(uid) = claim.bound_uid {
        return if pods.has_uid(uid) {
            Repair::Keep
        } else {
            Repair::Release(ReleaseReason::PodGone)
        };
    }
    if let Some(pod) = pods.with_token(claim.pod_namespace, claim.token) {
        return Repair::Bind(pod);
    }
    if claim.age < policy.grace {
        return Repair::Keep;
    }
    match claim.marked_for {
        None => Repair::Mark,
        Some(t) if t >= policy.confirm_after => Repair::Release(ReleaseReason::NeverBound),
        Some(_) => Repair::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Pods(BTreeMap<String, PodRef>, BTreeMap<(String, String), PodRef>);

    impl PodView for Pods {
        fn has_uid(&self, uid: &str) -> bool {
            self.0.contains_key(uid)
        }
        fn with_token(&self, namespace: &str, token: &str) -> Option<PodRef> {
            self.1
                .get(&(namespace.to_string(), token.to_string()))
                .cloned()
        }
    }

    fn facts<'a>(bound: Option<&'a str>, age: u64, marked: Option<u64>) -> ClaimFacts<'a> {
        ClaimFacts {
            key: Key::tcp(41000),
            token: "t1",
            pod_namespace: "team",
            bound_uid: bound,
            age: Duration::from_secs(age),
            marked_for: marked.map(Duration::from_secs),
        }
    }

    #[test]
    fn lifecycle() {
        let policy = ReleasePolicy::default();
        let mut pods = Pods::default();
        // Fresh and unbound: wait, even without a pod.
        assert_eq!(decide(&facts(None, 1, None), &pods, &policy), Repair::Keep);
        // Old and unbound: mark, then release only after confirm_after.
        assert_eq!(
            decide(&facts(None, 301, None), &pods, &policy),
            Repair::Mark
        );
        assert_eq!(
            decide(&facts(None, 302, Some(1)), &pods, &policy),
            Repair::Keep
        );
        assert_eq!(
            decide(&facts(None, 340, Some(30)), &pods, &policy),
            Repair::Release(ReleaseReason::NeverBound)
        );
        // A pod with the token appears (even late, even after marking): bind.
        let pod = PodRef {
            namespace: "team".into(),
            name: "echo-1".into(),
            uid: "u1".into(),
        };
        pods.1.insert(("team".into(), "t1".into()), pod.clone());
        assert_eq!(
            decide(&facts(None, 340, Some(30)), &pods, &policy),
            Repair::Bind(pod.clone())
        );
        // Bound: held while the pod exists, released once it is gone.
        pods.0.insert("u1".into(), pod);
        assert_eq!(
            decide(&facts(Some("u1"), 999, None), &pods, &policy),
            Repair::Keep
        );
        pods.0.clear();
        assert_eq!(
            decide(&facts(Some("u1"), 999, None), &pods, &policy),
            Repair::Release(ReleaseReason::PodGone)
        );
    }
}
