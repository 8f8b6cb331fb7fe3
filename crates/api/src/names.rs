//! Names and label syntax shared by Kubernetes and AKS, checked the same way by the CRD's
//! CEL rules (the `*_PATTERN` constants are the RE2 patterns used there) and by the webhook:
//! DNS-1123 names, label keys and values, label selectors, AKS agent pool names.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::error::{FieldError, FieldErrors};

/// Longest DNS-1123 label (and label name, label value).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (and label key prefix).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// RE2 pattern of a DNS-1123 subdomain (length checked separately): what Kubernetes requires
/// of the name of a cluster-scoped custom resource such as a NodePoolNetwork.
pub const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// RE2 pattern of a label key: an optional DNS-1123 subdomain prefix and `/`, then a name of
/// at most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric. The prefix
/// length (at most 253) is checked separately.
pub const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// RE2 pattern of a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

/// RE2 pattern of an AKS agent pool name (Linux pools; Windows pools allow at most 6).
pub const AGENT_POOL_NAME_PATTERN: &str = r"^[a-z][a-z0-9]{0,11}$";
/// Longest AKS agent pool name (Linux; Windows pools: 6).
pub const AGENT_POOL_NAME_MAX: usize = 12;
/// What a valid agent pool name looks like, for error messages.
pub const AGENT_POOL_NAME_RULE: &str = "1-12 lower-case letters and digits, starting with a letter (AKS's rule for node pool names; Windows pools allow at most 6)";

fn dns_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A DNS-1123 label: 1-63 lower-case alphanumerics or `-`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX && dns_part(s)
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated parts of lower-case
/// alphanumerics or `-`, each starting and ending alphanumeric (Kubernetes bounds only the
/// total length).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(dns_part)
}

fn label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A Kubernetes label key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        None => label_name(s),
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && label_name(name),
    }
}

/// A Kubernetes label value: empty, or a label name.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || label_name(s)
}

/// An AKS agent pool name (the last segment of an agent pool ID).
pub fn is_agent_pool_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= AGENT_POOL_NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

const KEY_RULE: &str = "a label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const VALUE_RULE: &str = "a label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

