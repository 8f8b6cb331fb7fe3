//! ARM error bodies: `{"error":{"code","message","details"}}` with Azure's codes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error as ARM reports it (ARM names this envelope `CloudError`), plus the HTTP status and
/// optional `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudError {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Vec<Value>,
    /// Seconds for the `Retry-After` header (429s and retryable conflicts).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

impl CloudError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        CloudError {
            status,
            code: code.into(),
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `error` object without the envelope, as async-operation status bodies embed it.
    pub fn inner_json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "details": self.details})
    }

    pub fn to_json(&self) -> Value {
        json!({"error": self.inner_json()})
    }

    pub fn invalid_format(message: impl Into<String>) -> Self {
        Self::bad_request("InvalidRequestFormat", message)
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            412,
            "PreconditionFailed",
            "Precondition failed: the If-Match / If-None-Match condition does not hold for the current state of the resource.",
        )
    }

    /// ARM's answer for a top-level resource that does not exist.
    pub fn resource_not_found(resource_type: &str, name: &str, resource_group: &str) -> Self {
        Self::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found."
            ),
        )
    }

    /// The Network RP's answer for a child resource (rule, route, subnet) that does not exist.
    pub fn child_not_found(id: &str) -> Self {
        Self::new(404, "NotFound", format!("Resource {id} not found."))
    }

    pub fn invalid_reference(referenced: &str, by: &str) -> Self {
        Self::bad_request(
            "InvalidResourceReference",
            format!(
                "Resource {referenced} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        )
    }
}

impl std::fmt::Display for CloudError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for CloudError {}

pub type CloudResult<T> = Result<T, CloudError>;
