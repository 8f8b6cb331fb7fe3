//! Top-level resources (NSGs, ASGs, public IP prefixes, route tables, virtual networks, managed
//! clusters) and agent pools: list, GET, PUT, PATCH (tags only) and DELETE, with ETags, name and
//! location rules, and the long-running operation each write starts.

use super::operations::{
    NewOp, async_url, cancel_op, delete_accepted, finish_or_schedule, start_op,
};
use super::paging::page;
use super::request::{parse_body, preconditions};
use super::resource_groups::normalize_location;
use super::{Reply, Request};
use crate::config::Limits;
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::kinds::{self, Cx, aks};
use crate::path::{ResPath, canonical_ns, canonical_type};
use crate::sim::Sim;
use crate::state::{self, Kind, OpKind, OpStatus, Resource, State, key};
use serde_json::{Value, json};
use std::sync::Arc;

/// Resources of `kind` in a subscription, or in one of its resource groups.
pub(super) fn list(
    sim: &Arc<Sim>,
    req: &Request,
    sub: &str,
    rg: Option<&str>,
    kind: Kind,
) -> CloudResult<Reply> {
    let st = sim.state();
    st.subscription(sub)?;
    let prefix = match rg {
        Some(rg) => {
            st.resource_group(sub, rg)?;
            key(&format!("/subscriptions/{sub}/resourceGroups/{rg}/"))
        }
        None => key(&format!("/subscriptions/{sub}/")),
    };
    let items = st
        .resources
        .iter()
        .filter(|(k, r)| r.kind == kind && k.starts_with(&prefix))
        .map(|(_, r)| kinds::render_at(&st, r, req.api_version()))
        .collect();
    Ok(page(sim, req, items))
}

/// The agent pools of a managed cluster.
pub(super) fn list_agent_pools(sim: &Arc<Sim>, req: &Request, p: &ResPath) -> CloudResult<Reply> {
    let st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let cluster = res_id(p);
    st.get_kind(&cluster, Kind::ManagedCluster).ok_or_else(|| {
        CloudError::resource_not_found(Kind::ManagedCluster.type_name(), &p.segs[0].1, &p.rg)
    })?;
    let items = st
        .under(&cluster)
        .filter(|r| r.kind == Kind::AgentPool)
        .map(|r| kinds::render_at(&st, r, req.api_version()))
        .collect();
    drop(st);
    Ok(page(sim, req, items))
}

/// Full ARM ID of a path, canonical type casing, the client's name casing.
pub fn res_id(p: &ResPath) -> String {
    let mut id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/{}",
        p.sub,
        p.rg,
        canonical_ns(&p.ns)
    );
    for (t, n) in &p.segs {
        id.push('/');
        id.push_str(&canonical_type(t));
        id.push('/');
        id.push_str(n);
    }
    id
}

pub(super) fn parent_path(p: &ResPath) -> ResPath {
    ResPath {
        segs: p.segs[..1].to_vec(),
        collection: None,
        ..p.clone()
    }
}

pub(super) fn not_found(kind: Kind, p: &ResPath) -> CloudError {
    if kind == Kind::AgentPool {
        CloudError::new(
            404,
            "NotFound",
            format!(
                "Agent pool '{}' of managed cluster '{}' was not found.",
                p.segs[1].1, p.segs[0].1
            ),
        )
    } else {
        CloudError::resource_not_found(kind.type_name(), &p.segs[0].1, &p.rg)
    }
}

fn check_cluster(st: &State, kind: Kind, p: &ResPath) -> CloudResult<()> {
    if kind == Kind::AgentPool
        && st
            .get_kind(&res_id(&parent_path(p)), Kind::ManagedCluster)
            .is_none()
    {
        return Err(CloudError::resource_not_found(
            Kind::ManagedCluster.type_name(),
            &p.segs[0].1,
            &p.rg,
        ));
    }
    Ok(())
}

pub(super) fn get(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    check_cluster(&st, kind, p)?;
    let res = st
        .get_kind(&res_id(p), kind)
        .ok_or_else(|| not_found(kind, p))?;
    let body = kinds::render_at(&st, res, req.api_version());
    Ok(Reply::json(200, body).etag(kinds::etag_header(res)))
}

/// Whether a write at this api-version is subject to `If-Match` / `If-None-Match`. AKS documents
/// them on agent pools only from [`state::AGENT_POOL_ETAG_SINCE`]; before that it returns no
/// ETag to match and the headers are not part of the operation, so they are ignored.
fn honours_preconditions(kind: Kind, req: &Request) -> bool {
    kind != Kind::AgentPool || state::agent_pool_etags(req.api_version())
}

fn valid_name(kind: Kind, name: &str) -> CloudResult<()> {
    let ok = if kind == Kind::AgentPool {
        (1..=12).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    } else {
        (1..=80).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if ok {
        Ok(())
    } else if kind == Kind::AgentPool {
        Err(CloudError::bad_request(
            "InvalidParameter",
            format!(
                "Agent pool name '{name}' is invalid: 1-12 lowercase letters and digits, starting with a letter."
            ),
        ))
    } else {
        Err(CloudError::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
            ),
        ))
    }
}

