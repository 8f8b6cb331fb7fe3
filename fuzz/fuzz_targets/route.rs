#![no_main]
//! Routes: name, prefix and next-hop address from arbitrary text, every next-hop type.
use libfuzzer_sys::fuzz_target;
use poolnet_api::route::{NextHopKind, validate_route};

fuzz_target!(|data: &str| {
    let mut parts = data.splitn(4, '\n');
    let kind = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("");
    let prefix = parts.next().unwrap_or("");
    let ip = parts.next();
    let kind = kind.parse::<NextHopKind>().unwrap_or(NextHopKind::VirtualAppliance);
    let errs = validate_route("spec.routeTable.routes[0]", name, prefix, kind, ip);
    for e in errs.iter() {
        assert!(e.path.starts_with("spec.routeTable.routes[0]."));
    }
});
