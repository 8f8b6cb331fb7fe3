//! Child resources kept inside their parent's body: security rules of an NSG, routes of a route
//! table, subnets of a virtual network (and the read-only default rules). A child write
//! revalidates and re-ETags the whole parent and runs as an operation on it.

use super::operations::{NewOp, async_url, delete_accepted, finish_or_schedule, start_op};
use super::paging::page;
use super::request::{parse_body, preconditions};
use super::resources::{parent_path, res_id};
use super::{Reply, Request};
use crate::config::Limits;
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::kinds::{self, Cx};
use crate::path::ResPath;
use crate::sim::Sim;
use crate::state::{self, ChildKind, OpKind, OpStatus, Resource, State, key};
use serde_json::{Value, json};
use std::sync::Arc;

fn find_child<'a>(parent_body: &'a Value, ck: ChildKind, name: &str) -> Option<&'a Value> {
    parent_body["properties"][ck.array()]
        .as_array()?
        .iter()
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
}

fn parent_of<'a>(st: &'a State, p: &ResPath, ck: ChildKind) -> CloudResult<&'a Resource> {
    st.resource_group(&p.sub, &p.rg)?;
    st.get_kind(&res_id(&parent_path(p)), ck.parent())
        .ok_or_else(|| CloudError::resource_not_found(ck.parent().type_name(), &p.segs[0].1, &p.rg))
}

pub(super) fn list(
    sim: &Arc<Sim>,
    req: &Request,
    ck: ChildKind,
    p: &ResPath,
) -> CloudResult<Reply> {
    let st = sim.state();
    let parent = parent_of(&st, p, ck)?;
    let rendered = kinds::render(&st, parent);
    let items = rendered["properties"][ck.array()]
        .as_array()
        .cloned()
        .unwrap_or_default();
    drop(st);
    Ok(page(sim, req, items))
}

pub(super) fn get(sim: &Arc<Sim>, p: &ResPath, ck: ChildKind) -> CloudResult<Reply> {
    let st = sim.state();
    let parent = parent_of(&st, p, ck)?;
    let rendered = kinds::render(&st, parent);
    let child = find_child(&rendered, ck, &p.segs[1].1)
        .ok_or_else(|| CloudError::child_not_found(&res_id(p)))?;
    let etag = child["etag"].as_str().unwrap_or("").to_string();
    Ok(Reply::json(200, child.clone()).etag(&etag))
}

fn parent_busy(st: &State, parent: &Resource) -> CloudResult<()> {
    if let Some(op) = parent.op.as_ref().and_then(|id| st.ops.get(id))
        && op.status == OpStatus::InProgress
    {
        return Err(CloudError::new(
            429,
            "RetryableErrorDueToAnotherOperation",
            format!(
                "Operation on {} cannot be performed now because another operation ({}) on this resource is in progress. Retry later.",
                parent.id, op.name
            ),
        )
        .with_retry_after(1));
    }
    Ok(())
}

/// Upserts a child into its parent and revalidates the whole parent. Returns whether the
/// child is new.
fn child_put_core(
    st: &mut State,
    limits: &Limits,
    parent: &Resource,
    ck: ChildKind,
    name: &str,
    child_props: Value,
) -> CloudResult<bool> {
    let mut req = parent.body.as_object().cloned().unwrap_or_default();
    let mut props = json::props(&req)?;
    let mut items = props
        .get(ck.array())
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_child = json!({"name": name, "properties": child_props});
    let created = match items.iter_mut().find(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }) {
        Some(slot) => {
            *slot = new_child;
            false
        }
        None => {
            items.push(new_child);
            true
        }
    };
    props.insert(ck.array().into(), Value::Array(items));
    req.insert("properties".into(), Value::Object(props));
    rebuild_parent(st, limits, parent, &req)?;
    Ok(created)
}

