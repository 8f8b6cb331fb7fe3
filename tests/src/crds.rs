//! Installing CustomResourceDefinitions from YAML and waiting until they are served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::FIELD_MANAGER;

const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// `config/crd/` of this repository: the CRDs generated from `poolnet-api`.
pub fn poolnet_crd_dir() -> PathBuf {
    crate::repo_root().join("config/crd")
}

/// Every `*.yaml` / `*.yml` file in `dir`, sorted, so runs are reproducible.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses every CRD document in `files` (multi-document YAML allowed).
pub fn load_crds(files: &[PathBuf]) -> Result<Vec<CustomResourceDefinition>> {
    let mut crds = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", file.display()))?;
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_yaml::from_value(value)
                .with_context(|| format!("{} is not a CustomResourceDefinition", file.display()))?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

/// Server-side applies `crds` and waits until each is `Established` (served by the API
/// server). Idempotent: several tests may install the same CRDs on a shared server.
pub async fn install(client: &Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in crds {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in crds {
        let name = crd.name_any();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(ESTABLISHED_TIMEOUT, established).await {
            Ok(result) => {
                result.with_context(|| format!("watching CRD {name}"))?;
            }
            Err(_) => bail!("CRD {name} not Established after {ESTABLISHED_TIMEOUT:?}"),
        }
    }
    Ok(())
}

/// Installs every CRD found in `dir`; fails if there is none, so a wrong path cannot pass.
pub async fn install_dir(client: &Client, dir: &Path) -> Result<Vec<String>> {
    let crds = load_crds(&yaml_files(dir)?)?;
    if crds.is_empty() {
        bail!("no CustomResourceDefinition found in {}", dir.display());
    }
    install(client, &crds).await?;
    Ok(crds.iter().map(ResourceExt::name_any).collect())
}
