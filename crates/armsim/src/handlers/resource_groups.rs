//! Subscriptions (GET) and resource groups (list, GET, HEAD, PUT, PATCH, DELETE). Deleting a
//! group is a long-running operation that removes everything in it.

use super::dispatch::method_not_allowed;
use super::operations::{finish_or_schedule, new_op};
use super::paging::page;
use super::request::parse_body;
use super::{Reply, Request};
use crate::error::{CloudError, CloudResult};
use crate::json::{self, Obj};
use crate::sim::Sim;
use crate::state::{self, OpKind, key};
use serde_json::{Value, json};
use std::sync::Arc;

/// GET of a subscription.
pub(super) fn get_subscription(sim: &Sim, sub: &str) -> CloudResult<Reply> {
    let st = sim.state();
    let s = st.subscription(sub)?;
    Ok(Reply::json(
        200,
        json!({
            "id": format!("/subscriptions/{}", s.id),
            "subscriptionId": s.id,
            "displayName": s.display_name,
            "state": "Enabled",
            "authorizationSource": "RoleBased",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
        }),
    ))
}

/// A preview feature's registration state in a subscription (`az feature show`). armsim knows
/// no feature list: every name answers, `NotRegistered` unless the fixture registered it.
pub(super) fn get_feature(sim: &Sim, sub: &str, ns: &str, name: &str) -> CloudResult<Reply> {
    let st = sim.state();
    let s = st.subscription(sub)?;
    let registered = s
        .registered_features
        .contains(&format!("{ns}/{name}").to_ascii_lowercase());
    Ok(Reply::json(
        200,
        json!({
            "id": format!("/subscriptions/{}/providers/Microsoft.Features/providers/{ns}/features/{name}", s.id),
            "name": format!("{ns}/{name}"),
            "type": "Microsoft.Features/providers/features",
            "properties": {"state": if registered { "Registered" } else { "NotRegistered" }},
        }),
    ))
}

/// The resource groups of a subscription.
pub(super) fn list(sim: &Sim, req: &Request, sub: &str) -> CloudResult<Reply> {
    let st = sim.state();
    let s = st.subscription(sub)?;
    let items = s
        .resource_groups
        .values()
        .map(|g| rg_body(&s.id, g))
        .collect();
    Ok(page(sim, req, items))
}

fn rg_body(sub: &str, g: &state::ResourceGroup) -> Value {
    let mut b = json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{}", g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "properties": {"provisioningState": if g.deleting { "Deleting" } else { "Succeeded" }},
    });
    if !g.tags.is_empty() {
        b["tags"] = Value::Object(g.tags.clone());
    }
    if let Some(m) = &g.managed_by {
        b["managedBy"] = json!(m);
    }
    b
}

pub fn normalize_location(loc: &str) -> String {
    loc.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

pub(super) fn resource_group(
    sim: &Arc<Sim>,
    req: &Request,
    sub: &str,
    rg: &str,
) -> CloudResult<Reply> {
    match req.method {
        "GET" | "HEAD" => {
            let st = sim.state();
            st.subscription(sub)?;
            match st.resource_group(sub, rg) {
                Ok(g) if req.method == "GET" => Ok(Reply::json(200, rg_body(sub, g))),
                Ok(_) => Ok(Reply::empty(204)),
                Err(_) if req.method == "HEAD" => Ok(Reply::empty(404)),
                Err(e) => Err(e),
            }
        }
        "PUT" | "PATCH" => {
            let body = parse_body(req.body)?;
            let mut st = sim.state();
            st.subscription(sub)?;
            let existing = st.resource_group(sub, rg).ok().cloned();
            if req.method == "PATCH" && existing.is_none() {
                st.resource_group(sub, rg)?;
            }
            let location = match (
                json::opt_str(&body, "location", "resourceGroup")?,
                &existing,
            ) {
                (Some(l), _) => normalize_location(l),
                (None, Some(g)) => g.location.clone(),
                (None, None) => {
                    return Err(CloudError::bad_request(
                        "LocationRequired",
                        "The location property is required for this definition.",
                    ));
                }
            };
            if let Some(g) = &existing
                && g.location != location
            {
                return Err(CloudError::new(
                    409,
                    "InvalidResourceGroupLocation",
                    format!(
                        "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                        g.location
                    ),
                ));
            }
            let tags = match json::opt_obj(&body, "tags", "resourceGroup")? {
                Some(t) => t.clone(),
                None if req.method == "PATCH" => existing
                    .as_ref()
                    .map(|g| g.tags.clone())
                    .unwrap_or_default(),
                None => Obj::new(),
            };
            let managed_by = json::opt_str(&body, "managedBy", "resourceGroup")?
                .map(str::to_string)
                .or_else(|| existing.as_ref().and_then(|g| g.managed_by.clone()));
            let name = existing
                .as_ref()
                .map(|g| g.name.clone())
                .unwrap_or_else(|| rg.to_string());
            let g = state::ResourceGroup {
                name,
                location,
                tags,
                managed_by,
                deleting: false,
            };
            let body = rg_body(&st.subscription(sub)?.id.clone(), &g);
            if let Some(s) = st.subscriptions.get_mut(&key(sub)) {
                s.resource_groups.insert(key(rg), g);
            }
            Ok(Reply::json(
                if existing.is_some() { 200 } else { 201 },
                body,
            ))
        }
        "DELETE" => {
            let live = sim.live();
            let mut st = sim.state();
            st.resource_group(sub, rg)?;
            let location = st.resource_group(sub, rg)?.location.clone();
            if let Some(g) = st
                .subscriptions
                .get_mut(&key(sub))
                .and_then(|s| s.resource_groups.get_mut(&key(rg)))
            {
                g.deleting = true;
            }
            let op_id = new_op(
                &mut st,
                "Microsoft.Resources",
                sub,
                &location,
                format!("{}|{}", key(sub), key(rg)),
                OpKind::DeleteResourceGroup,
                "DeleteResourceGroupOperation".into(),
                None,
            );
            let url = format!(
                "{}/subscriptions/{sub}/operationresults/{op_id}?api-version={}",
                sim.base_url,
                req.api_version()
            );
            drop(finish_or_schedule(sim, st, &op_id, live.lro.network_ms));
            Ok(Reply::empty(202)
                .header("Location", url)
                .header("Retry-After", live.lro.retry_after_secs.to_string()))
        }
        _ => Err(method_not_allowed(req)),
    }
}
