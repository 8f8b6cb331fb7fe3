//! The namespace-label sweeper of the HostPortPolicy controller runs only while its replica
//! leads (issue 12, item 13): the operator's own wiring (`app::run`) on a real Lease, which
//! the test takes away from it.

use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use poolnet_operator::controller::host_port_policy;
use poolnet_tests::operator::{Harness, HarnessOptions};
use tokio::time::Instant;

const LABEL: &str = host_port_policy::NAMESPACE_LABEL;
const LEASE: &str = "poolnet-sweeper-test";

/// Labels `ns` the way the HostPortPolicy controller does: server-side apply with its field
/// manager (the sweeper's apply can only remove a label that manager owns).
async fn set_label(namespaces: &Api<Namespace>, ns: &str) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {LABEL: "enabled"}},
    });
    namespaces
        .patch(
            ns,
            &PatchParams::apply(host_port_policy::NAMESPACE_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

async fn labelled(namespaces: &Api<Namespace>, ns: &str) -> Result<bool> {
    Ok(namespaces.get(ns).await?.labels().contains_key(LABEL))
}

#[tokio::test]
async fn the_namespace_label_sweeper_stops_when_the_replica_loses_the_lease() -> Result<()> {
    let flags = [
        "--leader-election=true",
        &format!("--lease-name={LEASE}"),
        "--identity=replica-a",
        "--lease-duration=4s",
        "--renew-deadline=3s",
        "--retry-period=500ms",
        "--namespace-label-sweep=1s",
        "--webhooks=false",
    ]
    .map(String::from)
    .to_vec();
    let h = Harness::start_with(HarnessOptions {
        flags,
        ..HarnessOptions::demo()?
    })
    .await?;
    let client = h.env.client();
    let ns = h.env.namespace().to_string();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    // While it leads, the sweeper removes the label from a namespace without a policy.
    set_label(&namespaces, &ns).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while labelled(&namespaces, &ns).await? {
        if Instant::now() > deadline {
            bail!("the leader's sweeper never removed the label of {ns}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another replica takes the Lease (for an hour): this one must stop its leader-only work.
    leases
        .patch(
            LEASE,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {
                "holderIdentity": "replica-b",
                "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
                "leaseDurationSeconds": 3600,
            }})),
        )
        .await?;
    // It notices at its next renewal (every 500 ms) and steps down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    set_label(&namespaces, &ns).await?;
    // Five sweep periods: a sweeper still running would have removed the label.
    tokio::time::sleep(Duration::from_secs(5)).await;
    if !labelled(&namespaces, &ns).await? {
        bail!("a replica that lost the Lease still sweeps namespace labels");
    }
    Ok(())
}
