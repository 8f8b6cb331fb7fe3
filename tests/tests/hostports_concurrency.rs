//! Many concurrent pod creations through several poolnet replicas that share nothing but
//! the API server: one with a cache that never updates, replicas killed and replaced while
//! requests are in flight, claims created behind their backs. A watcher checks S1 on every
//! pod event; after quiescence, claims must be exactly the keys of live pods, all bound.
//!
//! `POOLNET_CONCURRENCY_PODS` (default 300) sets the number of pods.

mod hostports_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use futures::StreamExt;
use hostports_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use poolnet_api::v1alpha1::HostPortClaim;
use poolnet_tests::TestEnv;

const REPLICAS: usize = 3;
const IN_FLIGHT: usize = 32;
const KILLS: usize = 4;
const RANGE: (u16, u16) = (41000, 41999);

/// Creates claims at random ports of the range, as if other replicas had reserved them:
/// replicas whose cache has not seen them yet collide with them.
async fn foreign_claims(client: Client, ns: String, n: usize, seed: u64) {
    let claims: Api<HostPortClaim> = Api::all(client);
    let mut x = seed;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = RANGE.0 + (x % u64::from(RANGE.1 - RANGE.0 + 1)) as u16;
        let claim: Result<HostPortClaim, _> = serde_json::from_value(serde_json::json!({
            "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortClaim",
            "metadata": {"name": format!("tcp-{port}"),
                         "labels": {"poolnet.dev/pod-namespace": ns, "poolnet.dev/reservation": format!("foreign-{i}")}},
            "spec": {"protocol": "TCP", "port": port, "source": "Automatic", "podNamespace": ns,
                     "requestUid": format!("foreign-{i}"), "createdAt": "2020-01-01T00:00:00Z"}
        }));
        if let Ok(claim) = claim {
            // Taken already: fine, that port is held either way.
            let _ = claims.create(&PostParams::default(), &claim).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn hundreds_of_concurrent_admissions_through_dying_replicas_never_share_a_port() -> Result<()>
{
    let total: usize = std::env::var("POOLNET_CONCURRENCY_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let env = TestEnv::shared().await?;
    let client = env.client();
    let ns = env.namespace().to_string();
    let configs = Configs::for_namespace(&ns);

    // Replicas behind a load balancer; one of them with a cache frozen empty.
    let proxy = Proxy::start().await?;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Instance::start(&client, &ns, &configs, Options::default()).await?);
    }
    let frozen = Instance::start(
        &client,
        &ns,
        &configs,
        Options {
            frozen_index: true,
            repair: None,
            ..Options::default()
        },
    )
    .await?;
    let backends = |replicas: &[Instance]| {
        let mut b: Vec<_> = replicas.iter().map(|r| r.addr).collect();
        b.push(frozen.addr);
        b
    };
    proxy.set_backends(backends(&replicas));
    activate(&client, &ns, &proxy.base_url()).await?;

    // A narrow range (1000 ports for 600 keys): proposals from stale caches collide often.
    let pool = pool_for(&client, &ns).await?;
    echo_policy(&client, &ns, "echo", &pool, RANGE).await?;
    wait_policy_active(&client, &ns, RANGE).await?;

    let violations = Arc::new(Mutex::new(Vec::new()));
    let watcher = s1_watcher(client.clone(), &ns, Arc::clone(&violations));
    // Conflicts: claims the frozen replica never sees, some made during the run.
    foreign_claims(client.clone(), ns.clone(), 50, 0x9e37_79b9).await;
    let chaos_claims = tokio::spawn(foreign_claims(client.clone(), ns.clone(), 100, 0xdead_beef));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let created = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let load = {
        let pods = pods.clone();
        let created = Arc::clone(&created);
        let retried = Arc::clone(&retried);
        futures::stream::iter(0..total)
            .map(move |i| {
                let pods = pods.clone();
                let created = Arc::clone(&created);
                let retried = Arc::clone(&retried);
                async move {
                    // Like a controller: a failed creation (webhook cut off, contention) is retried.
                    for _ in 0..20 {
                        match pods
                            .create(&PostParams::default(), &echo_pod("load-"))
                            .await
                        {
                            Ok(p) => {
                                created.fetch_add(1, Ordering::Relaxed);
                                // Some pods go away again, so releases run during the load.
                                if i % 10 == 0 {
                                    let _ =
                                        pods.delete(&p.name_any(), &DeleteParams::default()).await;
                                }
                                return Ok(p);
                            }
                            Err(_) => {
                                retried.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    anyhow::bail!("pod {i} could not be created in 20 attempts")
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<Result<Pod>>>()
    };
    let chaos = async {
        // Kill a replica mid-flight and bring up a fresh one, a few times.
        for k in 0..KILLS {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let victim = k % replicas.len();
            replicas[victim].kill();
            proxy.set_backends(
                replicas
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != victim)
                    .map(|(_, r)| r.addr)
                    .chain([frozen.addr])
                    .collect(),
            );
            replicas[victim] = Instance::start(&client, &ns, &configs, Options::default()).await?;
            proxy.set_backends(backends(&replicas));
        }
        anyhow::Ok(())
    };
    let started = std::time::Instant::now();
    let (results, chaos) = futures::future::join(load, chaos).await;
    let load_time = started.elapsed();
    chaos?;
    chaos_claims.await?;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    ensure!(failed.is_empty(), "creations failed: {failed:?}");
    for pod in results.iter().flatten() {
        let ports = host_ports(pod);
        ensure!(
            ports.len() == 2 && ports[0].2 != ports[1].2,
            "{}: {ports:?}",
            pod.name_any()
        );
    }
    let (reserved, _, conflicts, refreshes, _) = frozen.reserver.stats().snapshot();
    eprintln!(
        "created {} pods in {load_time:?}, {} retried creations; the frozen replica made {reserved} \
         reservations with {conflicts} conflicts and {refreshes} live refreshes",
        created.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
    );

    let v = violations.lock().map(|v| v.clone()).unwrap_or_default();
    ensure!(v.is_empty(), "S1 violated: {v:?}");

    // Quiescence: foreign and abandoned claims are released after the grace period, the
    // deleted pods' claims once they are gone; the rest are bound to their pods.
    eventually(
        "claims == keys of live pods, all bound",
        Duration::from_secs(120),
        || claims_match_pods(&client, &ns),
    )
    .await?;
    watcher.abort();
    ensure!(
        conflicts > 0,
        "the stale replica met claims it did not know about"
    );
    Ok(())
}
