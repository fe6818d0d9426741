//! A store whose `release` and `complete` take a while, like remote round trips, or whose
//! renewals or completes fail: the engine treats it as a remote store (no static memory dispatch), so tests
//! can cancel a call while its release or the recording of its result is in flight, or cut
//! off its renewals (failing or never answering).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use idem_runtime::store::{Claim, Record, Store, StoreFuture};
use idem_runtime::{Error, Fingerprint, Key, MemoryStore, Token};

/// A [`MemoryStore`] behind the `dyn Store` path, with a delay before every claim, release or
/// complete, and renewals or completes that fail or never answer.
pub struct SlowStore {
    /// The records, for the test to inspect.
    pub inner: Arc<MemoryStore>,
    claim_delay: Duration,
    renew_delay: Duration,
    release_delay: Duration,
    complete_delay: Duration,
    renewals_fail: bool,
    hung_renewals: Hang,
    renewals: AtomicUsize,
    completes_fail: bool,
    read_delay: Duration,
    answer_delay: Duration,
}

/// Which renewals never answer.
#[derive(Clone, Copy, PartialEq)]
enum Hang {
    None,
    All,
    /// The n-th renewal (from 1), the others answer.
    Nth(usize),
}

impl SlowStore {
    fn base() -> Self {
        SlowStore {
            inner: Arc::new(MemoryStore::new()),
            claim_delay: Duration::ZERO,
            renew_delay: Duration::ZERO,
            release_delay: Duration::ZERO,
            complete_delay: Duration::ZERO,
            renewals_fail: false,
            hung_renewals: Hang::None,
            renewals: AtomicUsize::new(0),
            completes_fail: false,
            read_delay: Duration::ZERO,
            answer_delay: Duration::ZERO,
        }
    }

    /// A new, empty store whose reads (`get`) take `delay` before they read, like a slow
    /// round trip.
    pub fn reading_in(delay: Duration) -> Self {
        SlowStore {
            read_delay: delay,
            ..Self::base()
        }
    }

    /// A new, empty store that applies claims and renewals at once and answers them `delay`
    /// later, as a server does before its answer crosses the network.
    pub fn answering_in(delay: Duration) -> Self {
        SlowStore {
            answer_delay: delay,
            ..Self::base()
        }
    }

    /// A new, empty store whose releases take `delay`.
    pub fn releasing_in(delay: Duration) -> Self {
        SlowStore {
            release_delay: delay,
            ..Self::base()
        }
    }

    /// A new, empty store whose completes take `delay`.
    pub fn completing_in(delay: Duration) -> Self {
        SlowStore {
            complete_delay: delay,
            ..Self::base()
        }
    }

    /// A new, empty store whose claims take `delay` (the claim is applied at the end of it),
    /// like a claim that waited for a pooled connection, and whose renewals take 2 ms, a
    /// round trip.
    pub fn claiming_in(delay: Duration) -> Self {
        SlowStore {
            claim_delay: delay,
            renew_delay: Duration::from_millis(2),
            ..Self::base()
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
            ..Self::base()
        }
    }

    /// A new, empty store whose renewals never answer, as over a partitioned connection that
    /// neither delivers nor fails (claims and completes still work).
    pub fn hanging_renewals() -> Self {
        SlowStore {
            hung_renewals: Hang::All,
            ..Self::base()
        }
    }

    /// A new, empty store whose `n`-th renewal (from 1) never answers, as one pooled
    /// connection left open by a partition, while the others answer.
    pub fn hanging_renewal(n: usize) -> Self {
        SlowStore {
            hung_renewals: Hang::Nth(n),
            ..Self::base()
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
        Box::pin(async move {
            tokio::time::sleep(self.claim_delay).await;
            let claim = self.inner.claim(key, fingerprint, token, lease).await;
            tokio::time::sleep(self.answer_delay).await;
            claim
        })
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
        let nth = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hung_renewals == Hang::All || self.hung_renewals == Hang::Nth(nth) {
            return Box::pin(std::future::pending());
        }
        if self.renewals_fail {
            let refused = Error::store("slow", "connection refused (test)");
            return Box::pin(std::future::ready(Err(refused)));
        }
        Box::pin(async move {
            tokio::time::sleep(self.renew_delay).await;
            let renewed = self.inner.renew(key, token, lease).await;
            tokio::time::sleep(self.answer_delay).await;
            renewed
        })
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            tokio::time::sleep(self.read_delay).await;
            self.inner.get(key).await
        })
    }

    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool> {
        self.inner.remove(key)
    }

    fn purge_expired(&self, limit: usize) -> StoreFuture<'_, usize> {
        self.inner.purge_expired(limit)
    }
}
