//! Command-line flags of the runtime, each also readable from the environment so a
//! Deployment can set them either way.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use tracing_subscriber::EnvFilter;

/// Flags shared by every poolnet binary that runs controllers: logging, the admin server
/// and leader election. Flatten into the binary's own flags with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Log filter in `tracing` EnvFilter syntax, e.g. `info,poolnet_operator=debug`.
    #[arg(long, env = "POOLNET_LOG_LEVEL", default_value = "info,kube=warn", value_parser = parse_log_filter)]
    pub log_level: String,

    /// Log line format.
    #[arg(long, env = "POOLNET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,

    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "POOLNET_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,

    /// Run controllers only while holding the Lease (`--leader-election=false` to disable,
    /// e.g. for a single replica during development).
    #[arg(
        long,
        env = "POOLNET_LEADER_ELECTION",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    pub leader_election: bool,

    /// Namespace of the Lease; the downward API provides the pod's own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "poolnet-system")]
    pub lease_namespace: String,

    /// Name of the Lease.
    #[arg(long, env = "POOLNET_LEASE_NAME", default_value = "poolnet-operator")]
    pub lease_name: String,

    /// Identity written into the Lease; the downward API provides the pod name.
    /// Default: `<hostname>-<pid>`.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease stays valid without renewal: a successor waits this long after the
    /// holder's last renewal. Whole seconds (`15`, `15s`, `1m`).
    #[arg(long, env = "POOLNET_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// The leader steps down when it could not renew for this long; must be shorter than
    /// the lease duration so it stops before anyone else may start.
    #[arg(long, env = "POOLNET_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,

    /// Interval between acquire or renew attempts.
    #[arg(long, env = "POOLNET_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
}

impl RuntimeArgs {
    /// The Lease identity: `--identity`/`POD_NAME`, else `<hostname>-<pid>`.
    pub fn identity(&self) -> String {
        match &self.identity {
            Some(id) if !id.is_empty() => id.clone(),
            _ => default_identity(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `<hostname>-<pid>`: unique among processes on one host, and hostnames are pod names in
/// Kubernetes, so unique across replicas too.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "poolnet-operator".to_string());
    format!("{host}-{}", std::process::id())
}

/// Rejects a bad filter at argument parsing, where the message names the flag.
fn parse_log_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a valid log filter: {e}"))
}

/// Parses `15`, `1.5`, `15s`, `500ms`, `2m` or `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 15, 15s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    fn parse(args: &[&str]) -> Result<RuntimeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("poolnet-operator").chain(args.iter().copied()))
            .map(|c| c.runtime)
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    // Env-var defaults are covered by clap's own `env` support; these tests pass flags only,
    // so they do not depend on the environment of the test process beyond the two pod vars.
    #[test]
    fn flags_override_defaults() {
        let args = parse(&[
            "--log-level=debug",
            "--log-format=json",
            "--admin-addr=127.0.0.1:0",
            "--leader-election=false",
            "--lease-namespace=ops",
            "--lease-name=lock",
            "--identity=pod-a",
            "--lease-duration=4s",
            "--renew-deadline=3",
            "--retry-period=250ms",
        ])
        .expect("valid flags");
        assert_eq!(args.log_level, "debug");
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.admin_addr, "127.0.0.1:0".parse().expect("address"));
        assert!(!args.leader_election);
        assert_eq!(args.lease_namespace, "ops");
        assert_eq!(args.lease_name, "lock");
        assert_eq!(args.identity(), "pod-a");
        assert_eq!(args.lease_duration, Duration::from_secs(4));
        assert_eq!(args.renew_deadline, Duration::from_secs(3));
        assert_eq!(args.retry_period, Duration::from_millis(250));
    }

    #[test]
    fn defaults_match_client_go_timings() {
        let args = parse(&[]).expect("no flags");
        assert_eq!(args.log_format, LogFormat::Plain);
        assert_eq!(args.admin_addr.port(), 9090);
        assert!(args.leader_election);
        assert_eq!(args.lease_name, "poolnet-operator");
        assert_eq!(args.lease_duration, Duration::from_secs(15));
        assert_eq!(args.renew_deadline, Duration::from_secs(10));
        assert_eq!(args.retry_period, Duration::from_secs(2));
        if std::env::var_os("POOLNET_LOG_LEVEL").is_none() {
            assert_eq!(args.log_level, "info,kube=warn");
        }
    }

    #[test]
    fn bare_leader_election_flag_means_on() {
        assert!(parse(&["--leader-election"]).expect("flag").leader_election);
        assert!(
            !parse(&["--leader-election=no"])
                .expect("flag")
                .leader_election
        );
    }

    #[test]
    fn bad_values_are_rejected_at_parse_time() {
        assert!(parse(&["--log-level=info,[unclosed"]).is_err());
        assert!(parse(&["--log-format=xml"]).is_err());
        assert!(parse(&["--admin-addr=localhost"]).is_err());
        assert!(parse(&["--retry-period=soon"]).is_err());
    }

    #[test]
    fn default_identity_is_host_and_pid() {
        let args = parse(&["--identity="]).expect("empty identity");
        let id = args.identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() > format!("-{}", std::process::id()).len(), "{id}");
    }
}
