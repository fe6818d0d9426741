//! The store conformance suite against the in-process memory store.

use std::sync::Arc;

use idem_runtime::{MemoryStore, Store};

async fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

idem_tests::conformance_suite!(memory());
