//! The fault schedule of one run: a pure function of (scenario, seed, window), so a failing
//! seed reruns exactly the same faults at the same offsets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One kind of fault, or all of them mixed. Every scenario runs the same workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// 429 bursts with Retry-After.
    Throttle,
    /// 5xx answers and dropped connections at a rate.
    Errors,
    /// Long-running operations that fail, or stay InProgress for a while.
    Operations,
    /// Latency spikes.
    Latency,
    /// Another writer changes NSGs, route tables and agent pools between poolnet's GET and PUT.
    Foreign,
    /// poolnet's rules and routes deleted behind its back.
    Deleted,
    /// SIGKILL of an operator replica at random moments.
    Kill,
    /// The leader frozen (SIGSTOP) past its Lease, then resumed.
    Freeze,
    /// kube-apiserver killed and restarted.
    Apiserver,
    /// A webhook replica killed during a burst of pod creations.
    Webhook,
    /// A draw from all of the above.
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::Throttle,
        Scenario::Errors,
        Scenario::Operations,
        Scenario::Latency,
        Scenario::Foreign,
        Scenario::Deleted,
        Scenario::Kill,
        Scenario::Freeze,
        Scenario::Apiserver,
        Scenario::Webhook,
        Scenario::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throttle => "throttle",
            Scenario::Errors => "errors",
            Scenario::Operations => "operations",
            Scenario::Latency => "latency",
            Scenario::Foreign => "foreign",
            Scenario::Deleted => "deleted",
            Scenario::Kill => "kill",
            Scenario::Freeze => "freeze",
            Scenario::Apiserver => "apiserver",
            Scenario::Webhook => "webhook",
            Scenario::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown scenario {s:?}; one of: {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                )
            })
    }
}

/// Which shared ARM resource another writer touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedResource {
    Nsg(usize),
    RouteTable(usize),
    AgentPool(usize),
}

/// What another writer does between poolnet's GET and PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignChange {
    /// Adds (or rewrites) a foreign rule or route of its own, numbered.
    Upsert(u32),
    /// Removes the foreign rule or route it added before, numbered.
    Remove(u32),
    /// Changes an agent pool's node count (someone scaling it).
    Scale(u32),
    /// Rewrites the resource unchanged: only the ETag moves.
    Touch,
}

/// One action of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The next `count` matching requests get 429 with this Retry-After.
    Throttle {
        count: u64,
        retry_after_secs: u64,
        writes_only: bool,
    },
    /// Requests answered with `status` at `probability`, at most `count` of them.
    ServerErrors {
        status: u16,
        probability: f64,
        count: u64,
    },
    /// Connections dropped without an answer, at `probability`, at most `count`.
    Drops { probability: f64, count: u64 },
    /// The next `count` writes start operations that end Failed.
    FailOperations { count: u64 },
    /// The next `count` writes start operations that stay InProgress `ms` longer.
    StallOperations { ms: u64, count: u64 },
    /// `count` requests delayed by `ms` each.
    Latency { ms: u64, count: u64 },
    /// Another writer changes the resource right after poolnet's next GET of it.
    Foreign {
        resource: SharedResource,
        change: ForeignChange,
    },
    /// The driver deletes the `pick`-th poolnet rule of an NSG (through ARM, another client).
    DeleteOwnedRule { nsg: usize, pick: usize },
    /// The driver deletes the `pick`-th poolnet route of a route table.
    DeleteOwnedRoute { table: usize, pick: usize },
    /// SIGKILL of operator replica `replica` (restarted by the supervisor, as a kubelet would).
    Kill { replica: usize },
    /// SIGSTOP of whichever replica leads, `past_lease` longer than the Lease, then SIGCONT.
    FreezeLeader { past_lease: Duration },
    /// kube-apiserver killed, down for `down`, restarted.
    RestartApiserver { down: Duration },
    /// `pods` pod creations at once; a webhook replica is killed after `kill_after` of them.
    WebhookBurst { pods: usize, kill_after: usize },
}

