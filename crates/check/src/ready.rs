//! (d) Every NodePoolNetwork and HostPortPolicy is Ready (condition `Ready=True`, kstatus)
//! and its `status.observedGeneration` is its `metadata.generation`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use poolnet_api::v1alpha1::conditions::READY;
use serde_json::json;

use crate::model::{Invariant, Kind, Report, Snapshot, Violation};

fn judge(
    subject: String,
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[Condition],
    report: &mut Report,
) {
    match conditions.iter().find(|c| c.type_ == READY) {
        Some(c) if c.status == "True" => {}
        found => report.violations.push(
            Violation::new(Invariant::Ready, Kind::NotReady, subject.clone())
                .entry(READY)
                .expected(json!({"status": "True"}))
                .found(match found {
                    Some(c) => {
                        json!({"status": c.status, "reason": c.reason, "message": c.message})
                    }
                    None => json!(null),
                })
                .message(match found {
                    Some(c) => format!("Ready={} ({}): {}", c.status, c.reason, c.message),
                    None => "no Ready condition".to_string(),
                }),
        ),
    }
    if observed != generation {
        report.violations.push(
            Violation::new(Invariant::Ready, Kind::StaleGeneration, subject)
                .entry("status.observedGeneration")
                .expected(json!(generation))
                .found(json!(observed))
                .message(format!(
                    "status describes generation {observed:?}, the object is at {generation:?}"
                )),
        );
    }
}

pub fn check(snap: &Snapshot, report: &mut Report) {
    for p in &snap.pools {
        let status = p.status.clone().unwrap_or_default();
        judge(
            format!(
                "NodePoolNetwork {}",
                p.metadata.name.as_deref().unwrap_or("")
            ),
            p.metadata.generation,
            status.observed_generation,
            &status.conditions,
            report,
        );
    }
    for h in &snap.policies {
        let status = h.status.clone().unwrap_or_default();
        judge(
            format!(
                "HostPortPolicy {}/{}",
                h.metadata.namespace.as_deref().unwrap_or(""),
                h.metadata.name.as_deref().unwrap_or("")
            ),
            h.metadata.generation,
            status.observed_generation,
            &status.conditions,
            report,
        );
    }
}
