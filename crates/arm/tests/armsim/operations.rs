//! Long-running operations: pending, polled, done, and failed with ARM's codes.

use super::support::*;

#[tokio::test]
async fn lro_pending_then_poll_then_done() {
    let Env { sim, arm } = env();
    sim.set_lro(LroConfig {
        network_ms: 1000,
        aks_ms: 1000,
        retry_after_secs: 0,
    });
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let nsg = with_rule(&read.resource, rule("poolnet-lro", 102, "8443"));
    let lro = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("a 1 s operation must come back pending");
    };
    assert_eq!(arm.stats().snapshot().lro_pending, 1);

    // The controller stores the handle and a later reconcile picks it up.
    let stored = serde_json::to_string(&handle).unwrap();
    let handle: OperationHandle = serde_json::from_str(&stored).unwrap();
    assert!(matches!(arm.poll(&handle).await.unwrap(), Lro::Pending(_)));
    let during = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_eq!(
        during
            .resource
            .properties
            .as_ref()
            .and_then(|p| p.provisioning_state.as_ref())
            .map(|s| format!("{s:?}")),
        Some("Updating".to_string())
    );

    arm.wait(handle.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(arm.poll(&handle).await.unwrap(), Lro::Done(()));
    let after = arm.get_nsg(&nsg_id()).await.unwrap();
    assert_eq!(
        after
            .resource
            .properties
            .as_ref()
            .and_then(|p| p.provisioning_state.as_ref())
            .map(|s| format!("{s:?}")),
        Some("Succeeded".to_string())
    );

    // `wait` with too short a deadline hands the operation back instead of blocking.
    let lro = arm
        .put_nsg(&nsg_id(), &after.resource, after.precondition())
        .await
        .unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("expected pending");
    };
    let err = arm
        .wait(handle, Duration::from_millis(50))
        .await
        .unwrap_err();
    let ArmError::OperationTimeout { handle, .. } = err else {
        panic!("expected a timeout, got {err:?}");
    };
    arm.wait(*handle, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn failed_operations_carry_arm_codes() {
    let Env { sim, arm } = env();
    sim.set_lro(LroConfig {
        network_ms: 100,
        aks_ms: 100,
        retry_after_secs: 0,
    });
    sim.faults().add_rule(
        FaultRule::new(FaultAction::FailOperation {
            code: "CanceledAndSupersededDueToAnotherOperation".into(),
            message: Some("superseded".into()),
        })
        .method("PUT")
        .resource_type("applicationSecurityGroups")
        .count(1),
    );
    let id = ResourceId::network(SUB, RG, "applicationSecurityGroups", "asg-x").unwrap();
    let mut asg = ApplicationSecurityGroup::new();
    asg.resource.location = Some("westeurope".into());
    let lro = arm.put_asg(&id, &asg, Precondition::None).await.unwrap();
    let Lro::Pending(handle) = lro else {
        panic!("expected pending");
    };
    let err = arm.wait(handle, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ArmError::OperationFailed { .. }), "{err:?}");
    assert_eq!(
        err.code(),
        Some("CanceledAndSupersededDueToAnotherOperation")
    );
    assert!(err.is_retryable());
}
