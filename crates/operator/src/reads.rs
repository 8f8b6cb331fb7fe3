//! Reads of the ARM resources a single object reads and writes alone (its agent pool and its
//! ASGs), kept until its next drift check (docs/arm-traffic.md).
//!
//! Between two drift checks an object is reconciled again for many reasons: a requeue while
//! an operation runs, a wake-up after a batched NSG write, a host-port trigger. Each used to
//! read its agent pool and ASGs again. Now a reconcile whose [`Freshness`] allows it reuses
//! the last answer, as the shared NSG writer reuses the NSG it last read or wrote:
//! - only answers of settled resources are kept (an agent pool that is updating is read on
//!   every reconcile, which is how its operation is followed);
//! - a write poolnet made replaces the kept answer with ARM's reply, and a failed write
//!   forgets it, so the next reconcile reads again;
//! - a drift check ([`Freshness::ReadWithin`]) reuses only what is younger than its bound,
//!   so every resource is still read once per resync period, and a change made by hand is
//!   seen within a period, as before.
//!
//! Writes stay conditional (`If-Match` with the kept ETag): a kept answer that is out of
//! date makes the write fail with 412, which forgets it.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poolnet_arm::{ArmError, Etagged, ResourceId};

use crate::writers::Freshness;

#[derive(Debug)]
struct Kept {
    value: Arc<dyn Any + Send + Sync>,
    at: Instant,
}

/// Kept answers, by lower-cased resource ID.
#[derive(Debug)]
pub struct Reads {
    kept: Mutex<HashMap<String, Kept>>,
    /// No answer is used past this age, whatever the freshness (the resync period): a
    /// process that stopped leading and leads again must not act on what it kept before.
    max_age: Duration,
}

impl Default for Reads {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

fn key(id: &ResourceId) -> String {
    id.to_string().to_ascii_lowercase()
}

impl Reads {
    pub fn new(max_age: Duration) -> Self {
        Self {
            kept: Mutex::new(HashMap::new()),
            max_age,
        }
    }

    /// The kept answer for `id` when `freshness` allows it (`Cached`: any kept answer, as the
    /// reconcile runs within its resync period; `ReadWithin(age)`: one younger than `age`;
    /// `Reread`: none); otherwise `fetch`'s, kept when `settled` says the resource is not in
    /// the middle of an operation.
    pub async fn read<T, F>(
        &self,
        id: &ResourceId,
        freshness: Freshness,
        settled: impl Fn(&T) -> bool,
        fetch: F,
    ) -> Result<Etagged<T>, ArmError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<Etagged<T>, ArmError>>,
    {
        if let Some(kept) = self.kept::<T>(id, freshness) {
            return Ok(kept);
        }
        match fetch.await {
            Ok(read) => {
                if settled(&read.resource) {
                    self.keep(id, read.clone());
                } else {
                    self.forget(id);
                }
                Ok(read)
            }
            Err(e) => {
                self.forget(id);
                Err(e)
            }
        }
    }

    fn kept<T: Clone + Send + Sync + 'static>(
        &self,
        id: &ResourceId,
        freshness: Freshness,
    ) -> Option<Etagged<T>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let k = kept.get(&key(id))?;
        let fresh = k.at.elapsed() < self.max_age
            && match freshness {
                Freshness::Cached => true,
                Freshness::Reread => false,
                Freshness::ReadWithin(age) => k.at.elapsed() < age,
            };
        if !fresh {
            return None;
        }
        k.value.downcast_ref::<Etagged<T>>().cloned()
    }

    /// Keep `value` as the answer for `id` (ARM's reply to a write poolnet made).
    pub fn keep<T: Send + Sync + 'static>(&self, id: &ResourceId, value: Etagged<T>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.insert(
            key(id),
            Kept {
                value: Arc::new(value),
                at: Instant::now(),
            },
        );
    }

    /// Read `id` again next time (a write failed or is running, the resource is gone).
    pub fn forget(&self, id: &ResourceId) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.remove(&key(id));
    }

    /// How many answers are kept (memory figures).
    pub fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn id(name: &str) -> ResourceId {
        format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/{name}")
            .parse()
            .unwrap()
    }

    fn answer(v: &str) -> Etagged<String> {
        Etagged {
            resource: v.to_string(),
            etag: Some(format!("etag-{v}")),
        }
    }

    async fn read(
        reads: &Reads,
        calls: &AtomicUsize,
        name: &str,
        freshness: Freshness,
        value: &str,
    ) -> String {
        reads
            .read(&id(name), freshness, |v: &String| v != "updating", async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(answer(value))
            })
            .await
            .unwrap()
            .resource
    }

    #[tokio::test]
    async fn a_settled_answer_is_reused_until_the_drift_check_bound() {
        let reads = Reads::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(
            read(&reads, &calls, "a", Freshness::Cached, "v1").await,
            "v1"
        );
        assert_eq!(
            read(&reads, &calls, "A", Freshness::Cached, "v2").await,
            "v1"
        );
        assert_eq!(
            read(
                &reads,
                &calls,
                "a",
                Freshness::ReadWithin(Duration::from_secs(60)),
                "v2"
            )
            .await,
            "v1"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The drift check's bound has passed: read again.
        assert_eq!(
            read(
                &reads,
                &calls,
                "a",
                Freshness::ReadWithin(Duration::ZERO),
                "v2"
            )
            .await,
            "v2"
        );
        assert_eq!(
            read(&reads, &calls, "a", Freshness::Reread, "v3").await,
            "v3"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_resource_in_an_operation_is_read_every_time() {
        let reads = Reads::default();
        let calls = AtomicUsize::new(0);
        read(&reads, &calls, "a", Freshness::Cached, "updating").await;
        read(&reads, &calls, "a", Freshness::Cached, "updating").await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(reads.is_empty());
    }

    #[tokio::test]
    async fn a_write_replaces_the_answer_and_a_failure_forgets_it() {
        let reads = Reads::default();
        let calls = AtomicUsize::new(0);
        read(&reads, &calls, "a", Freshness::Cached, "v1").await;
        reads.keep(&id("a"), answer("written"));
        assert_eq!(
            read(&reads, &calls, "a", Freshness::Cached, "v9").await,
            "written"
        );
        reads.forget(&id("a"));
        assert_eq!(
            read(&reads, &calls, "a", Freshness::Cached, "v2").await,
            "v2"
        );
        let failed: Result<Etagged<String>, ArmError> = reads
            .read(&id("a"), Freshness::Reread, |_| true, async {
                Err(ArmError::NotFound {
                    id: "a".into(),
                    code: "NotFound".into(),
                    message: String::new(),
                })
            })
            .await;
        assert!(failed.is_err());
        assert!(reads.is_empty());
        // Another type under the same ID is not mistaken for it.
        reads.keep(&id("b"), answer("s"));
        assert!(reads.kept::<u32>(&id("b"), Freshness::Cached).is_none());
    }
}
