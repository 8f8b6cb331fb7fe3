//! First writes of a shared NSG, batched (docs/arm-traffic.md).
//!
//! Objects that converge together (an operator start, a GitOps sync of many pools) reach
//! their NSG write one by one, each once its own ASG exists. Written as they come, an NSG
//! shared by ten objects is written ten times. Instead, an object whose write the NSG still
//! needs *holds* it while other objects are on their way into the same union
//! (`poolnet_plan::desired::joining`): its rules are recorded, its status says what it waits
//! for, and it requeues. The last one to arrive writes the union for all of them and wakes
//! the ones holding, which find their rules written and nothing left to do.
//!
//! A hold never waits for long: it ends once no object has arrived for [`QUIET`] (one that
//! is stuck without being `Stalled`) or once the NSG has been held for [`LONGEST`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use tokio::sync::broadcast;

/// A hold ends when no other object has arrived for this long.
pub const QUIET: Duration = Duration::from_secs(20);
/// A hold of one NSG ends this long after it began, whoever is still on the way.
pub const LONGEST: Duration = Duration::from_secs(120);

/// Woken objects buffered per subscriber.
const WAKE_BUFFER: usize = 4096;

/// One NSG being held.
#[derive(Debug)]
struct Episode {
    started: Instant,
    /// When the last object arrived (fewer on the way, or a new one holding).
    arrived: Instant,
    /// Objects on the way at the last look.
    on_the_way: usize,
    /// Objects holding their write for this NSG.
    holding: BTreeSet<String>,
}

/// The NSGs being held, by lower-cased ID; see the module docs.
#[derive(Debug)]
pub struct Batches {
    episodes: Mutex<HashMap<String, Episode>>,
    wake: broadcast::Sender<String>,
}

impl Default for Batches {
    fn default() -> Self {
        Self {
            episodes: Mutex::new(HashMap::new()),
            wake: broadcast::channel(WAKE_BUFFER).0,
        }
    }
}

impl Batches {
    /// Whether `me` should hold its write of `nsg` while `on_the_way` other objects are still
    /// coming; `Some(wait)` is how long to wait at most before asking again.
    pub fn hold(&self, nsg: &str, me: &str, on_the_way: usize) -> Option<Duration> {
        self.hold_at(nsg, me, on_the_way, Instant::now())
    }

    fn hold_at(&self, nsg: &str, me: &str, on_the_way: usize, now: Instant) -> Option<Duration> {
        if on_the_way == 0 {
            return None;
        }
        let mut all = self.episodes.lock().unwrap_or_else(|e| e.into_inner());
        let e = all
            .entry(nsg.to_ascii_lowercase())
            .or_insert_with(|| Episode {
                started: now,
                arrived: now,
                on_the_way,
                holding: BTreeSet::new(),
            });
        if e.holding.insert(me.to_string()) || on_the_way < e.on_the_way {
            e.arrived = now;
        }
        e.on_the_way = on_the_way;
        let quiet_left = QUIET.saturating_sub(now.saturating_duration_since(e.arrived));
        let longest_left = LONGEST.saturating_sub(now.saturating_duration_since(e.started));
        let left = quiet_left.min(longest_left);
        if left.is_zero() {
            // Written now by `me`; `written` ends the episode and wakes the others.
            return None;
        }
        Some(left)
    }

    /// `me` found `nsg` holding everything the union wants (it wrote it, or someone did):
    /// the objects holding for it are woken to see their rules written.
    pub fn written(&self, nsg: &str, me: &str) {
        let ended = {
            let mut all = self.episodes.lock().unwrap_or_else(|e| e.into_inner());
            all.remove(&nsg.to_ascii_lowercase())
        };
        for name in ended.into_iter().flat_map(|e| e.holding) {
            if name != me {
                // No subscriber (a preview context): nobody to wake.
                let _ = self.wake.send(name);
            }
        }
    }

    /// Names of the objects to reconcile again because the NSG they held for was written (a
    /// missed wake-up costs at most the hold's own requeue).
    pub fn woken(&self) -> BoxStream<'static, String> {
        crate::controller::broadcast_stream(self.wake.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const NSG: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg";

    #[test]
    fn nobody_on_the_way_means_write_now() {
        let b = Batches::default();
        assert_eq!(b.hold(NSG, "a", 0), None);
    }

    #[test]
    fn a_hold_lasts_while_objects_keep_arriving_and_ends_when_they_stop() {
        let b = Batches::default();
        let t0 = Instant::now();
        assert_eq!(b.hold_at(NSG, "a", 3, t0), Some(QUIET));
        // Ten seconds later b arrives (one fewer on the way): the quiet clock restarts.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.hold_at(NSG, "b", 2, t1), Some(QUIET));
        // a asks again, nobody new: what is left of the quiet period.
        let t2 = t1 + Duration::from_secs(15);
        assert_eq!(b.hold_at(NSG, "a", 2, t2), Some(Duration::from_secs(5)));
        // Nobody arrived for QUIET: write.
        assert_eq!(b.hold_at(NSG, "a", 2, t1 + QUIET), None);
    }

    #[test]
    fn a_hold_never_outlasts_longest_however_busy() {
        let b = Batches::default();
        let t0 = Instant::now();
        let mut left = 1_000;
        let mut t = t0;
        let mut i = 0;
        while b.hold_at(NSG, &format!("o{i}"), left, t).is_some() {
            i += 1;
            left -= 1;
            t += Duration::from_secs(5);
            assert!(t <= t0 + LONGEST, "still holding after {:?}", t - t0);
        }
        assert_eq!(t, t0 + LONGEST);
    }

    #[tokio::test]
    async fn the_write_wakes_everyone_holding_but_the_writer() {
        let b = Batches::default();
        let mut woken = b.woken();
        b.hold(NSG, "a", 2);
        b.hold(&NSG.to_uppercase(), "b", 1);
        b.written(NSG, "b");
        assert_eq!(woken.next().await.as_deref(), Some("a"));
        // The episode is over: a later hold starts afresh, a later write wakes nobody.
        b.written(NSG, "c");
        assert_eq!(b.hold(NSG, "c", 1), Some(QUIET));
    }
}
