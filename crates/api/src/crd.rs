//! The CustomResourceDefinitions generated from the Rust types; `config/crd/` holds their YAML
//! and `charts/poolnet/templates/crds/` the same CRDs as Helm templates.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::v1alpha1::{HostPortBlock, HostPortPolicy, NodePoolNetwork, host_port_claim};

/// Every CRD poolnet serves.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        NodePoolNetwork::crd(),
        HostPortPolicy::crd(),
        host_port_claim::crd(),
        HostPortBlock::crd(),
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

/// Where the chart's CRD templates live, relative to the repository root.
pub const CHART_CRD_DIR: &str = "charts/poolnet/templates/crds";

/// Head of a chart CRD template; `NAME` is replaced by the CRD's name.
const CHART_HEAD: &str = r#"{{- if .Values.crds.install }}
# Generated from crates/api by `make crds`; do not edit.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: NAME
  labels:
    {{- include "poolnet.labels" . | nindent 4 }}
  {{- if .Values.crds.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
"#;

/// The CRD as a template of the Helm chart (`charts/poolnet/templates/crds/`): rendered when
/// `crds.install` is true, kept on `helm uninstall` when `crds.keep` is true, labelled like the
/// chart's other resources. A template, not the chart's `crds/` directory (which Helm installs
/// once and never upgrades), so that `helm upgrade` brings schema changes along.
pub fn to_chart_template(crd: &CustomResourceDefinition) -> Result<String, ChartTemplateError> {
    let name = crd.metadata.name.as_deref().unwrap_or("unnamed");
    if crd.metadata.labels.is_some() || crd.metadata.annotations.is_some() {
        // The template writes both; generated ones would be silently dropped.
        return Err(ChartTemplateError::Metadata(name.to_string()));
    }
    // The same serialisation as config/crd/, from its top-level `spec:` on (a top-level key
    // starts a line unindented, so the match is unique).
    let yaml = serde_yaml::to_string(crd)?;
    let spec = yaml
        .find("\nspec:\n")
        .map(|at| &yaml[at + 1..])
        .ok_or_else(|| ChartTemplateError::NoSpec(name.to_string()))?;
    // A description mentioning `{{` would be read as template code by Helm.
    if spec.contains("{{") || spec.contains("}}") {
        return Err(ChartTemplateError::TemplateDelimiters(name.to_string()));
    }
    Ok(format!(
        "{}{spec}{{{{- end }}}}\n",
        CHART_HEAD.replace("NAME", name)
    ))
}

/// Why a CRD cannot become a chart template.
#[derive(Debug, thiserror::Error)]
pub enum ChartTemplateError {
    #[error("{0}: the generated CRD has labels or annotations; the chart template sets its own")]
    Metadata(String),
    #[error("{0}: the schema contains `{{{{` or `}}}}`, which Helm would read as template code")]
    TemplateDelimiters(String),
    #[error("{0}: the generated CRD has no top-level spec")]
    NoSpec(String),
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
}

#[cfg(test)]
mod tests {
    #[test]
    fn chart_templates_wrap_the_same_spec_as_config_crd() {
        for crd in super::crds() {
            let template = super::to_chart_template(&crd).unwrap();
            let plain = super::to_yaml(&crd).unwrap();
            // Everything from `spec:` on is the same document.
            let spec_of = |s: &str| s[s.find("\nspec:").unwrap()..].to_string();
            let body = spec_of(&template);
            assert_eq!(
                body.trim_end().trim_end_matches("{{- end }}").trim_end(),
                spec_of(&plain).trim_end()
            );
            assert!(template.contains("{{- if .Values.crds.install }}"));
            assert!(template.contains("helm.sh/resource-policy: keep"));
        }
    }

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
