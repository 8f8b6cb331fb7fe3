use super::*;

fn config() -> LeaseConfig {
    LeaseConfig {
        namespace: "poolnet-system".into(),
        name: "poolnet-operator".into(),
        identity: "pod-a".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

#[test]
fn timings_must_nest() {
    assert!(config().validate().is_ok());
    let bad = [
        LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..config()
        },
        LeaseConfig {
            retry_period: Duration::from_secs(10),
            ..config()
        },
        LeaseConfig {
            retry_period: Duration::ZERO,
            ..config()
        },
        LeaseConfig {
            lease_duration: Duration::from_millis(15_500),
            ..config()
        },
        LeaseConfig {
            identity: String::new(),
            ..config()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

#[test]
fn holder_ignores_empty_identity() {
    let mut lease = Lease::default();
    assert_eq!(holder_of(&lease), None);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(String::new()),
        ..LeaseSpec::default()
    });
    assert_eq!(holder_of(&lease), None);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some("pod-b".into()),
        ..LeaseSpec::default()
    });
    assert_eq!(holder_of(&lease), Some("pod-b"));
}

#[tokio::test]
async fn work_runs_only_while_leading() {
    let (tx, rx) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();

    /// Reports its own drop: proof that losing leadership cancels the work.
    struct OnDrop(tokio::sync::mpsc::UnboundedSender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    let runner = tokio::spawn(run_while_leader(
        rx,
        async {
            let _ = stopped.await;
        },
        move || {
            let started_tx = started_tx.clone();
            let guard = OnDrop(dropped_tx.clone());
            async move {
                let _guard = guard;
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
                Ok(())
            }
        },
    ));

    tx.send_replace(true);
    started.recv().await.expect("work starts on leadership");
    tx.send_replace(false);
    dropped.recv().await.expect("work is cancelled on loss");
    assert!(
        started.try_recv().is_err(),
        "not restarted while not leading"
    );
    tx.send_replace(true);
    started
        .recv()
        .await
        .expect("work restarts when leading again");
    stop.send(()).expect("runner alive");
    runner.await.expect("join").expect("clean shutdown");
    dropped.recv().await.expect("work dropped on shutdown");
}

#[tokio::test]
async fn a_vanished_election_stops_the_work_with_an_error() {
    let (tx, rx) = watch::channel(true);
    let runner = tokio::spawn(run_while_leader(rx, std::future::pending(), || async {
        std::future::pending::<()>().await;
        Ok(())
    }));
    // `Leadership` sets `false` before dropping the sender; either way the work stops.
    drop(tx);
    let err = runner.await.expect("join").expect_err("election gone");
    assert!(
        format!("{err:#}").contains("leader election stopped"),
        "{err:#}"
    );
}

#[tokio::test]
async fn work_errors_are_returned() {
    let (_tx, rx) = watch::channel(true);
    let err = run_while_leader(rx, std::future::pending(), || async {
        anyhow::bail!("controller failed")
    })
    .await
    .expect_err("work error");
    assert_eq!(err.to_string(), "controller failed");
}

#[tokio::test]
async fn always_leader_reports_leadership() {
    let metrics = Metrics::new();
    let handle = LeaderHandle::always_leader(&metrics);
    assert!(handle.is_leader());
    assert!(metrics.render().contains("poolnet_leader 1"));
    let mut rx = handle.subscribe();
    assert!(*rx.borrow_and_update());
    handle.release().await.expect("nothing to release");
}
