//! The admin server: `/metrics`, `/healthz`, `/readyz` over plain HTTP, for Prometheus and
//! the kubelet. It carries no API of the operator, so it needs no TLS or authentication.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

use super::health::Health;
use super::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Binds `addr` (port 0 picks a free port), serves until `shutdown` completes, and returns
/// the bound address with the server task. Binding errors are returned here, so a taken
/// port fails startup instead of a background task.
pub async fn serve_admin(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin server to {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { metrics, health });
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    tracing::info!(addr = %bound, "admin server listening");
    Ok((bound, task))
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(state): State<AdminState>) -> Response {
    match state.health.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.health.is_ready() {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let waiting = state.health.not_ready();
    let body = if waiting.is_empty() {
        "not ready: no component has registered yet\n".to_string()
    } else {
        format!("not ready: {}\n", waiting.join(", "))
    };
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    /// A plain HTTP/1.1 GET over TCP: (status code, content type, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = String::new();
        stream
            .read_to_string(&mut raw)
            .await
            .expect("read response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        (status, content_type, body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness_until_shutdown() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconcile_started("nodepoolnetwork").ok();
        let health = Health::new();
        health.set_ready("nodepoolnetwork-controller", false);
        health.set_ready("webhook", false);
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, task) = serve_admin(
            "127.0.0.1:0".parse().expect("address"),
            metrics.clone(),
            health.clone(),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .expect("serve");
        assert_ne!(addr.port(), 0);

        let (status, content_type, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(
            body.contains(r#"poolnet_reconcile_total{controller="nodepoolnetwork",result="ok"} 1"#),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));

        assert_eq!(get(addr, "/healthz").await.0, 200);

        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(body, "not ready: nodepoolnetwork-controller, webhook\n");
        health.set_ready("webhook", true);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: nodepoolnetwork-controller\n")
        );
        health.set_ready("nodepoolnetwork-controller", true);
        assert_eq!(get(addr, "/readyz").await.0, 200);

        health.set_failed("lease client gone");
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "unhealthy: lease client gone\n")
        );

        assert_eq!(get(addr, "/nope").await.0, 404);

        stop.send(()).expect("server still running");
        task.await.expect("join").expect("clean shutdown");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn readyz_explains_an_empty_registry() {
        let (addr, task) = serve_admin(
            "127.0.0.1:0".parse().expect("address"),
            Arc::new(Metrics::new()),
            Health::new(),
            std::future::pending(),
        )
        .await
        .expect("serve");
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("no component"), "{body}");
        task.abort();
    }

    #[tokio::test]
    async fn a_taken_port_fails_at_startup() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = serve_admin(addr, Arc::new(Metrics::new()), Health::new(), async {})
            .await
            .expect_err("port in use");
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
