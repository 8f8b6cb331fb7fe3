//! `poolnet-check`: checks a poolnet installation and its ARM against the invariants of
//! issue 13 (docs/checker.md). Exit code 0: all hold; 1: violations; 2: the check could not
//! be completed.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use poolnet_check::cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    let outcome = run(Cli::parse()).await;
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    ExitCode::from(outcome.code)
}
