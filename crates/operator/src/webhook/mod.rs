//! See crate docs for what this module owns.
