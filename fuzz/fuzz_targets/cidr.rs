#![no_main]
//! Address prefixes: never panic; an accepted prefix prints back to an equal one.
use libfuzzer_sys::fuzz_target;
use poolnet_api::cidr::{parse_address_prefix, reserved_overlap};

fuzz_target!(|data: &str| {
    if let Ok(p) = parse_address_prefix(data) {
        assert_eq!(parse_address_prefix(&p.to_string()).ok(), Some(p.clone()));
        if let Some(net) = p.as_net() {
            let _ = reserved_overlap(&net);
        }
    }
});
