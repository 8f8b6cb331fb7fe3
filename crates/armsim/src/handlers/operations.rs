//! Long-running operations: a write answers 201/202 with `Azure-AsyncOperation` (and for
//! deletes `Location`) URLs; the operation completes after the configured duration, or at
//! once when it is zero, and a newer write to the same resource cancels it.

use super::{Reply, Request};
use crate::error::{CloudError, CloudResult};
use crate::kinds;
use crate::sim::Sim;
use crate::state::{self, AsyncOp, OpKind, OpStatus, Resource, State};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// What a new operation is about.
pub(super) struct NewOp<'a> {
    pub(super) namespace: &'a str,
    pub(super) sub: &'a str,
    pub(super) location: &'a str,
    pub(super) resource_key: String,
    pub(super) kind: OpKind,
    pub(super) name: String,
}

/// Registers an operation on a resource and marks the resource as busy with it.
pub(super) fn start_op(
    st: &mut State,
    req: &Request,
    op: NewOp,
    provisioning_state: &str,
) -> String {
    let id = new_op(
        st,
        op.namespace,
        op.sub,
        op.location,
        op.resource_key.clone(),
        op.kind,
        op.name,
        req.fail_operation.clone(),
    );
    if let Some(new) = st.ops.get_mut(&id) {
        new.planned_delay_ms = req.stall_operation_ms;
    }
    if let Some(res) = st.resources.get_mut(&op.resource_key) {
        res.op = Some(id.clone());
        res.set_provisioning_state(provisioning_state);
    }
    id
}

#[allow(clippy::too_many_arguments)]
pub(super) fn new_op(
    st: &mut State,
    namespace: &str,
    sub: &str,
    location: &str,
    resource_key: String,
    kind: OpKind,
    name: String,
    planned_failure: Option<CloudError>,
) -> String {
    let id = state::new_guid();
    st.ops.insert(
        id.clone(),
        AsyncOp {
            id: id.clone(),
            namespace: namespace.to_string(),
            subscription: sub.to_string(),
            location: if location.is_empty() {
                "global".into()
            } else {
                location.to_string()
            },
            resource_key,
            kind,
            status: OpStatus::InProgress,
            error: None,
            planned_failure,
            planned_delay_ms: 0,
            start_time: state::now_rfc3339(),
            end_time: None,
            name,
        },
    );
    id
}

fn loc_or_global(location: &str) -> &str {
    if location.is_empty() {
        "global"
    } else {
        location
    }
}

pub(super) fn async_url(
    sim: &Sim,
    ns: &str,
    sub: &str,
    location: &str,
    op: &str,
    api: &str,
) -> String {
    format!(
        "{}/subscriptions/{sub}/providers/{ns}/locations/{}/operations/{op}?api-version={api}",
        sim.base_url,
        loc_or_global(location)
    )
}

fn result_url(sim: &Sim, ns: &str, sub: &str, location: &str, op: &str, api: &str) -> String {
    format!(
        "{}/subscriptions/{sub}/providers/{ns}/locations/{}/operationResults/{op}?api-version={api}",
        sim.base_url,
        loc_or_global(location)
    )
}

/// The 202 a delete answers while its operation runs: where to poll the operation's status
/// and its result.
pub(super) fn delete_accepted(
    sim: &Sim,
    req: &Request,
    ns: &str,
    sub: &str,
    location: &str,
    op_id: &str,
    retry_after_secs: u64,
) -> Reply {
    let api = req.api_version();
    Reply::empty(202)
        .header(
            "Azure-AsyncOperation",
            async_url(sim, ns, sub, location, op_id, api),
        )
        .header("Location", result_url(sim, ns, sub, location, op_id, api))
        .header("Retry-After", retry_after_secs.to_string())
}

/// Marks a running operation as superseded by a newer write to the same resource.
pub(super) fn cancel_op(st: &mut State, op_id: &str, by: &str) {
    if let Some(op) = st.ops.get_mut(op_id)
        && op.status == OpStatus::InProgress
    {
        op.status = OpStatus::Canceled;
        op.end_time = Some(state::now_rfc3339());
        op.error = Some(CloudError::new(
            409,
            "CanceledAndSupersededDueToAnotherOperation",
            format!(
                "Operation {} ({}) was canceled and superseded by operation {by}.",
                op.name, op.id
            ),
        ));
    }
}