/// The four operators of a label selector requirement.
pub const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Checks a label selector as the API server checks one in a Deployment: keys and values
/// are label syntax, operators are the four, `In`/`NotIn` carry values and
/// `Exists`/`DoesNotExist` none. `path` is where the selector sits, e.g. `spec.podSelector`.
pub fn validate_label_selector(sel: &LabelSelector, path: &str) -> FieldErrors {
    let mut errs = FieldErrors::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        let p = format!("{path}.matchLabels");
        if !is_label_key(k) {
            errs.push(FieldError::new(&p, k, "not a valid label key", KEY_RULE));
        }
        if !is_label_value(v) {
            errs.push(FieldError::new(
                format!("{p}[{k}]"),
                v,
                "not a valid label value",
                VALUE_RULE,
            ));
        }
    }
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        if !is_label_key(&e.key) {
            errs.push(FieldError::new(
                format!("{p}.key"),
                &e.key,
                "not a valid label key",
                KEY_RULE,
            ));
        }
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::new(
                format!("{p}.values"),
                "[]",
                format!("operator {} needs at least one value", e.operator),
                "one or more values (or operator Exists / DoesNotExist)",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::new(
                format!("{p}.values"),
                values.join(","),
                format!("operator {} takes no values", e.operator),
                "no values (or operator In / NotIn)",
            )),
            op if !SELECTOR_OPERATORS.contains(&op) => errs.push(FieldError::new(
                format!("{p}.operator"),
                op,
                "not a label selector operator",
                "In, NotIn, Exists or DoesNotExist",
            )),
            _ => {}
        }
        for (j, v) in values.iter().enumerate() {
            if !is_label_value(v) {
                errs.push(FieldError::new(
                    format!("{p}.values[{j}]"),
                    v,
                    "not a valid label value",
                    VALUE_RULE,
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    fn re(p: &str) -> regex::Regex {
        regex::Regex::new(p).unwrap()
    }

    #[test]
    fn names() {
        assert!(is_dns1123_label("game-1"));
        assert!(!is_dns1123_label("game.eu"));
        assert!(is_dns1123_subdomain("game.eu"));
        for bad in ["", "-a", "a-", "A", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        for good in ["game", "a1", "nodepool1", "abcdefghijkl"] {
            assert!(is_agent_pool_name(good), "{good}");
        }
        for bad in ["", "1pool", "Game", "game-1", "game_1", "abcdefghijklm"] {
            assert!(!is_agent_pool_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "kubernetes.azure.com/agentpool",
            "A_b.c-D",
        ] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "a/b/c",
            "/app",
            "Example.com/app",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(!is_label_key(bad), "{bad}");
        }
        assert!(is_label_key(&format!("{}/a", "a".repeat(253))));
        assert!(!is_label_key(&format!("{}/a", "a".repeat(254))));
        assert!(is_label_value("") && is_label_value("v1.2_x-y"));
        assert!(
            !is_label_value("-x") && !is_label_value("a b") && !is_label_value(&"a".repeat(64))
        );
    }

    fn req(key: &str, op: &str, values: Option<Vec<&str>>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn selectors() {
        let ok = |s: &LabelSelector| validate_label_selector(s, "spec.podSelector").is_empty();
        assert!(ok(&req("app", "In", Some(vec!["echo"]))));
        assert!(ok(&req("app", "Exists", None)));
        assert!(ok(&req("app", "DoesNotExist", Some(vec![]))));
        assert!(ok(&LabelSelector::default()));
        let first = |s: &LabelSelector| {
            validate_label_selector(s, "spec.podSelector")
                .iter()
                .next()
                .cloned()
                .expect("refused")
        };
        let e = first(&req("app", "In", Some(vec![])));
        assert_eq!(e.path, "spec.podSelector.matchExpressions[0].values");
        assert!(e.problem.contains("needs at least one value"));
        assert!(
            first(&req("app", "NotIn", None))
                .problem
                .contains("at least one")
        );
        assert!(
            first(&req("app", "Exists", Some(vec!["x"])))
                .problem
                .contains("takes no values")
        );
        assert_eq!(
            first(&req("app", "Like", Some(vec!["x"]))).path,
            "spec.podSelector.matchExpressions[0].operator"
        );
        assert_eq!(
            first(&req("-app", "Exists", None)).path,
            "spec.podSelector.matchExpressions[0].key"
        );
        assert_eq!(
            first(&req("app", "In", Some(vec!["a b"]))).path,
            "spec.podSelector.matchExpressions[0].values[0]"
        );
        let labels = LabelSelector {
            match_labels: Some([("bad key".to_string(), "v".to_string())].into()),
            match_expressions: None,
        };
        assert_eq!(first(&labels).path, "spec.podSelector.matchLabels");
    }

    proptest! {
        #[test]
        fn cel_patterns_agree_with_the_checks(s in "[-a-zA-Z0-9_./]{0,70}") {
            let key_len_ok = s.split_once('/').is_none_or(|(p, _)| p.len() <= DNS1123_SUBDOMAIN_MAX);
            prop_assert_eq!(re(LABEL_KEY_PATTERN).is_match(&s) && key_len_ok, is_label_key(&s));
            prop_assert_eq!(re(LABEL_VALUE_PATTERN).is_match(&s), is_label_value(&s));
            prop_assert_eq!(re(AGENT_POOL_NAME_PATTERN).is_match(&s), is_agent_pool_name(&s));
            prop_assert_eq!(re(DNS1123_SUBDOMAIN_PATTERN).is_match(&s) && s.len() <= 63, is_dns1123_subdomain(&s) && s.len() <= 63);
        }
    }
}
