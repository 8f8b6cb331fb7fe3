//! Types shared by both CRDs.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A public IP tag, e.g. {ipTagType: RoutingPreference, tag: Internet}.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.ipTagType != 'RoutingPreference' || self.tag == 'Internet'").message("RoutingPreference supports only the tag Internet (the Microsoft-network path is the default and has no tag)"))]
pub struct IpTag {
    /// Tag type, e.g. RoutingPreference or FirstPartyUsage.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9]*$')").message("ipTagType must be letters and digits, starting with a letter, e.g. RoutingPreference"))]
    pub ip_tag_type: String,
    /// Tag value, e.g. Internet.
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,
}

/// How far poolnet may act on Azure for an object.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReconcilePolicy {
    /// Create, update and delete what poolnet owns (default).
    #[default]
    Manage,
    /// Read Azure and report in status; never write.
    Observe,
    /// Like Manage, but leave Azure resources in place when the object is deleted.
    DetachOnDelete,
}

/// Transport protocol of a container port, as Kubernetes spells it.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
)]
pub enum PortProtocol {
    #[default]
    TCP,
    UDP,
}

impl From<PortProtocol> for crate::portspec::Protocol {
    fn from(p: PortProtocol) -> Self {
        match p {
            PortProtocol::TCP => crate::portspec::Protocol::Tcp,
            PortProtocol::UDP => crate::portspec::Protocol::Udp,
        }
    }
}

impl From<crate::portspec::Protocol> for PortProtocol {
    fn from(p: crate::portspec::Protocol) -> Self {
        match p {
            crate::portspec::Protocol::Tcp => PortProtocol::TCP,
            crate::portspec::Protocol::Udp => PortProtocol::UDP,
        }
    }
}
