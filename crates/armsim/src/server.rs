//! The HTTP(S) front: connection handling, auth, fault injection, throttling, response headers,
//! and the running-simulator handle tests hold.

use crate::config::{LroConfig, SimConfig, ThrottleConfig};
use crate::counters::{Counters, WriteLog, WriteRecord};
use crate::error::CloudError;
use crate::faults::{FaultAction, FaultConfig, FaultRule, FaultState, OtherWriter};
use crate::handlers::{self, Reply};
use crate::path::{self, Route};
use crate::sim::{LiveConfig, Sim, lock};
use crate::state::State;
use crate::throttle::{Admission, OpClass, Throttle};
use crate::{control, load};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub type HttpResponse = Response<Full<Bytes>>;

/// A simulator serving on a loopback port. Stops on [`RunningSim::shutdown`] or drop.
pub struct RunningSim {
    sim: Arc<Sim>,
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a simulator on `listen` (use port 0 for a free port) in its own runtime thread, so
/// it can be started from sync and async tests alike.
pub fn start(config: SimConfig, listen: SocketAddr) -> anyhow::Result<RunningSim> {
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("non-blocking listener")?;
    let addr = listener.local_addr().context("listener address")?;
    let tls = if config.tls {
        Some(crate::tls::generate()?)
    } else {
        None
    };
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let sim = Arc::new(Sim {
        live: Mutex::new(LiveConfig {
            auth: config.auth.clone(),
            throttling: config.throttling.clone(),
            lro: config.lro.clone(),
            limits: config.limits.clone(),
            paging: config.paging.clone(),
        }),
        state: Mutex::new(State::default()),
        faults: Mutex::new(FaultState::new(config.faults.clone())),
        counters: Mutex::new(Counters::default()),
        writes: Mutex::new(WriteLog::default()),
        throttle: Mutex::new(Throttle::default()),
        base_url: format!("{scheme}://{host}:{}", addr.port()),
        ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
        snapshot_path: config.snapshot_path.clone(),
    });
    if let Some(path) = &config.restore_from {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading snapshot {}", path.display()))?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("parsing snapshot {}", path.display()))?;
        *sim.state() = state;
    } else if let Some(fixture) = &config.seed {
        load::load_fixture(&sim, fixture).context("loading seed fixture")?;
    }
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("armsim")
        .enable_all()
        .build()
        .context("building the armsim runtime")?;
    let serving = Arc::clone(&sim);
    let thread = std::thread::Builder::new()
        .name("armsim-server".into())
        .spawn(move || {
            runtime.block_on(serve(listener, serving, acceptor, stop_rx));
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .context("spawning the armsim thread")?;
    Ok(RunningSim {
        sim,
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    sim: Arc<Sim>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("armsim cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let sim = Arc::clone(&sim);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&sim), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        }
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn auth_error(code: &str, message: &str) -> CloudError {
    CloudError::new(401, code, message)
}

fn check_auth(live: &LiveConfig, value: Option<&str>) -> Result<(), CloudError> {
    let Some(value) = value else {
        return Err(auth_error(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim())
        .unwrap_or("");
    if token.is_empty() {
        return Err(auth_error(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is not a bearer token.",
        ));
    }
    if let Some(expected) = &live.auth.static_token
        && token != expected
    {
        return Err(auth_error(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    }
    Ok(())
}

fn subscription_of(route: &Route) -> &str {
    match route {
        Route::Subscription { sub }
        | Route::ResourceGroups { sub }
        | Route::ResourceGroup { sub, .. }
        | Route::Collection { sub, .. }
        | Route::AsyncOperation { sub, .. }
        | Route::OperationResult { sub, .. }
        | Route::Feature { sub, .. } => sub,
        Route::Resource(p) => &p.sub,
        Route::Unknown => "",
    }
}

async fn handle(sim: Arc<Sim>, req: Request<Incoming>) -> Result<HttpResponse, DropConnection> {
    let method = req.method().as_str().to_ascii_uppercase();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let query = parse_query(uri.query());
    let auth = header(&req, "authorization").map(str::to_string);
    let if_match = header(&req, "if-match").map(str::to_string);
    let if_none_match = header(&req, "if-none-match").map(str::to_string);
    let client_request_id = header(&req, "x-ms-client-request-id").map(str::to_string);
    let user_agent = header(&req, "user-agent").unwrap_or_default().to_string();
    let received_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };

    if path.starts_with("/_armsim") {
        let reply = control::handle(&sim, &method, &path, &body);
        return Ok(encode(reply, &method, None, client_request_id.as_deref()));
    }

    let route = path::parse(&path);
    let rtype = path::resource_type_of(&route);
    sim.counters().record_request(&method, &rtype);
    let live = sim.live();
    let class = OpClass::of_method(&method);

    let reply = 'reply: {
        if let Err(e) = check_auth(&live, auth.as_deref()) {
            break 'reply (Reply::error(&e), None);
        }
        let decision = sim.faults().decide(&method, &rtype, &path);
        if decision.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
        }
        let mut fail_operation = None;
        let mut stall_operation_ms = 0;
        match decision.action {
            Some(FaultAction::Drop) => {
                let mut c = sim.counters();
                c.faults_injected += 1;
                c.dropped_connections += 1;
                return Err(DropConnection);
            }
            Some(FaultAction::Error {
                status,
                code,
                message,
            }) => {
                sim.counters().faults_injected += 1;
                let msg = message.unwrap_or_else(|| format!("armsim injected fault {code}."));
                break 'reply (Reply::error(&CloudError::new(status, code, msg)), None);
            }
            Some(FaultAction::Throttle { retry_after_secs }) => {
                sim.counters().faults_injected += 1;
                break 'reply (
                    throttled(subscription_of(&route), class, retry_after_secs),
                    Some(0),
                );
            }
            Some(FaultAction::FailOperation { code, message }) => {
                sim.counters().faults_injected += 1;
                let msg =
                    message.unwrap_or_else(|| format!("armsim injected operation failure {code}."));
                fail_operation = Some(CloudError::new(500, code, msg));
            }
            Some(FaultAction::StallOperation { ms }) => {
                sim.counters().faults_injected += 1;
                stall_operation_ms = ms;
            }
            Some(FaultAction::Latency { .. }) | None => {}
        }
        let sub = subscription_of(&route).to_string();
        let admission = lock(&sim.throttle).admit(&live.throttling, &sub, class, Instant::now());
        let remaining = match admission {
            Admission::Allowed { remaining } => remaining,
            Admission::Throttled { retry_after } => {
                sim.counters().throttled += 1;
                break 'reply (throttled(&sub, class, retry_after), Some(0));
            }
        };
        let request = handlers::Request {
            method: &method,
            route: &route,
            path: &path,
            query: &query,
            if_match: if_match.as_deref(),
            if_none_match: if_none_match.as_deref(),
            body: &body,
            fail_operation,
            stall_operation_ms,
        };
        let reply = handlers::handle(&sim, &request);
        if method == "GET" && reply.status == 200 {
            run_other_writers(&sim, &route);
        }
        (reply, Some(remaining))
    };
    let (reply, remaining) = reply;
    {
        let mut c = sim.counters();
        *c.responses.entry(reply.status).or_default() += 1;
        if class == OpClass::Write && (200..300).contains(&reply.status) {
            let resource = match &route {
                Route::Resource(p) if p.collection.is_none() => Some(handlers::res_id(p)),
                _ => None,
            };
            c.record_accepted_write(resource);
        }
    }
    if class == OpClass::Write {
        lock(&sim.writes).push(WriteRecord {
            received_unix_ms,
            method: method.clone(),
            path: path.clone(),
            user_agent,
            status: reply.status,
        });
    }
    let ratelimit = remaining.map(|r| (class.header_name(), r.to_string()));
    Ok(encode(
        reply,
        &method,
        ratelimit,
        client_request_id.as_deref(),
    ))
}

fn throttled(sub: &str, class: OpClass, retry_after: u64) -> Reply {
    Reply::error(
        &CloudError::new(
            429,
            "SubscriptionRequestsThrottled",
            format!(
                "Number of '{}' requests for subscription '{sub}' actor 'armsim-client' exceeded. Please try again after '{retry_after}' seconds after the last request.",
                class.word()
            ),
        )
        .with_retry_after(retry_after),
    )
}

fn run_other_writers(sim: &Arc<Sim>, route: &Route) {
    let Route::Resource(p) = route else {
        return;
    };
    // A top-level resource or a child resource (an agent pool), never a list.
    if !(1..=2).contains(&p.segs.len()) || p.collection.is_some() {
        return;
    }
    let id = handlers::res_id(p);
    let due = sim.faults().after_get(&id);
    for action in due {
        match handlers::other_write(sim, &id, &action) {
            Ok(()) => sim.counters().other_writer_mutations += 1,
            Err(e) => tracing::warn!("armsim other writer on {id} refused: {e}"),
        }
    }
}

fn encode(
    reply: Reply,
    method: &str,
    ratelimit: Option<(&'static str, String)>,
    client_request_id: Option<&str>,
) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    let request_id = uuid::Uuid::new_v4().to_string();
    builder = builder
        .header("x-ms-request-id", &request_id)
        .header("x-ms-correlation-request-id", &request_id)
        .header("x-ms-routing-request-id", format!("ARMSIM:{request_id}"))
        .header("Cache-Control", "no-cache")
        .header("Pragma", "no-cache");
    if let Some(id) = client_request_id {
        builder = builder.header("x-ms-client-request-id", id);
    }
    if let Some((name, value)) = ratelimit {
        builder = builder.header(name, value);
    }
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let bytes = match (&reply.body, method) {
        (_, "HEAD") | (None, _) => Bytes::new(),
        (Some(body), _) => {
            builder = builder.header("Content-Type", "application/json; charset=utf-8");
            Bytes::from(serde_json::to_vec(body).unwrap_or_default())
        }
    };
    builder.body(Full::new(bytes)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Changes fault injection on a running simulator.
pub struct FaultControl {
    sim: Arc<Sim>,
}

impl FaultControl {
    /// Replaces all rules and other writers (and reseeds the RNG).
    pub fn set(&self, config: FaultConfig) {
        self.sim.faults().replace(config);
    }

    pub fn add_rule(&self, rule: FaultRule) {
        self.sim.faults().config.rules.push(rule);
    }

    pub fn add_other_writer(&self, writer: OtherWriter) {
        self.sim.faults().config.other_writers.push(writer);
    }

    pub fn clear(&self) {
        self.sim.faults().replace(FaultConfig::default());
    }

    /// The rules and writers in force, with how often each has fired.
    pub fn config(&self) -> FaultConfig {
        self.sim.faults().config.clone()
    }
}

impl RunningSim {
    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.sim.ca_pem.clone()
    }

    pub fn counters(&self) -> Counters {
        self.sim.counters().clone()
    }

    /// The write requests received so far (see [`WriteLog`]).
    pub fn writes(&self) -> WriteLog {
        lock(&self.sim.writes).clone()
    }

    pub fn reset_counters(&self) {
        *self.sim.counters() = Counters::default();
    }

    pub fn faults(&self) -> FaultControl {
        FaultControl {
            sim: Arc::clone(&self.sim),
        }
    }

    pub fn set_lro(&self, lro: LroConfig) {
        lock(&self.sim.live).lro = lro;
    }

    pub fn set_throttling(&self, throttling: ThrottleConfig) {
        lock(&self.sim.live).throttling = throttling;
        lock(&self.sim.throttle).reset();
    }

    pub fn set_limits(&self, limits: crate::config::Limits) {
        lock(&self.sim.live).limits = limits;
    }

    /// The resource as a GET would return it, read directly from the state (no counters).
    pub fn resource(&self, id: &str) -> Option<Value> {
        let st = self.sim.state();
        st.get(id).map(|r| crate::kinds::render(&st, r))
    }

    /// The whole state as JSON (what `--snapshot` writes and `restore_from` reads).
    pub fn snapshot(&self) -> anyhow::Result<Value> {
        serde_json::to_value(&*self.sim.state()).context("serialising state")
    }

    pub fn save_snapshot(&self, path: &std::path::Path) -> anyhow::Result<()> {
        control::save_snapshot(&self.sim, path)
    }

    /// Stops serving and waits for the server thread to end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("api-version=2024-03-01&%24skiptoken=50&x=a%2Fb"));
        assert_eq!(q[0], ("api-version".into(), "2024-03-01".into()));
        assert_eq!(q[1], ("$skiptoken".into(), "50".into()));
        assert_eq!(q[2].1, "a/b");
    }
}
