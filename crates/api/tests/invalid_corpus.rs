//! Every manifest in `tests/invalid/` is refused without a cluster: by decoding, by the CRD's
//! CEL rules evaluated client-side, or by the Rust validators, with a message naming the field.
//! The samples in `config/samples/` pass all three.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use poolnet_api::v1alpha1::{HostPortPolicy, NodePoolNetwork};
use poolnet_api::validation::validate_admission;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    file: String,
    expect: String,
    field: String,
    layer: String,
    docs: Vec<serde_json::Value>,
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .map(|s| s.trim().to_string())
}

fn docs(text: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            serde_json::to_value(v).expect("YAML is JSON-compatible")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn corpus() -> Vec<Case> {
    let dir = repo_root().join("tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let file = p.file_name().unwrap().to_string_lossy().into_owned();
            Case {
                expect: header(&text, "expect").unwrap_or_else(|| panic!("{file}: no # expect")),
                field: header(&text, "field").unwrap_or_else(|| panic!("{file}: no # field")),
                layer: header(&text, "layer").unwrap_or_else(|| panic!("{file}: no # layer")),
                docs: docs(&text),
                file,
            }
        })
        .collect()
}

fn schema_of(kind: &str) -> serde_json::Value {
    let crd = match kind {
        "NodePoolNetwork" => NodePoolNetwork::crd(),
        "HostPortPolicy" => HostPortPolicy::crd(),
        other => panic!("unknown kind {other}"),
    };
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Messages of the CEL layer and of the Rust validators that refuse `new` (given `old` for
/// updates).
fn local_rejections(
    new: &serde_json::Value,
    old: Option<&serde_json::Value>,
) -> (Vec<String>, Vec<String>) {
    let kind = new["kind"].as_str().unwrap();
    let cel = match Validator::new().validate(&schema_of(kind), new, old) {
        Ok(()) => vec![],
        Err(errs) => errs
            .as_slice()
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    };
    let rust = match validate_admission(new, old) {
        Ok(()) => vec![],
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    };
    (cel, rust)
}

/// Phrases the API server itself uses for OpenAPI schema violations.
const API_SERVER_WORDING: [&str; 6] = [
    "Required value",
    "Unsupported value",
    "less than or equal to",
    "greater than or equal to",
    "should have at least",
    "Duplicate value",
];

#[test]
fn corpus_is_large_enough_and_well_formed() {
    let cases = corpus();
    assert!(cases.len() >= 30, "only {} invalid manifests", cases.len());
    for c in &cases {
        assert!(
            ["schema", "webhook"].contains(&c.layer.as_str()),
            "{}: layer {}",
            c.file,
            c.layer
        );
        assert!(
            (1..=2).contains(&c.docs.len()),
            "{}: {} documents",
            c.file,
            c.docs.len()
        );
    }
}

#[test]
fn every_invalid_manifest_is_refused_with_a_message_naming_the_field() {
    let crd_yaml: String = ["nodepoolnetworks", "hostportpolicies"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(repo_root().join(format!("config/crd/{n}.poolnet.dev.yaml")))
                .unwrap()
        })
        .collect();
    let mut failures = Vec::new();
    for c in corpus() {
        let (new, old) = match c.docs.as_slice() {
            [new] => (new, None),
            [old, new] => (new, Some(old)),
            _ => unreachable!(),
        };
        let (cel, rust) = local_rejections(new, old);
        let all: Vec<&String> = cel.iter().chain(&rust).collect();
        if all.is_empty() {
            failures.push(format!("{}: accepted", c.file));
            continue;
        }
        if !all.iter().any(|m| m.contains(&c.field)) {
            failures.push(format!(
                "{}: no message names {:?}: {all:?}",
                c.file, c.field
            ));
        }
        // Webhook and CEL messages are ours, word for word. OpenAPI built-ins (required
        // fields, enums, bounds, list-map duplicates) are worded by the API server, which the
        // cluster test checks.
        let builtin = API_SERVER_WORDING.iter().any(|w| c.expect.contains(w));
        if !builtin && c.layer == "schema" && !crd_yaml.contains(&c.expect) {
            failures.push(format!(
                "{}: {:?} is neither a CEL message in config/crd nor API-server wording",
                c.file, c.expect
            ));
        }
        let ours = !builtin;
        if ours && !all.iter().any(|m| m.contains(&c.expect)) {
            failures.push(format!("{}: expected {:?} in {all:?}", c.file, c.expect));
        }
        // The webhook repeats the schema's rules (it is the only check on objects stored
        // before a CRD upgrade, and the CLI's): it refuses every file, naming the field.
        if !rust.iter().any(|m| m.contains(&c.field)) {
            failures.push(format!(
                "{}: the webhook does not refuse it naming {:?}: {rust:?}",
                c.file, c.field
            ));
        }
        if c.layer == "webhook" && !cel.is_empty() {
            failures.push(format!(
                "{}: marked webhook but CEL refuses it: {cel:?}",
                c.file
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn samples_pass_every_layer() {
    let dir = repo_root().join("config/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        for doc in docs(&std::fs::read_to_string(&path).unwrap()) {
            if doc["apiVersion"] != "poolnet.dev/v1alpha1" {
                continue;
            }
            let (cel, rust) = local_rejections(&doc, None);
            assert!(
                cel.is_empty() && rust.is_empty(),
                "{}: {cel:?} {rust:?}",
                path.display()
            );
            // An update that changes nothing is always allowed (transition rules hold).
            let (cel, rust) = local_rejections(&doc, Some(&doc));
            assert!(
                cel.is_empty() && rust.is_empty(),
                "{} (no-op update): {cel:?} {rust:?}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} poolnet objects in config/samples"
    );
}

/// Every manifest in `tests/valid/` (edge cases where the layers once disagreed) passes the
/// CEL rules and the Rust validators, on create or as the update it describes.
#[test]
fn every_valid_manifest_passes_every_layer() {
    let dir = repo_root().join("tests/valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/valid exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "only {} valid manifests", files.len());
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let operation = header(&text, "operation").unwrap_or_else(|| "create".into());
        let docs = docs(&text);
        let (new, old) = match (operation.as_str(), docs.as_slice()) {
            ("create", [new]) => (new, None),
            ("update", [old, new]) => {
                // The stored object must itself be valid.
                let (cel, rust) = local_rejections(old, None);
                if !cel.is_empty() || !rust.is_empty() {
                    failures.push(format!("{file} (stored object): {cel:?} {rust:?}"));
                }
                (new, Some(old))
            }
            (op, d) => panic!("{file}: operation {op} with {} documents", d.len()),
        };
        let (cel, rust) = local_rejections(new, old);
        if !cel.is_empty() {
            failures.push(format!("{file}: CEL refuses: {cel:?}"));
        }
        if !rust.is_empty() {
            failures.push(format!("{file}: the webhook refuses: {rust:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
