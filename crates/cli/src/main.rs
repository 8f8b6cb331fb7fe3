//! `kubectl-poolnet`: kubectl plugin for poolnet.
//!
//! - `kubectl poolnet plan -f plan.yaml` runs the network preflight checks of
//!   `poolnet_preflight` on a plan file and prints a table or JSON. Exit status: 0 when every
//!   check passes, 1 when any check fails, 2 when the input cannot be read or parsed.
//! - `kubectl poolnet status [NAME]` prints one screen per node pool, joined across its
//!   NodePoolNetwork and HostPortPolicies (`kubectl_poolnet::status`). Exit status: 0, or 2
//!   when the cluster cannot be read.

mod render;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use poolnet_preflight::{self as preflight, NetworkPlan};

#[derive(Parser)]
#[command(
    name = "kubectl poolnet",
    version,
    about = "poolnet: node pool networking for AKS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a network plan (subnets, ranges, routes, API server subnet, AKS Arc IPs) before
    /// creating anything. The format is described in docs/plan-format.md.
    ///
    /// With a NodePoolNetwork instead (its NAME in the cluster, or a manifest given with -f),
    /// the checks poolnet's webhook and controller run on it against its live cluster: facts
    /// read from ARM (the managed cluster and its pools, the VNet of the pool's subnet) with
    /// your Azure CLI login or --arm-token.
    Plan(PlanArgs),
    /// The exact changes poolnet would make in Azure for an Observe NodePoolNetwork (each
    /// rule, route and agent-pool field, old and new value). Exit status: 0 no changes,
    /// 1 changes pending (like diff), 2 the cluster cannot be read.
    Diff {
        /// The NodePoolNetwork (with reconcilePolicy Observe) whose pending changes to show.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        name: Option<String>,
        /// A NodePoolNetwork manifest to plan before applying it: read against the cluster's
        /// objects and the live ARM resources, with your own ARM credential (the Azure CLI
        /// login unless --arm-token is given). Nothing is written.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        arm: ArmArgs,
        /// (`-o json`: the pendingChanges list.)
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// One screen per node pool, from the cluster: exposure (prefix, node IPs, IP tags),
    /// allowed host ports and the ports in use, NSG rules and routes, conditions.
    Status {
        /// The NodePoolNetwork to show; every one when omitted.
        name: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// How the commands that read a cluster reach it, and how they print.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; default: the current one.
    #[arg(long)]
    context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = StatusOutput::Text)]
    output: StatusOutput,
}

impl ClusterArgs {
    async fn client(&self) -> Result<kube::Client> {
        kube_client(self.kubeconfig.as_ref(), self.context.as_ref()).await
    }
}

async fn kube_client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&String>,
) -> Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: context.cloned(),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        None if options.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer()
            .await
            .context("no cluster configuration: set KUBECONFIG or pass --kubeconfig")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// The async runtime of the commands that read a cluster (`diff -f` runs informers beside
/// the planner: two workers).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How `diff -f` and `plan` (of a NodePoolNetwork) reach ARM.
#[derive(clap::Args)]
struct ArmArgs {
    /// ARM endpoint (a sovereign cloud's, or armsim's).
    #[arg(long, env = "POOLNET_ARM_ENDPOINT", default_value = poolnet_arm::PUBLIC_ARM_ENDPOINT)]
    arm_endpoint: String,
    /// Extra CA certificate (PEM) to trust for ARM (armsim's).
    #[arg(long, env = "POOLNET_ARM_CA_FILE", value_name = "FILE")]
    arm_ca_file: Option<PathBuf>,
    /// Bearer token for ARM; default: `az account get-access-token` for the endpoint.
    #[arg(long, env = "POOLNET_ARM_TOKEN", hide_env_values = true)]
    arm_token: Option<String>,
}