impl Fault {
    /// The row of the report this fault is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Throttle { .. } => "429 burst",
            Fault::ServerErrors { .. } => "5xx",
            Fault::Drops { .. } => "dropped connection",
            Fault::FailOperations { .. } => "failed LRO",
            Fault::StallOperations { .. } => "stuck LRO",
            Fault::Latency { .. } => "latency spike",
            Fault::Foreign { .. } => "foreign writer",
            Fault::DeleteOwnedRule { .. } | Fault::DeleteOwnedRoute { .. } => "deleted behind",
            Fault::Kill { .. } => "replica SIGKILL",
            Fault::FreezeLeader { .. } => "leader frozen",
            Fault::RestartApiserver { .. } => "apiserver restart",
            Fault::WebhookBurst { .. } => "webhook kill in burst",
        }
    }
}

/// One change of the workload, interleaved with the faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Toggles an extra allowed host port of NodePoolNetwork `object`.
    Edit { object: usize },
    /// Deletes NodePoolNetwork `object` (a later `Recreate` brings it back).
    Delete { object: usize },
    /// Creates NodePoolNetwork `object` again with its original spec.
    Recreate { object: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Fault(Fault),
    Change(Change),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from the start of the fault window.
    pub at: Duration,
    pub action: Action,
}

/// The shape of the world the schedule acts on.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub objects: usize,
    pub nsgs: usize,
    pub route_tables: usize,
    pub replicas: usize,
    /// Objects the workload deletes and does not bring back (they hold no policy).
    pub deleted_for_good: &'static [usize],
    /// Objects the workload deletes and creates again (they hold no policy).
    pub recreated: &'static [usize],
    /// Pods of a webhook burst.
    pub burst_pods: usize,
}

/// How many faults of its own kind a scenario draws per minute of window; `Mixed` draws
/// this many in all from every kind.
const FAULTS_PER_MINUTE: f64 = 12.0;
/// SIGKILLs per minute in the `Kill` scenario (the issue asks for ≥ 50 per full run).
const KILLS_PER_MINUTE: f64 = 18.0;

/// The steps of one run, sorted by time: faults of `scenario` and the workload's changes,
/// spread over `window`. Pure: the same arguments give the same steps.
pub fn schedule(scenario: Scenario, seed: u64, window: Duration, shape: &Shape) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_f417);
    let minutes = window.as_secs_f64() / 60.0;
    let mut steps = Vec::new();
    let at = |rng: &mut StdRng, lo: f64, hi: f64| {
        Duration::from_secs_f64(window.as_secs_f64() * rng.gen_range(lo..hi))
    };
    let one = [scenario];
    let kinds: &[Scenario] = match scenario {
        // Every kind but `Mixed` itself (the last of `ALL`).
        Scenario::Mixed => &Scenario::ALL[..Scenario::ALL.len() - 1],
        _ => &one,
    };
    let count = match scenario {
        Scenario::Kill => (KILLS_PER_MINUTE * minutes).round().max(1.0) as usize,
        // A freeze lasts longer than a Lease; an API server restart takes seconds: a few.
        Scenario::Freeze | Scenario::Apiserver => (2.0 * minutes).round().max(1.0) as usize,
        Scenario::Webhook => 1,
        _ => (FAULTS_PER_MINUTE * minutes).round().max(1.0) as usize,
    };
    let mut slow_faults = 0;
    let mut bursts = 0;
    for _ in 0..count {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        // One burst of pods per run: the policies' ranges hold about two bursts' pods.
        if kind == Scenario::Webhook {
            bursts += 1;
            if bursts > 1 {
                continue;
            }
        }
        // Faults that take the system away for a while are spaced out in a mixed run.
        if scenario == Scenario::Mixed
            && matches!(
                kind,
                Scenario::Freeze | Scenario::Apiserver | Scenario::Webhook
            )
        {
            slow_faults += 1;
            if slow_faults > 2 {
                continue;
            }
        }
        let fault = draw(kind, &mut rng, shape);
        // Leave the last sixth of the window free of new faults that need time to play out.
        let when = at(&mut rng, 0.0, 0.85);
        steps.push(Step {
            at: when,
            action: Action::Fault(fault),
        });
    }
    // The workload: an edit every few seconds, and delete-then-recreate of objects.
    let edits = (10.0 * minutes).round().max(1.0) as usize;
    for _ in 0..edits {
        let object = rng.gen_range(0..shape.objects);
        let when = at(&mut rng, 0.0, 0.9);
        steps.push(Step {
            at: when,
            action: Action::Change(Change::Edit { object }),
        });
    }
    // Objects deleted for good (a DetachOnDelete object leaves its Azure parts behind), and
    // objects deleted and created again with the same spec.
    for &object in shape.deleted_for_good {
        let gone = at(&mut rng, 0.05, 0.6);
        steps.push(Step {
            at: gone,
            action: Action::Change(Change::Delete { object }),
        });
    }
    for &object in shape.recreated {
        let gone = at(&mut rng, 0.05, 0.5);
        let back = gone + at(&mut rng, 0.1, 0.35);
        steps.push(Step {
            at: gone,
            action: Action::Change(Change::Delete { object }),
        });
        steps.push(Step {
            at: back,
            action: Action::Change(Change::Recreate { object }),
        });
    }
    steps.sort_by_key(|s| s.at);
    // A deleted object is not edited until it is back.
    let mut deleted = std::collections::BTreeSet::new();
    steps.retain(|s| match s.action {
        Action::Change(Change::Delete { object }) => deleted.insert(object),
        Action::Change(Change::Recreate { object }) => deleted.remove(&object),
        Action::Change(Change::Edit { object }) => !deleted.contains(&object),
        Action::Fault(_) => true,
    });
    steps
}

