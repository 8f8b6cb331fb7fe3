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

/// A stand-in API server holding one Lease, with the calls the elector makes: GET, create
/// (POST) and replace (PUT, refused with 409 unless the `resourceVersion` matches).
#[derive(Clone, Default)]
struct FakeApi {
    lease: Arc<std::sync::Mutex<Option<Lease>>>,
}

impl FakeApi {
    /// Serves on 127.0.0.1 and returns a client for it.
    async fn start() -> (Self, Client) {
        use axum::response::IntoResponse;

        async fn answer(
            axum::extract::State(api): axum::extract::State<FakeApi>,
            method: axum::http::Method,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let (code, body) = api.answer(&method, &body);
            (
                axum::http::StatusCode::from_u16(code).expect("status"),
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }

        let api = FakeApi::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(answer).with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let config = kube::Config::new(url.parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        (api, client)
    }

    fn answer(&self, method: &axum::http::Method, body: &[u8]) -> (u16, String) {
        use axum::http::Method;
        let failure = |code: u16, reason: &str| {
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": reason, "reason": reason, "code": code,
            });
            (code, status.to_string())
        };
        let mut stored = self.lease.lock().expect("lock");
        let sent = || serde_json::from_slice::<Lease>(body).expect("a Lease");
        match *method {
            Method::GET => match &*stored {
                Some(lease) => (200, serde_json::to_string(lease).expect("json")),
                None => failure(404, "NotFound"),
            },
            Method::POST if stored.is_some() => failure(409, "AlreadyExists"),
            Method::POST => {
                let mut lease = sent();
                lease.metadata.resource_version = Some("1".into());
                *stored = Some(lease.clone());
                (201, serde_json::to_string(&lease).expect("json"))
            }
            Method::PUT => {
                let mut lease = sent();
                let Some(current) = &*stored else {
                    return failure(404, "NotFound");
                };
                if current.metadata.resource_version != lease.metadata.resource_version {
                    return failure(409, "Conflict");
                }
                lease.metadata.resource_version = Some(next_version(current));
                *stored = Some(lease.clone());
                (200, serde_json::to_string(&lease).expect("json"))
            }
            _ => failure(405, "MethodNotAllowed"),
        }
    }

    /// Another replica takes the Lease over (as after this one's lease expired).
    fn take_over(&self, holder: &str) {
        let mut stored = self.lease.lock().expect("lock");
        let lease = stored.as_mut().expect("a Lease");
        lease.metadata.resource_version = Some(next_version(lease));
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(holder.into());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }

    fn holder(&self) -> Option<String> {
        let stored = self.lease.lock().expect("lock");
        stored.as_ref().and_then(holder_of).map(str::to_owned)
    }
}

fn next_version(lease: &Lease) -> String {
    let current: u64 = lease
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (current + 1).to_string()
}

/// Short timings: renewals every 100 ms, a 1 s renew deadline, a Lease no one else may take
/// for 5 s (longer than any of these tests waits after a takeover).
fn fast_config() -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(5),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(100),
        ..config()
    }
}

/// An elector on `api` that keeps `gate`, spawned; returns once it leads.
async fn leading(client: Client, gate: &WriteGate) -> LeaderHandle {
    let elector = LeaderElector::new(client, fast_config(), Arc::new(Metrics::new()))
        .expect("elector")
        .with_write_gate(gate.clone());
    assert!(gate.check().is_err(), "shut before leading");
    let handle = elector.spawn();
    become_(&handle, true).await;
    handle
}

async fn become_(handle: &LeaderHandle, leader: bool) {
    let mut rx = handle.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| *l == leader))
        .await
        .unwrap_or_else(|_| panic!("leader={leader} within 10 s"))
        .expect("the election runs");
}

/// Renewals keep the gate open across several renew deadlines.
async fn stays_open_while_leading(handle: &LeaderHandle, gate: &WriteGate) {
    for _ in 0..6 {
        assert!(handle.is_leader());
        assert!(gate.check().is_ok(), "the gate shut while leading");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fencing against a frozen leader: the process stops (here: this single-threaded runtime is
/// blocked, so the election task cannot run, as under SIGSTOP) for longer than the renew
/// deadline while another replica takes the Lease. On resuming, before the election task has
/// run, the replica still believes it leads, but the gate its ARM client checks is already
/// shut; then the election task steps down and the gate stays shut.
#[tokio::test]
async fn the_write_gate_shuts_at_the_renew_deadline_even_before_a_frozen_elector_runs() {
    let (api, client) = FakeApi::start().await;
    let gate = WriteGate::closed();
    let handle = leading(client, &gate).await;
    stays_open_while_leading(&handle, &gate).await;

    // The freeze: nothing on this runtime runs; meanwhile pod-b takes the Lease over.
    std::thread::sleep(fast_config().renew_deadline + Duration::from_millis(200));
    api.take_over("pod-b");

    assert!(
        handle.is_leader(),
        "the election task has not run since the freeze"
    );
    let refused = gate.check().expect_err("the gate is shut on resuming");
    assert!(refused.contains("renew deadline"), "{refused}");

    become_(&handle, false).await;
    assert!(gate.check().is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!handle.is_leader(), "pod-b's Lease keeps it out");
    assert!(gate.check().is_err());
    assert_eq!(api.holder().as_deref(), Some("pod-b"));
    handle.release().await.expect("release");
}

/// A leader that finds the Lease taken (its renewal conflicts, the re-read names another
/// holder) steps down and shuts the gate.
#[tokio::test]
async fn the_write_gate_shuts_when_the_lease_is_lost() {
    let (api, client) = FakeApi::start().await;
    let gate = WriteGate::closed();
    let handle = leading(client, &gate).await;
    api.take_over("pod-b");
    become_(&handle, false).await;
    assert!(gate.check().is_err());
    handle.release().await.expect("release");
    assert_eq!(api.holder().as_deref(), Some("pod-b"));
}

/// Releasing on shutdown shuts the gate before the Lease is handed back.
#[tokio::test]
async fn the_write_gate_shuts_on_release() {
    let (api, client) = FakeApi::start().await;
    let gate = WriteGate::closed();
    let handle = leading(client, &gate).await;
    stays_open_while_leading(&handle, &gate).await;
    assert_eq!(api.holder().as_deref(), Some("pod-a"));
    handle.release().await.expect("release");
    assert!(gate.check().is_err());
    assert_eq!(api.holder(), None, "released");
}

#[test]
fn an_always_open_gate_is_never_shut_by_the_elector() {
    // Leader election off: the ARM client's default gate; nothing shuts it.
    let gate = WriteGate::default();
    gate.close();
    assert!(gate.check().is_ok());
}
