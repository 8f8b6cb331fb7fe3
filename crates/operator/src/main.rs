//! `poolnet-operator`: see the crate documentation of `poolnet_operator`.

fn main() {
    eprintln!("poolnet-operator: wiring in progress");
}