fn aks_busy(res: &Resource, st: &State) -> CloudResult<()> {
    if let Some(op) = res.op.as_ref().and_then(|id| st.ops.get(id))
        && op.status == OpStatus::InProgress
    {
        return Err(CloudError::new(
            409,
            "OperationNotAllowed",
            format!(
                "Operation is not allowed because there's an in progress {} operation on {}. Please wait for it to finish before starting a new operation.",
                op.name, res.id
            ),
        ));
    }
    Ok(())
}

/// Creates or replaces a resource in `st` (no LRO, no preconditions). Shared by the HTTP PUT,
/// the fixture loader and cluster creation; returns the ID and whether it was created.
pub fn put_core(
    st: &mut State,
    limits: &Limits,
    kind: Kind,
    p: &ResPath,
    body: &Obj,
) -> CloudResult<(String, bool)> {
    st.resource_group(&p.sub, &p.rg)?;
    check_cluster(st, kind, p)?;
    let id = res_id(p);
    let name = p.segs.last().map(|(_, n)| n.clone()).unwrap_or_default();
    valid_name(kind, &name)?;
    let existing = st.get(&id).cloned();
    let location = if kind == Kind::AgentPool {
        st.get(aks::cluster_of_pool(&id))
            .map(|c| c.location().to_string())
            .unwrap_or_default()
    } else {
        match (json::opt_str(body, "location", "resource")?, &existing) {
            (Some(l), Some(old)) if normalize_location(l) != old.location() => {
                return Err(CloudError::bad_request(
                    "InvalidResourceLocation",
                    format!(
                        "The resource '{name}' already exists in location '{}' in resource group '{}'. A resource with the same name cannot be created in location '{}'. Please select a new resource name.",
                        old.location(),
                        p.rg,
                        normalize_location(l)
                    ),
                ));
            }
            (Some(l), _) => normalize_location(l),
            (None, Some(old)) => old.location().to_string(),
            (None, None) => {
                return Err(CloudError::bad_request(
                    "LocationRequired",
                    "The location property is required for this definition.",
                ));
            }
        }
    };
    let tags = json::opt_obj(body, "tags", "resource")?.cloned();
    let cx = Cx {
        limits,
        id: &id,
        name: &name,
        sub: &p.sub,
        rg: &p.rg,
        location: &location,
    };
    let built = kinds::build(kind, st, &cx, existing.as_ref(), body)?;
    let etag = state::new_etag();
    let mut props = built.props;
    kinds::stamp_children(
        &mut props,
        &["securityRules", "defaultSecurityRules", "routes", "subnets"],
        &etag,
    );
    let mut out = Obj::new();
    out.insert("id".into(), json!(id));
    out.insert("name".into(), json!(name));
    out.insert("type".into(), json!(kind.type_name()));
    if kind != Kind::AgentPool {
        out.insert("location".into(), json!(location));
        if let Some(t) = tags.filter(|t| !t.is_empty()) {
            out.insert("tags".into(), Value::Object(t));
        }
    }
    out.insert("etag".into(), json!(etag));
    for (k, v) in built.extra {
        out.insert(k, v);
    }
    out.insert("properties".into(), Value::Object(props));
    let created = existing.is_none();
    st.resources.insert(
        key(&id),
        Resource {
            id: id.clone(),
            kind,
            body: Value::Object(out),
            op: existing.and_then(|e| e.op),
        },
    );
    if kind == Kind::ManagedCluster && created {
        let profiles = json::props(body)?
            .get("agentPoolProfiles")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for profile in profiles {
            if let Err(e) = create_profile_pool(st, limits, p, &profile) {
                let pools: Vec<Resource> = st.under(&id).cloned().collect();
                for pool in pools {
                    kinds::on_removed(st, &pool);
                    st.resources.remove(&key(&pool.id));
                }
                st.resources.remove(&key(&id));
                return Err(e);
            }
        }
    }
    Ok((id, created))
}

fn create_profile_pool(
    st: &mut State,
    limits: &Limits,
    cluster: &ResPath,
    profile: &Value,
) -> CloudResult<()> {
    let prof = json::as_obj(profile, "an agent pool profile")?;
    let name = json::opt_str(prof, "name", "agentPoolProfile")?.ok_or_else(|| {
        CloudError::bad_request("InvalidParameter", "Every agentPoolProfile needs a name.")
    })?;
    let mut props = prof.clone();
    props.remove("name");
    let mut body = Obj::new();
    body.insert("properties".into(), Value::Object(props));
    let mut pool_path = cluster.clone();
    pool_path.segs.truncate(1);
    pool_path.segs.push(("agentPools".into(), name.to_string()));
    put_core(st, limits, Kind::AgentPool, &pool_path, &body).map(|_| ())
}

