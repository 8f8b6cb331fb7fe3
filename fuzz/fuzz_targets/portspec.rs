#![no_main]
//! Host-port specs: whatever parses must print back to something that parses to the same.
use libfuzzer_sys::fuzz_target;
use poolnet_api::portspec::{format_list, parse_list};

fuzz_target!(|data: &str| {
    if let Ok(specs) = parse_list(data) {
        let canonical = format_list(&specs);
        assert_eq!(parse_list(&canonical).ok(), Some(specs));
    }
});
