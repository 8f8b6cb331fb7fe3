//! List paging: a page of `paging.page_size` items and a `nextLink` carrying `$skiptoken`.

use super::Reply;
use super::Request;
use crate::sim::Sim;
use serde_json::{Value, json};

pub(super) fn page(sim: &Sim, req: &Request, items: Vec<Value>) -> Reply {
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
