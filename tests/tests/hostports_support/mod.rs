//! Shared by the host-port and webhook integration tests: poolnet's real webhook server,
//! index and repair loop started in-process against the fixture's API server, with the
//! webhook configurations shipped in `config/webhook/` (pointed at 127.0.0.1 and limited
//! to the test's namespace).

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use poolnet_api::v1alpha1::{HostPortClaim, HostPortPolicy};
use poolnet_operator::hostports::blocks::{BlockConfig, Blocks};
use poolnet_operator::hostports::{
    HostPortIndex, ReleasePolicy, RepairConfig, Repairer, Reserver, run_index,
};
use poolnet_operator::runtime::{CancellationToken, Metrics};
use poolnet_operator::webhook::configs::{AnyWebhookConfiguration, configs_at_url};
use poolnet_operator::webhook::{
    self, CertSource, PodWebhook, PolicyValidator, SelfManaged, ServeConfig, WebhookState,
};
use poolnet_plan::hostports::blocks::LeaseTiming;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub const AKS_ANNOTATION: &str = "kubernetes.azure.com/assign-hostports-for-containerports";
pub const SECRET: &str = "poolnet-webhook-tls";
/// Label on the poolnet objects a test creates: the validating webhook registered for a
/// test's namespace only sees objects carrying it (NodePoolNetworks are cluster-scoped, so
/// a namespaceSelector cannot keep the tests of one binary apart).
pub const OWNER_LABEL: &str = "poolnet-tests/namespace";

/// Names of the webhook configurations installed for one test namespace.
#[derive(Debug, Clone)]
pub struct Configs {
    pub mutating: String,
    pub validating: String,
}

impl Configs {
    pub fn for_namespace(ns: &str) -> Self {
        Self {
            mutating: format!("{ns}.poolnet-host-ports"),
            validating: format!("{ns}.poolnet-validation"),
        }
    }
}

fn only_namespaces(selector: Option<LabelSelector>, namespaces: &[&str]) -> LabelSelector {
    let mut s = selector.unwrap_or_default();
    s.match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "In".into(),
            values: Some(namespaces.iter().map(|n| n.to_string()).collect()),
        });
    s
}

/// Installs `config/webhook/webhooks.yaml` for namespace `ns`, calling `base`
/// (`https://127.0.0.1:<port>`) by URL as `poolnet-operator webhook-config` does for the
/// demo, with no caBundle (poolnet writes its own). Everything else (matchConditions,
/// failurePolicy, sideEffects, reinvocationPolicy, timeouts) is used as shipped.
pub async fn install_webhooks(client: &Client, ns: &str, base: &str) -> Result<Configs> {
    install_webhooks_in(client, &[ns], base).await
}

/// [`install_webhooks`] for the pods of several namespaces (the first names the
/// configurations and owns the poolnet objects the validating webhook sees).
pub async fn install_webhooks_in(
    client: &Client,
    namespaces: &[&str],
    base: &str,
) -> Result<Configs> {
    let ns = namespaces.first().copied().context("no namespace")?;
    let names = Configs::for_namespace(ns);
    let path = poolnet_tests::repo_root().join("config/webhook/webhooks.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let configs = configs_at_url(&text, base).with_context(|| format!("in {}", path.display()))?;
    for config in configs {
        match config {
            AnyWebhookConfiguration::Mutating(mut c) => {
                c.metadata.name = Some(names.mutating.clone());
                for h in c.webhooks.iter_mut().flatten() {
                    h.namespace_selector =
                        Some(only_namespaces(h.namespace_selector.take(), namespaces));
                }
                Api::<MutatingWebhookConfiguration>::all(client.clone())
                    .create(&PostParams::default(), &c)
                    .await?;
            }
            AnyWebhookConfiguration::Validating(mut c) => {
                c.metadata.name = Some(names.validating.clone());
                for h in c.webhooks.iter_mut().flatten() {
                    h.namespace_selector =
                        Some(only_namespaces(h.namespace_selector.take(), namespaces));
                    h.object_selector = Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            OWNER_LABEL.to_string(),
                            ns.to_string(),
                        )])),
                        ..LabelSelector::default()
                    });
                }
                Api::<ValidatingWebhookConfiguration>::all(client.clone())
                    .create(&PostParams::default(), &c)
                    .await?;
            }
        }
    }
    Ok(names)
}

