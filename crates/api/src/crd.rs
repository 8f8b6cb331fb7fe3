//! The CustomResourceDefinitions generated from the Rust types; `config/crd/` holds their YAML.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::v1alpha1::{HostPortPolicy, NodePoolNetwork, host_port_claim};

/// Every CRD poolnet serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        NodePoolNetwork::crd(),
        HostPortPolicy::crd(),
        host_port_claim::crd(),
    ]
    .into_iter()
    .map(reflow_descriptions)
    .collect()
}

/// Doc comments are wrapped at 100 columns; `kubectl explain` wraps again, so the source's
/// line breaks would show up mid-sentence. Join them, keeping blank-line paragraph breaks.
fn reflow_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if k == "description" => {
                            *text = reflow(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|para| {
            para.split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// File name under `config/crd/`, e.g. `nodepoolnetworks.poolnet.dev.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML document written to `config/crd/`, with a header saying it is generated.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated from crates/api by `make crds`; do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reflow_joins_lines_and_keeps_paragraphs() {
        assert_eq!(super::reflow("a\nb c\n d\n\ne\nf"), "a b c d\n\ne f");
    }

    #[test]
    fn generated_descriptions_have_no_mid_sentence_breaks() {
        for crd in super::crds() {
            let json = serde_json::to_string(&crd).unwrap();
            let descriptions: Vec<&str> = json.split("\"description\":\"").skip(1).collect();
            assert!(!descriptions.is_empty());
            for d in descriptions {
                let d = &d[..d.find("\",\"").unwrap_or(d.len())];
                assert!(!d.replace("\\n\\n", "").contains("\\n"), "{d}");
            }
        }
    }
}
