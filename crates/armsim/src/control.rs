//! The control API under `/_armsim/`: counters, faults, live configuration and snapshots,
//! for tests and benchmarks written in any language. Unauthenticated: loopback only.

use crate::counters::{Counters, WriteLog};
use crate::error::CloudError;
use crate::faults::{FaultConfig, FaultRule, OtherWriter};
use crate::handlers::Reply;
use crate::sim::{LiveConfig, Sim, lock};
use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, CloudError> {
    serde_json::from_slice(body).map_err(|e| {
        CloudError::bad_request("InvalidRequestContent", format!("armsim control body: {e}"))
    })
}

fn ok(v: impl serde::Serialize) -> Reply {
    Reply::json(200, serde_json::to_value(v).unwrap_or(Value::Null))
}

pub fn handle(sim: &Arc<Sim>, method: &str, path: &str, body: &[u8]) -> Reply {
    match route(sim, method, path.trim_end_matches('/'), body) {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    }
}

fn route(sim: &Arc<Sim>, method: &str, path: &str, body: &[u8]) -> Result<Reply, CloudError> {
    Ok(match (method, path) {
        ("GET", "/_armsim/health") => ok(json!({"status": "ok"})),
        ("GET", "/_armsim/counters") => ok(sim.counters().clone()),
        ("POST", "/_armsim/counters/reset") => {
            *sim.counters() = Counters::default();
            ok(json!({}))
        }
        ("GET", "/_armsim/writes") => ok(&*lock(&sim.writes)),
        ("DELETE", "/_armsim/writes") => {
            *lock(&sim.writes) = WriteLog::default();
            ok(json!({}))
        }
        ("GET", "/_armsim/faults") => ok(sim.faults().config.clone()),
        ("PUT", "/_armsim/faults") => {
            let cfg: FaultConfig = parse(body)?;
            sim.faults().replace(cfg);
            ok(sim.faults().config.clone())
        }
        ("DELETE", "/_armsim/faults") => {
            sim.faults().replace(FaultConfig::default());
            ok(json!({}))
        }
        ("POST", "/_armsim/faults/rules") => {
            let rule: FaultRule = parse(body)?;
            sim.faults().config.rules.push(rule);
            ok(sim.faults().config.clone())
        }
        ("POST", "/_armsim/faults/other-writers") => {
            let w: OtherWriter = parse(body)?;
            sim.faults().config.other_writers.push(w);
            ok(sim.faults().config.clone())
        }
        ("GET", "/_armsim/config") => ok(sim.live()),
        ("PUT", "/_armsim/config") => {
            let cfg: LiveConfig = parse(body)?;
            *lock(&sim.live) = cfg;
            lock(&sim.throttle).reset();
            ok(sim.live())
        }
        ("GET", "/_armsim/state") => ok(&*sim.state()),
        ("POST", "/_armsim/snapshot") => {
            let path = sim.snapshot_path.clone().ok_or_else(|| {
                CloudError::bad_request(
                    "NoSnapshotPath",
                    "armsim was started without a snapshot path (--snapshot).",
                )
            })?;
            save_snapshot(sim, &path)
                .map_err(|e| CloudError::new(500, "SnapshotFailed", e.to_string()))?;
            ok(json!({"path": path}))
        }
        ("GET", "/_armsim/ca.pem") => match &sim.ca_pem {
            Some(pem) => ok(json!({"pem": pem})),
            None => {
                return Err(CloudError::new(
                    404,
                    "NoTls",
                    "armsim serves plain HTTP: there is no CA.",
                ));
            }
        },
        _ => {
            return Err(CloudError::new(
                404,
                "UnknownControlEndpoint",
                format!("No armsim control endpoint {method} {path}."),
            ));
        }
    })
}

pub fn save_snapshot(sim: &Sim, path: &std::path::Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&*sim.state()).context("serialising state")?;
    std::fs::write(path, text).with_context(|| format!("writing snapshot {}", path.display()))
}
