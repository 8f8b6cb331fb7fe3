//! One error type for every ARM call, classified so a controller knows whether to requeue.

use std::time::Duration;

use crate::id::ResourceIdError;

/// ARM error codes that mean "another operation on the same resource got in the way".
const CONTENTION_CODES: &[&str] = &[
    "RetryableErrorDueToAnotherOperation",
    "CanceledAndSupersededDueToAnotherOperation",
    "AnotherOperationInProgress",
    "OperationPreempted",
];

/// Other ARM error codes that are transient whatever the HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "ReferencedResourceNotProvisioned",
    "InternalServerError",
    "ServerTimeout",
    "TooManyRequests",
    "SubscriptionRequestsThrottled",
    "ExpiredAuthenticationToken",
];

/// Where a `Throttled` error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleSource {
    /// ARM answered 429.
    Server,
    /// Our own budget refused to send, so ARM was never asked.
    Budget,
}

/// Everything that can go wrong talking to ARM.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// The resource (or its parent) does not exist.
    #[error("{id}: not found ({code}: {message})")]
    NotFound {
        id: String,
        code: String,
        message: String,
    },
    /// `If-Match` did not match: someone else wrote the resource since we read it. Re-read and retry.
    #[error(
        "{id}: precondition failed, the resource changed since it was read ({code}: {message})"
    )]
    PreconditionFailed {
        id: String,
        code: String,
        message: String,
    },
    /// ARM throttled us (429) or our budget predicts it would; retry after `retry_after`.
    #[error("{id}: throttled ({origin:?}), retry after {retry_after:?}")]
    Throttled {
        id: String,
        retry_after: Duration,
        origin: ThrottleSource,
    },
    /// Any other error response from ARM.
    #[error("{id}: ARM answered {status} {code}: {message}")]
    Api {
        id: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A long-running operation ended in `Failed` or `Canceled`.
    #[error("{id}: operation ended {status}: {code}: {message}")]
    OperationFailed {
        id: String,
        status: String,
        code: String,
        message: String,
    },
    /// `wait` ran out of time; the operation may still be running and can be polled again.
    #[error("{id}: operation still running after {waited:?}")]
    OperationTimeout {
        id: String,
        waited: Duration,
        handle: Box<crate::lro::OperationHandle>,
    },
    /// Connection refused, reset, TLS failure, timeout: no usable answer from ARM.
    #[error("{id}: transport error: {message}")]
    Transport { id: String, message: String },
    /// No token could be obtained.
    #[error("credential error: {message}")]
    Credential { message: String },
    /// ARM answered something we could not understand.
    #[error("{id}: unexpected response: {message}")]
    InvalidResponse { id: String, message: String },
    /// The caller passed an ID of the wrong shape or type; no request was sent.
    #[error(transparent)]
    InvalidId(#[from] ResourceIdError),
    /// A write this replica may no longer send (its leader Lease may have passed to another
    /// replica); nothing was sent. See [`crate::WriteGate`].
    #[error("{id}: write not sent: {message}")]
    Fenced { id: String, message: String },
}

impl ArmError {
    /// True when the same call may succeed later without a change of input.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArmError::PreconditionFailed { .. }
            | ArmError::Throttled { .. }
            | ArmError::OperationTimeout { .. }
            | ArmError::Transport { .. }
            | ArmError::Fenced { .. }
            | ArmError::Credential { .. } => true,
            ArmError::Api { status, code, .. } => {
                *status == 429
                    || *status == 401
                    || *status == 408
                    || *status >= 500
                    || is_retryable_code(code)
            }
            ArmError::OperationFailed { code, .. } => is_retryable_code(code),
            ArmError::NotFound { .. }
            | ArmError::InvalidResponse { .. }
            | ArmError::InvalidId(_) => false,
        }
    }

    /// How long to wait before retrying, when ARM (or the budget) said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Throttled { retry_after, .. } => Some(*retry_after),
            ArmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The ARM error code, when ARM gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::NotFound { code, .. }
            | ArmError::PreconditionFailed { code, .. }
            | ArmError::Api { code, .. }
            | ArmError::OperationFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status ARM answered with, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::NotFound { .. } => Some(404),
            ArmError::PreconditionFailed { .. } => Some(412),
            ArmError::Throttled {
                origin: ThrottleSource::Server,
                ..
            } => Some(429),
            ArmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The resource the failed call was about (empty for credential errors).
    pub fn resource_id(&self) -> &str {
        match self {
            ArmError::NotFound { id, .. }
            | ArmError::PreconditionFailed { id, .. }
            | ArmError::Throttled { id, .. }
            | ArmError::Api { id, .. }
            | ArmError::OperationFailed { id, .. }
            | ArmError::OperationTimeout { id, .. }
            | ArmError::Transport { id, .. }
            | ArmError::Fenced { id, .. }
            | ArmError::InvalidResponse { id, .. } => id,
            ArmError::InvalidId(e) => &e.input,
            ArmError::Credential { .. } => "",
        }
    }

    /// Low-cardinality label for an `error` metric dimension.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ArmError::NotFound { .. } => "not_found",
            ArmError::PreconditionFailed { .. } => "precondition_failed",
            ArmError::Throttled {
                origin: ThrottleSource::Server,
                ..
            } => "throttled",
            ArmError::Throttled {
                origin: ThrottleSource::Budget,
                ..
            } => "throttled_budget",
            ArmError::Api { status, code, .. } => {
                if is_contention_code(code) {
                    "another_operation"
                } else {
                    match status {
                        400 => "bad_request",
                        401 => "unauthorized",
                        403 => "forbidden",
                        409 => "conflict",
                        429 => "throttled",
                        500..=599 => "server_error",
                        _ => "api_error",
                    }
                }
            }
            ArmError::OperationFailed { .. } => "operation_failed",
            ArmError::OperationTimeout { .. } => "operation_timeout",
            ArmError::Transport { .. } => "transport",
            ArmError::Credential { .. } => "credential",
            ArmError::InvalidResponse { .. } => "invalid_response",
            ArmError::InvalidId(_) => "invalid_id",
            ArmError::Fenced { .. } => "fenced",
        }
    }

    /// Builds the error for a non-success ARM response from its status, `Retry-After` and body.
    pub fn from_response(
        id: &str,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> ArmError {
        let (code, message) = parse_error_body(body).unwrap_or_else(|| {
            (
                default_code(status).to_owned(),
                String::from_utf8_lossy(body).chars().take(512).collect(),
            )
        });
        let id = id.to_owned();
        match status {
            404 => ArmError::NotFound { id, code, message },
            412 => ArmError::PreconditionFailed { id, code, message },
            // A 429 that names another operation is contention, not throttling: keep the code.
            429 if !is_contention_code(&code) => ArmError::Throttled {
                id,
                retry_after: retry_after.unwrap_or(DEFAULT_THROTTLE_WAIT),
                origin: ThrottleSource::Server,
            },
            _ => ArmError::Api {
                id,
                status,
                code,
                message,
                retry_after,
            },
        }
    }
}

