//! Network preflight checks (seed docs 001, 002, 004): capacity, reserved ranges, overlaps,
//! route limits, API-server subnet and AKS Arc static IP plans.
