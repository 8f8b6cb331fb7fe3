//! Writes (or checks) the CRD YAML generated from the Rust types: `config/crd/*.yaml`, and the
//! same CRDs as templates of the Helm chart (`charts/poolnet/templates/crds/*.yaml`).
//!
//! `poolnet-crdgen <crd-dir> [<chart-crd-dir>]` writes the files; `poolnet-crdgen --check ...`
//! exits 1 when a file differs from what the code generates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition as Crd;

/// One output directory and how a CRD is rendered into it.
struct Target {
    dir: PathBuf,
    render: fn(&Crd) -> Result<String, String>,
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    if args.is_empty() || args.len() > 2 {
        eprintln!("usage: poolnet-crdgen [--check] <crd-dir> [<chart-crd-dir>]");
        return ExitCode::from(2);
    }
    let mut targets = vec![Target {
        dir: PathBuf::from(&args[0]),
        render: |crd| poolnet_api::crd::to_yaml(crd).map_err(|e| e.to_string()),
    }];
    if let Some(chart) = args.get(1) {
        targets.push(Target {
            dir: PathBuf::from(chart),
            render: |crd| poolnet_api::crd::to_chart_template(crd).map_err(|e| e.to_string()),
        });
    }
    let mut drift = false;
    for target in &targets {
        for crd in poolnet_api::crd::crds() {
            let path = target.dir.join(poolnet_api::crd::file_name(&crd));
            let text = match (target.render)(&crd) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("cannot render {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            match write_or_check(&path, &text, check) {
                Ok(true) => {}
                Ok(false) => {
                    eprintln!("{} is out of date: run `make crds`", path.display());
                    drift = true;
                }
                Err(e) => {
                    eprintln!("cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if drift {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes `text` (or, with `check`, compares it); `Ok(false)` when a checked file differs.
fn write_or_check(path: &Path, text: &str, check: bool) -> std::io::Result<bool> {
    if check {
        return Ok(std::fs::read_to_string(path).ok().as_deref() == Some(text));
    }
    std::fs::write(path, text)?;
    println!("wrote {}", path.display());
    Ok(true)
}
