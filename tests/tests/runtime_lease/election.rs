//! Leader election on a real Lease: one leader, takeover after expiry, prompt handover on
//! release, conflicts retried; checked by the candidates' beliefs and the Lease's history.

use super::support::*;

/// Checks the candidates' own beliefs on every change: never two leaders at once.
struct Exclusivity {
    seen: Arc<Mutex<Beliefs>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Beliefs {
    /// Every candidate that believed it led at some point.
    led: BTreeSet<String>,
    violations: Vec<String>,
}

impl Exclusivity {
    fn watch(candidates: &[&Candidate]) -> Self {
        let mut channels: Vec<(String, watch::Receiver<bool>)> = candidates
            .iter()
            .map(|c| (c.id.clone(), c.handle.subscribe()))
            .collect();
        let seen = Arc::new(Mutex::new(Beliefs::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let leaders: Vec<String> = channels
                    .iter()
                    .filter(|(_, rx)| *rx.borrow())
                    .map(|(id, _)| id.clone())
                    .collect();
                {
                    let mut beliefs = lock(&record);
                    beliefs.led.extend(leaders.iter().cloned());
                    if leaders.len() > 1 {
                        beliefs.violations.push(leaders.join(" and "));
                    }
                }
                if channels.is_empty() {
                    return;
                }
                let (changed, index, rest) = futures::future::select_all(
                    channels.iter_mut().map(|(_, rx)| Box::pin(rx.changed())),
                )
                .await;
                drop(rest);
                if changed.is_err() {
                    channels.remove(index);
                }
            }
        });
        Self { seen, task }
    }

    fn check(&self) -> Result<()> {
        let beliefs = lock(&self.seen);
        ensure!(
            beliefs.violations.is_empty(),
            "two candidates believed they led at once: {:?}",
            beliefs.violations
        );
        Ok(())
    }

    fn led(&self) -> BTreeSet<String> {
        lock(&self.seen).led.clone()
    }
}

impl Drop for Exclusivity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every version of one Lease as the API server stored it, in order.
struct LeaseHistory {
    records: Arc<Mutex<Vec<LeaseSpec>>>,
    task: JoinHandle<()>,
}

impl LeaseHistory {
    /// Starts watching from the current collection version, so no write is missed.
    async fn record(api: &Api<Lease>, name: &str) -> Result<Self> {
        let by_name = format!("metadata.name={name}");
        let list = api.list(&ListParams::default().fields(&by_name)).await?;
        let version = list.metadata.resource_version.unwrap_or_default();
        let records = Arc::new(Mutex::new(
            list.items
                .into_iter()
                .map(|l| l.spec.unwrap_or_default())
                .collect::<Vec<_>>(),
        ));
        let mut events = api
            .watch(&WatchParams::default().fields(&by_name), &version)
            .await?
            .boxed();
        let sink = records.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = events.try_next().await {
                if let WatchEvent::Added(lease) | WatchEvent::Modified(lease) = event {
                    lock(&sink).push(lease.spec.unwrap_or_default());
                }
            }
        });
        Ok(Self { records, task })
    }

    fn records(&self) -> Vec<LeaseSpec> {
        lock(&self.records).clone()
    }

    /// Versions written while `id` held the Lease (its acquisition and renewals).
    fn held_by(&self, id: &str) -> usize {
        lock(&self.records)
            .iter()
            .filter(|r| holder(r) == Some(id))
            .count()
    }

    /// Holders in order of their tenure (`None` for a released, free Lease).
    fn tenures(&self) -> Vec<Option<String>> {
        let mut tenures: Vec<Option<String>> = Vec::new();
        for r in self.records() {
            let h = holder(&r).map(String::from);
            if tenures.last() != Some(&h) {
                tenures.push(h);
            }
        }
        tenures
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Lease's history never shows a live holder replaced early: when the holder changes
/// from one candidate to another directly (no release in between), the newcomer acquired
/// no earlier than the old record's `renewTime` plus its duration. All candidates run on
/// this machine, so the timestamps share one clock; the slack covers the API's microsecond
/// precision.
fn check_handovers(history: &[LeaseSpec]) -> Result<usize> {
    let slack_us = 1_000;
    let mut takeovers = 0;
    for pair in history.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let (Some(from), Some(to)) = (holder(old), holder(new)) else {
            continue;
        };
        if from == to {
            continue;
        }
        let renewed = old
            .renew_time
            .as_ref()
            .context("a held Lease has a renewTime")?
            .0;
        let acquired = new
            .acquire_time
            .as_ref()
            .context("a taken Lease has an acquireTime")?
            .0;
        let duration_us = i64::from(old.lease_duration_seconds.unwrap_or(0)) * 1_000_000;
        let waited_us = acquired.as_microsecond() - renewed.as_microsecond();
        ensure!(
            waited_us + slack_us >= duration_us,
            "{to} took the Lease from {from} {waited_us} µs after its last renewal, before \
             its {duration_us} µs duration ran out"
        );
        ensure!(
            new.lease_transitions == old.lease_transitions.map(|t| t + 1),
            "a takeover counts as a transition: {:?} -> {:?}",
            old.lease_transitions,
            new.lease_transitions
        );
        takeovers += 1;
    }
    Ok(takeovers)
}

