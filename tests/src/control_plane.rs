//! A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager.
//!
//! Every instance has its own ports, its own CA, an admin client certificate (group
//! `system:masters`), service-account signing keys and an etcd data directory on tmpfs, so
//! any number can run side by side. Dropping a [`ControlPlane`] kills all three processes
//! and deletes the directory.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

use crate::binaries::Binaries;
use crate::pki::{self, Ca};
use crate::process::{self, Supervised};

/// Controllers the tests rely on: GC and namespace deletion, the `default` service account
/// (pod admission needs it), `kube-root-ca.crt`, aggregated RBAC roles, and the workload
/// chain Deployment → ReplicaSet → Pod, and DaemonSets (one pod per Node object a test
/// creates; none otherwise).
const CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,daemonset-controller,\
serviceaccount-controller,root-ca-certificate-publisher-controller,\
clusterrole-aggregation-controller,deployment-controller,replicaset-controller";

/// Service IP range handed to the API server; its first address is in the serving cert.
const SERVICE_CIDR: &str = "10.0.0.0/24";
const SERVICE_IP: &str = "10.0.0.1";

/// How long the API server may take to report `/readyz` (override: this env var, in seconds).
const READY_TIMEOUT_ENV: &str = "POOLNET_CONTROLPLANE_TIMEOUT_SECS";
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Free ports are picked by binding port 0 and releasing it; another process can grab the
/// port in between, so a start that loses that race is retried with new ports.
const START_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// Fixed API server port; 0 picks a free one.
    pub apiserver_port: u16,
    /// Where the kubeconfig, certificates and logs go. Default: the tmpfs run directory,
    /// deleted with the control plane. etcd data always stays on tmpfs.
    pub state_dir: Option<PathBuf>,
}

/// A running control plane. Fields drop in declaration order: controllers first, etcd last.
#[derive(Debug)]
pub struct ControlPlane {
    controller_manager: Supervised,
    apiserver: Supervised,
    etcd: Supervised,
    server: String,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    ready_after: Duration,
    /// How kube-apiserver was started, for [`ControlPlane::restart_apiserver`].
    apiserver_command: (PathBuf, Vec<String>),
    apiserver_restarts: u32,
    run_dir: TempDir,
}

/// The API server could not bind its port: worth retrying on other ports.
#[derive(Debug)]
struct PortClash;

impl std::fmt::Display for PortClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a control plane port was taken by another process")
    }
}

impl std::error::Error for PortClash {}

impl ControlPlane {
    /// Starts an isolated control plane on free loopback ports and waits for `/readyz`.
    pub async fn start() -> Result<Self> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    pub async fn start_with(options: ControlPlaneOptions) -> Result<Self> {
        let bins = Binaries::locate()?;
        let mut attempt = 1;
        loop {
            match Self::try_start(&bins, &options).await {
                Err(e)
                    if e.downcast_ref::<PortClash>().is_some()
                        && options.apiserver_port == 0
                        && attempt < START_ATTEMPTS =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_start(bins: &Binaries, options: &ControlPlaneOptions) -> Result<Self> {
        let started = Instant::now();
        let root = run_root();
        remove_stale_run_dirs(&root);
        let run_dir = tempfile::Builder::new()
            .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&root)
            .with_context(|| format!("creating a run directory in {}", root.display()))?;
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| run_dir.path().to_path_buf());
        fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let files = Files::write(&state_dir)?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let apiserver_port = match options.apiserver_port {
            0 => free_port()?,
            port => port,
        };
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let server = format!("https://127.0.0.1:{apiserver_port}");

        let mut etcd = Command::new(&bins.etcd);
        etcd.args([
            "--name=default".to_string(),
            format!("--data-dir={}", run_dir.path().join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=default={etcd_peer_url}"),
            // The data lives on tmpfs and dies with the test: fsync buys nothing.
            "--unsafe-no-fsync".to_string(),
            "--log-level=warn".to_string(),
        ]);
        let mut etcd = Supervised::spawn("etcd", etcd, &state_dir.join("etcd.log"))?;

        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", files.serving_cert.display()),
            format!("--tls-private-key-file={}", files.serving_key.display()),
            format!("--client-ca-file={}", files.ca_cert.display()),
            "--authorization-mode=Node,RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", files.sa_public.display()),
            format!(
                "--service-account-signing-key-file={}",
                files.sa_private.display()
            ),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // The default reconciler would publish 127.0.0.1 as the `kubernetes` service
            // endpoint, which endpoint validation rejects (loopback) on every resync.
            "--endpoint-reconciler-type=none".to_string(),
            "--profiling=false".to_string(),
        ];
        let mut apiserver = Command::new(&bins.kube_apiserver);
        apiserver.args(&apiserver_args);
        let mut apiserver = Supervised::spawn(
            "kube-apiserver",
            apiserver,
            &state_dir.join("apiserver.log"),
        )?;

        let kubeconfig = state_dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &files)?;
        let client = client_from(&kubeconfig).await?;
        wait_ready(&client, &mut [&mut etcd, &mut apiserver], ready_timeout()).await?;
        let ready_after = started.elapsed();

