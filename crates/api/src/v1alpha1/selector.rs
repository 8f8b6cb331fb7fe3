//! The schema of the label selectors in poolnet's specs: k8s-openapi's `LabelSelector`, with
//! bounds and CEL rules that check it as the API server checks a Deployment's selector
//! (`crate::names::validate_label_selector` is the webhook's copy of the rules).

use schemars::JsonSchema;

/// Bounds on label selectors in poolnet's specs: they keep the CEL rules below within the
/// API server's cost budget, and are far above what a selector needs.
pub const SELECTOR_MAX_EXPRESSIONS: u64 = 32;
/// Values per selector requirement.
pub const SELECTOR_MAX_VALUES: u64 = 64;
/// Entries of matchLabels.
pub const SELECTOR_MAX_LABELS: u64 = 64;
/// Longest label key: a 253-character prefix, '/', a 63-character name.
pub const LABEL_KEY_MAX: u64 = 317;

/// Literal of `pattern` inside a single-quoted CEL string.
fn cel_literal(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// The CEL rules (rule, message) of a label selector, as the API server checks selectors of
/// built-in kinds; `crate::names::validate_label_selector` is the webhook's copy.
pub fn label_selector_rules() -> Vec<(String, String)> {
    use crate::names::{LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN};
    let key = |k: &str| {
        format!(
            "{k}.matches({}) && {k}.indexOf('/') <= 253",
            cel_literal(LABEL_KEY_PATTERN)
        )
    };
    let value = cel_literal(LABEL_VALUE_PATTERN);
    let exprs = "!has(self.matchExpressions) || self.matchExpressions.all(e, ";
    vec![
        (
            format!("{exprs}e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])"),
            "label selector: a matchExpressions operator must be In, NotIn, Exists or DoesNotExist".into(),
        ),
        (
            format!("{exprs}!(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))"),
            "label selector: matchExpressions with operator In or NotIn need at least one value".into(),
        ),
        (
            format!("{exprs}!(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)"),
            "label selector: matchExpressions with operator Exists or DoesNotExist take no values".into(),
        ),
        (
            format!("{exprs}{})", key("e.key")),
            "label selector: each matchExpressions key must be a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into(),
        ),
        (
            format!("{exprs}!has(e.values) || e.values.all(v, v.matches({value})))"),
            "label selector: each matchExpressions value must be a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into(),
        ),
        (
            format!("!has(self.matchLabels) || self.matchLabels.all(k, {})", key("k")),
            "label selector: each matchLabels key must be a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into(),
        ),
        (
            format!("!has(self.matchLabels) || self.matchLabels.all(k, self.matchLabels[k].matches({value}))"),
            "label selector: each matchLabels value must be a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into(),
        ),
    ]
}

/// Schema of a `LabelSelector` field: k8s-openapi's, with bounds and [`label_selector_rules`].
pub fn label_selector_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use serde_json::{Value, json};
    let mut schema =
        <k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as JsonSchema>::json_schema(
            generator,
        );
    let mut set = |pointer: &str, key: &str, value: Value| {
        if let Some(obj) = schema.pointer_mut(pointer).and_then(Value::as_object_mut) {
            obj.insert(key.into(), value);
        }
    };
    let exprs = "/properties/matchExpressions";
    let item = "/properties/matchExpressions/items/properties";
    set(exprs, "maxItems", json!(SELECTOR_MAX_EXPRESSIONS));
    set(&format!("{item}/key"), "maxLength", json!(LABEL_KEY_MAX));
    set(
        &format!("{item}/values"),
        "maxItems",
        json!(SELECTOR_MAX_VALUES),
    );
    set(&format!("{item}/values/items"), "maxLength", json!(63));
    set(
        "/properties/matchLabels",
        "maxProperties",
        json!(SELECTOR_MAX_LABELS),
    );
    set(
        "/properties/matchLabels/additionalProperties",
        "maxLength",
        json!(63),
    );
    let rules: Vec<Value> = label_selector_rules()
        .into_iter()
        .map(|(rule, message)| json!({"rule": rule, "message": message}))
        .collect();
    set("", "x-kubernetes-validations", Value::Array(rules));
    schema
}

/// [`label_selector_schema`] for an optional field (nullable, as kube renders `Option`).
pub fn optional_label_selector_schema(
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    let mut schema = label_selector_schema(generator);
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("nullable".into(), serde_json::Value::Bool(true));
    }
    schema
}

/// Schema of a plain label map used as a selector (`spec.nodePool.nodeSelector`): keys are
/// label keys, values label values, at most [`SELECTOR_MAX_LABELS`] of them.
pub fn label_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use crate::names::{LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN};
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 63},
        "maxProperties": SELECTOR_MAX_LABELS,
        "x-kubernetes-validations": [
            {
                "rule": format!("self.all(k, k.matches({}) && k.indexOf('/') <= 253)", cel_literal(LABEL_KEY_PATTERN)),
                "message": "each key must be a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            },
            {
                "rule": format!("self.all(k, self[k].matches({}))", cel_literal(LABEL_VALUE_PATTERN)),
                "message": "each value must be a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            },
        ],
    })
}
