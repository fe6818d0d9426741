//! Where records live: the [`Store`] trait and the built-in [`MemoryStore`].
//!
//! A store keeps one record per [`Key`]: absent, *in progress* (a claim with a fencing
//! [`Token`], a fingerprint and a lease) or *completed* (a fingerprint and the encoded value,
//! kept for a TTL). Every method is one atomic step on the backend; lease and TTL are durations
//! the store measures with its own clock, never absolute times from the application.
//!
//! Custom backends implement [`Store`] and are used as `Arc<dyn Store>`. The methods return
//! boxed futures so the trait stays object-safe; the built-in memory store is also dispatched
//! statically by the engine, so its replay path allocates nothing.

#[cfg(feature = "redis")]
mod claim_order;
/// The opt-in cache of completed records in front of the remote stores.
#[cfg(any(feature = "redis", feature = "postgres"))]
mod local_cache;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod redact;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

#[cfg(feature = "redis")]
pub use claim_order::ClaimOrder;
pub use memory::{DEFAULT_MAX_ENTRIES, DEFAULT_MAX_VALUE_BYTES, MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};

use crate::{Error, Fingerprint, Key, Token};

/// `now + after`, saturated: a sum past what the clock can represent (`Duration::MAX` as a TTL,
/// lease or timeout, meaning "practically never") gives an instant 30 years on instead of
/// overflowing, as `tokio::time::sleep` does.
pub(crate) fn deadline(now: tokio::time::Instant, after: Duration) -> tokio::time::Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The future a [`Store`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// The answer to [`Store::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was absent (never seen, expired, released, or its lease had lapsed): the caller
    /// now owns it with the token it sent.
    Acquired,
    /// A completed record exists.
    Completed {
        /// The fingerprint recorded by the call that completed it.
        fingerprint: Fingerprint,
        /// The record bytes (see [`crate::record`]).
        value: Bytes,
    },
    /// Another caller's claim is alive.
    InProgress {
        /// The fingerprint of the running call.
        fingerprint: Fingerprint,
        /// How long its lease still lasts.
        remaining: Duration,
    },
}

/// A record as [`Store::get`] sees it. Expired records are reported as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A claim is alive.
    InProgress {
        /// The fingerprint of the running call.
        fingerprint: Fingerprint,
        /// How long its lease still lasts.
        remaining: Duration,
    },
    /// A completed record.
    Completed {
        /// The recorded fingerprint.
        fingerprint: Fingerprint,
        /// The record bytes.
        value: Bytes,
        /// How long the record is still kept.
        expires_in: Duration,
    },
}

/// A backend for idempotency records.
///
/// Implementations must make each method a single atomic step: two callers can never both get
/// [`Claim::Acquired`] for a live key, and `complete`, `release` and `renew` change the record
/// only while `token` is its current token (they answer `Ok(false)` otherwise). The conformance
/// suite in `idem-tests` checks all of this for every store.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and errors (`"memory"`, `"redis"`, `"postgres"`).
    fn name(&self) -> &'static str;

    /// What an operator needs to recognise this store in the log, without secrets: where it
    /// is and which keys or table are its own (logged when it is installed). By default its
    /// [`name`](Self::name).
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// Atomically claims `key` for `token` with `lease`, or reports the record that holds it.
    ///
    /// Errors: [`Error::Config`] only when the claim was certainly not applied (the server
    /// refused this client), since the engine does not release such a claim; any error after
    /// which the claim may have been applied (a lost connection, a timeout) is
    /// [`Error::Store`], and the engine then releases the claim as a precaution.
    ///
    /// An absent, expired or lease-lapsed record is replaced by an in-progress record carrying
    /// `fingerprint` and `token`.
    fn claim<'a>(
        &'a self,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'a, Claim>;

    /// Turns the in-progress record owned by `token` into a completed record holding `value`,
    /// kept for `ttl` from now. `Ok(false)`: `token` no longer owns the key (lease lost).
    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Deletes the in-progress record owned by `token`, so the next call runs again.
    /// `Ok(false)`: `token` did not own the key.
    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool>;

    /// Extends the lease of the record owned by `token` to `lease` from now.
    /// `Ok(false)`: `token` no longer owns the key.
    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool>;

    /// Reads the record of `key`; expired records are `None`.
    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>>;

    /// Deletes the record of `key` whatever its state (a manual "forget"). `Ok(true)` if a live
    /// record was removed. Removing an in-progress record makes its owner's `complete` fail.
    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool>;

    /// Deletes up to `limit` expired records and returns how many it deleted.
    fn purge_expired(&self, limit: usize) -> StoreFuture<'_, usize>;

    /// Resolves when the record of `key` may have left the in-progress state, or after `max` at
    /// the latest. Callers re-read the record afterwards; spurious wake-ups are allowed.
    ///
    /// The default polls: it sleeps a random interval between 10 and 200 ms (capped by `max`),
    /// so that many waiters on one key do not hit the backend in lockstep. Backends with change
    /// notifications override it.
    fn wait_for_change<'a>(&'a self, key: &'a Key, max: Duration) -> StoreFuture<'a, ()> {
        let _ = key;
        Box::pin(async move {
            tokio::time::sleep(max.min(poll_interval())).await;
            Ok(())
        })
    }

    /// The memory store behind this trait object, if it is one; lets the engine skip the boxed
    /// futures on its fast path.
    #[doc(hidden)]
    fn as_memory(&self) -> Option<&MemoryStore> {
        None
    }
}

/// A jittered polling interval between 10 and 200 ms, for stores without change notifications.
pub fn poll_interval() -> Duration {
    Duration::from_millis(10 + random_u64() % 191)
}

/// `step` scaled by a random factor in [0.5, 1.0], so that pollers do not move in lockstep.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) fn jittered(step: Duration) -> Duration {
    step / 2 + step.mul_f64((random_u64() >> 11) as f64 / (1u64 << 53) as f64 / 2.0)
}

/// Well-spread random bits without an RNG dependency: splitmix64 over a fresh token.
fn random_u64() -> u64 {
    let bytes = Token::generate().to_bytes();
    let mut z = u64::from_be_bytes(bytes[8..].try_into().unwrap_or_default());
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
