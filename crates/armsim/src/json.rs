//! Small helpers to read ARM request bodies with Azure-style errors instead of panics.

use crate::error::{CloudError, CloudResult};
use serde_json::{Map, Value};

pub type Obj = Map<String, Value>;

/// `properties` of a body, or an empty object when absent.
pub fn props(body: &Obj) -> CloudResult<Obj> {
    match body.get("properties") {
        None | Some(Value::Null) => Ok(Obj::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(CloudError::invalid_format(
            "Cannot parse the request: 'properties' must be an object.",
        )),
    }
}

pub fn opt_str<'a>(m: &'a Obj, key: &str, what: &str) -> CloudResult<Option<&'a str>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(CloudError::invalid_format(format!(
            "Cannot parse the request: '{key}' of {what} must be a string."
        ))),
    }
}

pub fn opt_bool(m: &Obj, key: &str, what: &str) -> CloudResult<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(CloudError::invalid_format(format!(
            "Cannot parse the request: '{key}' of {what} must be a boolean."
        ))),
    }
}

pub fn opt_i64(m: &Obj, key: &str, what: &str) -> CloudResult<Option<i64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            CloudError::invalid_format(format!(
                "Cannot parse the request: '{key}' of {what} must be an integer."
            ))
        }),
        Some(_) => Err(CloudError::invalid_format(format!(
            "Cannot parse the request: '{key}' of {what} must be an integer."
        ))),
    }
}

pub fn opt_array<'a>(m: &'a Obj, key: &str, what: &str) -> CloudResult<&'a [Value]> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a.as_slice()),
        Some(_) => Err(CloudError::invalid_format(format!(
            "Cannot parse the request: '{key}' of {what} must be an array."
        ))),
    }
}

pub fn opt_obj<'a>(m: &'a Obj, key: &str, what: &str) -> CloudResult<Option<&'a Obj>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(CloudError::invalid_format(format!(
            "Cannot parse the request: '{key}' of {what} must be an object."
        ))),
    }
}

pub fn as_obj<'a>(v: &'a Value, what: &str) -> CloudResult<&'a Obj> {
    v.as_object().ok_or_else(|| {
        CloudError::invalid_format(format!(
            "Cannot parse the request: {what} must be an object."
        ))
    })
}

pub fn string_list(m: &Obj, key: &str, what: &str) -> CloudResult<Vec<String>> {
    opt_array(m, key, what)?
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                CloudError::invalid_format(format!(
                    "Cannot parse the request: '{key}' of {what} must be an array of strings."
                ))
            })
        })
        .collect()
}

/// `[{"id": ...}]` reference lists (ASGs on rules, public IPs on prefixes).
pub fn id_list(m: &Obj, key: &str, what: &str) -> CloudResult<Vec<String>> {
    opt_array(m, key, what)?
        .iter()
        .map(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    CloudError::invalid_format(format!(
                        "Cannot parse the request: '{key}' of {what} must be a list of objects with an 'id'."
                    ))
                })
        })
        .collect()
}

/// `{"id": ...}` single reference.
pub fn opt_ref(m: &Obj, key: &str, what: &str) -> CloudResult<Option<String>> {
    match opt_obj(m, key, what)? {
        None => Ok(None),
        Some(o) => match o.get("id") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(CloudError::invalid_format(format!(
                "Cannot parse the request: '{key}.id' of {what} must be a string."
            ))),
        },
    }
}

/// Matches `value` against allowed spellings case-insensitively and returns the canonical one.
pub fn canonical_enum(
    value: &str,
    allowed: &[&'static str],
    key: &str,
    what: &str,
) -> CloudResult<&'static str> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .copied()
        .ok_or_else(|| {
            CloudError::invalid_format(format!(
                "Cannot parse the request: '{key}' of {what} has value '{value}'; allowed values are {}.",
                allowed.join(", ")
            ))
        })
}
