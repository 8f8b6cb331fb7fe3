//! JSON helpers: ARM's read-only fields stripped, case-insensitive IDs, and a path-wise diff
//! for "expected vs found".

use serde_json::{Map, Value};

/// Fields ARM maintains itself on every write (any depth): they change with every write of
/// the resource, whoever makes it, so they say nothing about who changed what.
pub const READ_ONLY_FIELDS: [&str; 3] = ["etag", "eTag", "provisioningState"];

/// `value` without [`READ_ONLY_FIELDS`], at any depth.
pub fn strip_read_only(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !READ_ONLY_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), strip_read_only(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_read_only).collect()),
        other => other.clone(),
    }
}

/// Removes the field at JSON pointer `pointer` (e.g. `/properties/routes`), if present.
pub fn remove_pointer(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    if let Some(Value::Object(m)) = target {
        m.remove(&last);
    }
}

/// Removes `key` from the object at `pointer`, and the object itself when that leaves it
/// empty (ARM reports no tags and empty tags alike).
pub fn remove_key_pruning(value: &mut Value, pointer: &str, key: &str) {
    let emptied = match value.pointer_mut(pointer) {
        Some(Value::Object(m)) => {
            m.retain(|k, _| !k.eq_ignore_ascii_case(key));
            m.is_empty()
        }
        _ => false,
    };
    if emptied {
        remove_pointer(value, pointer);
    }
}

/// The named entries of the array at `pointer` (security rules, routes), by name.
pub fn entries<'a>(value: &'a Value, pointer: &str) -> Vec<(&'a str, &'a Value)> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get("name")?.as_str()?, e)))
        .collect()
}

/// The entry named `name` (ARM compares names case-insensitively; an exact match wins).
pub fn find_entry<'a>(entries: &[(&'a str, &'a Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(n, _)| *n == name)
        .or_else(|| entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
        .map(|(_, v)| *v)
}

/// Value of tag `key` of a resource (tag names compare case-insensitively in ARM).
pub fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource
        .get("tags")
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

/// One difference between two JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// JSON pointer of the differing value (`""` for the whole value).
    pub path: String,
    /// `None`: absent.
    pub expected: Option<Value>,
    pub found: Option<Value>,
}

/// Every place where `found` differs from `expected`, as JSON pointers; objects are compared
/// key by key, everything else (arrays included) as a whole.
pub fn diff(expected: &Value, found: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_at("", Some(expected), Some(found), &mut out);
    out
}

fn diff_at(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Difference>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                diff_at(&p, x.get(k), y.get(k), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Difference {
            path: path.to_string(),
            expected: a.cloned(),
            found: b.cloned(),
        }),
    }
}

/// `value` as an object map (empty for anything else).
pub fn object(value: &Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_only_fields_go_at_any_depth() {
        let v = json!({"etag": "1", "properties": {"provisioningState": "Succeeded", "eTag": "x",
            "securityRules": [{"name": "a", "etag": "1", "properties": {"priority": 100}}]}});
        assert_eq!(
            strip_read_only(&v),
            json!({"properties": {"securityRules": [{"name": "a", "properties": {"priority": 100}}]}})
        );
    }

    #[test]
    fn diff_names_each_changed_leaf() {
        let a = json!({"p": {"x": 1, "y": [1, 2]}, "gone": true});
        let b = json!({"p": {"x": 2, "y": [1, 2]}, "new": "v"});
        let d = diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/gone", "/new", "/p/x"]);
        assert_eq!(d[0].found, None);
        assert_eq!(d[2].expected, Some(json!(1)));
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn pointers_and_tags() {
        let mut v = json!({"tags": {"Poolnet.dev/cluster": "c"}, "properties": {"routes": []}});
        assert_eq!(tag(&v, "poolnet.dev/cluster"), Some("c"));
        remove_key_pruning(&mut v, "/tags", "poolnet.dev/cluster");
        remove_pointer(&mut v, "/properties/routes");
        assert_eq!(v, json!({"properties": {}}));
    }
}
