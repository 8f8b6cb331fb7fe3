//! Issue 16, item 2 (seed 000: host ports are useless without allow rules): any pod using a
//! host port on a pool's node that the pool's allowedHostPorts or NSG rules do not cover gets
//! a Warning Event, and the NodePoolNetwork says so in `HostPortsCovered` without losing Ready.
//! The operator's resync is long here: pod changes alone must trigger the check.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use poolnet_tests::operator::HarnessOptions;

use super::support::*;

fn pod_on(node: &str, name: &str, host_ports: &[u16]) -> Result<Pod> {
    let ports: Vec<Value> = host_ports
        .iter()
        .enumerate()
        .map(|(i, hp)| json!({"containerPort": 8000 + i, "hostPort": hp, "protocol": "TCP"}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "game", "image": "example.invalid/game:1", "ports": ports}]
        }
    }))?)
}

fn covered(n: &NodePoolNetwork) -> Option<(String, String)> {
    condition(n, "HostPortsCovered").map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn pods_on_the_pools_nodes_with_unreachable_host_ports_are_reported() -> Result<()> {
    let h = Harness::start_with(HarnessOptions {
        resync: "10m".into(),
        ..HarnessOptions::demo()?
    })
    .await?;
    let ns = h.env.namespace().to_string();
    h.apply(&sample("game-pool.yaml")?).await?;
    h.wait_npn("game", "covered, nothing in use", |n| {
        is_ready(n) && covered(n).is_some_and(|(s, _)| s == "True")
    })
    .await?;

    // 40001/tcp is allowed and opened by the pool's NSG rule; 8080/tcp is neither.
    let node = "aks-game-47472799-vmss000000";
    let pods: Api<Pod> = Api::namespaced(h.env.client(), &ns);
    pods.create(
        &PostParams::default(),
        &pod_on(node, "stray", &[40001, 8080])?,
    )
    .await?;
    let st = h
        .wait_npn("game", "HostPortsCovered=False", |n| {
            covered(n).is_some_and(|(s, _)| s == "False")
        })
        .await?;
    let c = condition(&st, "HostPortsCovered").context("condition")?;
    assert_eq!(c.reason, "HostPortsNotCovered");
    assert!(
        c.message.contains(&format!(
            "8080/tcp (pod {ns}/stray on {node}: not in allowedHostPorts, no NSG allow rule)"
        )),
        "{}",
        c.message
    );
    assert!(!c.message.contains("40001"), "{}", c.message);
    // Reported, not a reconcile failure: still Ready, kstatus Current.
    assert!(is_ready(&st), "{:#?}", st.status);
    assert_eq!(kstatus_of(&st), KStatus::Current);

    // The pod's own Warning Event names the port and the fix.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(h.env.client(), &ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    let event = loop {
        let found = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("HostPortNotReachable")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("stray")
            });
        if let Some(e) = found {
            break e;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no HostPortNotReachable event"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("8080/tcp") && note.contains("spec.allowedHostPorts of game"),
        "{note}"
    );

    // A pod on a node of another pool is not the game pool's business.
    pods.create(
        &PostParams::default(),
        &pod_on("aks-kubenet-47472799-vmss000000", "elsewhere", &[9999])?,
    )
    .await?;
    // The stray pod goes: covered again, with no resync in between.
    pods.delete("stray", &DeleteParams::default().grace_period(0))
        .await?;
    let st = h
        .wait_npn("game", "covered again", |n| {
            covered(n).is_some_and(|(s, _)| s == "True")
        })
        .await?;
    assert!(
        !covered(&st).unwrap_or_default().1.contains("9999"),
        "{:?}",
        covered(&st)
    );
    Ok(())
}
