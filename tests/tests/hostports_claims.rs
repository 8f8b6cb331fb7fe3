//! The HostPortClaim CRD against the real API server: the guarantees reservation relies on.

use anyhow::Result;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use poolnet_api::v1alpha1::{
    BoundPod, HostPortClaim, HostPortClaimSpec, HostPortClaimStatus, HostPortSource, PortProtocol,
};
use poolnet_tests::TestEnv;

fn claim(name: &str, protocol: PortProtocol, port: u16, token: &str) -> HostPortClaim {
    HostPortClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: HostPortClaimSpec {
            protocol,
            port,
            container_port: Some(8080),
            source: HostPortSource::Automatic,
            pod_namespace: "team".into(),
            pod_name: None,
            pod_generate_name: Some("echo-".into()),
            policy: None,
            request_uid: token.into(),
            daemon_set: None,
            created_at: Time(k8s_openapi::jiff::Timestamp::now()),
        },
        status: None,
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn claims_are_unique_by_key_named_after_it_and_bound_once() -> Result<()> {
    let env = TestEnv::shared().await?;
    let claims: Api<HostPortClaim> = Api::all(env.client());
    // Ports no other test of this binary uses.
    let pp = PostParams::default();
    claims
        .create(&pp, &claim("tcp-2001", PortProtocol::TCP, 2001, "a"))
        .await?;

    // A second claim of the same key is refused, whoever asks.
    let dup = claims
        .create(&pp, &claim("tcp-2001", PortProtocol::TCP, 2001, "b"))
        .await
        .expect_err("duplicate key");
    assert_eq!(status_code(&dup), Some(409), "{dup}");

    // The name must be the key: no second name for the same port.
    for (name, proto, port) in [
        ("tcp-2002", PortProtocol::UDP, 2002),
        ("tcp-02001", PortProtocol::TCP, 2001),
        ("tcp-2001x", PortProtocol::TCP, 2001),
        ("x", PortProtocol::TCP, 2001),
    ] {
        let e = claims
            .create(&pp, &claim(name, proto, port, "c"))
            .await
            .expect_err(name);
        assert!(
            e.to_string().contains("named <protocol>-<port>"),
            "{name}: {e}"
        );
    }

    // Bind through the status subresource; rebinding to another pod is refused.
    let bind = |uid: &str| {
        serde_json::json!({"status": HostPortClaimStatus {
            pod: Some(BoundPod { name: "echo-1".into(), uid: uid.into() }),
            ..HostPortClaimStatus::default()
        }})
    };
    claims
        .patch_status(
            "tcp-2001",
            &PatchParams::default(),
            &Patch::Merge(bind("u1")),
        )
        .await?;
    let e = claims
        .patch_status(
            "tcp-2001",
            &PatchParams::default(),
            &Patch::Merge(bind("u2")),
        )
        .await
        .expect_err("rebind");
    assert!(e.to_string().contains("cannot be rebound"), "{e}");

    // The spec is immutable.
    let e = claims
        .patch(
            "tcp-2001",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"podNamespace": "other"}})),
        )
        .await
        .expect_err("spec edit");
    assert!(e.to_string().contains("immutable"), "{e}");
    Ok(())
}