fn draw(kind: Scenario, rng: &mut StdRng, shape: &Shape) -> Fault {
    match kind {
        Scenario::Throttle => Fault::Throttle {
            count: rng.gen_range(5..40),
            retry_after_secs: rng.gen_range(1..6),
            writes_only: rng.gen_bool(0.5),
        },
        Scenario::Errors => {
            if rng.gen_bool(0.75) {
                Fault::ServerErrors {
                    status: [500, 502, 503][rng.gen_range(0..3)],
                    probability: rng.gen_range(0.1..0.5),
                    count: rng.gen_range(5..30),
                }
            } else {
                Fault::Drops {
                    probability: rng.gen_range(0.1..0.4),
                    count: rng.gen_range(3..15),
                }
            }
        }
        Scenario::Operations => {
            if rng.gen_bool(0.5) {
                Fault::FailOperations {
                    count: rng.gen_range(1..6),
                }
            } else {
                Fault::StallOperations {
                    ms: rng.gen_range(2_000..15_000),
                    count: rng.gen_range(1..6),
                }
            }
        }
        Scenario::Latency => Fault::Latency {
            ms: rng.gen_range(500..4_000),
            count: rng.gen_range(5..40),
        },
        Scenario::Foreign => {
            let resource = match rng.gen_range(0..3) {
                0 => SharedResource::Nsg(rng.gen_range(0..shape.nsgs)),
                1 => SharedResource::RouteTable(rng.gen_range(0..shape.route_tables)),
                _ => SharedResource::AgentPool(rng.gen_range(0..shape.objects)),
            };
            let change = match resource {
                SharedResource::AgentPool(_) => {
                    if rng.gen_bool(0.7) {
                        ForeignChange::Scale(rng.gen_range(1..6))
                    } else {
                        ForeignChange::Touch
                    }
                }
                _ => match rng.gen_range(0..10) {
                    0..=4 => ForeignChange::Upsert(rng.gen_range(0..4)),
                    5..=7 => ForeignChange::Remove(rng.gen_range(0..4)),
                    _ => ForeignChange::Touch,
                },
            };
            Fault::Foreign { resource, change }
        }
        Scenario::Deleted => {
            if rng.gen_bool(0.7) {
                Fault::DeleteOwnedRule {
                    nsg: rng.gen_range(0..shape.nsgs),
                    pick: rng.gen_range(0..16),
                }
            } else {
                Fault::DeleteOwnedRoute {
                    table: rng.gen_range(0..shape.route_tables),
                    pick: rng.gen_range(0..4),
                }
            }
        }
        Scenario::Kill => Fault::Kill {
            replica: rng.gen_range(0..shape.replicas),
        },
        Scenario::Freeze => Fault::FreezeLeader {
            past_lease: Duration::from_millis(rng.gen_range(1_000..5_000)),
        },
        Scenario::Apiserver => Fault::RestartApiserver {
            down: Duration::from_millis(rng.gen_range(500..4_000)),
        },
        Scenario::Webhook => Fault::WebhookBurst {
            pods: shape.burst_pods,
            kill_after: rng.gen_range(shape.burst_pods / 5..shape.burst_pods * 4 / 5 + 1),
        },
        Scenario::Mixed => unreachable!("draw is called per kind"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        objects: 20,
        nsgs: 4,
        route_tables: 2,
        replicas: 2,
        deleted_for_good: &[4],
        recreated: &[13],
        burst_pods: 1000,
    };

    fn faults(steps: &[Step]) -> Vec<&Fault> {
        steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Fault(f) => Some(f),
                Action::Change(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let w = Duration::from_secs(60);
        for scenario in Scenario::ALL {
            assert_eq!(
                schedule(scenario, 7, w, &SHAPE),
                schedule(scenario, 7, w, &SHAPE)
            );
        }
        assert_ne!(
            schedule(Scenario::Mixed, 7, w, &SHAPE),
            schedule(Scenario::Mixed, 8, w, &SHAPE)
        );
    }

    #[test]
    fn steps_are_sorted_inside_the_window_and_faults_are_of_the_scenario() {
        let w = Duration::from_secs(90);
        for scenario in Scenario::ALL {
            for seed in 0..20 {
                let steps = schedule(scenario, seed, w, &SHAPE);
                assert!(steps.windows(2).all(|p| p[0].at <= p[1].at));
                assert!(steps.iter().all(|s| s.at < w), "{scenario} {seed}");
                let fs = faults(&steps);
                assert!(!fs.is_empty(), "{scenario} {seed}: no fault");
                if scenario != Scenario::Mixed {
                    let kinds: std::collections::BTreeSet<_> =
                        fs.iter().map(|f| f.kind()).collect();
                    let allowed: &[&str] = match scenario {
                        Scenario::Errors => &["5xx", "dropped connection"],
                        Scenario::Operations => &["failed LRO", "stuck LRO"],
                        Scenario::Deleted => &["deleted behind"],
                        _ => &[fs[0].kind()],
                    };
                    assert!(
                        kinds.iter().all(|k| allowed.contains(k)),
                        "{scenario}: {kinds:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn at_most_one_pod_burst_per_run() {
        for seed in 0..200 {
            let steps = schedule(Scenario::Mixed, seed, Duration::from_secs(90), &SHAPE);
            let bursts = faults(&steps)
                .iter()
                .filter(|f| matches!(f, Fault::WebhookBurst { .. }))
                .count();
            assert!(bursts <= 1, "seed {seed}: {bursts} bursts");
        }
    }

    #[test]
    fn a_kill_run_of_a_minute_kills_often_enough_for_fifty_in_three_runs() {
        let kills = faults(&schedule(
            Scenario::Kill,
            1,
            Duration::from_secs(60),
            &SHAPE,
        ))
        .len();
        assert!(kills * 3 >= 50, "{kills} kills");
    }

    #[test]
    fn deleted_objects_are_not_edited_while_gone_and_only_the_recreated_come_back() {
        for seed in 0..50 {
            let steps = schedule(Scenario::Mixed, seed, Duration::from_secs(60), &SHAPE);
            let mut gone = std::collections::BTreeSet::new();
            let mut recreated = Vec::new();
            for s in &steps {
                match s.action {
                    Action::Change(Change::Delete { object }) => assert!(gone.insert(object)),
                    Action::Change(Change::Recreate { object }) => {
                        assert!(gone.remove(&object));
                        recreated.push(object);
                    }
                    Action::Change(Change::Edit { object }) => assert!(!gone.contains(&object)),
                    Action::Fault(_) => {}
                }
            }
            assert_eq!(recreated, [13], "seed {seed}");
            assert_eq!(gone.into_iter().collect::<Vec<_>>(), [4], "seed {seed}");
        }
    }
}
