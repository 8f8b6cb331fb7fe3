//! Errors and refusals: Azure error bodies, TLS and tokens, IDs and URLs the client will not send.

use super::support::*;

#[tokio::test]
async fn azure_error_bodies_are_classified() {
    let Env { sim, arm } = env();

    // 400 from ARM's own validation: two rules with the same priority and direction.
    let read = arm.get_nsg(&nsg_id()).await.unwrap();
    let mut nsg = read.resource.clone();
    let rules = &mut nsg.properties.as_mut().unwrap().security_rules;
    rules.push(rule("poolnet-a", 200, "81"));
    rules.push(rule("poolnet-b", 200, "82"));
    let err = arm
        .put_nsg(&nsg_id(), &nsg, read.precondition())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    assert_eq!(err.code(), Some("SecurityRuleConflict"));
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "bad_request");

    let missing = ResourceId::network(SUB, RG, "networkSecurityGroups", "nope").unwrap();
    let err = arm.get_nsg(&missing).await.unwrap_err();
    assert!(matches!(err, ArmError::NotFound { .. }), "{err:?}");
    assert!(!err.is_retryable());

    let cases = [
        (409, "AnotherOperationInProgress", true, "another_operation"),
        (
            429,
            "RetryableErrorDueToAnotherOperation",
            true,
            "another_operation",
        ),
        (403, "AuthorizationFailed", false, "forbidden"),
        (500, "InternalServerError", true, "server_error"),
    ];
    for (status, code, retryable, label) in cases {
        sim.faults().clear();
        sim.faults().add_rule(
            FaultRule::new(FaultAction::Error {
                status,
                code: code.into(),
                message: None,
            })
            .method("GET")
            .resource_type("routeTables")
            .count(1),
        );
        let err = arm.get_route_table(&rt_id()).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err:?}");
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.is_retryable(), retryable, "{code}");
        assert_eq!(err.metric_label(), label, "{code}");
    }

    sim.faults().clear();
    sim.faults()
        .add_rule(FaultRule::new(FaultAction::Drop).method("GET").count(1));
    let err = arm.get_route_table(&rt_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(arm.stats().snapshot().transport_errors, 1);
}

#[tokio::test]
async fn tls_is_verified_and_tokens_are_checked() {
    let sim = armsim::start(
        SimConfig {
            seed: Some(fixture()),
            tls: true,
            auth: armsim::AuthConfig {
                static_token: Some("the-right-token".into()),
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let endpoint = Url::parse(&sim.base_url()).unwrap();

    // Without armsim's CA the server certificate is not trusted.
    let untrusting = ArmClient::new(
        ArmConfig::new(endpoint.clone()),
        CredentialConfig::Static(Secret::new("the-right-token")),
    )
    .unwrap();
    let err = untrusting.get_nsg(&nsg_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(sim.counters().total, 0);

    let mut config = ArmConfig::new(endpoint);
    config.transport.extra_ca_pem = sim.ca_pem();
    let wrong = ArmClient::new(
        config.clone(),
        CredentialConfig::Static(Secret::new("a-wrong-token")),
    )
    .unwrap();
    let err = wrong.get_nsg(&nsg_id()).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    assert_eq!(err.metric_label(), "unauthorized");

    let right = ArmClient::new(
        config,
        CredentialConfig::Static(Secret::new("the-right-token")),
    )
    .unwrap();
    right.get_nsg(&nsg_id()).await.unwrap();
}

#[tokio::test]
async fn wrong_ids_and_foreign_urls_are_refused_before_sending() {
    let Env { sim, arm } = env();
    let before = sim.counters().total;
    let err = arm.get_nsg(&rt_id()).await.unwrap_err();
    assert!(matches!(err, ArmError::InvalidId(_)), "{err:?}");

    let handle = OperationHandle {
        resource_id: nsg_id().to_string(),
        method: "PUT".into(),
        monitor: poolnet_arm::Monitor::AsyncOperation,
        url: "https://127.0.0.2:9/subscriptions/x/providers/Microsoft.Network/locations/westeurope/operations/1".into(),
        retry_after_secs: 0,
    };
    let err = arm.poll(&handle).await.unwrap_err();
    assert!(err.to_string().contains("not the ARM endpoint"), "{err}");
    assert_eq!(sim.counters().total, before);
}
