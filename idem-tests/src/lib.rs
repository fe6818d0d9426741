//! Shared helpers for idem's integration tests: the store conformance suite, access to the
//! test servers (Redis, Redis Cluster, PostgreSQL), a fault-injecting TCP proxy, a fake Redis
//! server answering what a test tells it to, a capture of the `tracing` events, and the cross-process worker, a store with slow
//! releases and completes for cancellation tests, and a store whose every call fails.

pub mod alloc_counter;
pub mod conformance;
pub mod down_store;
pub mod fake_redis;
pub mod fixtures;
pub mod logs;
pub mod proxy;
pub mod servers;
pub mod slow_store;
pub mod worker;
