//! Per-subscription token buckets for reads and writes, as ARM applies them.

use crate::config::ThrottleConfig;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    Read,
    Write,
}

impl OpClass {
    pub fn of_method(method: &str) -> Self {
        if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            OpClass::Read
        } else {
            OpClass::Write
        }
    }

    pub fn header_name(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(capacity),
            last: now,
        }
    }

    fn refill(&mut self, capacity: u32, per_sec: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(capacity));
        self.last = now;
    }
}

/// Outcome of one request against the buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Admitted; the remaining whole tokens go in the `x-ms-ratelimit-remaining-*` header.
    Allowed { remaining: u64 },
    /// Throttled; retry after this many seconds.
    Throttled { retry_after: u64 },
}

#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<(String, bool), Bucket>,
}

impl Throttle {
    pub fn admit(
        &mut self,
        cfg: &ThrottleConfig,
        subscription: &str,
        class: OpClass,
        now: Instant,
    ) -> Admission {
        let (capacity, per_sec) = match class {
            OpClass::Read => (cfg.read_capacity, cfg.read_refill_per_sec),
            OpClass::Write => (cfg.write_capacity, cfg.write_refill_per_sec),
        };
        if !cfg.enabled {
            return Admission::Allowed {
                remaining: u64::from(capacity),
            };
        }
        let key = (subscription.to_ascii_lowercase(), class == OpClass::Write);
        let bucket = self
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(capacity, now));
        bucket.refill(capacity, per_sec, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admission::Allowed {
                remaining: bucket.tokens.floor() as u64,
            }
        } else {
            let missing = 1.0 - bucket.tokens;
            let secs = if per_sec > 0.0 {
                (missing / per_sec).ceil().max(1.0) as u64
            } else {
                60
            };
            Admission::Throttled { retry_after: secs }
        }
    }

    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_drains_then_refills() {
        let cfg = ThrottleConfig {
            write_capacity: 2,
            write_refill_per_sec: 1.0,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(
            t.admit(&cfg, "s", OpClass::Write, t0),
            Admission::Allowed { remaining: 1 }
        );
        assert_eq!(
            t.admit(&cfg, "s", OpClass::Write, t0),
            Admission::Allowed { remaining: 0 }
        );
        assert_eq!(
            t.admit(&cfg, "s", OpClass::Write, t0),
            Admission::Throttled { retry_after: 1 }
        );
        // Reads have their own bucket and another subscription its own too.
        assert!(matches!(
            t.admit(&cfg, "s", OpClass::Read, t0),
            Admission::Allowed { .. }
        ));
        assert!(matches!(
            t.admit(&cfg, "other", OpClass::Write, t0),
            Admission::Allowed { .. }
        ));
        assert!(matches!(
            t.admit(&cfg, "s", OpClass::Write, t0 + Duration::from_millis(1100)),
            Admission::Allowed { .. }
        ));
    }
}