fn op_noun_prefix(method: &str) -> &'static str {
    if method == "DELETE" { "Delete" } else { "Put" }
}

pub(super) fn put(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let body = parse_body(req.body)?;
    let live = sim.live();
    let mut st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    check_cluster(&st, kind, p)?;
    let id = res_id(p);
    let existing = st.get(&id).cloned();
    if honours_preconditions(kind, req) {
        preconditions(existing.as_ref().map(Resource::etag), req)?;
    }
    if kind.is_aks()
        && let Some(e) = &existing
    {
        aks_busy(e, &st)?;
    }
    let old_count = existing
        .as_ref()
        .and_then(|e| e.props().get("count"))
        .and_then(Value::as_i64);
    let (id, created) = put_core(&mut st, &live.limits, kind, p, &body)?;
    let op_name = format!("Put{}Operation", kind.op_noun());
    let (state_word, ms) = if kind.is_aks() {
        let new_count = st
            .get(&id)
            .and_then(|r| r.props().get("count"))
            .and_then(Value::as_i64);
        let word = if created {
            "Creating"
        } else if old_count != new_count {
            "Scaling"
        } else {
            "Updating"
        };
        (word, live.lro.aks_ms)
    } else {
        ("Updating", live.lro.network_ms)
    };
    if let Some(old_op) = existing.as_ref().and_then(|e| e.op.clone()) {
        cancel_op(&mut st, &old_op, &op_name);
    }
    let location = st
        .get(&id)
        .map(|r| r.location().to_string())
        .unwrap_or_default();
    let op_id = start_op(
        &mut st,
        req,
        NewOp {
            namespace: kind.namespace(),
            sub: &p.sub,
            location: &location,
            resource_key: key(&id),
            kind: OpKind::Put,
            name: op_name,
        },
        state_word,
    );
    let url = async_url(
        sim,
        kind.namespace(),
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    let st = finish_or_schedule(sim, st, &op_id, ms);
    let res = st.get(&id).ok_or_else(|| not_found(kind, p))?;
    let body = kinds::render_at(&st, res, req.api_version());
    let reply = Reply::json(if created { 201 } else { 200 }, body).etag(kinds::etag_header(res));
    Ok(reply
        .header("Azure-AsyncOperation", url)
        .header("Retry-After", live.lro.retry_after_secs.to_string()))
}

pub(super) fn patch(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let body = parse_body(req.body)?;
    let mut st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let id = res_id(p);
    let res = st.get_kind(&id, kind).ok_or_else(|| not_found(kind, p))?;
    preconditions(Some(res.etag()), req)?;
    let Some(tags) = json::opt_obj(&body, "tags", "resource")?.cloned() else {
        return Err(CloudError::bad_request(
            "InvalidRequestContent",
            "Only 'tags' can be updated with PATCH on this resource type.",
        ));
    };
    let etag = state::new_etag();
    let res = st
        .resources
        .get_mut(&key(&id))
        .ok_or_else(|| not_found(kind, p))?;
    if let Value::Object(b) = &mut res.body {
        if tags.is_empty() {
            b.remove("tags");
        } else {
            b.insert("tags".into(), Value::Object(tags));
        }
        b.insert("etag".into(), json!(etag));
    }
    kinds::stamp_children(
        res.props_mut(),
        &["securityRules", "defaultSecurityRules", "routes", "subnets"],
        &etag,
    );
    let res = st.get(&id).ok_or_else(|| not_found(kind, p))?;
    Ok(Reply::json(200, kinds::render(&st, res)).etag(res.etag()))
}

pub(super) fn delete(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let live = sim.live();
    let mut st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let id = res_id(p);
    let conditional = honours_preconditions(kind, req);
    let Some(existing) = st.get_kind(&id, kind).cloned() else {
        if conditional && req.if_match.is_some() {
            return Err(CloudError::precondition_failed());
        }
        return Ok(Reply::empty(204));
    };
    if conditional {
        preconditions(Some(existing.etag()), req)?;
    }
    if kind.is_aks() {
        aks_busy(&existing, &st)?;
    }
    kinds::check_delete(&st, &existing)?;
    let op_name = format!("{}{}Operation", op_noun_prefix("DELETE"), kind.op_noun());
    if let Some(old_op) = existing.op.clone() {
        cancel_op(&mut st, &old_op, &op_name);
    }
    let location = existing.location().to_string();
    let op_id = start_op(
        &mut st,
        req,
        NewOp {
            namespace: kind.namespace(),
            sub: &p.sub,
            location: &location,
            resource_key: key(&id),
            kind: OpKind::Delete,
            name: op_name,
        },
        "Deleting",
    );
    let ms = if kind.is_aks() {
        live.lro.aks_ms
    } else {
        live.lro.network_ms
    };
    drop(finish_or_schedule(sim, st, &op_id, ms));
    Ok(delete_accepted(
        sim,
        req,
        kind.namespace(),
        &p.sub,
        &location,
        &op_id,
        live.lro.retry_after_secs,
    ))
}
