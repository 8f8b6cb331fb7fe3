//! Seed state: subscriptions, resource groups and ARM resources, loaded through the same
//! validation as a client's PUT so a fixture can never hold a state Azure would refuse.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Fixture {
    pub subscriptions: Vec<FixtureSubscription>,
    /// ARM resources in creation order (an ASG before the rule that names it). Each is an ARM
    /// body with its full `id`; child resources go inside their parent's body.
    pub resources: Vec<FixtureResource>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureSubscription {
    pub id: String,
    pub display_name: Option<String>,
    pub resource_groups: Vec<FixtureResourceGroup>,
    /// Preview features registered in the subscription, as `Namespace/Name`, e.g.
    /// `Microsoft.ContainerService/PodHostPortAutoAssignPreview`.
    pub registered_features: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FixtureResourceGroup {
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub managed_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FixtureResource {
    pub id: String,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

impl Fixture {
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("parsing fixture: {e}"))
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading fixture {}: {e}", path.display()))?;
        Self::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The AKS-like demo fixture shipped with the crate (`fixtures/aks-demo.yaml`).
    pub fn aks_demo() -> anyhow::Result<Self> {
        Self::from_yaml(include_str!("../fixtures/aks-demo.yaml"))
    }
}
