//! The pipeline policy every ARM request passes last before the transport.
//!
//! The generated azure_mgmt_network operations send with a fresh `Context` and expose no
//! `If-Match`, so per-call settings travel in a tokio task-local ([`CALL`]) that the client sets
//! around each operation. The policy then, in order:
//! 1. refuses any URL outside the configured ARM origin (a `nextLink` or LRO monitor URL must
//!    never take our bearer token elsewhere);
//! 2. adds `If-Match` / `If-None-Match`;
//! 3. asks the subscription's throttle budget, waiting (bounded) while its bucket refills and
//!    failing fast with `Throttled` inside a `Retry-After` or past the wait bound;
//! 4. refuses any request other than a GET or HEAD while the [`crate::WriteGate`] is shut
//!    (leader fencing: `Fenced`, nothing sent), checked before the budget and again after its
//!    wait, and names the replica in the `User-Agent`;
//! 5. counts the call, feeds the budget from the rate-limit headers, and turns every non-2xx
//!    answer into an [`ArmError`] while the headers (`Retry-After`) are still at hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::headers::{HeaderName, Headers};
use azure_core::{Context, Policy, PolicyResult, Request};

use crate::budget::{CallClass, Observation, ThrottleBudget};
use crate::error::{ArmError, ThrottleSource};
use crate::id::ResourceKind;
use crate::lro::parse_retry_after;
use crate::network::Precondition;
use crate::permissions;
use crate::stats::{ArmStats, CallMethod};

/// Per-call settings, set with `CALL.scope(..)` around an operation.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallScope {
    pub precondition: Precondition,
    /// Named in errors; for LRO polls this is the resource, not the monitor URL.
    pub resource_id: String,
}

tokio::task_local! {
    pub(crate) static CALL: CallScope;
}

const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const USER_AGENT: HeaderName = HeaderName::from_static("user-agent");

fn remaining_header_names(class: CallClass) -> [HeaderName; 2] {
    match class {
        CallClass::Read => [
            HeaderName::from_static("x-ms-ratelimit-remaining-subscription-reads"),
            HeaderName::from_static("x-ms-ratelimit-remaining-subscription-global-reads"),
        ],
        CallClass::Write => [
            HeaderName::from_static("x-ms-ratelimit-remaining-subscription-writes"),
            HeaderName::from_static("x-ms-ratelimit-remaining-subscription-global-writes"),
        ],
    }
}

/// The smallest remaining count ARM reported for `class`, if any.
pub(crate) fn remaining(headers: &Headers, class: CallClass) -> Option<u32> {
    remaining_header_names(class)
        .iter()
        .filter_map(|h| headers.get_optional_str(h))
        .filter_map(|v| v.trim().parse::<u32>().ok())
        .min()
}

pub(crate) fn retry_after(headers: &Headers) -> Option<Duration> {
    headers
        .get_optional_str(&RETRY_AFTER)
        .and_then(parse_retry_after)
}

/// `/subscriptions/{id}/...` → `id`.
pub(crate) fn subscription_of_path(path: &str) -> Option<&str> {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    let first = parts.next()?;
    if first.eq_ignore_ascii_case("subscriptions") {
        parts.next()
    } else {
        None
    }
}

/// Wraps an [`ArmError`] so it survives the generated code's `?` and can be downcast back.
pub(crate) fn wrap(error: ArmError) -> azure_core::Error {
    let message = error.to_string();
    azure_core::Error::full(ErrorKind::Other, error, message)
}

#[derive(Debug)]
pub(crate) struct ArmPolicy {
    pub origin: url::Origin,
    pub stats: Arc<ArmStats>,
    pub budget: Arc<ThrottleBudget>,
    /// Checked right before a write is sent, after any budget wait.
    pub gate: crate::WriteGate,
    /// `poolnet-replica/<identity>`, appended to the User-Agent.
    pub replica: Option<String>,
}

impl ArmPolicy {
    /// Leader fencing: `Err(Fenced)` when a write may not leave now. The first refusal since
    /// the gate last opened is a warning, the others (every write of every reconcile still
    /// running) are debug lines.
    fn fence(&self, id: &str) -> Result<(), ArmError> {
        let Err(message) = self.gate.check() else {
            return Ok(());
        };
        if self.gate.first_refusal() {
            tracing::warn!(
                %id,
                reason = %message,
                "ARM write not sent: this replica may no longer lead (further refusals until \
                 it leads again are logged at debug level)"
            );
        } else {
            tracing::debug!(%id, reason = %message, "ARM write not sent");
        }
        Err(ArmError::Fenced {
            id: id.to_owned(),
            message,
        })
    }

