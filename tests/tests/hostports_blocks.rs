//! Host-port blocks against a real API server (`docs/hostport-blocks.md`): two webhook
//! replicas give automatic ports from the blocks they hold, with no HostPortClaim per port;
//! one is killed mid-run and its blocks are taken over only after its Lease plus the
//! quarantine; static ports inside another replica's block are refused with the block
//! named, outside every block they are claimed as before.

mod hostports_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use hostports_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use poolnet_api::v1alpha1::HostPortBlock;
use poolnet_plan::hostports::Key;
use poolnet_plan::hostports::blocks::{BlockId, LeaseTiming};
use poolnet_tests::TestEnv;

/// Three blocks (42048-42239) for 2 ports × up to 80 live pods: replicas take several.
const RANGE: (u16, u16) = (42048, 42239);

/// Short Lease and quarantine so a takeover happens within the test (production waits
/// 30 s + 39 s; pods here are stored within milliseconds, far inside 4 s).
fn quick() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(3),
        renew_every: Duration::from_secs(1),
        margin: Duration::from_millis(500),
        quarantine: Duration::from_secs(4),
    }
}

fn with_blocks(name: &str) -> Options {
    Options {
        repair: None,
        blocks: Some(name.to_string()),
        block_timing: quick(),
        // The test's range is 3 blocks: served from blocks too.
        block_min: 1,
        ..Options::default()
    }
}

async fn blocks_in_range(client: &Client) -> Result<Vec<HostPortBlock>> {
    let all = Api::<HostPortBlock>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    Ok(all
        .into_iter()
        .filter(|b| b.spec.start >= RANGE.0 - RANGE.0 % 64 && b.spec.start <= RANGE.1)
        .collect())
}

#[tokio::test]
async fn two_replicas_give_ports_from_blocks_one_dies_and_its_blocks_are_taken_over_safely()
-> Result<()> {
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let proxy = Proxy::start().await?;

    let mut a = Instance::start(&client, &ns, &configs, with_blocks("replica-a")).await?;
    let b_opts = Options {
        repair: Some(fast_repair()),
        ..with_blocks("replica-b")
    };
    let b = Instance::start(&client, &ns, &configs, b_opts).await?;
    proxy.set_backends(vec![a.addr, b.addr]);
    activate(&client, &ns, &proxy.base_url()).await?;
    let pool = pool_for(&client, &ns).await?;
    echo_policy(&client, &ns, "echo", &pool, RANGE).await?;
    wait_policy_active(&client, &ns, RANGE).await?;

    let violations = Arc::new(Mutex::new(Vec::new()));
    let watcher = s1_watcher(client.clone(), &ns, Arc::clone(&violations));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // 60 pods through both replicas.
    let created = create_retrying(&pods, "blk-", 60, 16).await?;
    ensure!(created.len() == 60, "created {} of 60", created.len());
    let claims = claims_in(&client, &ns).await?;
    ensure!(
        claims.is_empty(),
        "automatic ports from blocks need no claims: {} found",
        claims.len()
    );
    let blocks = blocks_in_range(&client).await?;
    let holders: BTreeSet<String> = blocks.iter().map(|b| b.spec.holder.clone()).collect();
    ensure!(!blocks.is_empty(), "no HostPortBlock was taken");
    for p in &created {
        for (_, proto, port) in host_ports(p) {
            let key = Key::new(
                if proto == "UDP" {
                    poolnet_api::portspec::Protocol::Udp
                } else {
                    poolnet_api::portspec::Protocol::Tcp
                },
                port as u16,
            );
            let name = BlockId::of(key).name();
            ensure!(
                blocks.iter().any(|b| b.name_any() == name),
                "{}: port {port} is in no block",
                p.name_any()
            );
        }
    }
    let a_blocks = a.blocks.as_ref().map(|b| b.held()).unwrap_or_default();
    eprintln!(
        "blocks: {:?}, holders {holders:?}, replica a holds {a_blocks:?}",
        blocks.iter().map(|b| b.name_any()).collect::<Vec<_>>()
    );

    // Replica a dies with its blocks' pods alive; b alone goes on until the range is full
    // (96 pods × 2 ports = the 192 ports of the 3 blocks): it must take a's blocks over,
    // and may reuse none of the ports a's pods hold.
    a.kill();
    proxy.set_backends(vec![b.addr]);
    let more = create_retrying(&pods, "blk-", 36, 8).await?;
    ensure!(
        more.len() == 36,
        "created {} of 36 after the kill",
        more.len()
    );
    let b_blocks = b.blocks.as_ref().expect("b has blocks");
    let taken_over = b_blocks
        .stats()
        .taken_over
        .load(std::sync::atomic::Ordering::Relaxed);
    ensure!(
        a_blocks.is_empty() || taken_over >= 1,
        "replica a held {a_blocks:?}, but b took over no block"
    );
    let blocks = blocks_in_range(&client).await?;
    ensure!(
        blocks.len() == 3,
        "expected the range's 3 blocks: {blocks:?}"
    );
    let b_id = b_blocks.identity();
    ensure!(
        blocks.iter().all(|x| x.spec.holder == b_id),
        "all blocks are b's now: {:?}",
        blocks
            .iter()
            .map(|x| (x.name_any(), x.spec.holder.clone()))
            .collect::<Vec<_>>()
    );

    // The range is full: the next pod is refused for exhaustion, naming the range.
    let refused = pods
        .create(&PostParams::default(), &echo_pod("full-"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    ensure!(
        refused.contains("no free tcp host port in 42048-42239"),
        "expected an exhaustion refusal, got {refused:?}"
    );

    // Deleting pods frees their ports in b's blocks (the cache's delete event), without
    // any claim to release.
    let victims: Vec<String> = created.iter().take(5).map(|p| p.name_any()).collect();
    for name in &victims {
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await?;
    }
    let after = eventually(
        "freed ports are given again",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &echo_pod("again-"))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        },
    )
    .await?;
    ensure!(host_ports(&after).len() == 2);

    let v = violations.lock().map(|v| v.clone()).unwrap_or_default();
    ensure!(v.is_empty(), "S1 violated: {v:?}");
    watcher.abort();
    Ok(())
}
