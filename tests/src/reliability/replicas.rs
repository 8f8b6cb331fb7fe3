//! The operator replicas as processes of their own (`poolnet-operator`, with the chart's
//! flags), a supervisor that restarts a dead one as a kubelet would, and the loopback balancer
//! in front of their webhook servers (the Service's role).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::process::{self, Supervised};

/// Environment variable with the replicas' log filter (default `info,kube=warn`).
pub const LOG_ENV: &str = "POOLNET_RELIABILITY_LOG";

/// What the supervisor waits before starting a killed replica again (a kubelet's restart).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// One incarnation of a replica: its identity (in the Lease and in its ARM User-Agent) and
/// when it was frozen, if it was.
#[derive(Debug, Clone)]
pub struct Incarnation {
    pub identity: String,
    pub frozen_at_unix_ms: Option<u64>,
}

struct Slot {
    name: String,
    webhook_port: u16,
    process: Option<Supervised>,
    incarnations: Vec<Incarnation>,
    frozen: bool,
    down_since: Option<Instant>,
}

/// The replicas; `Arc<Mutex<…>>`-shared between the schedule and the supervisor.
pub struct Replicas {
    bin: PathBuf,
    kubeconfig: PathBuf,
    flags: Vec<String>,
    log_dir: PathBuf,
    slots: Vec<Slot>,
    balancer: Balancer,
    /// Exits the supervisor saw that nobody caused (a crash or a deliberate restart of the
    /// process by itself), with the log's last lines.
    pub unexpected_exits: Vec<String>,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Replicas {
    /// `count` replicas of `bin`, each serving webhooks at its own loopback port behind one
    /// balancer; none started yet.
    pub async fn new(
        bin: &Path,
        kubeconfig: &Path,
        flags: Vec<String>,
        log_dir: &Path,
        count: usize,
    ) -> Result<Self> {
        let mut slots = Vec::new();
        for i in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            slots.push(Slot {
                name: format!("replica-{}", (b'a' + i as u8) as char),
                webhook_port: port,
                process: None,
                incarnations: Vec::new(),
                frozen: false,
                down_since: None,
            });
        }
        let balancer = Balancer::start().await?;
        let replicas = Self {
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            flags,
            log_dir: log_dir.to_path_buf(),
            slots,
            balancer,
            unexpected_exits: Vec::new(),
        };
        replicas.refresh_backends();
        Ok(replicas)
    }

    /// Backends are the replicas not frozen: a frozen pod fails its readiness probe and
    /// leaves the Service's endpoints (a killed one just refuses connections meanwhile).
    fn refresh_backends(&self) {
        self.balancer.set_backends(
            self.slots
                .iter()
                .filter(|s| !s.frozen)
                .map(|s| SocketAddr::from(([127, 0, 0, 1], s.webhook_port)))
                .collect(),
        );
    }

    /// `https://127.0.0.1:<port>` of the balancer, for the webhook configurations' URLs.
    pub fn webhook_url(&self) -> String {
        format!("https://{}", self.balancer.addr)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts replica `i` (a new incarnation, with a new identity).
    pub fn start(&mut self, i: usize) -> Result<()> {
        let slot = &mut self.slots[i];
        let n = slot.incarnations.len();
        let identity = format!("{}-{n}", slot.name);
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.flags)
            .arg(format!("--webhook-addr=127.0.0.1:{}", slot.webhook_port))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", &identity)
            .env(
                "POOLNET_LOG_LEVEL",
                std::env::var(LOG_ENV).unwrap_or_else(|_| "info,kube=warn".into()),
            );
        let log = self.log_dir.join(format!("{identity}.log"));
        slot.process = Some(Supervised::spawn("poolnet-operator", cmd, &log)?);
        slot.incarnations.push(Incarnation {
            identity,
            frozen_at_unix_ms: None,
        });
        slot.frozen = false;
        slot.down_since = None;
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// SIGKILL of replica `i`'s process (the supervisor starts it again).
    pub fn kill(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(p) = slot.process.take() {
            // Dropping kills the process group and reaps it.
            drop(p);
            slot.down_since = Some(Instant::now());
            slot.frozen = false;
        }
        self.refresh_backends();
    }

    /// SIGSTOP of replica `i`: it keeps its sockets but runs nothing.
    pub fn freeze(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(p) = &slot.process {
            process::signal_group(p.pid(), libc::SIGSTOP);
            slot.frozen = true;
            if let Some(inc) = slot.incarnations.last_mut() {
                inc.frozen_at_unix_ms = Some(unix_ms(SystemTime::now()));
            }
        }
        self.refresh_backends();
    }

    /// SIGCONT of replica `i`.
    pub fn thaw(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(p) = &slot.process {
            process::signal_group(p.pid(), libc::SIGCONT);
        }
        slot.frozen = false;
        self.refresh_backends();
    }

    pub fn thaw_all(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].frozen {
                self.thaw(i);
            }
        }
    }

    /// The replica whose current incarnation is `identity`.
    pub fn index_of(&self, identity: &str) -> Option<usize> {
        self.slots.iter().position(|s| {
            s.process.is_some()
                && s.incarnations
                    .last()
                    .is_some_and(|inc| inc.identity == identity)
        })
    }

    /// Starts replicas that are down (killed, or exited by themselves) once
    /// [`RESTART_DELAY`] has passed; frozen ones are left alone.
    pub fn supervise(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if let Some(p) = slot.process.as_mut()
                && let Some(status) = p.exited()
            {
                let tail = p.log_tail(1500);
                self.unexpected_exits
                    .push(format!("{} exited ({status}):\n{tail}", slot.name));
                slot.process = None;
                slot.down_since = Some(Instant::now());
            }
            let slot = &self.slots[i];
            if slot.process.is_none()
                && slot
                    .down_since
                    .is_none_or(|since| since.elapsed() >= RESTART_DELAY)
            {
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// Every incarnation so far, of every replica.
    pub fn incarnations(&self) -> Vec<Incarnation> {
        self.slots
            .iter()
            .flat_map(|s| s.incarnations.iter().cloned())
            .collect()
    }

    pub fn all_running(&self) -> bool {
        self.slots.iter().all(|s| s.process.is_some() && !s.frozen)
    }

    /// Stops every replica (SIGKILL; the run is over).
    pub fn stop_all(&mut self) {
        self.thaw_all();
        for slot in &mut self.slots {
            slot.process = None;
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

/// A TCP balancer on 127.0.0.1 in front of the webhook servers: each connection goes to the
/// next backend that accepts it (a dead replica refuses; the next one is tried).
struct Balancer {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook balancer")?;
        let addr = listener.local_addr()?;
        let backends: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let list = Arc::clone(&backends);
        let task = tokio::spawn(async move {
            let mut n: usize = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                n = n.wrapping_add(1);
                let candidates: Vec<SocketAddr> =
                    list.lock().map(|b| b.clone()).unwrap_or_default();
                let first = n;
                tokio::spawn(async move {
                    for k in 0..candidates.len() {
                        let target = candidates[(first + k) % candidates.len()];
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
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

    fn set_backends(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut b) = self.backends.lock() {
            *b = addrs;
        }
    }
}
