//! Per-subscription throttle budget.
//!
//! ARM throttles per subscription (and principal) with token buckets: reads refill at about 25/s up
//! to 250, writes at about 10/s up to 200 (DESIGN.md §4). Every response tells how many requests are
//! left (`x-ms-ratelimit-remaining-subscription-reads` / `-writes`, or the `-global-` variants), and
//! a 429 says how long to stay away (`Retry-After`). The budget keeps an estimate of each bucket from
//! those headers, refills it at the configured rate between observations, and refuses to send when
//! the estimate would fall under a reserve or a `Retry-After` is still pending. A call that only
//! has to wait for the bucket to refill waits (up to [`BudgetConfig::max_wait`]): giving up
//! halfway through a reconcile would throw away the reads already spent on it. A call inside
//! a `Retry-After`, or one that would wait longer, becomes a retryable `Throttled` error, so
//! controllers back off instead of hammering ARM.
//!
//! The logic is pure: every method takes `now`, so tests drive time explicitly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reads and writes are throttled by separate buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallClass {
    Read,
    Write,
}

/// Bucket sizes, refill rates and how many requests to keep in hand.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    pub read_capacity: u32,
    pub read_refill_per_sec: f64,
    /// Stop sending reads while fewer than this many would be left.
    pub read_reserve: u32,
    pub write_capacity: u32,
    pub write_refill_per_sec: f64,
    /// Stop sending writes while fewer than this many would be left.
    pub write_reserve: u32,
    /// How long to stay away after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    /// Longest a call waits for its bucket to refill before it fails as throttled.
    pub max_wait: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            read_capacity: 250,
            read_refill_per_sec: 25.0,
            read_reserve: 10,
            write_capacity: 200,
            write_refill_per_sec: 10.0,
            write_reserve: 5,
            default_retry_after: crate::error::DEFAULT_THROTTLE_WAIT,
            max_wait: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    fn bucket(&self, class: CallClass) -> (f64, f64, f64) {
        match class {
            CallClass::Read => (
                f64::from(self.read_capacity),
                self.read_refill_per_sec,
                f64::from(self.read_reserve),
            ),
            CallClass::Write => (
                f64::from(self.write_capacity),
                self.write_refill_per_sec,
                f64::from(self.write_reserve),
            ),
        }
    }
}

/// What ARM told us in one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    /// Remaining requests of the call's class, from `x-ms-ratelimit-remaining-*`.
    pub remaining: Option<u32>,
    /// Set when ARM answered 429: how long it asked us to wait (`None`: it did not say).
    pub throttled_for: Option<Option<Duration>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Estimated remaining requests at `at`; `None` until ARM has told us.
    remaining: Option<f64>,
    at: Option<Instant>,
}

impl Bucket {
    const UNKNOWN: Bucket = Bucket {
        remaining: None,
        at: None,
    };

    fn estimate(&self, now: Instant, capacity: f64, refill: f64) -> Option<f64> {
        let remaining = self.remaining?;
        let elapsed = self
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        // ARM's own count wins over our configured capacity when it reports more.
        Some((remaining + elapsed * refill).min(capacity.max(remaining)))
    }
}

/// The state of one subscription's buckets.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionBudget {
    reads: Bucket,
    writes: Bucket,
    blocked_until: Option<Instant>,
}

impl Default for SubscriptionBudget {
    fn default() -> Self {
        SubscriptionBudget {
            reads: Bucket::UNKNOWN,
            writes: Bucket::UNKNOWN,
            blocked_until: None,
        }
    }
}

impl SubscriptionBudget {
    fn bucket_mut(&mut self, class: CallClass) -> &mut Bucket {
        match class {
            CallClass::Read => &mut self.reads,
            CallClass::Write => &mut self.writes,
        }
    }

    /// Asks to send one request of `class` at `now`. On success the estimate is charged one
    /// request; on refusal the error says how long to wait.
    pub fn admit(
        &mut self,
        config: &BudgetConfig,
        class: CallClass,
        now: Instant,
    ) -> Result<(), Duration> {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Err(until - now);
            }
            self.blocked_until = None;
        }
        let (capacity, refill, reserve) = config.bucket(class);
        let bucket = self.bucket_mut(class);
        let Some(estimate) = bucket.estimate(now, capacity, refill) else {
            return Ok(());
        };
        // Sending needs one request on top of the reserve.
        let needed = reserve + 1.0;
        if estimate < needed {
            let wait = if refill > 0.0 {
                Duration::from_secs_f64((needed - estimate) / refill)
            } else {
                config.default_retry_after
            };
            return Err(wait.max(Duration::from_millis(1)));
        }
        bucket.remaining = Some(estimate - 1.0);
        bucket.at = Some(now);
        Ok(())
    }

    /// How long ARM asked us to stay away (a pending `Retry-After`), if it did.
    pub fn blocked_for(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Records what a response said.
    pub fn observe(
        &mut self,
        config: &BudgetConfig,
        class: CallClass,
        observation: Observation,
        now: Instant,
    ) {
        if let Some(remaining) = observation.remaining {
            let bucket = self.bucket_mut(class);
            bucket.remaining = Some(f64::from(remaining));
            bucket.at = Some(now);
        }
        if let Some(wait) = observation.throttled_for {
            let until = now + wait.unwrap_or(config.default_retry_after);
            self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        }
    }
}

