//! `HostPortClaim`: the durable record that one pod holds one host port (cluster-scoped).
//!
//! One object per key, named after it (`tcp-41932`), so the API server's refusal of a second
//! object with the same name is what makes host-port reservation linearizable: whoever
//! creates the claim holds the port, and the admission webhook returns a patch only after its
//! create succeeded. poolnet creates, binds and deletes these; people only read them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::PortProtocol;

/// Label on claims (and on the pods they are for): the reservation token, i.e. the UID of
/// the admission request that created the claim.
pub const RESERVATION_LABEL: &str = "poolnet.dev/reservation";
/// Label on claims: the namespace of the pod.
pub const POD_NAMESPACE_LABEL: &str = "poolnet.dev/pod-namespace";
/// Label on claims: the HostPortPolicy (in the pod's namespace) the port was assigned for.
pub const POLICY_LABEL: &str = "poolnet.dev/policy";

/// Longest claim name (`udp-65535`).
pub const NAME_MAX_LEN: i64 = 9;

/// The CRD, with `metadata.name` restricted to key names by the schema (the CEL rule ties
/// the name to the spec; it uses `format` because the API server's cost estimator treats
/// `string(int)` as unbounded and refuses a concatenation with it).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = HostPortClaim::crd();
    let name = JSONSchemaProps {
        type_: Some("string".into()),
        max_length: Some(NAME_MAX_LEN),
        pattern: Some("^(tcp|udp)-[1-9][0-9]{0,4}$".into()),
        ..JSONSchemaProps::default()
    };
    let metadata = JSONSchemaProps {
        type_: Some("object".into()),
        properties: Some([("name".to_string(), name)].into_iter().collect()),
        ..JSONSchemaProps::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            root.properties
                .get_or_insert_with(Default::default)
                .insert("metadata".to_string(), metadata.clone());
        }
    }
    crd
}

/// A host port (protocol + port) held by one pod, cluster-wide.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "poolnet.dev",
    version = "v1alpha1",
    kind = "HostPortClaim",
    plural = "hostportclaims",
    singular = "hostportclaim",
    shortname = "hpc",
    category = "poolnet",
    status = "HostPortClaimStatus",
    derive = "PartialEq",
    doc = "HostPortClaim records that one pod holds one host port (protocol and port) across the cluster. Named <protocol>-<port>, so there can be only one per port. Created by poolnet's admission webhook before it gives the port to the pod, released when the pod is gone.",
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.podNamespace"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".status.pod.name"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policy"}"#,
    printcolumn = r#"{"name":"DaemonSet","type":"string","priority":1,"jsonPath":".spec.daemonSet.name"}"#,
    printcolumn = r#"{"name":"Source","type":"string","priority":1,"jsonPath":".spec.source"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name == (self.spec.protocol == 'TCP' ? 'tcp-%d' : 'udp-%d').format([self.spec.port])").message("a HostPortClaim must be named <protocol>-<port> after its spec (e.g. tcp-41932): the name is what makes a port unique"),
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a HostPortClaim's spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct HostPortClaimSpec {
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// The host port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The container port it maps to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: Option<u16>,
    /// How the port was chosen.
    pub source: HostPortSource,
    /// Namespace of the pod.
    #[schemars(length(min = 1, max = 63))]
    pub pod_namespace: String,
    /// Name of the pod when the claim was made; empty for pods named by generateName, whose
    /// name is chosen after admission (see status.pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pod_name: Option<String>,
    /// generateName of the pod, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pod_generate_name: Option<String>,
    /// HostPortPolicy (in the pod's namespace) the port was assigned for; none for ports
    /// asked by the AKS annotation or written in the pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub policy: Option<String>,
    /// Reservation token: UID of the admission request that created the claim. The pod
    /// carries it in the poolnet.dev/reservation label, which is how the claim finds its pod.
    #[schemars(length(min = 1, max = 63))]
    pub request_uid: String,
    /// The DaemonSet (in podNamespace) whose pods share this port: a DaemonSet runs one pod
    /// per node, so its pods that write the same static hostPort hold one claim together. The
    /// claim stays while any pod of that DaemonSet holds the port; pods of anything else are
    /// refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_set: Option<ClaimOwner>,
    /// When the claim was made.
    pub created_at: Time,
}

/// The workload a shared claim belongs to, by name and UID (a DaemonSet recreated under the
/// same name is another owner).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimOwner {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 63))]
    pub uid: String,
}

/// Name of the claim for a host port, e.g. `tcp-41932`: one object per port, so the API server
/// refusing a second object with the same name is what keeps a port with one pod.
pub fn claim_name(protocol: crate::portspec::Protocol, port: u16) -> String {
    format!("{protocol}-{port}")
}

