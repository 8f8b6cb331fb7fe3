//! Child processes of the control plane that can never outlive the test process.
//!
//! Three layers make sure of it: `Drop` kills the child's whole process group; every child is
//! started with `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it if the test process dies
//! (panic with `panic = "abort"`, SIGKILL, timeout of the test runner); and the children are all
//! forked from one long-lived thread, because the kernel delivers the parent-death signal when
//! the *thread* that forked the child exits, and test threads come and go.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// A running child process with its output captured in a log file.
#[derive(Debug)]
pub struct Supervised {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Supervised {
    /// Starts `cmd` in its own process group, stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (prctl, getppid) and no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect; then nobody would reap us.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("parent exited before exec"));
                }
                Ok(())
            });
        }
        let child = spawn_from_long_lived_thread(cmd)
            .with_context(|| format!("starting {name} (log: {})", log.display()))?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited; a control plane component never should.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `max_bytes` of the log, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        tail(&self.log, max_bytes).unwrap_or_else(|e| format!("<cannot read log: {e}>"))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        kill_group(self.child.id());
        // Reap it so no zombie is left behind while the test process keeps running.
        let _ = self.child.wait();
    }
}

/// SIGKILL to the process group led by `pid` (children are group leaders, see `spawn`).
pub(crate) fn kill_group(pid: u32) {
    signal_group(pid, libc::SIGKILL);
}

/// Sends `signal` to the process group led by `pid` (SIGSTOP / SIGCONT freeze and resume it).
pub(crate) fn signal_group(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall; a stale group id only yields ESRCH.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("poolnet-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| panic!("cannot start the process spawner thread: {e}"));
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread dropped the request"))?
}

fn tail(path: &Path, max_bytes: u64) -> io::Result<String> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB, from `/proc/<pid>/status` (`None`: this
/// process); NaN when unreadable.
pub fn rss_mib(pid: Option<u32>) -> (f64, f64) {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |p| format!("/proc/{p}/status"),
    );
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