/// What the budget believes about one subscription at a moment (exported as gauges).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetEstimate {
    /// Lower-cased subscription ID.
    pub subscription: String,
    /// Estimated reads left (refilled up to now); `None` until ARM has reported a count.
    pub reads: Option<f64>,
    /// Estimated writes left; `None` until ARM has reported a count.
    pub writes: Option<f64>,
    /// How much longer a `Retry-After` from ARM keeps every call away.
    pub blocked_for: Option<Duration>,
}

impl SubscriptionBudget {
    fn estimate(&self, config: &BudgetConfig, subscription: &str, now: Instant) -> BudgetEstimate {
        let bucket = |class: CallClass, b: &Bucket| {
            let (capacity, refill, _) = config.bucket(class);
            b.estimate(now, capacity, refill)
        };
        BudgetEstimate {
            subscription: subscription.to_string(),
            reads: bucket(CallClass::Read, &self.reads),
            writes: bucket(CallClass::Write, &self.writes),
            blocked_for: self.blocked_for(now),
        }
    }
}

/// Thread-safe budget for every subscription a client talks to.
#[derive(Debug, Default)]
pub struct ThrottleBudget {
    config: BudgetConfig,
    subscriptions: Mutex<HashMap<String, SubscriptionBudget>>,
}

impl ThrottleBudget {
    pub fn new(config: BudgetConfig) -> Self {
        ThrottleBudget {
            config,
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    fn with<R>(&self, subscription: &str, f: impl FnOnce(&mut SubscriptionBudget) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain numbers; the
        // numbers are still usable estimates.
        let mut subs = self
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(subs.entry(subscription.to_ascii_lowercase()).or_default())
    }

    /// See [`SubscriptionBudget::admit`].
    pub fn admit(
        &self,
        subscription: &str,
        class: CallClass,
        now: Instant,
    ) -> Result<(), Duration> {
        self.with(subscription, |s| s.admit(&self.config, class, now))
    }

    /// See [`SubscriptionBudget::blocked_for`].
    pub fn blocked_for(&self, subscription: &str, now: Instant) -> Option<Duration> {
        self.with(subscription, |s| s.blocked_for(now))
    }

    /// The estimate of every subscription seen so far at `now`, sorted by subscription.
    pub fn estimates(&self, now: Instant) -> Vec<BudgetEstimate> {
        let subs = self
            .subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<BudgetEstimate> = subs
            .iter()
            .map(|(sub, b)| b.estimate(&self.config, sub, now))
            .collect();
        out.sort_by(|a, b| a.subscription.cmp(&b.subscription));
        out
    }

    /// See [`SubscriptionBudget::observe`].
    pub fn observe(
        &self,
        subscription: &str,
        class: CallClass,
        observation: Observation,
        now: Instant,
    ) {
        self.with(subscription, |s| {
            s.observe(&self.config, class, observation, now)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> BudgetConfig {
        BudgetConfig::default()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn unknown_subscription_is_admitted() {
        let b = ThrottleBudget::default();
        let now = Instant::now();
        for _ in 0..1000 {
            b.admit("s", CallClass::Write, now).unwrap();
        }
    }

    #[test]
    fn retry_after_blocks_reads_and_writes_until_it_elapses() {
        let b = ThrottleBudget::default();
        let t0 = Instant::now();
        b.observe(
            "s",
            CallClass::Read,
            Observation {
                remaining: None,
                throttled_for: Some(Some(secs(3.0))),
            },
            t0,
        );
        assert_eq!(
            b.admit("s", CallClass::Write, t0 + secs(1.0)),
            Err(secs(2.0))
        );
        assert_eq!(
            b.admit("S", CallClass::Read, t0 + secs(2.5)),
            Err(secs(0.5))
        );
        assert_eq!(b.admit("other", CallClass::Read, t0), Ok(()));
        assert_eq!(b.admit("s", CallClass::Read, t0 + secs(3.0)), Ok(()));
    }

    #[test]
    fn low_remaining_refuses_until_refilled() {
        let c = cfg();
        let mut s = SubscriptionBudget::default();
        let t0 = Instant::now();
        s.observe(
            &c,
            CallClass::Write,
            Observation {
                remaining: Some(c.write_reserve),
                throttled_for: None,
            },
            t0,
        );
        let wait = s.admit(&c, CallClass::Write, t0).unwrap_err();
        assert_eq!(wait, secs(1.0 / c.write_refill_per_sec));
        // Reads are a separate bucket.
        s.admit(&c, CallClass::Read, t0).unwrap();
        s.admit(&c, CallClass::Write, t0 + wait).unwrap();
    }

    #[test]
    fn estimates_refill_and_report_a_pending_retry_after() {
        let b = ThrottleBudget::default();
        let t0 = Instant::now();
        assert!(b.estimates(t0).is_empty());
        b.observe(
            "SUB-B",
            CallClass::Read,
            Observation {
                remaining: Some(100),
                throttled_for: None,
            },
            t0,
        );
        b.observe(
            "sub-a",
            CallClass::Write,
            Observation {
                remaining: Some(0),
                throttled_for: Some(Some(secs(4.0))),
            },
            t0,
        );
        let e = b.estimates(t0 + secs(2.0));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].subscription, "sub-a");
        assert_eq!(e[0].reads, None, "ARM has not reported reads for sub-a");
        assert_eq!(e[0].writes, Some(2.0 * cfg().write_refill_per_sec));
        assert_eq!(e[0].blocked_for, Some(secs(2.0)));
        assert_eq!(e[1].subscription, "sub-b");
        assert_eq!(e[1].reads, Some(100.0 + 2.0 * cfg().read_refill_per_sec));
        assert_eq!(e[1].blocked_for, None);
        // Capped at capacity however long it has been.
        let later = b.estimates(t0 + secs(3600.0));
        assert_eq!(later[1].reads, Some(f64::from(cfg().read_capacity)));
    }

    proptest! {
        /// With `r` remaining and no refill time, exactly `r - reserve` requests go out.
        #[test]
        fn admits_exactly_down_to_the_reserve(r in 0u32..300) {
            let c = cfg();
            let mut s = SubscriptionBudget::default();
            let t0 = Instant::now();
            s.observe(&c, CallClass::Read, Observation { remaining: Some(r), throttled_for: None }, t0);
            let mut sent = 0u32;
            while s.admit(&c, CallClass::Read, t0).is_ok() {
                sent += 1;
                prop_assert!(sent <= 300);
            }
            prop_assert_eq!(sent, r.saturating_sub(c.read_reserve));
        }

        /// A refusal always names a positive wait, and waiting that long is enough.
        #[test]
        fn waiting_the_returned_time_is_enough(
            r in 0u32..20, blocked in proptest::option::of(0u64..5000), class_is_read in any::<bool>(),
        ) {
            let c = cfg();
            let class = if class_is_read { CallClass::Read } else { CallClass::Write };
            let mut s = SubscriptionBudget::default();
            let t0 = Instant::now();
            s.observe(&c, class, Observation {
                remaining: Some(r),
                throttled_for: blocked.map(|ms| Some(Duration::from_millis(ms))),
            }, t0);
            let mut now = t0;
            for _ in 0..3 {
                match s.admit(&c, class, now) {
                    Ok(()) => break,
                    Err(wait) => {
                        prop_assert!(wait > Duration::ZERO);
                        now += wait;
                    }
                }
            }
            prop_assert!(s.admit(&c, class, now).is_ok() || s.admit(&c, class, now + secs(1.0)).is_ok());
        }

        /// Never sends while a Retry-After is pending, whatever the bucket says.
        #[test]
        fn never_admits_inside_retry_after(
            remaining in proptest::option::of(0u32..300), wait_ms in 1u64..60_000, probe in 0.0f64..1.0,
        ) {
            let c = cfg();
            let mut s = SubscriptionBudget::default();
            let t0 = Instant::now();
            let wait = Duration::from_millis(wait_ms);
            s.observe(&c, CallClass::Write, Observation { remaining, throttled_for: Some(Some(wait)) }, t0);
            let at = t0 + wait.mul_f64(probe);
            prop_assert!(at >= t0 + wait || s.admit(&c, CallClass::Read, at).is_err());
        }

        /// The estimate refills over time but never above capacity.
        #[test]
        fn refill_is_capped(r in 0u32..250, elapsed in 0.0f64..1000.0) {
            let c = cfg();
            let mut s = SubscriptionBudget::default();
            let t0 = Instant::now();
            s.observe(&c, CallClass::Read, Observation { remaining: Some(r), throttled_for: None }, t0);
            let later = t0 + secs(elapsed);
            let mut sent = 0u32;
            while s.admit(&c, CallClass::Read, later).is_ok() {
                sent += 1;
                prop_assert!(sent <= c.read_capacity);
            }
            let expected = (f64::from(r) + elapsed * c.read_refill_per_sec).min(f64::from(c.read_capacity));
            let allowed = (expected - f64::from(c.read_reserve)).max(0.0);
            prop_assert!((f64::from(sent) - allowed).abs() <= 1.0, "sent {} allowed {}", sent, allowed);
        }
    }
}
