//! Condition types and reasons written into status. `Ready` follows kstatus: True when the
//! object is fully reconciled at its current generation.

/// kstatus readiness of the whole object.
pub const READY: &str = "Ready";

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
}
