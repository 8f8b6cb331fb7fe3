//! Types shared by both CRDs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A public IP tag, e.g. {ipTagType: RoutingPreference, tag: Internet}. Plain data: the CEL
/// rules live on the (bounded) spec list, so status lists of tags cost the API server nothing.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
pub struct IpTag {
    /// Tag type, e.g. RoutingPreference or FirstPartyUsage.
    #[schemars(length(min = 1, max = 64))]
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