impl ArmArgs {
    fn token(&self) -> Result<String> {
        if let Some(t) = &self.arm_token {
            return Ok(t.clone());
        }
        let resource = self.arm_endpoint.trim_end_matches('/').to_string() + "/";
        let out = std::process::Command::new("az")
            .args(["account", "get-access-token", "--resource", &resource])
            .args(["--query", "accessToken", "--output", "tsv"])
            .output()
            .context("running `az account get-access-token` (install the Azure CLI and `az login`, or pass --arm-token)")?;
        if !out.status.success() {
            anyhow::bail!(
                "`az account get-access-token` failed: {} (run `az login`, or pass --arm-token)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    fn client(&self) -> Result<std::sync::Arc<dyn poolnet_arm::ArmNetwork>> {
        let mut config = poolnet_arm::ArmConfig::new(
            self.arm_endpoint
                .parse()
                .with_context(|| format!("--arm-endpoint {}", self.arm_endpoint))?,
        );
        if let Some(path) = &self.arm_ca_file {
            config.transport.extra_ca_pem = Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --arm-ca-file {}", path.display()))?,
            );
        }
        let credential =
            poolnet_arm::CredentialConfig::Static(poolnet_arm::Secret::new(self.token()?));
        Ok(std::sync::Arc::new(poolnet_arm::ArmClient::new(
            config, credential,
        )?))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusOutput {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Exit status when a check fails (input problems use 2, like clap's usage errors).
const EXIT_CHECK_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn read_input(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the plan from standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// `kubectl poolnet plan`: a plan file, or a NodePoolNetwork against its live cluster.
#[derive(clap::Args)]
struct PlanArgs {
    /// A NodePoolNetwork in the cluster to check against its live cluster.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    name: Option<String>,
    /// Plan file (YAML or JSON), or a NodePoolNetwork manifest; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    arm: ArmArgs,
    /// Kubeconfig file (with NAME); default: $KUBECONFIG, ~/.kube/config, or in-cluster.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (with NAME); default: the current one.
    #[arg(long)]
    context: Option<String>,
}

fn plan(args: PlanArgs) -> Result<bool> {
    use poolnet_api::v1alpha1::NodePoolNetwork;
    let (source, report) = match (&args.name, &args.file) {
        (None, Some(file)) => {
            let text = read_input(file)?;
            if kubectl_poolnet::live_plan::is_node_pool_network(&text) {
                let npn: NodePoolNetwork = serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing {} as a NodePoolNetwork", file.display()))?;
                let source = format!(
                    "NodePoolNetwork {} from {} against its live cluster",
                    kube::ResourceExt::name_any(&npn),
                    file.display()
                );
                (source, live_report(&args.arm, &npn)?)
            } else {
                // JSON is YAML, so one parser takes both.
                let network_plan: NetworkPlan = serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing {}", file.display()))?;
                (file.display().to_string(), preflight::run(&network_plan))
            }
        }
        (Some(name), _) => {
            let npn = runtime()?.block_on(async {
                let client = kube_client(args.kubeconfig.as_ref(), args.context.as_ref()).await?;
                kube::Api::<NodePoolNetwork>::all(client)
                    .get(name)
                    .await
                    .with_context(|| format!("reading NodePoolNetwork {name}"))
            })?;
            let source = format!("NodePoolNetwork {name} against its live cluster");
            (source, live_report(&args.arm, &npn)?)
        }
        (None, None) => anyhow::bail!("give a NodePoolNetwork name or -f FILE"),
    };
    match args.output {
        Output::Table => print!("{}", render::render(&source, &report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        ),
    }
    Ok(report.passed)
}

/// The live preflight report of `npn`; what could not be read is said on standard error.
fn live_report(
    arm: &ArmArgs,
    npn: &poolnet_api::v1alpha1::NodePoolNetwork,
) -> Result<preflight::Report> {
    let arm = arm.client()?;
    let (report, skipped) = runtime()?.block_on(kubectl_poolnet::live_plan::plan_live(arm, npn))?;
    if let Some(why) = skipped {
        eprintln!("warning: some checks were left out: {why}");
    }
    Ok(report)
}

fn status(name: Option<String>, cluster: ClusterArgs) -> Result<()> {
    let runtime = runtime()?;
    let views = runtime.block_on(async {
        let client = cluster.client().await?;
        kubectl_poolnet::status::gather(&client, name.as_deref()).await
    })?;
    match cluster.output {
        StatusOutput::Text if views.is_empty() => println!("No NodePoolNetworks found."),
        StatusOutput::Text => print!("{}", kubectl_poolnet::status::render_all(&views)),
        StatusOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(&views).context("encoding the status")?
        ),
    }
    Ok(())
}

/// Exit status of `diff` when changes are pending.
const EXIT_DIFFERENT: u8 = 1;

struct DiffArgs {
    name: Option<String>,
    file: Option<PathBuf>,
    arm: ArmArgs,
    cluster: ClusterArgs,
}

fn diff(args: DiffArgs) -> Result<bool> {
    use poolnet_api::v1alpha1::NodePoolNetwork;
    let (npn, d) = runtime()?.block_on(async {
        let client = args.cluster.client().await?;
        match (&args.name, &args.file) {
            (Some(name), _) => {
                let npn = kube::Api::<NodePoolNetwork>::all(client)
                    .get(name)
                    .await
                    .with_context(|| format!("reading NodePoolNetwork {name}"))?;
                let d = kubectl_poolnet::diff::render(&npn);
                anyhow::Ok((npn, d))
            }
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let manifest: NodePoolNetwork = serde_yaml::from_str(&text)
                    .with_context(|| format!("parsing {} as a NodePoolNetwork", file.display()))?;
                let (planned, exists) =
                    kubectl_poolnet::preview::plan_manifest(client, args.arm.client()?, manifest)
                        .await?;
                let mut title = format!(
                    "NodePoolNetwork {} from {}",
                    kube::ResourceExt::name_any(&planned),
                    file.display()
                );
                if !exists {
                    title.push_str(" (new: rule names end differently once created)");
                }
                let d = kubectl_poolnet::diff::render_titled(&planned, &title);
                Ok((planned, d))
            }
            (None, None) => anyhow::bail!("give a NodePoolNetwork name or -f FILE"),
        }
    })?;
    match args.cluster.output {
        StatusOutput::Text => print!("{}", d.text),
        StatusOutput::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &npn.status.map(|s| s.pending_changes).unwrap_or_default()
            )
            .context("encoding the changes")?
        ),
    }
    Ok(d.changes > 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Diff {
            name,
            file,
            arm,
            cluster,
        } => match diff(DiffArgs {
            name,
            file,
            arm,
            cluster,
        }) {
            Ok(false) => ExitCode::SUCCESS,
            Ok(true) => ExitCode::from(EXIT_DIFFERENT),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Status { name, cluster } => match status(name, cluster) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Plan(args) => match plan(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}
