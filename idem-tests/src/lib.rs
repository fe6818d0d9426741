//! Shared helpers for idem's integration tests: the store conformance suite, access to the
//! test servers (Redis, Redis Cluster, PostgreSQL), a fault-injecting TCP proxy, and the
//! cross-process worker, a store with slow releases and completes for cancellation tests.

pub mod alloc_counter;
pub mod conformance;
pub mod fixtures;
pub mod proxy;
pub mod servers;
pub mod slow_store;
pub mod worker;
