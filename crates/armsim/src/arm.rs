//! ARM semantics over the state: CRUD with ETags and preconditions, long-running operations
//! (201/202 + `Azure-AsyncOperation` / `Location`, cancellation by a newer PUT), paging,
//! subscriptions and resource groups, api-version checks, and the VMSS views of agent pools.

use crate::config::Limits;
use crate::error::{CloudError, CloudResult};
use crate::faults::OtherWriterAction;
use crate::json::{self, Obj};
use crate::kinds::{self, Cx, aks};
use crate::path::{ResPath, Route, canonical_ns, canonical_type};
use crate::sim::Sim;
use crate::state::{
    self, AsyncOp, COMPUTE_API_VERSIONS, ChildKind, Kind, OpKind, OpStatus, RESOURCES_API_VERSIONS,
    Resource, SUBSCRIPTION_API_VERSIONS, State, VMSS_NETWORK_API_VERSIONS, key,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP answer before it is encoded.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn error(e: &CloudError) -> Self {
        let mut r = Reply::json(e.status, e.to_json());
        if let Some(secs) = e.retry_after {
            r = r.header("Retry-After", secs.to_string());
        }
        r.header("x-ms-failure-cause", "gateway")
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn etag(self, etag: &str) -> Self {
        if etag.is_empty() {
            self
        } else {
            self.header("ETag", etag)
        }
    }
}

/// One ARM request, already parsed.
pub struct Request<'a> {
    pub method: &'a str,
    pub route: &'a Route,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub body: &'a [u8],
    /// Injected by a `fail_operation` fault: the LRO this write starts will end `Failed`.
    pub fail_operation: Option<CloudError>,
}

impl Request<'_> {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn api_version(&self) -> &str {
        self.query("api-version").unwrap_or("")
    }
}

pub fn handle(sim: &Arc<Sim>, req: &Request) -> Reply {
    match dispatch(sim, req) {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    }
}

fn method_not_allowed(req: &Request) -> CloudError {
    CloudError::new(
        405,
        "MethodNotAllowed",
        format!(
            "The HTTP method '{}' is not supported for path '{}'.",
            req.method, req.path
        ),
    )
}

fn unknown_type(req: &Request) -> CloudError {
    CloudError::new(
        404,
        "InvalidResourceType",
        format!(
            "The resource type of path '{}' could not be found in the namespaces armsim serves.",
            req.path
        ),
    )
}

fn well_formed_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || (b[10] == b'-' && b.len() > 11))
}

