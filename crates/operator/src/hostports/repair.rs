//! The repair loop: binds claims to the pods that were created with them, releases claims
//! whose pods are gone or that were never used, and records host ports that pods' authors
//! wrote themselves. Decisions come from [`poolnet_plan::hostports::decide`]; this is the
//! I/O around it. Every write is conditional (resourceVersion / UID preconditions) and every
//! release is confirmed by a live read first, so a stale cache or a concurrent repair
//! replica can delay work but never release a port that is still held (S3). Everything it
//! needs is in API objects (S5): the orphan mark lives on the claim itself.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use poolnet_api::portspec::{PortRange, Protocol};
use poolnet_api::v1alpha1::host_port_claim::RESERVATION_LABEL;
use poolnet_api::v1alpha1::{
    HostPortBlock, HostPortClaim, HostPortClaimSpec, HostPortPolicy, HostPortSource,
};
use poolnet_plan::hostports::{
    ClaimFacts, Key, PodRef, ReleasePolicy, ReleaseReason, Repair, decide,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::coverage::reserved_ranges;
use super::index::{HostPortIndex, PodEntry};
use super::shared::{SharedFacts, SharedRepair, daemon_set_of, decide_shared};

/// The API server stores a created object within this long of the request's start, or never:
/// its create handler runs admission and storage under this deadline (`k8s.io/apiserver`,
/// `requestTimeoutUpperBound`; a client's `timeout` can only shorten it). Every claim is made
/// during that request, so a claim whose pod is not there this long after the claim was
/// written will never get it.
pub const CREATE_DEADLINE: Duration = Duration::from_secs(34);

/// Added to [`CREATE_DEADLINE`]: the clock difference between the API server, which stamps
/// the claim's creationTimestamp, and this replica, and a storage write already on its way
/// when the deadline passed.
pub const GRACE_MARGIN: Duration = Duration::from_secs(5);

/// How long a claim no pod ever carried is kept: [`CREATE_DEADLINE`] + [`GRACE_MARGIN`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(34 + 5);

/// Time between the pass that marks an orphan and the pass that releases it.
pub const DEFAULT_CONFIRM_AFTER: Duration = Duration::from_secs(2);

/// Tunables of the repair loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    /// Period of full passes.
    pub interval: Duration,
    /// Least time between passes triggered by pod changes.
    pub min_gap: Duration,
    pub release: ReleasePolicy,
    /// Claims per page of a pass's live read: a fleet's claims need not all be in memory at
    /// once.
    pub list_page: u32,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            min_gap: Duration::from_secs(1),
            list_page: 500,
            release: ReleasePolicy {
                grace: DEFAULT_GRACE,
                confirm_after: DEFAULT_CONFIRM_AFTER,
            },
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub claims: usize,
    pub bound: usize,
    pub marked: usize,
    pub released: usize,
    pub adopted: usize,
    /// Keys two pods hold at once (only possible for host ports written by authors of pods
    /// that did not go through the webhook), as `key: pod, pod`.
    pub duplicates: Vec<String>,
    /// Writes refused or failed (retried by the next pass).
    pub skipped: usize,
    /// When an unbound claim next reaches its grace period or its confirmation: the loop
    /// runs its next pass then rather than a whole interval later, so an orphan goes within
    /// seconds of its deadline.
    pub next_due: Option<Duration>,
}

impl PassReport {
    fn due_in(&mut self, wait: Duration) {
        self.next_due = Some(self.next_due.map_or(wait, |d| d.min(wait)));
    }

    /// Whether the pass did anything worth a log line.
    fn eventful(&self) -> bool {
        *self
            != PassReport {
                claims: self.claims,
                next_due: self.next_due,
                ..PassReport::default()
            }
    }
}

/// Runs repair passes.
#[derive(Clone)]
pub struct Repairer {
    client: Client,
    claims: Api<HostPortClaim>,
    index: Arc<HostPortIndex>,
    policies: Option<Store<HostPortPolicy>>,
    config: RepairConfig,
}