/// Used when ARM throttles without saying for how long.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(10);

fn is_contention_code(code: &str) -> bool {
    CONTENTION_CODES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(code))
}

fn is_retryable_code(code: &str) -> bool {
    is_contention_code(code) || TRANSIENT_CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 => "TooManyRequests",
        500..=599 => "InternalServerError",
        _ => "Unknown",
    }
}

/// ARM error bodies are `{"error": {"code", "message", "details": [...]}}`; some RPs (AKS) put
/// `code`/`message` at the top level. The first detail's message is appended when it adds something,
/// because ARM often says only "see details" at the top.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.get("error").unwrap_or(&value);
    parse_error_object(obj)
}

pub(crate) fn parse_error_object(obj: &serde_json::Value) -> Option<(String, String)> {
    let code = obj.get("code")?.as_str()?.to_owned();
    let mut message = obj
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some(detail) = obj
        .get("details")
        .and_then(|d| d.as_array())
        .and_then(|d| d.first())
    {
        let dcode = detail.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let dmsg = detail.get("message").and_then(|c| c.as_str()).unwrap_or("");
        if !dmsg.is_empty() && !message.contains(dmsg) {
            message = format!("{message} ({dcode}: {dmsg})");
        }
    }
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever ARM sends, classification is total and consistent with the status.
        #[test]
        fn classification_is_total(status in 400u16..600, body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let e = ArmError::from_response("/x", status, None, &body);
            prop_assert!(!e.metric_label().is_empty());
            prop_assert_eq!(e.resource_id(), "/x");
            if status >= 500 || status == 429 || status == 412 {
                prop_assert!(e.is_retryable(), "{:?}", e);
            }
            if status == 404 {
                let not_found = matches!(e, ArmError::NotFound { .. });
                prop_assert!(not_found, "{:?}", e);
            }
        }

        #[test]
        fn client_errors_with_unknown_codes_are_fatal(
            status in prop::sample::select(vec![400u16, 403, 404, 409, 422]),
            code in "[A-Z][a-zA-Z]{3,20}",
        ) {
            prop_assume!(!is_retryable_code(&code));
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
            let e = ArmError::from_response("/x", status, None, body.as_bytes());
            prop_assert!(!e.is_retryable());
            prop_assert_eq!(e.code(), Some(code.as_str()));
        }
    }

    fn err(status: u16, body: &str) -> ArmError {
        ArmError::from_response("/x", status, Some(Duration::from_secs(7)), body.as_bytes())
    }

    #[test]
    fn classifies_azure_error_bodies() {
        let e = err(
            412,
            r#"{"error":{"code":"PreconditionFailed","message":"etag mismatch"}}"#,
        );
        assert!(matches!(e, ArmError::PreconditionFailed { .. }));
        assert!(e.is_retryable());
        assert_eq!(e.metric_label(), "precondition_failed");
        assert_eq!(e.status(), Some(412));

        let e = err(
            400,
            r#"{"error":{"code":"SecurityRuleConflict","message":"Security rule a conflicts with rule b"}}"#,
        );
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some("SecurityRuleConflict"));
        assert_eq!(e.metric_label(), "bad_request");

        let e = err(
            404,
            r#"{"error":{"code":"ResourceNotFound","message":"gone"}}"#,
        );
        assert!(matches!(e, ArmError::NotFound { .. }));
        assert!(!e.is_retryable());

        let e = err(
            403,
            r#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#,
        );
        assert!(!e.is_retryable());
        assert_eq!(e.metric_label(), "forbidden");

        let e = err(503, "upstream died");
        assert!(e.is_retryable());
        assert_eq!(e.code(), Some("InternalServerError"));
        assert_eq!(e.metric_label(), "server_error");
    }

    #[test]
    fn throttling_and_contention_on_429() {
        let e = err(
            429,
            r#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#,
        );
        assert!(matches!(
            e,
            ArmError::Throttled {
                origin: ThrottleSource::Server,
                ..
            }
        ));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());

        let e = err(
            429,
            r#"{"error":{"code":"RetryableErrorDueToAnotherOperation","message":"busy"}}"#,
        );
        assert_eq!(e.code(), Some("RetryableErrorDueToAnotherOperation"));
        assert!(e.is_retryable());
        assert_eq!(e.metric_label(), "another_operation");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));

        let e = ArmError::from_response("/x", 429, None, b"");
        assert_eq!(e.retry_after(), Some(DEFAULT_THROTTLE_WAIT));
    }

    #[test]
    fn contention_codes_are_retryable_whatever_the_status() {
        for code in [
            "CanceledAndSupersededDueToAnotherOperation",
            "AnotherOperationInProgress",
        ] {
            let e = err(
                409,
                &format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#),
            );
            assert!(e.is_retryable(), "{code}");
            let op = ArmError::OperationFailed {
                id: "/x".into(),
                status: "Canceled".into(),
                code: code.into(),
                message: "m".into(),
            };
            assert!(op.is_retryable(), "{code}");
        }
        let e = err(
            409,
            r#"{"error":{"code":"InUseSubnetCannotBeDeleted","message":"m"}}"#,
        );
        assert!(!e.is_retryable());
        assert_eq!(e.metric_label(), "conflict");
    }

    #[test]
    fn top_level_codes_and_details() {
        let e = err(
            400,
            r#"{"code":"InvalidParameter","message":"bad","details":[{"code":"X","message":"port 70000"}]}"#,
        );
        assert_eq!(e.code(), Some("InvalidParameter"));
        assert!(e.to_string().contains("port 70000"), "{e}");
    }
}