        let mut kcm = Command::new(&bins.kube_controller_manager);
        kcm.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--controllers={CONTROLLERS}"),
            format!("--root-ca-file={}", files.ca_cert.display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--leader-elect=false".to_string(),
            // Nothing scrapes its metrics or health endpoints: no port, no port clash.
            "--secure-port=0".to_string(),
            "--profiling=false".to_string(),
        ]);
        let controller_manager = Supervised::spawn(
            "kube-controller-manager",
            kcm,
            &state_dir.join("controller-manager.log"),
        )?;

        Ok(Self {
            controller_manager,
            apiserver,
            etcd,
            server,
            kubeconfig,
            state_dir,
            ready_after,
            apiserver_command: (bins.kube_apiserver.clone(), apiserver_args),
            apiserver_restarts: 0,
            run_dir,
        })
    }

    /// A fresh client with the admin identity (`system:masters`).
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Admin kubeconfig (usable with `kubectl --kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Directory with the kubeconfig, certificates and the component logs.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Time from the start call until the API server answered `/readyz`.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// (component name, pid) of etcd, kube-apiserver and kube-controller-manager.
    pub fn processes(&self) -> [(&'static str, u32); 3] {
        [&self.etcd, &self.apiserver, &self.controller_manager].map(|p| (p.name(), p.pid()))
    }

    /// Kills kube-apiserver (SIGKILL), leaves it down for `down_for`, starts it again on the
    /// same port with the same etcd, and waits for `/readyz`. Clients keep working: the
    /// address and the certificates do not change. Each run logs to `apiserver-<n>.log`.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> Result<()> {
        process::kill_group(self.apiserver.pid());
        tokio::time::sleep(down_for).await;
        self.apiserver_restarts += 1;
        let (bin, args) = &self.apiserver_command;
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let log = self
            .state_dir
            .join(format!("apiserver-{}.log", self.apiserver_restarts));
        let fresh = Supervised::spawn("kube-apiserver", cmd, &log)?;
        // Dropping the old one reaps it.
        drop(std::mem::replace(&mut self.apiserver, fresh));
        let client = self.client().await?;
        wait_ready(
            &client,
            &mut [&mut self.etcd, &mut self.apiserver],
            ready_timeout(),
        )
        .await
        .context("kube-apiserver after a restart")
    }

    /// Fails with the component's log tail if any component has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in [
            &mut self.etcd,
            &mut self.apiserver,
            &mut self.controller_manager,
        ] {
            if let Some(status) = p.exited() {
                bail!(
                    "{} exited ({status}); log {}:\n{}",
                    p.name(),
                    p.log_path().display(),
                    p.log_tail(4000)
                );
            }
        }
        Ok(())
    }

    /// For a control plane that lives in a `static`, which is never dropped: kill its
    /// processes and remove its run directory when the test process exits normally.
    /// (An abnormal exit is covered by the parent-death signal and by the stale-directory
    /// sweep of the next start.)
    pub(crate) fn clean_up_at_exit(&self) {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            // SAFETY: registers a plain `extern "C" fn` with no captured state.
            unsafe {
                libc::atexit(run_exit_cleanup);
            }
        });
        if let Ok(mut list) = EXIT_CLEANUP.lock() {
            list.push((
                self.processes().map(|(_, pid)| pid).to_vec(),
                self.run_dir.path().to_path_buf(),
            ));
        }
    }
}

type ExitCleanup = (Vec<u32>, PathBuf);
static EXIT_CLEANUP: Mutex<Vec<ExitCleanup>> = Mutex::new(Vec::new());

extern "C" fn run_exit_cleanup() {
    if let Ok(list) = EXIT_CLEANUP.lock() {
        for (pids, dir) in list.iter() {
            for pid in pids {
                process::kill_group(*pid);
            }
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Certificates and keys of one control plane, written under the state directory.
struct Files {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_private: PathBuf,
    sa_public: PathBuf,
}

impl Files {
    fn write(dir: &Path) -> Result<Self> {
        let ca = Ca::new("poolnet-test-cluster-ca")?;
        let serving = ca.issue_server(&[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            SERVICE_IP,
        ])?;
        let admin = ca.issue_client("poolnet-admin", "system:masters")?;
        let (sa_private, sa_public) = pki::service_account_key()?;
        let files = Self {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_private: dir.join("sa.key"),
            sa_public: dir.join("sa.pub"),
        };
        for (path, content) in [
            (&files.ca_cert, ca.cert_pem()),
            (&files.serving_cert, &serving.cert_pem),
            (&files.serving_key, &serving.key_pem),
            (&files.admin_cert, &admin.cert_pem),
            (&files.admin_key, &admin.key_pem),
            (&files.sa_private, &sa_private),
            (&files.sa_public, &sa_public),
        ] {
            fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(files)
    }
}

fn write_kubeconfig(path: &Path, server: &str, files: &Files) -> Result<()> {
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: poolnet-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: poolnet-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: poolnet-test
  context:
    cluster: poolnet-test
    user: poolnet-admin
    namespace: default
current-context: poolnet-test
",
        ca = files.ca_cert.display(),
        cert = files.admin_cert.display(),
        key = files.admin_key.display(),
    );
    fs::write(path, kubeconfig).with_context(|| format!("writing {}", path.display()))
}

pub(crate) async fn client_from(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("loading the test kubeconfig")?;
    Client::try_from(config).context("building a kube client")
}

async fn wait_ready(
    client: &Client,
    components: &mut [&mut Supervised],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for p in components.iter_mut() {
            if let Some(status) = p.exited() {
                let log = p.log_tail(4000);
                let err = anyhow!(
                    "{} exited ({status}) before the API server was ready; log {}:\n{log}",
                    p.name(),
                    p.log_path().display()
                );
                return Err(if log.contains("address already in use") {
                    err.context(PortClash)
                } else {
                    err
                });
            }
        }
        let request = http::Request::get("/readyz").body(Vec::new())?;
        let last_answer = match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => body,
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("kube-apiserver not ready after {timeout:?}; last /readyz answer: {last_answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_timeout() -> Duration {
    std::env::var(READY_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_READY_TIMEOUT)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

const RUN_DIR_PREFIX: &str = "poolnet-cp-";

/// tmpfs when available: etcd is fsync-heavy and the data is disposable.
fn run_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Deletes run directories of test processes that died without cleaning up
/// (`poolnet-cp-<pid>-*` whose pid no longer exists).
fn remove_stale_run_dirs(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUN_DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
