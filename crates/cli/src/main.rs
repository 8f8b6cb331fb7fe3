//! `kubectl-poolnet`: kubectl plugin for poolnet. `kubectl poolnet plan -f plan.yaml` runs the
//! network preflight checks of `poolnet_preflight` on a plan file and prints a table or
//! JSON. Exit status: 0 when every check passes, 1 when any check fails, 2 when the input
//! cannot be read or parsed.

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
    Plan {
        /// Plan file (YAML or JSON); `-` reads standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Exit status when a check fails (input problems use 2, like clap's usage errors).
const EXIT_CHECK_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn read_plan(file: &PathBuf) -> Result<NetworkPlan> {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the plan from standard input")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    // JSON is YAML, so one parser takes both.
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}

fn plan(file: &PathBuf, output: Output) -> Result<bool> {
    let network_plan = read_plan(file)?;
    let report = preflight::run(&network_plan);
    match output {
        Output::Table => print!("{}", render::render(&file.display().to_string(), &report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        ),
    }
    Ok(report.passed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan { file, output } => match plan(&file, output) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
    }
}
