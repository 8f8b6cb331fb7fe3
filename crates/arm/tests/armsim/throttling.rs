//! Throttling: ARM's Retry-After and the client's own budget.

use super::support::*;

#[tokio::test]
async fn server_throttling_is_respected_without_resending() {
    let Env { sim, arm } = env();
    sim.faults().add_rule(
        FaultRule::new(FaultAction::Throttle {
            retry_after_secs: 1,
        })
        .method("GET")
        .count(1),
    );
    let err = arm.get_nsg(&nsg_id()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ArmError::Throttled {
                origin: ThrottleSource::Server,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retryable());
    let sent = sim.counters().total;

    // Inside Retry-After the budget answers for ARM, for reads and writes of that subscription.
    let err = arm.get_route_table(&rt_id()).await.unwrap_err();
    assert!(matches!(
        err,
        ArmError::Throttled {
            origin: ThrottleSource::Budget,
            ..
        }
    ));
    assert!(err.retry_after().unwrap() <= Duration::from_secs(1));
    assert_eq!(sim.counters().total, sent, "nothing was sent");

    tokio::time::sleep(err.retry_after().unwrap()).await;
    arm.get_nsg(&nsg_id()).await.unwrap();
    let stats = arm.stats().snapshot();
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.throttled_by_budget, 1);
    // The same, per subscription (the metrics' `subscription` label).
    let [sub] = stats.subscriptions.as_slice() else {
        panic!("one subscription: {:?}", stats.subscriptions);
    };
    assert_eq!(
        (
            sub.reads,
            sub.writes,
            sub.throttled,
            sub.throttled_by_budget
        ),
        (2, 0, 1, 1),
        "{sub:?}"
    );
    assert_eq!(sub.retry_after_seconds, 0.0, "the Retry-After has passed");
}

#[tokio::test]
async fn budget_stops_before_arm_throttles() {
    let Env { sim, arm } = env_with(
        SimConfig::default(),
        BudgetConfig {
            read_capacity: 20,
            read_refill_per_sec: 1.0,
            read_reserve: 5,
            // Refuse instead of waiting for the refill.
            max_wait: Duration::ZERO,
            ..BudgetConfig::default()
        },
    );
    sim.set_throttling(ThrottleConfig {
        enabled: true,
        read_capacity: 20,
        read_refill_per_sec: 1.0,
        write_capacity: 200,
        write_refill_per_sec: 10.0,
    });
    let mut refused = None;
    for _ in 0..40 {
        match arm.get_nsg(&nsg_id()).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the budget refuses before 40 reads");
    assert!(
        matches!(
            refused,
            ArmError::Throttled {
                origin: ThrottleSource::Budget,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(sim.counters().throttled, 0, "ARM never had to throttle");
    let sent = arm.stats().snapshot().total();
    // 20 in the bucket, 5 kept in reserve; refill while the loop runs may add a few.
    assert!(
        (14..=25).contains(&sent),
        "about 20 - 5 reads went out: {sent}"
    );
}

#[tokio::test]
async fn calls_wait_for_the_budget_to_refill_instead_of_failing() {
    let Env { sim, arm } = env_with(
        SimConfig::default(),
        BudgetConfig {
            read_capacity: 20,
            read_refill_per_sec: 20.0,
            read_reserve: 5,
            max_wait: Duration::from_secs(2),
            ..BudgetConfig::default()
        },
    );
    sim.set_throttling(ThrottleConfig {
        enabled: true,
        read_capacity: 20,
        read_refill_per_sec: 20.0,
        write_capacity: 200,
        write_refill_per_sec: 10.0,
    });
    let started = std::time::Instant::now();
    for i in 0..40 {
        arm.get_nsg(&nsg_id())
            .await
            .unwrap_or_else(|e| panic!("read {i} failed instead of waiting: {e}"));
    }
    let stats = arm.stats().snapshot();
    assert_eq!(sim.counters().throttled, 0, "ARM never had to throttle");
    assert_eq!(stats.throttled_by_budget, 0, "no call gave up");
    assert!(stats.budget_waits > 0, "some calls waited: {stats:?}");
    let [sub] = stats.subscriptions.as_slice() else {
        panic!("one subscription: {:?}", stats.subscriptions);
    };
    assert_eq!(sub.reads, 40);
    assert_eq!(sub.budget_waits, stats.budget_waits);
    assert!(sub.budget_wait_seconds > 0.0, "{sub:?}");
    let left = sub.remaining_reads.expect("armsim reports remaining reads");
    assert!(
        left <= 20.0,
        "the estimate never exceeds the bucket: {left}"
    );
    // 15 usable at once, the other 25 at 20/s: about a second and a quarter.
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the refill rate paced the reads: {:?}",
        started.elapsed()
    );
}
