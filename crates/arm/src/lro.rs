//! Long-running operations that do not hold a reconcile worker.
//!
//! A PUT or DELETE answers either with the finished resource or with a monitor URL
//! (`Azure-AsyncOperation`, else `Location`) and a `Retry-After`. Instead of sleeping in the
//! request, the client returns [`Lro::Pending`] with a serialisable [`OperationHandle`]; the
//! controller stores it (e.g. in status), requeues after `retry_after()`, and calls `poll` then.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Result of a write: finished now, or still running behind a handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Lro<T> {
    Done(T),
    Pending(OperationHandle),
}

impl<T> Lro<T> {
    pub fn is_done(&self) -> bool {
        matches!(self, Lro::Done(_))
    }

    pub fn pending(&self) -> Option<&OperationHandle> {
        match self {
            Lro::Pending(h) => Some(h),
            Lro::Done(_) => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lro<U> {
        match self {
            Lro::Done(t) => Lro::Done(f(t)),
            Lro::Pending(h) => Lro::Pending(h),
        }
    }
}

/// How the operation's progress is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    /// `Azure-AsyncOperation`: a status document `{status, error}`.
    AsyncOperation,
    /// `Location`: 202 while running, 200/204 when done.
    Location,
    /// No monitor header: the resource's own `provisioningState` tells.
    ProvisioningState,
}

/// Everything needed to resume watching an operation later, possibly from another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationHandle {
    /// The resource the operation changes.
    pub resource_id: String,
    /// `PUT` or `DELETE`.
    pub method: String,
    pub monitor: Monitor,
    /// Absolute URL to GET for progress.
    pub url: String,
    /// What ARM asked us to wait before asking again, in seconds.
    pub retry_after_secs: u64,
}

impl OperationHandle {
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(self.retry_after_secs)
    }

    /// When to look again: ARM's `Retry-After`, but never sooner than [`MIN_POLL_INTERVAL`], since
    /// `Retry-After: 0` would otherwise turn polling into a busy loop of requests.
    pub fn next_poll_in(&self) -> Duration {
        self.retry_after().max(MIN_POLL_INTERVAL)
    }

    pub fn is_delete(&self) -> bool {
        self.method.eq_ignore_ascii_case("DELETE")
    }
}

/// Used when ARM does not send `Retry-After` with a running operation.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest pause between two polls of one operation.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Parses `Retry-After` as delta-seconds (what ARM sends). HTTP-dates are not used by ARM and are
/// treated as absent.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Progress of an operation as read from a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    Running,
    Succeeded,
    /// Failed or Canceled, with the status word and ARM's error code and message.
    Failed {
        status: String,
        code: String,
        message: String,
    },
}

/// Maps an ARM status / provisioning state word to progress. ARM's terminal words are
/// Succeeded, Failed and Canceled; everything else (Accepted, Running, Updating, Creating,
/// Deleting, InProgress, ...) means "still running".
pub fn status_of_word(word: &str) -> OperationStatus {
    if word.eq_ignore_ascii_case("Succeeded") {
        OperationStatus::Succeeded
    } else if word.eq_ignore_ascii_case("Failed") || word.eq_ignore_ascii_case("Canceled") {
        OperationStatus::Failed {
            status: word.to_owned(),
            code: String::new(),
            message: String::new(),
        }
    } else {
        OperationStatus::Running
    }
}

/// Reads an `Azure-AsyncOperation` status document.
pub fn parse_async_operation(body: &[u8]) -> Result<OperationStatus, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("operation status is not JSON: {e}"))?;
    let word = value
        .get("status")
        .and_then(|s| s.as_str())
        .ok_or_else(|| "operation status has no \"status\"".to_owned())?;
    Ok(with_error(status_of_word(word), value.get("error")))
}

/// Reads `properties.provisioningState` of a resource body.
pub fn parse_provisioning_state(body: &[u8]) -> Result<OperationStatus, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("resource body is not JSON: {e}"))?;
    let word = value
        .pointer("/properties/provisioningState")
        .and_then(|s| s.as_str())
        .ok_or_else(|| "resource has no properties.provisioningState".to_owned())?;
    Ok(status_of_word(word))
}

fn with_error(status: OperationStatus, error: Option<&serde_json::Value>) -> OperationStatus {
    match status {
        OperationStatus::Failed { status, .. } => {
            let (code, message) = error
                .and_then(crate::error::parse_error_object)
                .unwrap_or_else(|| (status.clone(), String::new()));
            OperationStatus::Failed {
                status,
                code,
                message,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_serialisable() {
        let h = OperationHandle {
            resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n".into(),
            method: "PUT".into(),
            monitor: Monitor::AsyncOperation,
            url: "https://127.0.0.1:1/subscriptions/s/providers/Microsoft.Network/locations/l/operations/1?api-version=2024-03-01".into(),
            retry_after_secs: 3,
        };
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"retryAfterSecs\":3"), "{json}");
        let back: OperationHandle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.retry_after(), Duration::from_secs(3));
        assert_eq!(back.next_poll_in(), Duration::from_secs(3));
        let immediate = OperationHandle {
            retry_after_secs: 0,
            ..back.clone()
        };
        assert_eq!(immediate.next_poll_in(), MIN_POLL_INTERVAL);
        assert!(!back.is_delete());
    }

    #[test]
    fn async_operation_documents() {
        assert_eq!(
            parse_async_operation(br#"{"status":"InProgress"}"#),
            Ok(OperationStatus::Running)
        );
        assert_eq!(
            parse_async_operation(br#"{"status":"Succeeded"}"#),
            Ok(OperationStatus::Succeeded)
        );
        assert_eq!(
            parse_async_operation(
                br#"{"status":"Canceled","error":{"code":"CanceledAndSupersededDueToAnotherOperation","message":"superseded"}}"#
            ),
            Ok(OperationStatus::Failed {
                status: "Canceled".into(),
                code: "CanceledAndSupersededDueToAnotherOperation".into(),
                message: "superseded".into()
            })
        );
        assert_eq!(
            parse_async_operation(br#"{"status":"Failed"}"#),
            Ok(OperationStatus::Failed {
                status: "Failed".into(),
                code: "Failed".into(),
                message: String::new()
            })
        );
        assert!(parse_async_operation(b"{}").is_err());
        assert!(parse_async_operation(b"<html>").is_err());
    }

    #[test]
    fn provisioning_states() {
        assert_eq!(
            parse_provisioning_state(br#"{"properties":{"provisioningState":"Updating"}}"#),
            Ok(OperationStatus::Running)
        );
        assert_eq!(
            parse_provisioning_state(br#"{"properties":{"provisioningState":"succeeded"}}"#),
            Ok(OperationStatus::Succeeded)
        );
        assert!(parse_provisioning_state(br#"{"properties":{}}"#).is_err());
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("17"), Some(Duration::from_secs(17)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
