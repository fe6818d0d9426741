//! Shared helpers for idem's integration tests: the store conformance suite.

pub mod conformance;
