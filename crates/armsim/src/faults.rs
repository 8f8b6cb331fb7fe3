//! Fault injection: seeded error rates per operation, latency, 5xx, 429 bursts, dropped
//! connections, failed LROs, and "other writers" that change a resource between a client's
//! GET and its PUT (as AKS and the cloud controller do to the shared NSG and route table).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the RNG behind `probability`, so a failing run can be replayed.
    pub rng_seed: u64,
    pub rules: Vec<FaultRule>,
    pub other_writers: Vec<OtherWriter>,
}

/// One fault: which requests it matches and what happens to them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method to match (any when absent).
    pub method: Option<String>,
    /// Resource type to match, either fully (`Microsoft.Network/networkSecurityGroups`) or by
    /// its last segment (`networkSecurityGroups`, `securityRules`); any when absent.
    pub resource_type: Option<String>,
    /// Substring of the request path to match, case-insensitive (e.g. a resource name).
    pub path_contains: Option<String>,
    /// Chance in [0, 1] that a matching request is hit.
    pub probability: f64,
    /// The first `skip` matching requests pass untouched.
    pub skip: u64,
    /// Hit at most this many requests, then the rule goes inert (a 429 burst of N).
    pub count: Option<u64>,
    pub action: FaultAction,
    /// How many requests this rule has hit so far (reported back, ignored on input).
    pub injected: u64,
    #[serde(skip)]
    seen: u64,
}

impl Default for FaultRule {
    fn default() -> Self {
        FaultRule {
            method: None,
            resource_type: None,
            path_contains: None,
            probability: 1.0,
            skip: 0,
            count: None,
            action: FaultAction::Latency { ms: 0 },
            injected: 0,
            seen: 0,
        }
    }
}

impl FaultRule {
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            action,
            ..FaultRule::default()
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    pub fn resource_type(mut self, resource_type: &str) -> Self {
        self.resource_type = Some(resource_type.to_string());
        self
    }