fn check_api_version(req: &Request, allowed: &[&str], rtype: &str) -> CloudResult<()> {
    let Some(v) = req.query("api-version") else {
        return Err(CloudError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if !well_formed_version(v) {
        return Err(CloudError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                allowed.join(",")
            ),
        ));
    }
    if !allowed.contains(&v) {
        return Err(CloudError::bad_request(
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location and API version '{v}' for type '{rtype}'. The supported api-versions are '{}'.",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

fn dispatch(sim: &Arc<Sim>, req: &Request) -> CloudResult<Reply> {
    match req.route {
        Route::Subscription { sub } => {
            check_api_version(req, SUBSCRIPTION_API_VERSIONS, "subscriptions")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
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
        Route::ResourceGroups { sub } => {
            check_api_version(req, RESOURCES_API_VERSIONS, "resourceGroups")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            let st = sim.state();
            let s = st.subscription(sub)?;
            let items = s
                .resource_groups
                .values()
                .map(|g| rg_body(&s.id, g))
                .collect();
            Ok(page(sim, req, items))
        }
        Route::ResourceGroup { sub, rg } => {
            check_api_version(req, RESOURCES_API_VERSIONS, "resourceGroups")?;
            resource_group(sim, req, sub, rg)
        }
        Route::Collection { sub, rg, ns, rtype } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            list_collection(sim, req, sub, rg.as_deref(), ns, rtype)
        }
        Route::Resource(p) => resource(sim, req, p),
        Route::AsyncOperation { op_id, .. } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            op_status(sim, req, op_id)
        }
        Route::OperationResult { op_id, .. } => {
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            op_result(sim, req, op_id)
        }
        Route::Unknown => Err(unknown_type(req)),
    }
}

// ---------------------------------------------------------------- resource groups

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

fn resource_group(sim: &Arc<Sim>, req: &Request, sub: &str, rg: &str) -> CloudResult<Reply> {
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

// ---------------------------------------------------------------- lists and paging

fn page(sim: &Sim, req: &Request, items: Vec<Value>) -> Reply {
    let size = sim.live().paging.page_size.max(1);
    let skip = req
        .query("$skiptoken")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(items.len());
    let end = (skip + size).min(items.len());
    let mut body = json!({"value": items[skip..end].to_vec()});
    if end < items.len() {
        body["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={end}",
            sim.base_url,
            req.path,
            req.api_version()
        ));
    }
    Reply::json(200, body)
}

fn list_collection(
    sim: &Arc<Sim>,
    req: &Request,
    sub: &str,
    rg: Option<&str>,
    ns: &str,
    rtype: &str,
) -> CloudResult<Reply> {
    let type_key = format!("{}/{}", ns.to_ascii_lowercase(), rtype.to_ascii_lowercase());
    if type_key == "microsoft.compute/virtualmachinescalesets" {
        check_api_version(req, COMPUTE_API_VERSIONS, "virtualMachineScaleSets")?;
        let st = sim.state();
        st.subscription(sub)?;
        let pools: Vec<&Resource> = match rg {
            Some(rg) => {
                st.resource_group(sub, rg)?;
                aks::pools_in_node_rg(&st, sub, rg)
            }
            None => st.of_kind(Kind::AgentPool).collect(),
        };
        let items = pools
            .into_iter()
            .filter_map(|p| aks::vmss_body(&st, p))
            .collect();
        return Ok(page(sim, req, items));
    }
    let kind = Kind::from_type_key(&type_key)
        .filter(|k| *k != Kind::AgentPool)
        .ok_or_else(|| unknown_type(req))?;
    check_api_version(req, kind.api_versions(), kind.type_name())?;
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
        .map(|(_, r)| kinds::render(&st, r))
        .collect();
    Ok(page(sim, req, items))
}

// ---------------------------------------------------------------- resources

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

fn parent_path(p: &ResPath) -> ResPath {
    ResPath {
        segs: p.segs[..1].to_vec(),
        collection: None,
        ..p.clone()
    }
}

fn resource(sim: &Arc<Sim>, req: &Request, p: &ResPath) -> CloudResult<Reply> {
    let type_key = p.type_key();
    // VMSS views of agent pools.
    match type_key.as_str() {
        "microsoft.compute/virtualmachinescalesets" => {
            check_api_version(req, COMPUTE_API_VERSIONS, "virtualMachineScaleSets")?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            let st = sim.state();
            st.resource_group(&p.sub, &p.rg)?;
            let pool = aks::pool_for_vmss(&st, &p.sub, &p.rg, &p.segs[0].1).ok_or_else(|| {
                CloudError::resource_not_found(
                    "Microsoft.Compute/virtualMachineScaleSets",
                    &p.segs[0].1,
                    &p.rg,
                )
            })?;
            let body = aks::vmss_body(&st, pool).unwrap_or(Value::Null);
            return Ok(Reply::json(200, body));
        }
        "microsoft.compute/virtualmachinescalesets/publicipaddresses"
        | "microsoft.compute/virtualmachinescalesets/networkinterfaces" => {
            check_api_version(
                req,
                VMSS_NETWORK_API_VERSIONS,
                "virtualMachineScaleSets/publicIPAddresses",
            )?;
            if req.method != "GET" {
                return Err(method_not_allowed(req));
            }
            let st = sim.state();
            st.resource_group(&p.sub, &p.rg)?;
            let pool = aks::pool_for_vmss(&st, &p.sub, &p.rg, &p.segs[0].1).ok_or_else(|| {
                CloudError::resource_not_found(
                    "Microsoft.Compute/virtualMachineScaleSets",
                    &p.segs[0].1,
                    &p.rg,
                )
            })?;
            let items = if type_key.ends_with("publicipaddresses") {
                aks::vmss_public_ips(&st, pool)
            } else {
                aks::vmss_nics(&st, pool)
            };
            drop(st);
            return Ok(page(sim, req, items));
        }
        _ => {}
    }
    if p.collection.is_some() {
        if req.method != "GET" {
            return Err(method_not_allowed(req));
        }
        if type_key == "microsoft.containerservice/managedclusters/agentpools" {
            check_api_version(
                req,
                Kind::AgentPool.api_versions(),
                Kind::AgentPool.type_name(),
            )?;
            let st = sim.state();
            st.resource_group(&p.sub, &p.rg)?;
            let cluster = res_id(p);
            st.get_kind(&cluster, Kind::ManagedCluster).ok_or_else(|| {
                CloudError::resource_not_found(
                    Kind::ManagedCluster.type_name(),
                    &p.segs[0].1,
                    &p.rg,
                )
            })?;
            let items = st
                .under(&cluster)
                .filter(|r| r.kind == Kind::AgentPool)
                .map(|r| kinds::render(&st, r))
                .collect();
            drop(st);
            return Ok(page(sim, req, items));
        }
        let ck = ChildKind::from_key(&type_key).ok_or_else(|| unknown_type(req))?;
        check_api_version(req, ck.parent().api_versions(), ck.type_name())?;
        return child_list(sim, req, ck, p);
    }
    if p.segs.len() == 2
        && let Some(ck) = ChildKind::from_key(&type_key)
    {
        check_api_version(req, ck.parent().api_versions(), ck.type_name())?;
        return match req.method {
            "GET" => child_get(sim, p, ck),
            "PUT" if ck.writable() => child_put(sim, req, p, ck),
            "DELETE" if ck.writable() => child_delete(sim, req, p, ck),
            _ => Err(method_not_allowed(req)),
        };
    }
    let kind = Kind::from_type_key(&type_key)
        .filter(|k| p.segs.len() == if *k == Kind::AgentPool { 2 } else { 1 })
        .ok_or_else(|| unknown_type(req))?;
    check_api_version(req, kind.api_versions(), kind.type_name())?;
    match req.method {
        "GET" => get_resource(sim, p, kind),
        "PUT" => put_resource(sim, req, p, kind),
        "PATCH" if kind != Kind::AgentPool => patch_resource(sim, req, p, kind),
        "DELETE" => delete_resource(sim, req, p, kind),
        _ => Err(method_not_allowed(req)),
    }
}

fn not_found(kind: Kind, p: &ResPath) -> CloudError {
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

fn get_resource(sim: &Arc<Sim>, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    check_cluster(&st, kind, p)?;
    let res = st
        .get_kind(&res_id(p), kind)
        .ok_or_else(|| not_found(kind, p))?;
    Ok(Reply::json(200, kinds::render(&st, res)).etag(res.etag()))
}

fn parse_body(bytes: &[u8]) -> CloudResult<Obj> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CloudError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: the body is empty.",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(CloudError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: a JSON object is expected.",
        )),
        Err(e) => Err(CloudError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}"),
        )),
    }
}

