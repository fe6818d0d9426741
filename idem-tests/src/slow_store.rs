//! A store whose `release` and `complete` take a while, like remote round trips, or whose
//! renewals or completes fail: the engine treats it as a remote store (no static memory dispatch), so tests
//! can cancel a call while its release or the recording of its result is in flight, or cut
//! off its renewals (failing or never answering).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idem_runtime::store::{Claim, Record, Store, StoreFuture};
use idem_runtime::{Error, Fingerprint, Key, MemoryStore, Token};

/// A [`MemoryStore`] behind the `dyn Store` path, with a delay before every release or
/// complete.
pub struct SlowStore {
    /// The records, for the test to inspect.
    pub inner: Arc<MemoryStore>,
    release_delay: Duration,
    complete_delay: Duration,
    renewals_fail: bool,
    renewals_hang: bool,
    completes_fail: bool,
}

impl SlowStore {
    /// A new, empty store whose releases take `delay`.
    pub fn releasing_in(delay: Duration) -> Self {
        SlowStore {
            inner: Arc::new(MemoryStore::new()),
            release_delay: delay,
            complete_delay: Duration::ZERO,
            renewals_fail: false,
            renewals_hang: false,
            completes_fail: false,
        }
    }

    /// A new, empty store whose completes take `delay`.
    pub fn completing_in(delay: Duration) -> Self {
        SlowStore {
            inner: Arc::new(MemoryStore::new()),
            release_delay: Duration::ZERO,
            complete_delay: delay,
            renewals_fail: false,
            renewals_hang: false,
            completes_fail: false,
        }
    }

    /// A new, empty store whose completes take `delay` and then fail with a store error, as
    /// when the server goes away mid-write (nothing is recorded).
    pub fn failing_completes_in(delay: Duration) -> Self {
        SlowStore {
            completes_fail: true,
            ..Self::completing_in(delay)
        }
    }

    /// This store, with releases that take `delay` as well.
    pub fn and_releasing_in(self, delay: Duration) -> Self {
        SlowStore {
            release_delay: delay,
            ..self
        }
    }

    /// A new, empty store whose renewals all fail with a store error, as when the server is
    /// unreachable (claims and completes still work).
    pub fn failing_renewals() -> Self {
        SlowStore {
            renewals_fail: true,
            ..Self::completing_in(Duration::ZERO)
        }
    }
}

impl SlowStore {
    /// A new, empty store whose renewals never answer, as over a partitioned connection that
    /// neither delivers nor fails (claims and completes still work).
    pub fn hanging_renewals() -> Self {
        SlowStore {
            renewals_hang: true,
            ..Self::completing_in(Duration::ZERO)
        }
    }
}

impl Store for SlowStore {
    fn name(&self) -> &'static str {
        "slow"
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
        Box::pin(async move {
            tokio::time::sleep(self.complete_delay).await;
            if self.completes_fail {
                return Err(Error::store("slow", "connection reset (test)"));
            }
            self.inner.complete(key, token, value, ttl).await
        })
    }

    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::sleep(self.release_delay).await;
            self.inner.release(key, token).await
        })
    }

    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool> {
        if self.renewals_hang {
            return Box::pin(std::future::pending());
        }
        if self.renewals_fail {
            let refused = Error::store("slow", "connection refused (test)");
            return Box::pin(std::future::ready(Err(refused)));
        }
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
