//! The command line of `poolnet-check` (the binary is a thin wrapper around [`run`], so
//! tests drive the very same path: flags, clients, reads, report, exit code).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use poolnet_arm::{ArmClient, ArmConfig, CredentialConfig, Secret, Url};
use poolnet_plan::hostports::ReleasePolicy;

use crate::{Baseline, Options, Report, shell};

#[derive(Debug, Parser)]
#[command(
    name = "poolnet-check",
    version,
    about = "Check a poolnet installation and its Azure resources against poolnet's invariants",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub check: CheckArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the invariants (the default).
    Check(CheckArgs),
    /// Record the foreign parts of every shared resource (and armsim's write counters) to a
    /// file, for a later `check --baseline`.
    Baseline(BaselineArgs),
}

/// Where the cluster and ARM are (ARM flags and variables as the operator's).
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// ARM endpoint: Azure public cloud by default; a sovereign cloud's, or armsim's.
    #[arg(long, env = "POOLNET_ARM_ENDPOINT", default_value = poolnet_arm::PUBLIC_ARM_ENDPOINT)]
    pub arm_endpoint: Url,

    /// PEM file with extra CA certificates to trust for ARM (armsim's CA).
    #[arg(long, env = "POOLNET_ARM_CA_FILE")]
    pub arm_ca_file: Option<PathBuf>,

    /// A fixed bearer token instead of an Azure credential (armsim only).
    #[arg(long, env = "POOLNET_ARM_STATIC_TOKEN", hide_env_values = true)]
    pub arm_static_token: Option<String>,

    /// ARM is armsim: read its per-resource write counters for (e).
    #[arg(long)]
    pub armsim: bool,

    /// Another NSG, route table or agent pool to read (repeatable), e.g. for a baseline
    /// taken before the objects that will name it exist.
    #[arg(long = "resource", value_name = "ARM_ID")]
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub connect: Connect,

    /// Baseline file from `poolnet-check baseline` (enables (a) and (e)).
    #[arg(long)]
    pub baseline: Option<PathBuf>,

    /// Report format.
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// The operator's --host-port-grace.
    #[arg(long, default_value = "39s", value_parser = parse_duration)]
    pub host_port_grace: Duration,

    /// Time the repair loop may take beyond grace and confirmation.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub claim_slack: Duration,

    /// Leftovers whose owner object is gone (DetachOnDelete) are notes, not violations.
    #[arg(long)]
    pub allow_detached: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub connect: Connect,

    /// Where to write the baseline.
    #[arg(long, short = 'f', default_value = "poolnet-baseline.json")]
    pub file: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    poolnet_operator::runtime::parse_duration(s)
}

async fn clients(c: &Connect) -> Result<(kube::Client, ArmClient)> {
    let config = match &c.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig")?,
    };
    let kube = kube::Client::try_from(config).context("Kubernetes client")?;
    let mut arm = ArmConfig::new(c.arm_endpoint.clone());
    if let Some(path) = &c.arm_ca_file {
        arm.transport.extra_ca_pem = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --arm-ca-file {}", path.display()))?,
        );
    }
    let credential = match &c.arm_static_token {
        Some(t) => CredentialConfig::Static(Secret::new(t.clone())),
        None => CredentialConfig::from_env(&poolnet_arm::credential::ProcessEnv)
            .map_err(|e| anyhow::anyhow!("no Azure credential: {e}"))?,
    };
    Ok((kube, ArmClient::new(arm, credential)?))
}

async fn run_check(args: &CheckArgs) -> Result<Report> {
    let (kube, arm) = clients(&args.connect).await?;
    let baseline: Option<Baseline> = match &args.baseline {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading baseline {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing baseline {}", path.display()))?,
            )
        }
        None => None,
    };
    let extra = baseline
        .iter()
        .flat_map(|b| b.resources.iter().map(|r| r.id.clone()))
        .chain(args.connect.resources.iter().cloned())
        .collect::<Vec<_>>();
    let snap = shell::read(&kube, &arm, extra).await?;
    let writes = if args.connect.armsim {
        Some(shell::armsim_writes(&arm).await?)
    } else {
        None
    };
    let options = Options {
        release: ReleasePolicy {
            grace: args.host_port_grace,
            confirm_after: crate::DEFAULT_CONFIRM_AFTER,
        },
        claim_slack: args.claim_slack,
        allow_detached: args.allow_detached,
        writes,
    };
    Ok(crate::check(&snap, baseline.as_ref(), &options))
}

async fn run_baseline(args: &BaselineArgs) -> Result<String> {
    let (kube, arm) = clients(&args.connect).await?;
    let snap = shell::read(&kube, &arm, args.connect.resources.clone()).await?;
    let writes = if args.connect.armsim {
        Some(shell::armsim_writes(&arm).await?)
    } else {
        None
    };
    let baseline = crate::baseline(&snap, writes);
    std::fs::write(&args.file, serde_json::to_string_pretty(&baseline)?)
        .with_context(|| format!("writing {}", args.file.display()))?;
    let entries: usize = baseline.resources.iter().map(|r| r.entries.len()).sum();
    Ok(format!(
        "baseline of {} shared resource(s) ({entries} foreign entr(ies)) written to {}",
        baseline.resources.len(),
        args.file.display()
    ))
}

/// What a run prints, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    /// 0: all invariants hold (or the baseline was written); 1: violations; 2: the check
    /// could not be completed.
    pub code: u8,
}

fn failed(e: impl std::fmt::Display) -> Outcome {
    Outcome {
        stdout: String::new(),
        stderr: format!("poolnet-check: {e}\n"),
        code: 2,
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Outcome {
    match cli.command.unwrap_or(Command::Check(cli.check)) {
        Command::Check(args) => match run_check(&args).await {
            Ok(report) => {
                let stdout = match args.output {
                    Output::Text => crate::render::human(&report),
                    Output::Json => match serde_json::to_string_pretty(&report) {
                        Ok(s) => s + "\n",
                        Err(e) => return failed(e),
                    },
                };
                Outcome {
                    stdout,
                    stderr: String::new(),
                    code: report.exit_code() as u8,
                }
            }
            Err(e) => failed(format!("{e:#}")),
        },
        Command::Baseline(args) => match run_baseline(&args).await {
            Ok(msg) => Outcome {
                stdout: msg + "\n",
                stderr: String::new(),
                code: 0,
            },
            Err(e) => failed(format!("{e:#}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "poolnet-check",
            "--output=json",
            "--baseline=b.json",
            "--arm-endpoint=https://127.0.0.1:1/",
            "--armsim",
            "--host-port-grace=60s",
        ])
        .expect("check flags at the top level");
        assert!(cli.command.is_none());
        assert_eq!(cli.check.output, Output::Json);
        assert_eq!(cli.check.host_port_grace, Duration::from_secs(60));
        assert!(cli.check.connect.armsim);
        let cli = Cli::try_parse_from(["poolnet-check", "baseline", "-f", "x.json", "--armsim"])
            .expect("baseline flags");
        assert!(
            matches!(cli.command, Some(Command::Baseline(b)) if b.file == std::path::Path::new("x.json") && b.connect.armsim)
        );
    }
}
