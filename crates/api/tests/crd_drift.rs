//! `config/crd/*.yaml` must be exactly what the Rust types generate (`make crds`).

use std::path::Path;

#[test]
fn checked_in_crds_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    for crd in poolnet_api::crd::crds() {
        let path = dir.join(poolnet_api::crd::file_name(&crd));
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        let generated = poolnet_api::crd::to_yaml(&crd).unwrap();
        assert!(
            on_disk == generated,
            "{} differs from what crates/api generates: run `make crds` and commit the result",
            path.display()
        );
    }
}