impl HostPortClaim {
    /// The claim to create for `spec`: named after its port ([`claim_name`]) and labelled
    /// with its reservation token, its pod's namespace and its policy, by which pods,
    /// the index and the policy controller find it.
    pub fn for_spec(spec: HostPortClaimSpec) -> Self {
        let mut labels = BTreeMap::from([
            (RESERVATION_LABEL.to_string(), spec.request_uid.clone()),
            (POD_NAMESPACE_LABEL.to_string(), spec.pod_namespace.clone()),
        ]);
        if let Some(policy) = &spec.policy {
            labels.insert(POLICY_LABEL.to_string(), policy.clone());
        }
        Self {
            metadata: ObjectMeta {
                name: Some(claim_name(spec.protocol.into(), spec.port)),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

/// How a claimed port was chosen.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HostPortSource {
    /// Picked from a range by poolnet.
    #[default]
    Automatic,
    /// Asked for exactly (a HostPortPolicy's static port, or a hostPort in the pod spec).
    Static,
    /// Found on a pod that did not go through poolnet's webhook, recorded so nobody else gets it.
    Adopted,
}

/// Which pod holds the port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.pod) || (has(self.pod) && self.pod.uid == oldSelf.pod.uid)").message("a bound HostPortClaim cannot be rebound to another pod"))]
pub struct HostPortClaimStatus {
    /// The pod holding the port, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<BoundPod>,
    /// When the claim was bound to its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_at: Option<Time>,
    /// Set by the repair loop when it first found the claim unbound past the grace period and
    /// no pod carrying its token; a later pass releases it if that is still so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_since: Option<Time>,
    /// Shared claims (spec.daemonSet): when an admission last gave the port to a pod of the
    /// DaemonSet. That pod may be stored up to the API server's request deadline later, so
    /// the grace period before release counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<Time>,
}

impl HostPortClaim {
    /// Who holds the port, for messages: `pod games/echo-7d9f`, `DaemonSet ops/agent`, or the
    /// pod being admitted (`pod games/echo-… (being admitted)`).
    pub fn holder(&self) -> String {
        let ns = &self.spec.pod_namespace;
        if let Some(ds) = &self.spec.daemon_set {
            return format!("the pods of DaemonSet {ns}/{}", ds.name);
        }
        if let Some(pod) = self.status.as_ref().and_then(|s| s.pod.as_ref()) {
            return format!("pod {ns}/{}", pod.name);
        }
        match (&self.spec.pod_name, &self.spec.pod_generate_name) {
            (Some(name), _) => format!("pod {ns}/{name} (being admitted, or never created)"),
            (None, Some(generate)) => {
                format!("a pod {ns}/{generate}… (being admitted, or never created)")
            }
            (None, None) => format!("a pod in namespace {ns}"),
        }
    }

    /// The claim's name and who holds it, e.g. `HostPortClaim tcp-8443, held by pod games/x`
    /// (plus the policy it was assigned for, if any).
    pub fn describe(&self) -> String {
        let name = self.metadata.name.as_deref().unwrap_or("?");
        match &self.spec.policy {
            Some(policy) => format!(
                "HostPortClaim {name}, held by {} for HostPortPolicy {}/{policy}",
                self.holder(),
                self.spec.pod_namespace
            ),
            None => format!("HostPortClaim {name}, held by {}", self.holder()),
        }
    }
}

/// A pod by name and UID.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BoundPod {
    pub name: String,
    pub uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: Option<&str>) -> HostPortClaimSpec {
        HostPortClaimSpec {
            protocol: PortProtocol::UDP,
            port: 41932,
            container_port: Some(7777),
            source: HostPortSource::Automatic,
            pod_namespace: "games".into(),
            pod_name: None,
            pod_generate_name: Some("echo-".into()),
            policy: policy.map(String::from),
            request_uid: "token-1".into(),
            daemon_set: None,
            created_at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_claim_is_named_after_its_port_and_labelled_from_its_spec() {
        let claim = HostPortClaim::for_spec(spec(Some("echoserver")));
        assert_eq!(claim.metadata.name.as_deref(), Some("udp-41932"));
        assert_eq!(
            claim.metadata.labels,
            Some(BTreeMap::from([
                (RESERVATION_LABEL.to_string(), "token-1".to_string()),
                (POD_NAMESPACE_LABEL.to_string(), "games".to_string()),
                (POLICY_LABEL.to_string(), "echoserver".to_string()),
            ]))
        );
        assert_eq!(claim.spec, spec(Some("echoserver")));
        assert!(claim.status.is_none());

        let without_policy = HostPortClaim::for_spec(spec(None));
        let labels = without_policy.metadata.labels.clone().unwrap_or_default();
        assert!(!labels.contains_key(POLICY_LABEL), "{labels:?}");
    }

    #[test]
    fn a_claim_names_its_holder() {
        let mut claim = HostPortClaim::for_spec(spec(Some("echoserver")));
        assert_eq!(
            claim.describe(),
            "HostPortClaim udp-41932, held by a pod games/echo-… (being admitted, or never created) for HostPortPolicy games/echoserver"
        );
        claim.status = Some(HostPortClaimStatus {
            pod: Some(BoundPod {
                name: "echo-x".into(),
                uid: "u".into(),
            }),
            ..HostPortClaimStatus::default()
        });
        assert_eq!(claim.holder(), "pod games/echo-x");
        claim.spec.daemon_set = Some(ClaimOwner {
            name: "agent".into(),
            uid: "ds".into(),
        });
        assert_eq!(claim.holder(), "the pods of DaemonSet games/agent");
    }
}
