//! The namespace label that routes a namespace's pods to the pod webhook: set while the
//! namespace has a HostPortPolicy, removed by a periodic sweep once it has none.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tracing::warn;

use super::{Error, NAMESPACE_LABEL, NAMESPACE_MANAGER, Reconciler};

/// Sets (or removes) the namespace label that routes the namespace's pods to the pod
/// webhook. Server-side apply with a manager of its own: only that label is touched.
pub(super) async fn ensure_namespace_label(
    r: &Reconciler,
    ns: &str,
    on: bool,
) -> Result<(), Error> {
    let current = r
        .ctx
        .stores
        .namespaces
        .get(&ObjectRef::new(ns))
        .and_then(|n| n.labels().get(NAMESPACE_LABEL).cloned());
    if current.as_deref() == on.then_some("enabled") {
        return Ok(());
    }
    let labels = if on {
        json!({ NAMESPACE_LABEL: "enabled" })
    } else {
        json!({})
    };
    let patch = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": ns, "labels": labels },
    });
    Api::<Namespace>::all(r.ctx.client.clone())
        .patch(
            ns,
            &PatchParams::apply(NAMESPACE_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// The running sweep; dropping it stops the sweep. The controller's future owns it, and
/// leader election stops the controller by dropping that future (`run_while_leader`), not by
/// letting it return: so a replica that loses the Lease stops sweeping as well.
pub(super) struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts [`sweep_namespace_labels`] for as long as the returned [`Sweeper`] lives.
pub(super) fn spawn_sweeper(r: Arc<Reconciler>) -> Sweeper {
    Sweeper(tokio::spawn(sweep_namespace_labels(r)))
}

/// Removes the label from namespaces that no longer have a HostPortPolicy, so their pods
/// stop depending on the webhook.
async fn sweep_namespace_labels(r: Arc<Reconciler>) {
    loop {
        tokio::time::sleep(r.ctx.config.namespace_label_sweep).await;
        let stores = &r.ctx.stores;
        let with_policies: BTreeSet<String> = stores
            .policies
            .state()
            .iter()
            .filter_map(|p| p.namespace())
            .collect();
        for ns in stores.namespaces.state() {
            let name = ns.name_any();
            if ns.labels().contains_key(NAMESPACE_LABEL)
                && !with_policies.contains(&name)
                && let Err(e) = ensure_namespace_label(&r, &name, false).await
            {
                warn!(namespace = %name, error = %e, "removing the host-port-policies label");
            }
        }
    }
}