fn strip_etag(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"')
}

/// `If-Match` / `If-None-Match` against the current ETag (`None`: resource absent).
fn preconditions(current: Option<&str>, req: &Request) -> CloudResult<()> {
    if let Some(m) = req.if_match {
        let ok = match current {
            None => false,
            Some(cur) => m.trim() == "*" || m.split(',').any(|c| strip_etag(c) == strip_etag(cur)),
        };
        if !ok {
            return Err(CloudError::precondition_failed());
        }
    }
    if let Some(n) = req.if_none_match
        && let Some(cur) = current
        && (n.trim() == "*" || n.split(',').any(|c| strip_etag(c) == strip_etag(cur)))
    {
        return Err(CloudError::precondition_failed());
    }
    Ok(())
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

fn put_resource(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let body = parse_body(req.body)?;
    let live = sim.live();
    let mut st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    check_cluster(&st, kind, p)?;
    let id = res_id(p);
    let existing = st.get(&id).cloned();
    preconditions(existing.as_ref().map(Resource::etag), req)?;
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
    let reply =
        Reply::json(if created { 201 } else { 200 }, kinds::render(&st, res)).etag(res.etag());
    Ok(reply
        .header("Azure-AsyncOperation", url)
        .header("Retry-After", live.lro.retry_after_secs.to_string()))
}

fn patch_resource(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
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

fn delete_resource(sim: &Arc<Sim>, req: &Request, p: &ResPath, kind: Kind) -> CloudResult<Reply> {
    let live = sim.live();
    let mut st = sim.state();
    st.resource_group(&p.sub, &p.rg)?;
    let id = res_id(p);
    let Some(existing) = st.get_kind(&id, kind).cloned() else {
        if req.if_match.is_some() {
            return Err(CloudError::precondition_failed());
        }
        return Ok(Reply::empty(204));
    };
    preconditions(Some(existing.etag()), req)?;
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
    let async_op = async_url(
        sim,
        kind.namespace(),
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    let result = result_url(
        sim,
        kind.namespace(),
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    drop(finish_or_schedule(sim, st, &op_id, ms));
    Ok(Reply::empty(202)
        .header("Azure-AsyncOperation", async_op)
        .header("Location", result)
        .header("Retry-After", live.lro.retry_after_secs.to_string()))
}

// ---------------------------------------------------------------- child resources

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

fn child_list(sim: &Arc<Sim>, req: &Request, ck: ChildKind, p: &ResPath) -> CloudResult<Reply> {
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

fn child_get(sim: &Arc<Sim>, p: &ResPath, ck: ChildKind) -> CloudResult<Reply> {
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
pub fn child_put_core(
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
fn rebuild_parent(
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

fn child_put(sim: &Arc<Sim>, req: &Request, p: &ResPath, ck: ChildKind) -> CloudResult<Reply> {
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

fn child_delete(sim: &Arc<Sim>, req: &Request, p: &ResPath, ck: ChildKind) -> CloudResult<Reply> {
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
    let async_op = async_url(
        sim,
        "Microsoft.Network",
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    let result = result_url(
        sim,
        "Microsoft.Network",
        &p.sub,
        &location,
        &op_id,
        req.api_version(),
    );
    drop(finish_or_schedule(sim, st, &op_id, live.lro.network_ms));
    Ok(Reply::empty(202)
        .header("Azure-AsyncOperation", async_op)
        .header("Location", result)
        .header("Retry-After", live.lro.retry_after_secs.to_string()))
}

// ---------------------------------------------------------------- long-running operations

/// What a new operation is about.
struct NewOp<'a> {
    namespace: &'a str,
    sub: &'a str,
    location: &'a str,
    resource_key: String,
    kind: OpKind,
    name: String,
}

/// Registers an operation on a resource and marks the resource as busy with it.
fn start_op(st: &mut State, req: &Request, op: NewOp, provisioning_state: &str) -> String {
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
    if let Some(res) = st.resources.get_mut(&op.resource_key) {
        res.op = Some(id.clone());
        res.set_provisioning_state(provisioning_state);
    }
    id
}

#[allow(clippy::too_many_arguments)]
fn new_op(
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

fn async_url(sim: &Sim, ns: &str, sub: &str, location: &str, op: &str, api: &str) -> String {
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

/// Marks a running operation as superseded by a newer write to the same resource.
fn cancel_op(st: &mut State, op_id: &str, by: &str) {
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
pub fn complete_op(st: &mut State, op_id: &str) {
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

/// Completes the operation at once when its duration is zero, else after the duration.
fn finish_or_schedule<'a>(
    sim: &'a Arc<Sim>,
    mut st: std::sync::MutexGuard<'a, State>,
    op_id: &str,
    ms: u64,
) -> std::sync::MutexGuard<'a, State> {
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

fn op_status(sim: &Arc<Sim>, req: &Request, op_id: &str) -> CloudResult<Reply> {
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

fn op_result(sim: &Arc<Sim>, req: &Request, op_id: &str) -> CloudResult<Reply> {
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
                Some(res) => Ok(Reply::json(200, kinds::render(&st, res))),
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

// ---------------------------------------------------------------- other writers

/// A write by someone other than the client (AKS, the cloud controller): applied at once,
/// validated like any PUT, with a new ETag.
pub fn other_write(sim: &Sim, id: &str, action: &OtherWriterAction) -> CloudResult<()> {
    let limits = sim.live().limits;
    let mut st = sim.state();
    let Some(res) = st.get(id).cloned() else {
        return Err(CloudError::child_not_found(id));
    };
    let mut body = res.body.as_object().cloned().unwrap_or_default();
    let mut props = json::props(&body)?;
    let upsert = |props: &mut Obj, array: &str, item: &Value| -> CloudResult<()> {
        let name = item["name"].as_str().unwrap_or("").to_string();
        let mut items = props
            .get(array)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items.retain(|c| {
            !c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        });
        items.push(item.clone());
        props.insert(array.into(), Value::Array(items));
        Ok(())
    };
    match action {
        OtherWriterAction::Touch => {}
        OtherWriterAction::UpsertSecurityRule { rule } => {
            upsert(&mut props, "securityRules", rule)?
        }
        OtherWriterAction::UpsertRoute { route } => upsert(&mut props, "routes", route)?,
        OtherWriterAction::RemoveChild { name } => {
            for array in ["securityRules", "routes"] {
                if let Some(Value::Array(items)) = props.get_mut(array) {
                    items.retain(|c| {
                        !c["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    });
                }
            }
        }
    }
    body.insert("properties".into(), Value::Object(props));
    rebuild_parent(&mut st, &limits, &res, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_shapes() {
        assert!(well_formed_version("2024-03-01"));
        assert!(well_formed_version("2024-02-02-preview"));
        assert!(!well_formed_version("2024-3-01"));
        assert!(!well_formed_version("latest"));
        assert!(!well_formed_version("2024-03-01-"));
    }

    #[test]
    fn etag_comparison_ignores_weakness_marker() {
        assert_eq!(strip_etag("W/\"abc\""), "abc");
        assert_eq!(strip_etag("\"abc\""), "abc");
    }
}