/// Ends an operation (if still running) and applies its outcome to the resource.
fn complete_op(st: &mut State, op_id: &str) {
    let Some(op) = st.ops.get_mut(op_id) else {
        return;
    };
    if op.status != OpStatus::InProgress {
        return;
    }
    let failure = op.planned_failure.clone();
    op.status = if failure.is_some() {
        OpStatus::Failed
    } else {
        OpStatus::Succeeded
    };
    op.error = failure.clone();
    op.end_time = Some(state::now_rfc3339());
    let (kind, rkey) = (op.kind, op.resource_key.clone());
    let owns = |r: &Resource| r.op.as_deref() == Some(op_id);
    match kind {
        OpKind::Put | OpKind::DeleteChild => {
            if let Some(res) = st.resources.get_mut(&rkey)
                && owns(res)
            {
                res.op = None;
                res.set_provisioning_state(if failure.is_some() {
                    "Failed"
                } else {
                    "Succeeded"
                });
            }
        }
        OpKind::Delete => {
            let Some(res) = st.resources.get(&rkey).filter(|r| owns(r)).cloned() else {
                return;
            };
            if failure.is_some() {
                if let Some(r) = st.resources.get_mut(&rkey) {
                    r.op = None;
                    r.set_provisioning_state("Failed");
                }
            } else {
                st.resources.remove(&rkey);
                kinds::on_removed(st, &res);
            }
        }
        OpKind::DeleteResourceGroup => {
            let Some((sub, rg)) = rkey.split_once('|') else {
                return;
            };
            let prefix = format!("/subscriptions/{sub}/resourcegroups/{rg}/");
            let doomed: Vec<String> = st
                .resources
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in doomed {
                if let Some(res) = st.resources.remove(&k) {
                    kinds::on_removed(st, &res);
                }
            }
            if let Some(s) = st.subscriptions.get_mut(sub) {
                s.resource_groups.remove(rg);
            }
        }
    }
}

/// Completes the operation at once when its duration (plus any stall a fault gave it) is
/// zero, else after the duration.
pub(super) fn finish_or_schedule<'a>(
    sim: &'a Arc<Sim>,
    mut st: std::sync::MutexGuard<'a, State>,
    op_id: &str,
    ms: u64,
) -> std::sync::MutexGuard<'a, State> {
    let ms = ms + st.ops.get(op_id).map_or(0, |op| op.planned_delay_ms);
    if ms == 0 {
        complete_op(&mut st, op_id);
    } else {
        let sim = Arc::clone(sim);
        let op_id = op_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            complete_op(&mut sim.state(), &op_id);
        });
    }
    st
}

fn op_body(op: &AsyncOp) -> Value {
    let mut b = json!({
        "id": format!("/subscriptions/{}/providers/{}/locations/{}/operations/{}", op.subscription, op.namespace, op.location, op.id),
        "name": op.id,
        "status": op.status.as_str(),
        "startTime": op.start_time,
    });
    if let Some(end) = &op.end_time {
        b["endTime"] = json!(end);
    }
    if let Some(e) = &op.error {
        b["error"] = e.inner_json();
    }
    b
}

pub(super) fn op_status(sim: &Arc<Sim>, req: &Request, op_id: &str) -> CloudResult<Reply> {
    let retry = sim.live().lro.retry_after_secs;
    let st = sim.state();
    let op = st.ops.get(op_id).ok_or_else(|| {
        CloudError::new(404, "NotFound", format!("Operation {op_id} was not found."))
    })?;
    let _ = req;
    let mut reply = Reply::json(200, op_body(op));
    if op.status == OpStatus::InProgress {
        reply = reply.header("Retry-After", retry.to_string());
    }
    Ok(reply)
}

pub(super) fn op_result(sim: &Arc<Sim>, req: &Request, op_id: &str) -> CloudResult<Reply> {
    let retry = sim.live().lro.retry_after_secs;
    let st = sim.state();
    let op = st.ops.get(op_id).ok_or_else(|| {
        CloudError::new(404, "NotFound", format!("Operation {op_id} was not found."))
    })?;
    match op.status {
        OpStatus::InProgress => Ok(Reply::empty(202)
            .header(
                "Location",
                format!(
                    "{}{}?api-version={}",
                    sim.base_url,
                    req.path,
                    req.api_version()
                ),
            )
            .header("Retry-After", retry.to_string())),
        OpStatus::Succeeded => match op.kind {
            OpKind::Put => match st.resources.get(&op.resource_key) {
                Some(res) => Ok(Reply::json(
                    200,
                    kinds::render_at(&st, res, req.api_version()),
                )),
                None => Ok(Reply::empty(204)),
            },
            _ => Ok(Reply::empty(204)),
        },
        OpStatus::Failed | OpStatus::Canceled => {
            let e = op.error.clone().unwrap_or_else(|| {
                CloudError::new(500, "InternalServerError", "The operation failed.")
            });
            Err(e)
        }
    }
}
