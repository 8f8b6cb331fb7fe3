//! Shared, coalescing read-modify-write of NSGs and route tables.