    /// A slot in the subscription's budget: waits while the bucket refills (at most
    /// `max_wait` in all), fails at once inside a `Retry-After` ARM asked for.
    async fn admit(&self, sub: &str, class: CallClass) -> Result<(), Duration> {
        let max_wait = self.budget.config().max_wait;
        let started = Instant::now();
        loop {
            let now = Instant::now();
            if let Some(blocked) = self.budget.blocked_for(sub, now) {
                return Err(blocked);
            }
            let wait = match self.budget.admit(sub, class, now) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if now.duration_since(started) + wait > max_wait {
                return Err(wait);
            }
            self.stats.record_subscription_budget_wait(sub, wait);
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait]
impl Policy for ArmPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let scope = CALL.try_with(CallScope::clone).unwrap_or_default();
        let path = request.url().path().to_owned();
        let id = if scope.resource_id.is_empty() {
            path.clone()
        } else {
            scope.resource_id.clone()
        };
        if request.url().origin() != self.origin {
            return Err(wrap(ArmError::InvalidResponse {
                id,
                message: format!(
                    "refusing to send a request to {}, which is not the ARM endpoint {}",
                    request.url().origin().ascii_serialization(),
                    self.origin.ascii_serialization()
                ),
            }));
        }
        match &scope.precondition {
            Precondition::None => {}
            Precondition::IfMatch(etag) => request.insert_header("if-match", etag.clone()),
            Precondition::IfNoneMatch => request.insert_header("if-none-match", "*"),
        }

        let method = CallMethod::of(request.method());
        let class = match method {
            CallMethod::Get => CallClass::Read,
            _ => CallClass::Write,
        };
        // LRO polls and reads pass; anything else changes something.
        let mutating = !matches!(
            request.method(),
            azure_core::Method::Get | azure_core::Method::Head
        );
        // A fenced write takes no budget token.
        if mutating {
            self.fence(&id).map_err(wrap)?;
        }
        let subscription = subscription_of_path(&path).map(str::to_owned);
        if let Some(sub) = &subscription
            && let Err(wait) = self.admit(sub, class).await
        {
            self.stats.record_subscription_budget_refusal(sub);
            return Err(wrap(ArmError::Throttled {
                id,
                retry_after: wait,
                origin: ThrottleSource::Budget,
            }));
        }

        // Last thing before the request leaves: a replica that may have lost its Lease (a
        // budget wait or a freeze since the reconcile began) sends no write.
        if mutating {
            self.fence(&id).map_err(wrap)?;
        }
        if let Some(replica) = &self.replica {
            let agent = match request.headers().get_optional_str(&USER_AGENT) {
                Some(existing) => format!("{existing} {replica}"),
                None => replica.clone(),
            };
            request.insert_header(USER_AGENT, agent);
        }
        self.stats.record_sent(method, ResourceKind::of_path(&path));
        if let Some(sub) = &subscription {
            self.stats.record_subscription_sent(sub, class);
        }
        self.stats
            .record_permission(permissions::classify(method, &path));
        let response = match next[0].send(ctx, request, &next[1..]).await {
            Ok(r) => r,
            Err(e) => {
                self.stats.record_transport_error();
                return Err(wrap(ArmError::Transport {
                    id,
                    message: error_chain(&e),
                }));
            }
        };
        let status = u16::from(response.status());
        self.stats.record_status(status);
        let mut observation = Observation {
            remaining: remaining(response.headers(), class),
            throttled_for: None,
        };
        if (200..300).contains(&status) {
            if let Some(sub) = &subscription {
                self.budget.observe(sub, class, observation, Instant::now());
            }
            return Ok(response);
        }

        let wait = retry_after(response.headers());
        let body = match response.into_body().collect().await {
            Ok(b) => b,
            Err(e) => {
                self.stats.record_transport_error();
                return Err(wrap(ArmError::Transport {
                    id,
                    message: format!("reading the body of a {status} answer: {e}"),
                }));
            }
        };
        let mut error = ArmError::from_response(&id, status, wait, &body);
        // A missing role assignment: say which action, so the fix is one look away.
        if let ArmError::Api {
            status: 403,
            message,
            ..
        } = &mut error
        {
            message.push_str(" (");
            message.push_str(&permissions::forbidden_hint(method, &path));
            message.push(')');
        }
        if let ArmError::Throttled {
            origin: ThrottleSource::Server,
            ..
        } = error
        {
            observation.throttled_for = Some(wait);
            if let Some(sub) = &subscription {
                self.stats.record_subscription_throttled(sub);
            }
        }
        if let Some(sub) = &subscription {
            self.budget.observe(sub, class, observation, Instant::now());
        }
        tracing::debug!(%id, status, error = %error, "ARM error answer");
        Err(wrap(error))
    }
}