/// Two candidates racing for Lease `name` from the start, with both views of exclusivity.
async fn race(
    env: &TestEnv,
    name: &str,
    lease_secs: u64,
) -> Result<(LeaseHistory, Candidate, Candidate, Exclusivity)> {
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, name).await?;
    let a = Candidate::start(env.client(), config(env.namespace(), name, "a", lease_secs))?;
    let b = Candidate::start(env.client(), config(env.namespace(), name, "b", lease_secs))?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a leader", || a.is_leader() || b.is_leader()).await?;
    Ok((history, a, b, beliefs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_elect_exactly_one_leader() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let (history, a, b, beliefs) = race(&env, "pair", 10).await?;
    let (leader, other) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    // Several renewals while the other candidate keeps trying every retry period.
    wait_until("five renewals", || history.held_by(&leader.id) >= 5).await?;

    beliefs.check()?;
    ensure!(leader.is_leader() && !other.is_leader());
    let lease = leases.get("pair").await?;
    let spec = lease.spec.unwrap_or_default();
    assert_eq!(holder(&spec), Some(leader.id.as_str()));
    assert_eq!(spec.lease_duration_seconds, Some(10));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(leader.metrics.render().contains("poolnet_leader 1"));
    assert!(other.metrics.render().contains("poolnet_leader 0"));
    assert_eq!(check_handovers(&history.records())?, 0);
    assert_eq!(history.tenures(), [Some(leader.id.clone())]);

    a.handle.release().await?;
    b.handle.release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_stops_renewing_is_replaced_once_its_lease_expires() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, "crash").await?;
    let a = Candidate::start(env.client(), config(env.namespace(), "crash", "a", 2))?;
    wait_until("a leads", || a.is_leader()).await?;
    let b = Candidate::start(env.client(), config(env.namespace(), "crash", "b", 2))?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a renews while b waits", || history.held_by("a") >= 3).await?;
    ensure!(!b.is_leader());

    // A crash: the elector stops without releasing. Its subscribers still learn it no
    // longer leads.
    let mut a_leads = a.handle.subscribe();
    drop(a.handle);
    while a_leads.changed().await.is_ok() {}
    ensure!(
        !*a_leads.borrow(),
        "an aborted elector retracts its leadership"
    );

    wait_until("b takes over", || b.is_leader()).await?;
    // The history is a watch of the Lease: it may see b's first write a moment after b does.
    wait_until("the history records b's write", || {
        history.held_by("b") >= 1
    })
    .await?;
    beliefs.check()?;
    assert_eq!(
        history.tenures(),
        [Some("a".to_string()), Some("b".to_string())]
    );
    assert_eq!(check_handovers(&history.records())?, 1);
    assert_eq!(
        leases
            .get("crash")
            .await?
            .spec
            .and_then(|s| s.lease_transitions),
        Some(1)
    );
    b.handle.release().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_on_shutdown_hands_over_at_once() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let history = LeaseHistory::record(&leases, "handover").await?;
    // A lease far longer than WAIT: b can only lead within WAIT if a really released.
    let lease_secs = 3 * WAIT.as_secs();
    let a = Candidate::start(
        env.client(),
        config(env.namespace(), "handover", "a", lease_secs),
    )?;
    wait_until("a leads", || a.is_leader()).await?;
    let b = Candidate::start(
        env.client(),
        config(env.namespace(), "handover", "b", lease_secs),
    )?;
    let beliefs = Exclusivity::watch(&[&a, &b]);
    wait_until("a renews while b waits", || history.held_by("a") >= 3).await?;

    let a_leads = a.handle.subscribe();
    a.handle.release().await?;
    ensure!(!*a_leads.borrow(), "a stepped down before releasing");
    wait_until("b takes over", || b.is_leader()).await?;

    beliefs.check()?;
    assert_eq!(
        history.tenures(),
        [Some("a".to_string()), None, Some("b".to_string())]
    );
    let lease = leases.get("handover").await?.spec.unwrap_or_default();
    assert_eq!(lease.lease_transitions, Some(1));
    b.handle.release().await?;
    let released = leases.get("handover").await?.spec.unwrap_or_default();
    assert_eq!(holder(&released), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_are_retried_without_a_second_leader() -> Result<()> {
    let env = env().await?;
    let leases: Api<Lease> = env.api();
    let (history, a, b, beliefs) = race(&env, "contended", 10).await?;
    let leader = if a.is_leader() { &a } else { &b };

    // Someone else (here: a label-happy tool) keeps changing the Lease, so the leader's
    // cached resourceVersion is stale at almost every renewal and the API server answers
    // 409 Conflict.
    let meddler = {
        let leases = leases.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                let patch = json!({ "metadata": { "annotations": { "example.test/touched": n.to_string() } } });
                leases
                    .patch("contended", &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        })
    };
    let renewals_before = history.held_by(&leader.id);
    wait_until("five conflicts", || leader.conflicts() >= 5).await?;
    wait_until("renewals despite conflicts", || {
        history.held_by(&leader.id) >= renewals_before + 5
    })
    .await?;
    meddler.abort();

    beliefs.check()?;
    assert_eq!(
        beliefs.led(),
        BTreeSet::from([leader.id.clone()]),
        "the leader kept the Lease through the conflicts"
    );
    assert!(leader.is_leader());
    assert_eq!(history.tenures(), [Some(leader.id.clone())]);
    a.handle.release().await?;
    b.handle.release().await?;
    Ok(())
}

/// Fencing: the ARM write gate the elector keeps is open exactly while it leads, within the
/// renew deadline of its last renew, and shut once it releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_gate_is_open_only_while_the_lease_is_held() -> Result<()> {
    let env = env().await?;
    let gate = poolnet_arm::WriteGate::closed();
    ensure!(gate.check().is_err(), "closed before leading");
    let elector = LeaderElector::new(
        env.client(),
        config(env.namespace(), "fenced", "a", 2),
        Arc::new(Metrics::new()),
    )?
    .with_write_gate(gate.clone());
    let handle = elector.spawn();
    wait_until("a leads", || handle.is_leader()).await?;
    // Renewed every retry period, so it stays open across several renew deadlines (1.5 s).
    for _ in 0..8 {
        ensure!(gate.check().is_ok(), "the gate closed while a leads");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    handle.release().await?;
    ensure!(gate.check().is_err(), "the gate is open after the release");
    Ok(())
}