/// How to start one poolnet instance.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the repair loop in this instance.
    pub repair: Option<RepairConfig>,
    /// Never update the index after its (empty) first list: a replica with a cache that is
    /// as stale as it gets.
    pub frozen_index: bool,
    pub check_interval: Duration,
    pub leaf_validity: Duration,
    pub ca_validity: Duration,
    /// Serve from these files instead of the self-managed Secret.
    pub cert_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub budget: Duration,
    /// Give automatic ports from host-port blocks (the operator's default) with this
    /// replica name (its Lease is `poolnet-ports-<name>` in the test namespace).
    pub blocks: Option<String>,
    /// The blocks' Lease timing (production's by default).
    pub block_timing: LeaseTiming,
    /// Ranges of at least this many blocks use blocks (production's 16 by default).
    pub block_min: usize,
    /// Namespace of the blocks' Lease (the test's namespace by default).
    pub block_lease_namespace: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            repair: Some(fast_repair()),
            frozen_index: false,
            check_interval: Duration::from_millis(500),
            leaf_validity: Duration::from_secs(90 * 86400),
            ca_validity: Duration::from_secs(10 * 365 * 86400),
            cert_files: None,
            budget: Duration::from_secs(8),
            blocks: None,
            block_timing: LeaseTiming::default(),
            block_min: poolnet_operator::hostports::blocks::MIN_BLOCKS,
            block_lease_namespace: None,
        }
    }
}

/// Repair tuned for tests: passes every 500 ms, never-bound claims released after 8 s (longer
/// than any test that drives passes itself needs, since every instance repairs every claim).
pub fn fast_repair() -> RepairConfig {
    RepairConfig {
        interval: Duration::from_millis(500),
        min_gap: Duration::from_millis(100),
        release: ReleasePolicy {
            grace: Duration::from_secs(8),
            confirm_after: Duration::from_secs(1),
        },
        // Several pages even with a test's few claims.
        list_page: 2,
    }
}

