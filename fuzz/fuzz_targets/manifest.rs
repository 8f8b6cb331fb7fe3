#![no_main]
//! Whole manifests as JSON: decoding plus every validator, as the admission webhook runs them.
use libfuzzer_sys::fuzz_target;
use poolnet_api::validation::validate_admission;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = validate_admission(&value, None);
        let _ = validate_admission(&value, Some(&value));
    }
});
