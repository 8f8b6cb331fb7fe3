//! Writes (or checks) `config/crd/*.yaml` from the Rust types.
//!
//! `poolnet-crdgen <dir>` writes the files; `poolnet-crdgen --check <dir>` exits 1 when a
//! file differs from what the code generates.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: poolnet-crdgen [--check] <dir>");
        return ExitCode::from(2);
    };
    let mut drift = false;
    for crd in poolnet_api::crd::crds() {
        let path = dir.join(poolnet_api::crd::file_name(&crd));
        let yaml = match poolnet_api::crd::to_yaml(&crd) {
            Ok(y) => y,
            Err(e) => {
                eprintln!("cannot render {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                eprintln!("{} is out of date: run `make crds`", path.display());
                drift = true;
            }
        } else if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if drift {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