/// The error and all its causes: reqwest's top-level message ("failed to execute request") hides
/// the part a user can act on (certificate not trusted, connection refused).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Maps what the pipeline or the generated code returned back to an [`ArmError`].
pub(crate) fn classify(error: azure_core::Error, id: &str) -> ArmError {
    match error.into_downcast::<ArmError>() {
        Ok(e) => e,
        Err(e) => {
            let message = error_chain(&e);
            let id = id.to_owned();
            match e.kind() {
                ErrorKind::Credential => ArmError::Credential { message },
                ErrorKind::Io => ArmError::Transport { id, message },
                ErrorKind::HttpResponse { status, error_code } => ArmError::Api {
                    id,
                    status: u16::from(*status),
                    code: error_code.clone().unwrap_or_default(),
                    message,
                    retry_after: None,
                },
                _ => ArmError::InvalidResponse { id, message },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteGate;
    use crate::budget::BudgetConfig;
    use azure_core::Method;
    use azure_core::headers::HeaderValue;

    /// Stands in for the transport: records the method and User-Agent of what reached it.
    #[derive(Debug, Default)]
    struct Sent(std::sync::Mutex<Vec<(Method, Option<String>)>>);

    #[async_trait]
    impl Policy for Sent {
        async fn send(
            &self,
            _ctx: &Context,
            request: &mut Request,
            _next: &[Arc<dyn Policy>],
        ) -> PolicyResult {
            let agent = request
                .headers()
                .get_optional_str(&USER_AGENT)
                .map(str::to_owned);
            self.0.lock().unwrap().push((*request.method(), agent));
            Ok(azure_core::Response::new(
                azure_core::StatusCode::Ok,
                Headers::new(),
                Box::pin(futures::stream::empty()),
            ))
        }
    }

    /// Leader fencing by method: a shut gate lets GET and HEAD through (reads, LRO polls) and
    /// refuses every other method without the transport seeing it (nor the stats counting
    /// it); the replica's name is the whole User-Agent when no earlier policy set one.
    #[tokio::test]
    async fn a_shut_gate_passes_reads_and_refuses_every_other_method() {
        let endpoint = url::Url::parse("https://management.example/").unwrap();
        let gate = WriteGate::closed();
        let stats = Arc::new(ArmStats::default());
        let policy = ArmPolicy {
            origin: endpoint.origin(),
            stats: stats.clone(),
            budget: Arc::new(ThrottleBudget::new(BudgetConfig::default())),
            gate: gate.clone(),
            replica: Some("poolnet-replica/pod-a".into()),
        };
        let sent = Arc::new(Sent::default());
        let next: [Arc<dyn Policy>; 1] = [sent.clone()];
        let url = endpoint
            .join("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n?api-version=1")
            .unwrap();
        let send = |method: Method| {
            let (policy, next, url) = (&policy, &next, url.clone());
            async move {
                let mut request = Request::new(url, method);
                policy
                    .send(&Context::new(), &mut request, next)
                    .await
                    .map(drop)
                    .map_err(|e| classify(e, ""))
            }
        };
        for method in [Method::Get, Method::Head] {
            assert!(send(method).await.is_ok(), "{method:?}");
        }
        for method in [Method::Put, Method::Patch, Method::Delete, Method::Post] {
            let refused = send(method).await;
            assert!(
                matches!(&refused, Err(ArmError::Fenced { id, .. }) if id.ends_with("/networkSecurityGroups/n")),
                "{method:?}: {refused:?}"
            );
        }
        let seen = sent.0.lock().unwrap().clone();
        assert_eq!(
            seen.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
            [Method::Get, Method::Head]
        );
        assert!(
            seen.iter()
                .all(|(_, agent)| agent.as_deref() == Some("poolnet-replica/pod-a")),
            "{seen:?}"
        );
        assert_eq!(
            stats.snapshot().total(),
            2,
            "refused writes are not counted as sent"
        );

        gate.open_until(tokio::time::Instant::now() + Duration::from_secs(60));
        assert!(send(Method::Post).await.is_ok());
        assert_eq!(sent.0.lock().unwrap().last().unwrap().0, Method::Post);
    }

    #[test]
    fn subscription_from_request_paths() {
        assert_eq!(
            subscription_of_path("/subscriptions/abc/resourceGroups/rg"),
            Some("abc")
        );
        assert_eq!(
            subscription_of_path("/SUBSCRIPTIONS/abc/providers/x"),
            Some("abc")
        );
        assert_eq!(subscription_of_path("/tenants/x"), None);
        assert_eq!(subscription_of_path("/"), None);
    }

    #[test]
    fn remaining_takes_the_smaller_of_both_headers() {
        let mut h = Headers::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            HeaderValue::from_static("240"),
        );
        h.insert(
            "x-ms-ratelimit-remaining-subscription-global-reads",
            HeaderValue::from_static("17"),
        );
        h.insert("retry-after", HeaderValue::from_static("4"));
        assert_eq!(remaining(&h, CallClass::Read), Some(17));
        assert_eq!(remaining(&h, CallClass::Write), None);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(4)));
    }

    #[test]
    fn wrapped_errors_come_back_intact() {
        let e = wrap(ArmError::PreconditionFailed {
            id: "/x".into(),
            code: "PreconditionFailed".into(),
            message: "m".into(),
        });
        assert!(matches!(
            classify(e, "/other"),
            ArmError::PreconditionFailed { id, .. } if id == "/x"
        ));
        let io = azure_core::Error::message(ErrorKind::Io, "connection refused");
        assert!(matches!(classify(io, "/y"), ArmError::Transport { .. }));
        let cred = azure_core::Error::message(ErrorKind::Credential, "no token");
        assert!(classify(cred, "/y").is_retryable());
    }
}
