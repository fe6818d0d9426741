//! A store whose `release` takes a while, like a remote round trip: the engine treats it as a
//! remote store (no static memory dispatch), so tests can cancel a call while its release is
//! in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idem_runtime::store::{Claim, Record, Store, StoreFuture};
use idem_runtime::{Fingerprint, Key, MemoryStore, Token};

/// A [`MemoryStore`] behind the `dyn Store` path, with `delay` before every release.
pub struct SlowRelease {
    /// The records, for the test to inspect.
    pub inner: Arc<MemoryStore>,
    /// How long each release takes.
    pub delay: Duration,
}

impl SlowRelease {
    /// A new, empty store whose releases take `delay`.
    pub fn new(delay: Duration) -> Self {
        SlowRelease {
            inner: Arc::new(MemoryStore::new()),
            delay,
        }
    }
}

impl Store for SlowRelease {
    fn name(&self) -> &'static str {
        "slow-release"
    }

    fn claim<'a>(
        &'a self,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
        self.inner.claim(key, fingerprint, token, lease)
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.inner.complete(key, token, value, ttl)
    }

    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.release(key, token).await
        })
    }

    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool> {
        self.inner.renew(key, token, lease)
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        self.inner.get(key)
    }

    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool> {
        self.inner.remove(key)
    }

    fn purge_expired(&self, limit: usize) -> StoreFuture<'_, usize> {
        self.inner.purge_expired(limit)
    }
}
