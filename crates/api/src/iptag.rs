//! Public IP tags (`ipTagType` + `tag`), e.g. `RoutingPreference=Internet`, as AKS accepts them
//! in `--node-public-ip-tags` and ARM in `ipTags`.

use crate::error::FieldError;

/// `RoutingPreference` selects the Microsoft-network or Internet routing path; the only tag
/// value a public IP (or prefix) may carry for it is `Internet`.
pub const ROUTING_PREFERENCE: &str = "RoutingPreference";
pub const ROUTING_PREFERENCE_INTERNET: &str = "Internet";

/// A tag type: letters and digits, starting with a letter, at most 64 characters.
fn valid_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.starts_with(|c: char| c.is_ascii_alphabetic())
        && t.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Check one `(ipTagType, tag)` pair. Known types get their values checked; unknown types are
/// left to ARM (Azure adds tag types over time) but must still be well formed.
pub fn validate_ip_tag(tag_type: &str, tag: &str) -> Result<(), FieldError> {
    let raw = format!("{tag_type}={tag}");
    if !valid_type(tag_type) {
        return Err(FieldError::new(
            "",
            raw,
            format!("ipTagType {tag_type:?} is not a tag type"),
            "a tag type such as RoutingPreference or FirstPartyUsage",
        ));
    }
    if tag.is_empty() || tag.len() > 128 || tag.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err(FieldError::new(
            "",
            raw,
            format!("tag {tag:?} is empty, too long or has blanks or commas"),
            "a tag value of 1-128 characters without blanks or commas, e.g. Internet",
        ));
    }
    if tag_type.eq_ignore_ascii_case(ROUTING_PREFERENCE) {
        if tag_type != ROUTING_PREFERENCE {
            return Err(FieldError::new(
                "",
                raw,
                format!("ipTagType {tag_type:?} is misspelt"),
                "RoutingPreference (case-sensitive)",
            ));
        }
        if tag != ROUTING_PREFERENCE_INTERNET {
            return Err(FieldError::new(
                "",
                raw,
                format!("RoutingPreference does not support tag {tag:?}"),
                "RoutingPreference=Internet (the Microsoft-network path is the default and has no tag)",
            ));
        }
    }
    if tag_type == "FirstPartyUsage" && !tag.starts_with('/') {
        return Err(FieldError::new(
            "",
            raw,
            "FirstPartyUsage tags start with '/'",
            "a FirstPartyUsage tag such as /Unprivileged",
        ));
    }
    Ok(())
}

/// Parse the CLI form `Type=Tag` into `(type, tag)` and validate it.
pub fn parse_ip_tag(raw: &str) -> Result<(String, String), FieldError> {
    let s = raw.trim();
    let Some((t, v)) = s.split_once('=') else {
        return Err(FieldError::new(
            "",
            raw,
            "missing '='",
            "<ipTagType>=<tag>, e.g. RoutingPreference=Internet",
        ));
    };
    validate_ip_tag(t, v).map_err(|e| FieldError {
        value: raw.into(),
        ..e
    })?;
    Ok((t.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_example_parses() {
        assert_eq!(
            parse_ip_tag("RoutingPreference=Internet").unwrap(),
            ("RoutingPreference".into(), "Internet".into())
        );
        assert!(parse_ip_tag("FirstPartyUsage=/Unprivileged").is_ok());
    }

    #[test]
    fn rejects_with_fix() {
        for (raw, problem) in [
            ("RoutingPreference", "missing '='"),
            ("RoutingPreference=Microsoft", "does not support tag"),
            ("routingpreference=Internet", "misspelt"),
            ("=Internet", "not a tag type"),
            ("RoutingPreference=", "empty"),
            ("FirstPartyUsage=Sql", "start with '/'"),
            ("Bad Type=x", "not a tag type"),
        ] {
            let e = parse_ip_tag(raw).unwrap_err();
            assert!(e.problem.contains(problem), "{raw}: {e}");
            assert_eq!(e.value, raw);
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = parse_ip_tag(&s);
        }

        #[test]
        fn accepted_tags_round_trip(t in "[A-Z][a-zA-Z0-9]{0,10}", v in "[/A-Za-z0-9]{1,10}") {
            if let Ok((tt, vv)) = parse_ip_tag(&format!("{t}={v}")) {
                prop_assert_eq!(format!("{tt}={vv}"), format!("{t}={v}"));
            }
        }
    }
}