/// Validates `req` as the new body of `parent` and stores it with a fresh ETag.
pub(super) fn rebuild_parent(
    st: &mut State,
    limits: &Limits,
    parent: &Resource,
    req: &Obj,
) -> CloudResult<()> {
    let p =
        crate::path::parse_id(&parent.id).ok_or_else(|| CloudError::child_not_found(&parent.id))?;
    let location = parent.location().to_string();
    let cx = Cx {
        limits,
        id: &parent.id,
        name: parent.name(),
        sub: &p.sub,
        rg: &p.rg,
        location: &location,
    };
    let built = kinds::build(parent.kind, st, &cx, Some(parent), req)?;
    let etag = state::new_etag();
    let mut props = built.props;
    kinds::stamp_children(
        &mut props,
        &["securityRules", "defaultSecurityRules", "routes", "subnets"],
        &etag,
    );
    let mut body = parent.body.as_object().cloned().unwrap_or_default();
    body.insert("etag".into(), json!(etag));
    body.insert("properties".into(), Value::Object(props));
    for (k, v) in built.extra {
        body.insert(k, v);
    }
    if let Some(res) = st.resources.get_mut(&key(&parent.id)) {
        res.body = Value::Object(body);
    }
    Ok(())
}

pub(super) fn put(sim: &Arc<Sim>, req: &Request, p: &ResPath, ck: ChildKind) -> CloudResult<Reply> {
    let body = parse_body(req.body)?;
    let live = sim.live();
    let mut st = sim.state();
    let parent = parent_of(&st, p, ck)?.clone();
    let name = p.segs[1].1.clone();
    let current =
        find_child(&parent.body, ck, &name).map(|c| c["etag"].as_str().unwrap_or("").to_string());
    preconditions(current.as_deref(), req)?;
    parent_busy(&st, &parent)?;
    let child_props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
    let created = child_put_core(&mut st, &live.limits, &parent, ck, &name, child_props)?;
    let op_name = format!("Put{}Operation", ck.op_noun());
    let location = parent.location().to_string();
    let op_id = start_op(
        &mut st,
        req,
        NewOp {
            namespace: "Microsoft.Network",
            sub: &p.sub,
            location: &location,
            resource_key: key(&parent.id),
            kind: OpKind::Put,
            name: op_name,
        },
        "Updating",
    );
    let url = async_url(
        sim,
        "Microsoft.Network",
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    let st = finish_or_schedule(sim, st, &op_id, live.lro.network_ms);
    let parent = parent_of(&st, p, ck)?;
    let rendered = kinds::render(&st, parent);
    let child = find_child(&rendered, ck, &name)
        .cloned()
        .unwrap_or(Value::Null);
    let etag = child["etag"].as_str().unwrap_or("").to_string();
    Ok(Reply::json(if created { 201 } else { 200 }, child)
        .etag(&etag)
        .header("Azure-AsyncOperation", url)
        .header("Retry-After", live.lro.retry_after_secs.to_string()))
}

pub(super) fn delete(
    sim: &Arc<Sim>,
    req: &Request,
    p: &ResPath,
    ck: ChildKind,
) -> CloudResult<Reply> {
    let live = sim.live();
    let mut st = sim.state();
    let parent = parent_of(&st, p, ck)?.clone();
    let name = p.segs[1].1.clone();
    let Some(child) = find_child(&parent.body, ck, &name).cloned() else {
        if req.if_match.is_some() {
            return Err(CloudError::precondition_failed());
        }
        return Ok(Reply::empty(204));
    };
    preconditions(child["etag"].as_str(), req)?;
    parent_busy(&st, &parent)?;
    if ck == ChildKind::Subnet {
        kinds::vnet::check_subnet_unused(&st, child["id"].as_str().unwrap_or(""))?;
    }
    let mut body = parent.body.as_object().cloned().unwrap_or_default();
    let mut props = json::props(&body)?;
    if let Some(Value::Array(items)) = props.get_mut(ck.array()) {
        items.retain(|c| {
            !c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        });
    }
    body.insert("properties".into(), Value::Object(props));
    rebuild_parent(&mut st, &live.limits, &parent, &body)?;
    let location = parent.location().to_string();
    let op_id = start_op(
        &mut st,
        req,
        NewOp {
            namespace: "Microsoft.Network",
            sub: &p.sub,
            location: &location,
            resource_key: key(&parent.id),
            kind: OpKind::DeleteChild,
            name: format!("Delete{}Operation", ck.op_noun()),
        },
        "Updating",
    );
    drop(finish_or_schedule(sim, st, &op_id, live.lro.network_ms));
    Ok(delete_accepted(
        sim,
        req,
        "Microsoft.Network",
        &p.sub,
        &location,
        &op_id,
        live.lro.retry_after_secs,
    ))
}
