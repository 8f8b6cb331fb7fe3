//! The two watches that keep a [`HostPortIndex`] current.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use poolnet_api::v1alpha1::HostPortClaim;

use super::index::HostPortIndex;

/// Runs both watches until dropped. Watch errors are logged and retried with backoff; the
/// relist that follows refreshes the index.
pub async fn run_index(client: Client, index: Arc<HostPortIndex>) {
    let claims = {
        let index = Arc::clone(&index);
        watcher::watcher(
            Api::<HostPortClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .for_each(move |event| {
            match event {
                Ok(Event::Init) => index.claims_relist_started(),
                Ok(Event::InitApply(c) | Event::Apply(c)) => index.apply_claim(&c),
                Ok(Event::InitDone) => index.claims_relist_done(),
                Ok(Event::Delete(c)) => index.delete_claim(&c),
                Err(e) => tracing::warn!(error = %e, "watching HostPortClaims"),
            }
            futures::future::ready(())
        })
    };
    let pods = {
        let index = Arc::clone(&index);
        watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(Event::Init) => index.pods_relist_started(),
                    Ok(Event::InitApply(p) | Event::Apply(p)) => index.apply_pod(&p),
                    Ok(Event::InitDone) => index.pods_relist_done(),
                    Ok(Event::Delete(p)) => index.delete_pod(&p),
                    Err(e) => tracing::warn!(error = %e, "watching pods"),
                }
                futures::future::ready(())
            })
    };
    futures::future::join(claims, pods).await;
}

/// Spawns [`run_index`] and returns once the index holds a complete first list (the webhook
/// must not answer from an empty view: every proposal would conflict).
pub async fn start_index(client: Client, index: Arc<HostPortIndex>) -> tokio::task::JoinHandle<()> {
    let task = tokio::spawn(run_index(client, Arc::clone(&index)));
    while !index.is_ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task
}