    pub fn path_contains(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_string());
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    fn matches(&self, method: &str, resource_type: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        if let Some(t) = &self.resource_type {
            let last = resource_type.rsplit('/').next().unwrap_or(resource_type);
            if !t.eq_ignore_ascii_case(resource_type) && !t.eq_ignore_ascii_case(last) {
                return false;
            }
        }
        if let Some(fragment) = &self.path_contains
            && !path
                .to_ascii_lowercase()
                .contains(&fragment.to_ascii_lowercase())
        {
            return false;
        }
        true
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status and ARM error code (5xx, 409, ...).
    Error {
        status: u16,
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Answer 429 `SubscriptionRequestsThrottled` with this `Retry-After`.
    Throttle { retry_after_secs: u64 },
    /// Close the connection without answering.
    Drop,
    /// Delay the answer (combines with other actions).
    Latency { ms: u64 },
    /// Accept the write, but let its long-running operation end `Failed` with this code.
    FailOperation {
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Accept the write, but keep its long-running operation `InProgress` this much longer
    /// than the configured duration (a stuck operation: every poll meanwhile says running).
    StallOperation { ms: u64 },
}

/// A writer that is not the client: after the client's `after_gets`-th GET of the resource,
/// the resource changes (new ETag), so the client's `If-Match` PUT built from that GET gets 412.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtherWriter {
    /// ARM ID of an NSG, a route table or an agent pool (case-insensitive).
    pub resource_id: String,
    /// Mutate right after answering this many GETs of the resource (1 = the next GET).
    pub after_gets: u64,
    /// Fire again every `after_gets` GETs instead of once.
    pub repeat: bool,
    pub action: OtherWriterAction,
    /// How many mutations this writer has made (reported back, ignored on input).
    pub fired: u64,
    #[serde(skip)]
    gets_seen: u64,
}

impl Default for OtherWriter {
    fn default() -> Self {
        OtherWriter {
            resource_id: String::new(),
            after_gets: 1,
            repeat: false,
            action: OtherWriterAction::Touch,
            fired: 0,
            gets_seen: 0,
        }
    }
}

impl OtherWriter {
    pub fn new(resource_id: &str, after_gets: u64, action: OtherWriterAction) -> Self {
        OtherWriter {
            resource_id: resource_id.to_string(),
            after_gets,
            action,
            ..OtherWriter::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OtherWriterAction {
    /// Rewrite the resource unchanged: only the ETag moves (a no-op PUT by someone else).
    Touch,
    /// Add or replace a security rule (ARM body with `name` and `properties`).
    UpsertSecurityRule { rule: Value },
    /// Add or replace a route (ARM body with `name` and `properties`).
    UpsertRoute { route: Value },
    /// Remove a security rule or route by name.
    RemoveChild { name: String },
    /// Set `properties.<name>` (e.g. an agent pool's `count`, as someone scaling it).
    SetProperty { name: String, value: Value },
}

/// Decision for one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultDecision {
    pub latency_ms: u64,
    /// The first non-latency action hit, if any.
    pub action: Option<FaultAction>,
}

/// Live fault state: the rules with their counters and the seeded RNG.
#[derive(Debug)]
pub struct FaultState {
    pub config: FaultConfig,
    rng: StdRng,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.rng_seed);
        FaultState { config, rng }
    }

    pub fn replace(&mut self, config: FaultConfig) {
        *self = FaultState::new(config);
    }

    pub fn decide(&mut self, method: &str, resource_type: &str, path: &str) -> FaultDecision {
        let mut decision = FaultDecision::default();
        for rule in &mut self.config.rules {
            if !rule.matches(method, resource_type, path) {
                continue;
            }
            if let Some(limit) = rule.count
                && rule.injected >= limit
            {
                continue;
            }
            rule.seen += 1;
            if rule.seen <= rule.skip {
                continue;
            }
            if rule.probability < 1.0 && self.rng.r#gen::<f64>() >= rule.probability {
                continue;
            }
            match &rule.action {
                FaultAction::Latency { ms } => {
                    rule.injected += 1;
                    decision.latency_ms += ms;
                }
                other => {
                    if decision.action.is_none() {
                        rule.injected += 1;
                        decision.action = Some(other.clone());
                    }
                }
            }
        }
        decision
    }

    /// Counts a served GET of `resource_id`; returns the mutations now due.
    pub fn after_get(&mut self, resource_id: &str) -> Vec<OtherWriterAction> {
        let mut due = Vec::new();
        for writer in &mut self.config.other_writers {
            if !writer.resource_id.eq_ignore_ascii_case(resource_id) {
                continue;
            }
            if !writer.repeat && writer.fired > 0 {
                continue;
            }
            writer.gets_seen += 1;
            let every = writer.after_gets.max(1);
            if writer.gets_seen.is_multiple_of(every) {
                writer.fired += 1;
                due.push(writer.action.clone());
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_hits_exactly_count_requests() {
        let mut s = FaultState::new(FaultConfig {
            rules: vec![
                FaultRule::new(FaultAction::Throttle {
                    retry_after_secs: 1,
                })
                .method("PUT")
                .count(2),
            ],
            ..FaultConfig::default()
        });
        let hits: Vec<bool> = (0..4)
            .map(|_| s.decide("PUT", "x", "/p").action.is_some())
            .collect();
        assert_eq!(hits, vec![true, true, false, false]);
        assert!(s.decide("GET", "x", "/p").action.is_none());
    }

    #[test]
    fn same_seed_same_sequence() {
        let cfg = FaultConfig {
            rng_seed: 7,
            rules: vec![
                FaultRule::new(FaultAction::Drop)
                    .resource_type("networkSecurityGroups")
                    .probability(0.5),
            ],
            ..FaultConfig::default()
        };
        let run = |cfg: &FaultConfig| {
            let mut s = FaultState::new(cfg.clone());
            (0..64)
                .map(|_| {
                    s.decide("GET", "Microsoft.Network/networkSecurityGroups", "/")
                        .action
                        .is_some()
                })
                .collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        assert!(a.iter().any(|h| *h) && a.iter().any(|h| !*h));
    }

    #[test]
    fn other_writer_fires_after_nth_get_once() {
        let mut s = FaultState::new(FaultConfig {
            other_writers: vec![OtherWriter::new("/A", 2, OtherWriterAction::Touch)],
            ..FaultConfig::default()
        });
        assert!(s.after_get("/a").is_empty());
        assert_eq!(s.after_get("/a").len(), 1);
        assert!(s.after_get("/a").is_empty());
        assert!(s.after_get("/a").is_empty());
    }
}
