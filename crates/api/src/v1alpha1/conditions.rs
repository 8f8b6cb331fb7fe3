//! Condition types and reasons written into status, the kstatus way (the library Flux, kpt
//! and cli-utils use to decide whether an applied object is done):
//!
//! - `Ready` True when the object is reconciled at its current generation: everything poolnet
//!   should write is written and the status reports it. Capacity (a HostPortPolicy's full
//!   range) is not reconciliation: it has its own condition and leaves `Ready` alone.
//! - `Reconciling` True while poolnet is still working towards `Ready` (waiting for ARM,
//!   throttled, a transient error, the NodePoolNetwork a policy names not created yet).
//! - `Stalled` True when it cannot get there without someone changing something (an invalid
//!   or conflicting spec, an ARM ID out of scope, a full priority band, a node pool to
//!   recreate). kstatus reads this as Failed, so a GitOps health check stops waiting.
//!
//! `Reconciling` and `Stalled` are abnormal-true: present only while True.

/// kstatus readiness of the whole object.
pub const READY: &str = "Ready";
/// kstatus: still progressing towards Ready.
pub const RECONCILING: &str = "Reconciling";
/// kstatus: cannot become Ready without a change by someone (reported as Failed).
pub const STALLED: &str = "Stalled";

// NodePoolNetwork parts.
pub const PREFIX_READY: &str = "PrefixReady";
pub const AGENT_POOL_READY: &str = "AgentPoolReady";
pub const ASG_READY: &str = "ASGReady";
pub const SECURITY_RULES_READY: &str = "SecurityRulesReady";
pub const ROUTES_READY: &str = "RoutesReady";
pub const NODE_IPS_READY: &str = "NodeIPsReady";

// HostPortPolicy parts.
pub const ACCEPTED: &str = "Accepted";
pub const PORTS_ALLOCATED: &str = "PortsAllocated";

/// NodePoolNetwork: every host port pods use on the pool's nodes is in allowedHostPorts and
/// opened by poolnet's NSG rules (seed 000). Reported, never holding Ready down.
pub const HOST_PORTS_COVERED: &str = "HostPortsCovered";

/// NodePoolNetwork: the spec fits its live cluster (`poolnet_preflight::live`: route
/// destinations, route budget, network plugin, OS, AKS version). False holds `Ready` down;
/// errors about `spec.routeTable` also stop route writes (`RoutesReady` `PreflightFailed`).
pub const PREFLIGHT_PASSED: &str = "PreflightPassed";

/// Reasons, CamelCase as Kubernetes expects.
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const PROGRESSING: &str = "Progressing";
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const REQUIRES_NODE_POOL_RECREATE: &str = "RequiresNodePoolRecreate";
    pub const ARM_ERROR: &str = "ArmError";
    pub const THROTTLED: &str = "Throttled";
    pub const NOT_FOUND: &str = "NotFound";
    pub const ROUTE_LIMIT_EXCEEDED: &str = "RouteLimitExceeded";
    pub const NO_DEFAULT_ROUTE: &str = "NoDefaultRoute";
    pub const ROUTE_TABLE_IN_USE: &str = "RouteTableOwnedByAnotherCluster";
    pub const PRIORITY_BAND_FULL: &str = "PriorityBandFull";
    pub const OBSERVE_ONLY: &str = "ObserveOnly";
    /// Another, older NodePoolNetwork names the same agent pool: this one writes nothing.
    pub const CONFLICT: &str = "Conflict";
    /// ARM refused this object's entry in a shared resource; the others were written without it.
    pub const ARM_REFUSED: &str = "ArmRefused";
    /// An ARM ID of the spec lies outside the operator's allowed scopes: nothing is written.
    pub const OUT_OF_SCOPE: &str = "OutOfScope";
    /// The object is being deleted and poolnet is removing what it wrote.
    pub const DELETING: &str = "Deleting";
    /// Deletion cannot finish (the message carries ARM's).
    pub const CLEANUP_FAILED: &str = "CleanupFailed";
    pub const POOL_NOT_FOUND: &str = "NodePoolNetworkNotFound";
    pub const NAMESPACE_NOT_ADMITTED: &str = "NamespaceNotAdmitted";
    pub const RANGE_EXHAUSTED: &str = "RangeExhausted";
    /// Pods use host ports the pool's allowedHostPorts or NSG rules do not cover.
    pub const HOST_PORTS_NOT_COVERED: &str = "HostPortsNotCovered";
    /// A route of the spec would take over a name or prefix poolnet does not own.
    pub const ROUTE_CONFLICT: &str = "RouteConflict";
    /// The public IP prefix has no room for the pool spec.nodePool.template describes (its
    /// largest size plus surge): the pool is not created.
    pub const PREFIX_TOO_SMALL: &str = "PrefixTooSmall";
    /// Node public IPs do not carry the IP tags or come from the prefix the spec asks for.
    pub const NODE_IPS_MISMATCH: &str = "NodeIPsMismatch";
    /// `PreflightPassed`: no error (warnings, if any, are in the message).
    pub const PASSED: &str = "Passed";
    /// `PreflightPassed`: the spec does not fit its live cluster (findings in the message).
    pub const FAILED: &str = "Failed";
    /// `RoutesReady`: routes not written because preflight failed on `spec.routeTable`.
    pub const PREFLIGHT_FAILED: &str = "PreflightFailed";
}

/// Whether a part failing for `reason` needs someone to change something (the spec, another
/// object, Azure) before it can succeed: such an object is `Stalled`, not `Reconciling`.
pub fn needs_user_action(reason: &str) -> bool {
    use reason::*;
    [
        INVALID_SPEC,
        REQUIRES_NODE_POOL_RECREATE,
        ROUTE_LIMIT_EXCEEDED,
        NO_DEFAULT_ROUTE,
        ROUTE_TABLE_IN_USE,
        ROUTE_CONFLICT,
        PREFIX_TOO_SMALL,
        NODE_IPS_MISMATCH,
        FAILED,
        PREFLIGHT_FAILED,
        PRIORITY_BAND_FULL,
        CONFLICT,
        ARM_REFUSED,
        OUT_OF_SCOPE,
        NAMESPACE_NOT_ADMITTED,
        // Observe: Azure differs from the spec and poolnet will not write.
        OBSERVE_ONLY,
    ]
    .contains(&reason)
}