fn elapsed(now: k8s_openapi::jiff::Timestamp, then: &Time) -> Duration {
    Duration::try_from(now.duration_since(then.0)).unwrap_or(Duration::ZERO)
}

fn rv_precondition(claim: &HostPortClaim) -> Preconditions {
    Preconditions {
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
    }
}

impl Repairer {
    /// `policies` (a cache of HostPortPolicies) widens the ranges in which author-written
    /// host ports are recorded beyond the AKS default 40000-59999.
    pub fn new(
        client: Client,
        index: Arc<HostPortIndex>,
        policies: Option<Store<HostPortPolicy>>,
        config: RepairConfig,
    ) -> Self {
        Self {
            claims: Api::all(client.clone()),
            client,
            index,
            policies,
            config,
        }
    }

    /// Passes every `interval`, and soon after pods holding ports come or go, until
    /// `shutdown`. Run it on the leader only (it is safe anywhere, merely redundant).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let mut wait = self.config.interval;
            match self.pass().await {
                Ok(report) => {
                    if report.eventful() {
                        tracing::info!(?report, "host-port repair pass");
                    }
                    if let Some(due) = report.next_due {
                        wait = wait.min(due.max(self.config.min_gap));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "host-port repair pass failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.index.changed() => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(self.config.min_gap) => {}
                    }
                }
            }
        }
    }

    /// One pass over every claim, then the adoption of unclaimed author-written ports.
    pub async fn pass(&self) -> Result<PassReport, kube::Error> {
        let mut report = PassReport::default();
        if !self.index.is_ready() {
            return Ok(report);
        }
        // One consistent live read, a page at a time: 10,000 claims read at once were a
        // transient peak the allocator kept (bench_memory: 10 KiB per host-port pod before
        // this and the claims cache's slimming, 3 KiB after).
        let mut page = ListParams::default().limit(self.config.list_page);
        loop {
            let list = self.claims.list(&page).await?;
            report.claims += list.items.len();
            self.pass_over(&list.items, &mut report).await;
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => {
                    page = ListParams::default()
                        .limit(self.config.list_page)
                        .continue_token(&token)
                }
                None => break,
            }
        }
        self.adopt(&mut report).await;
        Ok(report)
    }

    /// The pass over one page of claims.
    async fn pass_over(&self, claims: &[HostPortClaim], report: &mut PassReport) {
        let now = k8s_openapi::jiff::Timestamp::now();
        for claim in claims {
            let Ok(key) = claim.name_any().parse::<Key>() else {
                continue;
            };
            let status = claim.status.clone().unwrap_or_default();
            let created = claim
                .metadata
                .creation_timestamp
                .as_ref()
                .unwrap_or(&claim.spec.created_at);
            let release = &self.config.release;
            let marked_for = status.orphan_since.as_ref().map(|t| elapsed(now, t));
            if let Some(owner) = &claim.spec.daemon_set {
                let since_admitted = status
                    .admitted_at
                    .as_ref()
                    .map_or(elapsed(now, created), |t| {
                        elapsed(now, created).min(elapsed(now, t))
                    });
                let facts = SharedFacts {
                    held: self
                        .index
                        .daemon_set_holds(&claim.spec.pod_namespace, &owner.uid, key),
                    since_admitted,
                    marked_for,
                };
                let done = match decide_shared(&facts, release) {
                    SharedRepair::Keep => {
                        if !facts.held {
                            report.due_in(match marked_for {
                                Some(m) => release.confirm_after.saturating_sub(m),
                                None => release.grace.saturating_sub(since_admitted),
                            });
                        }
                        Ok(())
                    }
                    SharedRepair::Unmark => self.set_orphan_mark(claim, false).await,
                    SharedRepair::Mark => {
                        report.due_in(release.confirm_after);
                        self.set_orphan_mark(claim, true)
                            .await
                            .map(|()| report.marked += 1)
                    }
                    SharedRepair::Release => self
                        .release_shared(claim, key)
                        .await
                        .map(|released| report.released += usize::from(released)),
                };
                if let Err(e) = done {
                    tracing::debug!(claim = %claim.name_any(), error = %e, "repair write skipped");
                    report.skipped += 1;
                }
                continue;
            }
            let facts = ClaimFacts {
                key,
                token: &claim.spec.request_uid,
                pod_namespace: &claim.spec.pod_namespace,
                bound_uid: status.pod.as_ref().map(|p| p.uid.as_str()),
                age: elapsed(now, created),
                marked_for,
            };
            let done = match decide(&facts, self.index.as_ref(), release) {
                Repair::Keep => {
                    if facts.bound_uid.is_none() {
                        report.due_in(match marked_for {
                            Some(m) => release.confirm_after.saturating_sub(m),
                            None => release.grace.saturating_sub(facts.age),
                        });
                    }
                    continue;
                }
                Repair::Bind(pod) => self.bind(claim, &pod).await.map(|()| report.bound += 1),
                Repair::Mark => {
                    report.due_in(release.confirm_after);
                    self.mark(claim).await.map(|()| report.marked += 1)
                }
                Repair::Release(reason) => self
                    .release(claim, reason)
                    .await
                    .map(|released| report.released += usize::from(released)),
            };
            if let Err(e) = done {
                tracing::debug!(claim = %claim.name_any(), error = %e, "repair write skipped");
                report.skipped += 1;
            }
        }
    }

    async fn bind(&self, claim: &HostPortClaim, pod: &PodRef) -> Result<(), kube::Error> {
        let patch = json!({
            "metadata": { "resourceVersion": claim.metadata.resource_version },
            "status": {
                "pod": { "name": pod.name, "uid": pod.uid },
                "boundAt": Time(k8s_openapi::jiff::Timestamp::now()),
                "orphanSince": null,
            }
        });
        self.claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map(drop)
    }

    async fn mark(&self, claim: &HostPortClaim) -> Result<(), kube::Error> {
        let patch = json!({
            "metadata": { "resourceVersion": claim.metadata.resource_version },
            "status": { "orphanSince": Time(k8s_openapi::jiff::Timestamp::now()) }
        });
        self.claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map(drop)
    }

    /// Sets or clears the orphan mark of a shared claim, as it was read.
    async fn set_orphan_mark(&self, claim: &HostPortClaim, on: bool) -> Result<(), kube::Error> {
        let since = on.then(|| Time(k8s_openapi::jiff::Timestamp::now()));
        let patch = json!({
            "metadata": { "resourceVersion": claim.metadata.resource_version },
            "status": { "orphanSince": since }
        });
        self.claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map(drop)
    }

    /// Confirms with a live read that no pod of the claim's DaemonSet holds `key`, then
    /// deletes the claim as it was read (an admission that joined it since changed it).
    async fn release_shared(&self, claim: &HostPortClaim, key: Key) -> Result<bool, kube::Error> {
        let Some(owner) = &claim.spec.daemon_set else {
            return Ok(false);
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &claim.spec.pod_namespace);
        let held = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|p| {
                daemon_set_of(p).is_some_and(|(_, uid)| uid == owner.uid)
                    && super::index::pod_entry(p).is_some_and(|e| e.keys.contains(&key))
            });
        if held {
            return Ok(false);
        }
        self.delete_as_read(claim).await
    }

    async fn delete_as_read(&self, claim: &HostPortClaim) -> Result<bool, kube::Error> {
        let dp = DeleteParams {
            preconditions: Some(rv_precondition(claim)),
            ..DeleteParams::default()
        };
        match self.claims.delete(&claim.name_any(), &dp).await {
            Ok(_) => Ok(true),
            // Gone already, or changed since it was read (e.g. bound): nothing to do now.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Confirms `reason` with a live read, then deletes the claim as it was read.
    async fn release(
        &self,
        claim: &HostPortClaim,
        reason: ReleaseReason,
    ) -> Result<bool, kube::Error> {
        let ns = &claim.spec.pod_namespace;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let confirmed = match reason {
            ReleaseReason::PodGone => {
                let bound = claim.status.as_ref().and_then(|s| s.pod.as_ref());
                match bound {
                    None => false,
                    Some(b) => match pods.get_opt(&b.name).await? {
                        Some(p) => p.metadata.uid.as_deref() != Some(b.uid.as_str()),
                        None => true,
                    },
                }
            }
            ReleaseReason::NeverBound => {
                let lp = ListParams::default()
                    .labels(&format!("{RESERVATION_LABEL}={}", claim.spec.request_uid))
                    .limit(1);
                pods.list_metadata(&lp).await?.items.is_empty()
            }
        };
        if !confirmed {
            return Ok(false);
        }
        self.delete_as_read(claim).await
    }

    fn managed_ranges(&self) -> Vec<(Protocol, PortRange)> {
        match &self.policies {
            Some(store) => reserved_ranges(store.state().iter().map(|p| p.as_ref())),
            None => reserved_ranges([]),
        }
    }

    /// Records host ports that pods hold without a claim (written by their authors, on pods
    /// the webhook did not see) so the webhook never hands them out.
    async fn adopt(&self, report: &mut PassReport) {
        let unclaimed = self.index.unclaimed(&self.managed_ranges());
        if unclaimed.is_empty() {
            return;
        }
        // Keys inside a HostPortBlock are recorded by their pods, not by claims. Read after
        // the index: a pod it shows got its key from a block that existed before, so this
        // list has it.
        let blocks: Api<HostPortBlock> = Api::all(self.client.clone());
        let in_blocks: std::collections::BTreeSet<String> =
            match blocks.list_metadata(&ListParams::default()).await {
                Ok(list) => list.items.into_iter().map(|b| b.name_any()).collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "listing HostPortBlocks before adopting");
                    report.skipped += unclaimed.len();
                    return;
                }
            };
        for (pod, key) in unclaimed {
            if in_blocks.contains(&poolnet_plan::hostports::blocks::BlockId::of(key).name()) {
                continue;
            }
            // Read live: the index may not show a claim made a moment ago.
            match self.claims.get_opt(&key.claim_name()).await {
                Ok(Some(existing)) => {
                    self.note_duplicate(&existing, &pod, key, report);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%key, pod = %pod.name, error = %e, "reading a claim before adopting");
                    report.skipped += 1;
                    continue;
                }
            }
            match self.adopt_one(&pod, key).await {
                Ok(true) => report.adopted += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(%key, pod = %pod.name, error = %e, "adopting a host port");
                    report.skipped += 1;
                }
            }
        }
    }

    fn note_duplicate(
        &self,
        claim: &HostPortClaim,
        pod: &PodEntry,
        key: Key,
        report: &mut PassReport,
    ) {
        let bound = claim.status.as_ref().and_then(|s| s.pod.as_ref());
        let same = bound.is_some_and(|b| b.uid == pod.uid)
            || (bound.is_none() && pod.token.as_deref() == Some(claim.spec.request_uid.as_str()))
            || claim.spec.daemon_set.as_ref().is_some_and(|o| {
                pod.namespace == claim.spec.pod_namespace
                    && pod.daemon_set.as_deref() == Some(o.uid.as_str())
            });
        if !same {
            let holder = claim.holder();
            report
                .duplicates
                .push(format!("{key}: {holder}, {}/{}", pod.namespace, pod.name));
        }
    }

    async fn adopt_one(&self, pod: &PodEntry, key: Key) -> Result<bool, kube::Error> {
        let claim = HostPortClaim::for_spec(HostPortClaimSpec {
            protocol: key.protocol.into(),
            port: key.port,
            container_port: None,
            source: HostPortSource::Adopted,
            pod_namespace: pod.namespace.clone(),
            pod_name: Some(pod.name.clone()),
            pod_generate_name: None,
            policy: None,
            request_uid: pod.uid.clone(),
            daemon_set: None,
            created_at: Time(k8s_openapi::jiff::Timestamp::now()),
        });
        let created = match self.claims.create(&PostParams::default(), &claim).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(false),
            Err(e) => return Err(e),
        };
        self.bind(&created, &pod.pod_ref()).await?;
        Ok(true)
    }
}
