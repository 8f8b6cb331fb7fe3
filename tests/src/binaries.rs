//! Where the control plane binaries built by `hack/controlplane/build.sh` live.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The versions `build.sh` builds; one file so the script and the fixture agree on cache paths.
const VERSIONS: &str = include_str!("../../hack/controlplane/versions.env");

/// Environment variable naming the directory with all four binaries (set by `make`).
pub const BIN_DIR_ENV: &str = "POOLNET_K8S_BIN_DIR";

#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    /// Finds the binaries in `$POOLNET_K8S_BIN_DIR`, else in the default cache directory.
    /// Missing binaries are an error telling how to build them: tests never skip silently.
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => default_bin_dir()?,
        };
        let bins = Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kubectl: dir.join("kubectl"),
        };
        for bin in [
            &bins.etcd,
            &bins.kube_apiserver,
            &bins.kube_controller_manager,
            &bins.kubectl,
        ] {
            if !is_executable(bin) {
                bail!(
                    "{} is missing. Build the pinned control plane with `hack/controlplane/build.sh` \
                     (it prints the directory to use), then set {BIN_DIR_ENV} to it or keep the \
                     default cache location",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

/// The pinned Kubernetes version, as in `hack/controlplane/versions.env`.
pub fn pinned_k8s_version() -> Result<String> {
    if let Ok(v) = std::env::var("POOLNET_K8S_VERSION")
        && !v.is_empty()
    {
        return Ok(v);
    }
    pinned("K8S_VERSION")
}

fn pinned(key: &str) -> Result<String> {
    VERSIONS
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .ok_or_else(|| anyhow::anyhow!("{key} missing from hack/controlplane/versions.env"))
}

/// `${POOLNET_CACHE_DIR:-$HOME/.cache/poolnet}/k8s/<version>/bin`, the same rule as `build.sh`.
fn default_bin_dir() -> Result<PathBuf> {
    let cache = match std::env::var_os("POOLNET_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".cache/poolnet"),
            None => bail!("neither {BIN_DIR_ENV}, POOLNET_CACHE_DIR nor HOME is set"),
        },
    };
    Ok(cache.join("k8s").join(pinned_k8s_version()?).join("bin"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_file_names_both_pins() {
        assert!(pinned("K8S_VERSION").is_ok_and(|v| v.starts_with("v1.")));
        assert!(pinned("ETCD_VERSION").is_ok_and(|v| v.starts_with("v3.")));
        assert!(pinned("NOPE").is_err());
    }
}
