//! Writing what a reconcile found: the status by server-side apply (only when it changed)
//! and Events. Every controller reports through here.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

/// An Event to publish once the status is written: type, reason, message.
pub type Note = (EventType, &'static str, String);

/// Apply `status` as the whole status of `name`, owned by field manager `manager` (forced:
/// the controller is the only writer of its status).
pub async fn apply_status<K, S>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Publish `notes` about `obj` as Events of `action`. An Event that cannot be published is
/// logged, never an error: Events are best effort, status is the record.
pub async fn publish<K>(
    recorder: &Recorder,
    obj: &K,
    action: &str,
    notes: impl IntoIterator<Item = Note>,
) where
    K: Resource<DynamicType = ()>,
{
    let reference = obj.object_ref(&());
    for (type_, reason, note) in notes {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &reference).await {
            warn!(error = %e, "cannot publish event");
        }
    }
}
