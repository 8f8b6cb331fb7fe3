//! A claim made at admission for a pod that never appears (a later admission webhook refused
//! it) is released soon after the API server's deadline for that request, with the repair
//! loop as the operator runs it by default (issue 12, item 13). Its own test binary: every
//! poolnet instance repairs every claim of the cluster, and the other tests' instances use
//! a short grace period that would hide the default's.

mod hostports_support;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use hostports_support::*;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::core::admission::AdmissionResponse;
use poolnet_api::v1alpha1::HostPortClaim;
use poolnet_operator::app::OperatorArgs;
use poolnet_tests::{Hook, Kind, TestEnv, WebhookServer};
use tokio::time::Instant;

const DENY_LABEL: &str = "poolnet-tests/deny";

fn writes(port: i32, deny: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("writes-".into()),
            labels: deny.then(|| [(DENY_LABEL.to_string(), "yes".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.invalid/app:1".into()),
                ports: Some(vec![ContainerPort {
                    container_port: 9000,
                    host_port: Some(port),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
async fn a_claim_whose_pod_a_later_webhook_refused_is_released_soon_after_the_request_deadline()
-> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace();
    // The repair loop exactly as `poolnet-operator` runs it with its default flags.
    let args = OperatorArgs::try_parse_from(["poolnet-operator"])?;
    let opts = Options {
        repair: Some(args.webhook.repair()),
        ..Options::default()
    };
    let configs = Configs::for_namespace(ns);
    let poolnet = Instance::start(&client, ns, &configs, opts).await?;
    activate(&client, ns, &poolnet.base_url()).await?;

    // A validating webhook (called after every mutating one) that refuses labelled pods.
    let routes = axum::Router::new().route(
        "/deny",
        poolnet_tests::webhook::admission(|req| {
            let labelled = req
                .object
                .as_ref()
                .and_then(|o| o.metadata.labels.as_ref())
                .is_some_and(|l| l.contains_key(DENY_LABEL));
            let resp = AdmissionResponse::from(&req);
            if labelled {
                resp.deny("refused by another admission step")
            } else {
                resp
            }
        }),
    );
    let other = WebhookServer::start(routes).await?;
    env.register_webhook(
        &other,
        Kind::Validating,
        Hook {
            name: "deny.poolnet.test".into(),
            path: "/deny".into(),
            rules: vec![poolnet_tests::webhook::rule("", "v1", "pods", &["CREATE"])],
            namespace: None,
        },
    )
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let claims: Api<HostPortClaim> = Api::all(client.clone());
    let started = Instant::now();
    let e = pods
        .create(&PostParams::default(), &writes(41777, true))
        .await
        .expect_err("the other webhook refuses it");
    ensure!(e.to_string().contains("another admission step"), "{e}");
    // poolnet reserved the port before the refusal; nobody will ever hold it.
    claims
        .get_opt("tcp-41777")
        .await?
        .context("poolnet's claim for the refused pod")?;
    let refused = pods
        .create(&PostParams::default(), &writes(41777, false))
        .await
        .expect_err("held while the refused request could still be stored");
    ensure!(refused.to_string().contains("41777"), "{refused}");

    // The API server stores a created object within 34 s of the request or never; the
    // claim must be gone within seconds of that.
    let bound = Duration::from_secs(34 + 15);
    loop {
        if claims.get_opt("tcp-41777").await?.is_none() {
            break;
        }
        if started.elapsed() > bound {
            bail!(
                "the orphan claim tcp-41777 is still there {:?} after its request",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let released_after = started.elapsed();
    ensure!(
        released_after >= Duration::from_secs(34),
        "released after {released_after:?}, before the request's deadline"
    );
    // And the port is free again.
    pods.create(&PostParams::default(), &writes(41777, false))
        .await?;
    Ok(())
}
