//! With host-port blocks on, a narrow range (under 16 blocks) keeps one HostPortClaim per
//! port (`docs/hostport-blocks.md`). Its own binary: one NodePoolNetwork per agent pool.

mod hostports_support;

use anyhow::{Result, ensure};
use hostports_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use poolnet_api::v1alpha1::HostPortBlock;
use poolnet_tests::TestEnv;

/// A narrow range (under 16 blocks) keeps one claim per port even with blocks on: every
/// replica can serve it, none has to wait for the holder of its only block.
#[tokio::test]
async fn a_narrow_range_keeps_claims_so_every_replica_serves_it() -> Result<()> {
    const NARROW: (u16, u16) = (43008, 43055);
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let opts = Options {
        repair: None,
        blocks: Some("narrow".to_string()),
        ..Options::default()
    };
    let a = Instance::start(&client, &ns, &configs, opts).await?;
    activate(&client, &ns, &a.base_url()).await?;
    let pool = pool_for(&client, &ns).await?;
    echo_policy(&client, &ns, "echo", &pool, NARROW).await?;
    wait_policy_active(&client, &ns, NARROW).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let created = create_retrying(&pods, "narrow-", 5, 5).await?;
    let claims = claims_in(&client, &ns).await?;
    ensure!(
        claims.len() == 10,
        "5 pods × 2 ports, one claim each: {}",
        claims.len()
    );
    for p in &created {
        for (_, _, port) in host_ports(p) {
            ensure!(
                (NARROW.0..=NARROW.1).contains(&(port as u16)),
                "{port} outside the range"
            );
        }
    }
    let blocks: Vec<HostPortBlock> = Api::<HostPortBlock>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.start >= 42944 && b.spec.start <= NARROW.1)
        .collect();
    ensure!(blocks.is_empty(), "no block for a narrow range: {blocks:?}");
    Ok(())
}

/// A replica that cannot write its Lease (here: its namespace does not exist) holds no
/// block: wide ranges fall back to one claim per port, and pods are still admitted.
#[tokio::test]
async fn without_a_valid_lease_ports_come_from_claims() -> Result<()> {
    let env = TestEnv::start().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);
    let opts = Options {
        repair: None,
        blocks: Some("leaseless".to_string()),
        block_lease_namespace: Some("no-such-namespace".to_string()),
        ..Options::default()
    };
    let a = Instance::start(&client, &ns, &configs, opts).await?;
    activate(&client, &ns, &a.base_url()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The AKS annotation: the default range, 313 blocks wide.
    create_retrying(&pods, "leaseless-", 3, 3).await?;
    let claims = claims_in(&client, &ns).await?;
    ensure!(
        claims.len() == 6,
        "3 pods × 2 ports, one claim each: {}",
        claims.len()
    );
    let blocks = Api::<HostPortBlock>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    ensure!(blocks.is_empty(), "no block without a Lease: {blocks:?}");
    ensure!(a.blocks.as_ref().is_some_and(|b| !b.holding()));
    Ok(())
}
