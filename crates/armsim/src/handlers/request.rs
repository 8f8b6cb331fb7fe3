//! One parsed ARM request and the reply it gets, plus what every write checks first: a JSON
//! object body and the `If-Match` / `If-None-Match` preconditions against the current ETag.

use crate::error::{CloudError, CloudResult};
use crate::json::Obj;
use crate::path::Route;
use serde_json::Value;

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

    pub(super) fn etag(self, etag: &str) -> Self {
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
    /// Injected by a `stall_operation` fault: the LRO this write starts runs this much longer.
    pub stall_operation_ms: u64,
}

impl Request<'_> {
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn api_version(&self) -> &str {
        self.query("api-version").unwrap_or("")
    }
}

pub(super) fn parse_body(bytes: &[u8]) -> CloudResult<Obj> {
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
pub(super) fn preconditions(current: Option<&str>, req: &Request) -> CloudResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_comparison_ignores_weakness_marker() {
        assert_eq!(strip_etag("W/\"abc\""), "abc");
        assert_eq!(strip_etag("\"abc\""), "abc");
    }
}
