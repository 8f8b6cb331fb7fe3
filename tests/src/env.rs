//! What a test starts from: a control plane, a client, a fresh namespace, the poolnet CRDs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::OnceCell;

use crate::control_plane::ControlPlane;
use crate::crds;
use crate::webhook::{Hook, Kind, WebhookServer};

/// Pods are only admitted once the namespace's `default` service account exists, which
/// kube-controller-manager creates shortly after the namespace.
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// One control plane per test binary for [`TestEnv::shared`]. It lives in a static, so
/// it is never dropped: see [`ControlPlane::clean_up_at_exit`].
static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

#[derive(Debug)]
enum Plane {
    Own(Box<ControlPlane>),
    Shared(&'static ControlPlane),
}

/// A test's world: a real API server, an admin client and a namespace of its own.
pub struct TestEnv {
    client: Client,
    namespace: String,
    plane: Plane,
}

impl TestEnv {
    /// An isolated control plane with the poolnet CRDs installed and a fresh namespace.
    /// For tests that change cluster-wide state (cluster-scoped webhooks, CRD updates).
    pub async fn start() -> Result<Self> {
        Self::start_with_crds(&[crds::poolnet_crd_dir()]).await
    }

    /// Like [`TestEnv::start`], installing the CRDs found in `crd_dirs` instead.
    pub async fn start_with_crds(crd_dirs: &[PathBuf]) -> Result<Self> {
        let plane = ControlPlane::start().await?;
        let client = plane.client().await?;
        install_all(&client, crd_dirs).await?;
        Self::with_namespace(client, Plane::Own(Box::new(plane))).await
    }

    /// A fresh namespace on the control plane shared by all tests of this test binary,
    /// with the poolnet CRDs installed. Cheapest; for tests that stay in their namespace.
    pub async fn shared() -> Result<Self> {
        Self::shared_with_crds(&[crds::poolnet_crd_dir()]).await
    }

    /// Like [`TestEnv::shared`], installing the CRDs found in `crd_dirs` instead
    /// (idempotent: tests of one binary may install the same CRDs concurrently).
    pub async fn shared_with_crds(crd_dirs: &[PathBuf]) -> Result<Self> {
        let plane = SHARED
            .get_or_try_init(|| async {
                let plane = ControlPlane::start().await?;
                plane.clean_up_at_exit();
                anyhow::Ok(plane)
            })
            .await?;
        let client = plane.client().await?;
        install_all(&client, crd_dirs).await?;
        Self::with_namespace(client, Plane::Shared(plane)).await
    }

    async fn with_namespace(client: Client, plane: Plane) -> Result<Self> {
        let namespace = create_namespace(&client, "poolnet-test-").await?;
        Ok(Self {
            client,
            namespace,
            plane,
        })
    }

    /// Admin client (`system:masters`), bound to the current tokio runtime.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The namespace created for this test.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn control_plane(&self) -> &ControlPlane {
        match &self.plane {
            Plane::Own(plane) => plane,
            Plane::Shared(plane) => plane,
        }
    }

    /// An `Api` for a namespaced kind in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Registers `hook` (served by `server`) limited to this test's namespace, and waits
    /// until the API server calls it.
    pub async fn register_webhook(
        &self,
        server: &WebhookServer,
        kind: Kind,
        mut hook: Hook,
    ) -> Result<String> {
        hook.namespace = Some(self.namespace.clone());
        server.register(&self.client, kind, &hook).await
    }
}

async fn install_all(client: &Client, crd_dirs: &[PathBuf]) -> Result<()> {
    for dir in crd_dirs {
        crds::install_dir(client, dir).await?;
    }
    Ok(())
}

/// Creates a namespace named `<prefix><random>` and waits until pods can be admitted in it
/// (its `default` service account exists). Returns its name.
pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    generate_name: Some(prefix.into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .context("creating the test namespace")?;
    let name = ns.name_any();
    wait_for_default_service_account(client, &name).await?;
    Ok(name)
}

/// Waits until namespace `name` has its `default` service account (kube-controller-manager
/// creates it shortly after the namespace; pods are admitted only then).
pub async fn wait_for_default_service_account(client: &Client, name: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let deadline = tokio::time::Instant::now() + SERVICE_ACCOUNT_TIMEOUT;
    while accounts.get_opt("default").await?.is_none() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "namespace {name}: no `default` service account after {SERVICE_ACCOUNT_TIMEOUT:?}; \
                 is kube-controller-manager running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
