#![no_main]
//! IP tags in the CLI form `Type=Tag`.
use libfuzzer_sys::fuzz_target;
use poolnet_api::iptag::parse_ip_tag;

fuzz_target!(|data: &str| {
    if let Ok((t, v)) = parse_ip_tag(data) {
        assert_eq!(parse_ip_tag(&format!("{t}={v}")).ok(), Some((t, v)));
    }
});
