#![no_main]
//! ARM IDs: parsing never panics, and a parsed ID prints back to one that parses equal.
use libfuzzer_sys::fuzz_target;
use poolnet_api::armid::{ResourceId, ResourceKind};

fuzz_target!(|data: &str| {
    if let Ok(id) = ResourceId::parse(data) {
        let again = ResourceId::parse(&id.to_string()).expect("display output parses");
        assert!(again.same_resource(&id));
    }
    for kind in [ResourceKind::AgentPool, ResourceKind::PublicIpPrefix, ResourceKind::Subnet] {
        let _ = ResourceId::parse_kind(data, kind);
    }
});
