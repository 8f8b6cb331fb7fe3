//! `HostPortBlock`: 64 consecutive host ports of one protocol, held by one webhook replica
//! (cluster-scoped). `docs/hostport-blocks.md` gives the protocol and its safety argument.
//!
//! A block is named after its first port (`tcp-40000`); blocks are aligned (the first port
//! is a multiple of [`BLOCK_SIZE`]), so two blocks never overlap and a port belongs to
//! exactly one possible block. While a block object exists, the keys in its span are given
//! out only by its holder, from memory, and every pod records the keys it got (its spec and
//! the `poolnet.dev/host-ports` annotation): no write per admission. Keys of ports in no
//! block are reserved one `HostPortClaim` each, as before.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::PortProtocol;
use crate::portspec::Protocol;

/// Ports per block.
pub const BLOCK_SIZE: u16 = 64;

/// First port of the block holding `port` (0 for ports 1-63: that block's port 0 is never
/// given out).
pub fn block_start(port: u16) -> u16 {
    port - port % BLOCK_SIZE
}

/// Name of the block holding `port`, e.g. `tcp-40000` for 40000-40063.
pub fn block_name(protocol: Protocol, port: u16) -> String {
    format!("{protocol}-{}", block_start(port))
}

/// A block of host ports held by one replica of poolnet's admission webhook.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "poolnet.dev",
    version = "v1alpha1",
    kind = "HostPortBlock",
    plural = "hostportblocks",
    singular = "hostportblock",
    shortname = "hpb",
    category = "poolnet",
    status = "HostPortBlockStatus",
    derive = "PartialEq",
    doc = "HostPortBlock hands 64 consecutive host ports of one protocol to one replica of poolnet's admission webhook, which gives them to pods from memory; each pod records the ports it got in its spec and in the poolnet.dev/host-ports annotation. Named <protocol>-<first port>. poolnet creates, takes over and deletes these; people only read them.",
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    printcolumn = r#"{"name":"First","type":"integer","jsonPath":".spec.start"}"#,
    printcolumn = r#"{"name":"Holder","type":"string","jsonPath":".spec.holder"}"#,
    printcolumn = r#"{"name":"InUse","type":"integer","jsonPath":".status.inUse"}"#,
    printcolumn = r#"{"name":"Taken","type":"date","jsonPath":".spec.takenAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name == (self.spec.protocol == 'TCP' ? 'tcp-%d' : 'udp-%d').format([self.spec.start])").message("a HostPortBlock must be named <protocol>-<first port> after its spec (e.g. tcp-40000)"),
)]
#[x_kube(validation = Rule::new("self.start % 64 == 0").message("a HostPortBlock starts at a multiple of 64"))]
#[x_kube(validation = Rule::new("self.protocol == oldSelf.protocol && self.start == oldSelf.start").message("a HostPortBlock's protocol and first port are immutable"))]
#[serde(rename_all = "camelCase")]
pub struct HostPortBlockSpec {
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// The first port (a multiple of 64); the block spans start to start+63.
    #[schemars(range(min = 0, max = 65472))]
    pub start: u16,
    /// The replica holding the block (`<pod>/<process id>`): only it gives out the block's
    /// ports. Its liveness is its Lease (holderLease).
    #[schemars(length(min = 1, max = 253))]
    pub holder: String,
    /// The holder's Lease (`<namespace>/<name>`), renewed while the holder is alive. Another
    /// replica takes the block over only after that Lease has not been renewed by the holder
    /// for its duration plus the quarantine (the API server's create deadline and a margin).
    #[schemars(length(min = 1, max = 317))]
    pub holder_lease: String,
    /// When the holder took the block.
    pub taken_at: Time,
}

/// What the holder last reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostPortBlockStatus {
    /// Ports of the block held by pods (or being admitted) when the holder last wrote it.
    #[serde(default)]
    pub in_use: u32,
    /// When that count was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

impl HostPortBlock {
    /// The block of `port` on `protocol`, held by `holder`.
    pub fn draft(protocol: Protocol, port: u16, holder: &str, holder_lease: &str) -> Self {
        let start = block_start(port);
        Self {
            metadata: ObjectMeta {
                name: Some(block_name(protocol, start)),
                ..ObjectMeta::default()
            },
            spec: HostPortBlockSpec {
                protocol: protocol.into(),
                start,
                holder: holder.to_string(),
                holder_lease: holder_lease.to_string(),
                taken_at: Time(k8s_openapi::jiff::Timestamp::now()),
            },
            status: None,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.spec.protocol.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_named_after_their_first_port() {
        assert_eq!(block_start(40000), 40000);
        assert_eq!(block_start(40063), 40000);
        assert_eq!(block_start(40064), 40064);
        assert_eq!(block_start(59999), 59968);
        assert_eq!(block_start(65535), 65472);
        assert_eq!(block_start(5), 0);
        assert_eq!(block_name(Protocol::Udp, 41932), "udp-41920");
        let b = HostPortBlock::draft(Protocol::Tcp, 40070, "pod-a/1", "poolnet/l");
        assert_eq!(b.metadata.name.as_deref(), Some("tcp-40064"));
        assert_eq!(b.spec.start, 40064);
    }
}
