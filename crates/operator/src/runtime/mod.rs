//! The runtime every controller runs in, kept in one place and free of controller logic:
//! flags ([`RuntimeArgs`]), logging ([`init_logging`]), metrics ([`Metrics`]), health
//! ([`Health`]), the admin server ([`serve_admin`]: `/metrics`, `/healthz`, `/readyz`),
//! leader election on a Lease ([`LeaderElector`], [`run_while_leader`]) and shutdown on
//! SIGTERM/SIGINT ([`shutdown_on_signal`]).

mod admin;
mod args;
mod health;
mod lease;
mod logging;
mod metrics;

pub use admin::serve_admin;
pub use args::{LogFormat, RuntimeArgs, parse_duration};
pub use health::Health;
pub use lease::{LeaderElector, LeaderHandle, LeaseConfig, run_while_leader};
pub use logging::init_logging;
pub use metrics::{
    EXPORTED as EXPORTED_METRICS, HostPortRanges, Metrics, OPENMETRICS_CONTENT_TYPE, RangeSample,
    ReconcileTimer,
};
pub use tokio_util::sync::CancellationToken;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM (the kubelet stopping the pod) and SIGINT (Ctrl-C) handlers. Installing them
/// replaces the default action (exit at once), so the process can shut down in order.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn first(mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    }
}

/// Completes on the first SIGTERM or SIGINT. Fails only if the handlers cannot be installed.
pub async fn shutdown_signal() -> std::io::Result<()> {
    StopSignals::install()?.first().await;
    Ok(())
}

/// A token cancelled on the first SIGTERM or SIGINT, to hand (cloned) to every part that
/// must stop. The handlers are installed before this returns, so no early signal is lost.
pub fn shutdown_on_signal() -> std::io::Result<CancellationToken> {
    let signals = StopSignals::install()?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signals.first().await;
        cancel.cancel();
    });
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = shutdown_on_signal().expect("handlers");
        assert!(!token.is_cancelled());
        // The handler installed above replaces SIGTERM's default action for this process.
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success());
        token.cancelled().await;
    }
}