/// One poolnet replica: index, webhook server and (optionally) repair loop.
pub struct Instance {
    pub addr: SocketAddr,
    pub blocks: Option<Blocks>,
    pub index: Arc<HostPortIndex>,
    pub metrics: Arc<Metrics>,
    pub repairer: Option<Repairer>,
    pub reserver: Reserver,
    pub resolver: Arc<webhook::CertResolver>,
    shutdown: CancellationToken,
    tasks: Vec<AbortHandle>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Instance {
    pub async fn start(
        client: &Client,
        ns: &str,
        configs: &Configs,
        opts: Options,
    ) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let index = Arc::new(HostPortIndex::new());
        if opts.frozen_index {
            index.claims_relist_started();
            index.claims_relist_done();
            index.pods_relist_started();
            index.pods_relist_done();
        } else {
            tasks.push(tokio::spawn(run_index(client.clone(), Arc::clone(&index))).abort_handle());
            while !index.is_ready() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (policies, writer) = reflector::store();
        let policy_watch = watcher(
            Api::<HostPortPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
        tasks.push(tokio::spawn(policy_watch).abort_handle());
        policies.wait_until_ready().await?;
        let metrics = Arc::new(Metrics::new());
        let mut reserver = Reserver::new(client.clone(), Arc::clone(&index));
        let mut blocks = None;
        if let Some(name) = &opts.blocks {
            let mut config =
                BlockConfig::new(opts.block_lease_namespace.as_deref().unwrap_or(ns), name);
            config.timing = opts.block_timing;
            config.min_blocks = opts.block_min;
            let b = Blocks::new(client.clone(), Arc::clone(&index), config);
            // As the operator: a failed first renewal is retried in the background.
            if let Err(e) = b.renew().await {
                eprintln!("first renewal of the host-port Lease failed: {e}");
            }
            tasks.push(tokio::spawn(b.clone().run(shutdown.clone())).abort_handle());
            reserver = reserver.with_blocks(b.clone());
            blocks = Some(b);
        }
        let recorder = Recorder::new(client.clone(), Reporter::from("poolnet-test"));
        let state = Arc::new(WebhookState {
            pods: PodWebhook::new(
                client.clone(),
                reserver.clone(),
                policies.clone(),
                opts.budget,
                Some(recorder),
            ),
            validator: PolicyValidator::new(client.clone()),
            metrics: Some(Arc::clone(&metrics)),
        });
        let mut certs = SelfManaged::new(ns, SECRET, vec!["127.0.0.1".into()]);
        certs.mutating_configs = vec![configs.mutating.clone()];
        certs.validating_configs = vec![configs.validating.clone()];
        certs.check_interval = opts.check_interval;
        certs.leaf_validity = opts.leaf_validity;
        certs.ca_validity = opts.ca_validity;
        let source = match opts.cert_files {
            Some((cert, key)) => CertSource::Files {
                cert,
                key,
                poll: opts.check_interval,
            },
            None => CertSource::SelfManaged(certs),
        };
        let running = webhook::start(
            client.clone(),
            ServeConfig {
                addr: "127.0.0.1:0".parse()?,
                certs: source,
            },
            state,
            Duration::from_secs(30),
            shutdown.clone(),
        )
        .await?;
        // kill() aborts the server task itself, and with it every connection and in-flight
        // admission it runs, as a crash would.
        tasks.push(running.server.abort_handle());
        tasks.push(running.certs.abort_handle());
        let repairer = opts.repair.map(|cfg| {
            Repairer::new(
                client.clone(),
                Arc::clone(&index),
                Some(policies.clone()),
                cfg,
            )
        });
        if let Some(r) = &repairer {
            tasks.push(tokio::spawn(r.clone().run(shutdown.clone())).abort_handle());
        }
        Ok(Self {
            addr: running.addr,
            blocks,
            index,
            metrics,
            repairer,
            reserver,
            resolver: running.resolver,
            shutdown,
            tasks,
        })
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Dies at once, as a crashed process would: in-flight requests are cut.
    pub fn kill(&mut self) {
        self.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Admission reviews this instance answered for pods (allowed and denied).
    pub fn pod_admissions(&self) -> u64 {
        let text = self.metrics.render();
        text.lines()
            .filter(|l| {
                l.starts_with("poolnet_webhook_admissions_total{") && l.contains("webhook=\"pods\"")
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
            .sum()
    }
}

/// Installs the webhooks of `config/webhook/` for `ns` pointing at `base` and waits until
/// the API server calls poolnet for annotated pods (proved by a dry run getting host ports).
pub async fn activate(client: &Client, ns: &str, base: &str) -> Result<Configs> {
    let configs = install_webhooks(client, ns, base).await?;
    wait_active(client, ns).await?;
    Ok(configs)
}

pub async fn wait_active(client: &Client, ns: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = match pods.create(&dry, &echo_pod("probe-")).await {
            Ok(p) if !host_ports(&p).is_empty() => return Ok(()),
            Ok(_) => "no host ports in the dry-run answer".to_string(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            bail!("poolnet's webhook never became active: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The echoserver pod of the AKS docs (8080/tcp and 8443/tcp, annotated).
pub fn echo_pod(generate_name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.into()),
            annotations: Some(BTreeMap::from([(
                AKS_ANNOTATION.into(),
                "8080/tcp,8443/tcp".into(),
            )])),
            labels: Some(BTreeMap::from([(
                "app".into(),
                "echoserver-hostport".into(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(echo_spec()),
        ..Pod::default()
    }
}

pub fn echo_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "echoserver-hostport".into(),
            image: Some("registry.invalid/echoserver:1.10".into()),
            ports: Some(vec![
                ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("https".into()),
                    container_port: 8443,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
            ]),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

/// Writes `host_port` into the `i`-th port of the first container, as a pod's author would.
pub fn set_host_port(pod: &mut Pod, i: usize, host_port: i32) {
    if let Some(port) = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.first_mut())
        .and_then(|c| c.ports.as_mut())
        .and_then(|p| p.get_mut(i))
    {
        port.host_port = Some(host_port);
    }
}

/// (containerPort, protocol, hostPort) of every port with a hostPort.
pub fn host_ports(pod: &Pod) -> Vec<(i32, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port.map(|h| {
                (
                    p.container_port,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    h,
                )
            })
        })
        .collect()
}

/// Claim names (`tcp-41932`) a pod's host ports correspond to.
pub fn keys_of(pod: &Pod) -> BTreeSet<String> {
    host_ports(pod)
        .into_iter()
        .map(|(_, proto, h)| format!("{}-{h}", proto.to_ascii_lowercase()))
        .collect()
}

pub fn env_of(pod: &Pod, container: usize) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.get(container))
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect()
}

/// Claims recorded for pods of `ns`.
pub async fn claims_in(client: &Client, ns: &str) -> Result<Vec<HostPortClaim>> {
    let lp = ListParams::default().labels(&format!("poolnet.dev/pod-namespace={ns}"));
    Ok(Api::<HostPortClaim>::all(client.clone())
        .list(&lp)
        .await?
        .items)
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the last `Err`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(e.context(format!("{what}: not reached within {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A TCP load balancer on 127.0.0.1 in front of webhook replicas (the Service of a real
/// cluster): each connection goes to a random live backend.
pub struct Proxy {
    pub addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let list = Arc::clone(&backends);
        let task = tokio::spawn(async move {
            let mut n: usize = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                n = n.wrapping_add(1);
                let pick = list.lock().ok().and_then(|b| {
                    (!b.is_empty()).then(|| b[(n.wrapping_mul(2654435761)) % b.len()])
                });
                let Some(target) = pick else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            backends,
            task,
        })
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set_backends(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut b) = self.backends.lock() {
            *b = addrs;
        }
    }
}

/// Every pod of `ns` that currently exists, by UID.
pub async fn live_pods(client: &Client, ns: &str) -> Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items)
}

/// Checks that claims and pods agree: every key a pod of `ns` holds has a claim bound to
/// that pod, and every claim of `ns` is a key of a live pod.
pub async fn claims_match_pods(client: &Client, ns: &str) -> Result<()> {
    let pods = live_pods(client, ns).await?;
    let claims = claims_in(client, ns).await?;
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    for p in &pods {
        for k in keys_of(p) {
            if let Some(other) = held.insert(k.clone(), p.uid().unwrap_or_default()) {
                bail!("{k} held by two pods: {other} and {}", p.name_any());
            }
        }
    }
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for c in &claims {
        let bound = c
            .status
            .as_ref()
            .and_then(|s| s.pod.as_ref())
            .map(|p| p.uid.clone())
            .unwrap_or_default();
        claimed.insert(c.name_any(), bound);
    }
    if held != claimed {
        let extra: Vec<_> = claimed
            .iter()
            .filter(|(k, v)| held.get(*k) != Some(v))
            .collect();
        let missing: Vec<_> = held
            .iter()
            .filter(|(k, v)| claimed.get(*k) != Some(v))
            .collect();
        bail!(
            "claims and pods disagree: claims not matching a pod {extra:?}; pods without a bound claim {missing:?}"
        );
    }
    Ok(())
}

/// A NodePoolNetwork admitting HostPortPolicies from every namespace (host ports
/// 40000-60000/tcp and 53/udp), named after the test's namespace.
pub async fn pool_for(client: &Client, ns: &str) -> Result<String> {
    let name = format!("pool-{ns}");
    let pool: poolnet_api::v1alpha1::NodePoolNetwork = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "NodePoolNetwork",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {
            "nodePool": {"agentPoolId": "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-poolnet-demo/providers/Microsoft.ContainerService/managedClusters/aks-demo/agentPools/game"},
            "allowedHostPorts": ["40000-60000/tcp", "53/udp"],
            "hostPortPolicies": {"from": "All"},
            "reconcilePolicy": "Observe"
        }
    }))?;
    Api::<poolnet_api::v1alpha1::NodePoolNetwork>::all(client.clone())
        .create(&PostParams::default(), &pool)
        .await?;
    Ok(name)
}

/// A HostPortPolicy `name` in `ns` giving the echoserver pods (label app=echoserver-hostport)
/// host ports for 8080/tcp and 8443/tcp from `range`.
pub async fn echo_policy(
    client: &Client,
    ns: &str,
    name: &str,
    pool: &str,
    range: (u16, u16),
) -> Result<HostPortPolicy> {
    let policy: HostPortPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "poolnet.dev/v1alpha1", "kind": "HostPortPolicy",
        "metadata": {"name": name, "namespace": ns, "labels": {OWNER_LABEL: ns}},
        "spec": {
            "nodePoolNetwork": pool,
            "podSelector": {"matchLabels": {"app": "echoserver-hostport"}},
            "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 8443, "protocol": "TCP"}],
            "hostPortRange": {"start": range.0, "end": range.1}
        }
    }))?;
    Ok(Api::<HostPortPolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &policy)
        .await?)
}

/// Waits until dry runs in `ns` get host ports inside `range` (every replica behind the
/// webhook has seen the policy once this holds for a few answers in a row).
pub async fn wait_policy_active(client: &Client, ns: &str, range: (u16, u16)) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "HostPortPolicy in {ns} not in force after 60s"
        );
        let p = pods.create(&dry, &echo_pod("probe-")).await?;
        let ok = host_ports(&p)
            .iter()
            .all(|(_, _, h)| (i32::from(range.0)..=i32::from(range.1)).contains(h));
        in_a_row = if ok { in_a_row + 1 } else { 0 };
        if !ok {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Fails (records a violation) as soon as two live pods hold the same key.
pub fn s1_watcher(
    client: Client,
    ns: &str,
    violations: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            match event {
                Event::Apply(p) | Event::InitApply(p) => {
                    let uid = p.uid().unwrap_or_default();
                    let keys = keys_of(&p);
                    for (other, held) in &live {
                        if *other != uid
                            && !held.is_disjoint(&keys)
                            && let Ok(mut v) = violations.lock()
                        {
                            v.push(format!(
                                "{} and {other} both hold {:?}",
                                p.name_any(),
                                held.intersection(&keys).collect::<Vec<_>>()
                            ));
                        }
                    }
                    live.insert(uid, keys);
                }
                Event::Delete(p) => {
                    live.remove(&p.uid().unwrap_or_default());
                }
                Event::Init | Event::InitDone => {}
            }
        }
    })
}

/// Creates `n` echo pods named `prefix…`, `in_flight` at once; a refused creation is retried
/// (up to 80 times, 200 ms apart), as a controller would.
pub async fn create_retrying(
    pods: &Api<Pod>,
    prefix: &str,
    n: usize,
    in_flight: usize,
) -> Result<Vec<Pod>> {
    let results: Vec<Result<Pod>> = futures::stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let mut last = String::new();
                for _ in 0..80 {
                    match pods.create(&PostParams::default(), &echo_pod(prefix)).await {
                        Ok(p) => return Ok(p),
                        Err(e) => {
                            last = e.to_string();
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                anyhow::bail!("pod {i}: {last}")
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}
