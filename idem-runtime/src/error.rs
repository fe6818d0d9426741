//! The one error type of idem.

use std::time::Duration;

use crate::key::Key;

/// Boxed source error of a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong around an idempotent call.
///
/// The body's own errors never appear here: they reach the caller unchanged. Variants marked
/// *retryable* (see [`Error::is_retryable`]) describe a transient situation; calling again later
/// with the same input is the right reaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key was used before with a different payload (other non-key arguments).
    #[error(
        "idempotency key {key} of operation `{operation}` was already used with a different payload; \
         use a new key for a new request (HTTP 422)"
    )]
    PayloadMismatch {
        /// Operation name.
        operation: &'static str,
        /// The reused key.
        key: Key,
    },

    /// Another call with the same key is running and this call did not wait for it
    /// (`on_conflict = "reject"`) or gave up waiting (`wait_timeout`). Retryable.
    #[error(
        "operation `{operation}` is already running for key {key} (its lease, renewed while it \
         runs, has {retry_after:.1?} left); retry shortly, or let calls wait for it \
         (on_conflict = \"wait\", a longer wait_timeout; `Idempotency::start` never waits)"
    )]
    InFlight {
        /// Operation name.
        operation: &'static str,
        /// The busy key.
        key: Key,
        /// How long the running call's lease still lasts, as far as the store knows: when
        /// the key frees up if the running call dies, not when it will finish (its lease is
        /// renewed while it runs; a sensible retry is sooner, e.g. the HTTP layer's 1 s).
        retry_after: Duration,
    },

    /// This call waited for another call with the same key, and that call ended without recording
    /// a result (its body returned `Err`, panicked or was cancelled). Retryable:
    /// the next call claims the key and runs the body.
    ///
    /// Waiters do not run the body themselves after a release, so that a failing body is not
    /// run again by each of them in turn (after an owner's lease lapsed, one waiter claims the
    /// key and runs it instead). A call made after an earlier call *of this
    /// process* returned, was cancelled or panicked does not wait for it: on a shared store
    /// such a call's claim is released in the background, and a new claim of the key from this
    /// process waits for that release (up to a second) before it is sent.
    #[error(
        "the call running operation `{operation}` for key {key} ended without a result \
         (error, panic or cancellation); call again to run it"
    )]
    OwnerFailed {
        /// Operation name.
        operation: &'static str,
        /// The key.
        key: Key,
    },

    /// This call's claim on the key is gone (its lease lapsed and another caller took over, or the
    /// record was removed), so its result was not recorded. Fencing keeps a stale owner from
    /// overwriting the new owner's record. The engine renews the lease every third of it while
    /// the body runs, so this means renewals failed or could not run, or the record was removed.
    /// Retryable: a new call replays the new owner's result, waits for it, or runs again.
    #[error(
        "lease on key {key} of operation `{operation}` was lost before the result could be recorded: \
         another caller took the key over after the lease lapsed, or the record was removed \
         (`forget`/`remove`); the lease lapses when renewals fail (store unreachable) or cannot \
         run (a blocked executor), or when an explicit claim (`Idempotency::start`) is held longer \
         than the lease"
    )]
    LeaseLost {
        /// Operation name.
        operation: &'static str,
        /// The key.
        key: Key,
    },

    /// A recorded value could not be decoded into the operation's output type.
    #[error(
        "cannot decode the recorded result of operation `{operation}`: {reason}; if the output type \
         changed since the record was written, bump the operation's `version`"
    )]
    Decode {
        /// Operation name.
        operation: &'static str,
        /// What was wrong with the bytes: serde's message with the recorded values left out
        /// (a recorded result may hold personal data), its types, names and position kept.
        reason: String,
    },

    /// The body's output could not be encoded for the store. The body has run (its effects
    /// happened), nothing was recorded and the claim was released: a retry runs it again, and
    /// keeps failing so until the output type changes. Not retryable.
    #[error(
        "cannot encode the result of operation `{operation}`: {reason}; the body ran but \
         nothing was recorded and the claim was released, so a retry runs it again"
    )]
    Encode {
        /// Operation name.
        operation: &'static str,
        /// Why serde refused it.
        reason: String,
    },

    /// Key material could not be written (a `Serialize` impl returned an error).
    #[error("cannot compute the idempotency key: {reason}")]
    KeyMaterial {
        /// Why the key material's `Serialize` impl failed.
        reason: String,
    },

    /// The body called its own operation with its own key; waiting would deadlock.
    #[error(
        "operation `{operation}` called itself with its own key {key}; a body must not re-enter \
         its own idempotent call (use a different key or call the inner function directly)"
    )]
    Reentrant {
        /// Operation name.
        operation: &'static str,
        /// The key.
        key: Key,
    },

    /// The memory store has no room for a new claim: the shard of its key is full of
    /// in-progress records (the bound is split evenly over the shards; completed and expired
    /// records would have been evicted). Retryable: claims end or lapse and free their room.
    #[error(
        "the memory store is full: the shard of this key holds {shard_capacity} records, all in \
         progress ({max_entries} in all, split over the shards); raise \
         `MemoryStore::builder().max_entries(..)`, shorten the `lease` so abandoned claims lapse \
         sooner, or use a shared store"
    )]
    Capacity {
        /// The configured bound of the whole store.
        max_entries: usize,
        /// The bound of one shard, which was reached.
        shard_capacity: usize,
    },

    /// A value exceeded the store's size limit; nothing was written. A call (`#[idempotent]`,
    /// [`Call::run`](crate::Call::run), [`Claimed::complete`](crate::Claimed::complete))
    /// releases its claim before returning this (the body ran: a retry runs it again); a
    /// direct [`Store::complete`](crate::Store::complete) leaves the claim to its caller.
    #[error(
        "the result is {size} bytes, above the store's limit of {limit} bytes; nothing was \
         recorded and the claim was released, so a retry runs the body again: return a smaller \
         value (e.g. an id to look the rest up by) or raise the store's `max_value_bytes`"
    )]
    ValueTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },

    /// The store could not be reached, or failed while answering (a lost connection, a
    /// timeout, an exhausted pool). Retryable; a server that refuses this client for good is
    /// [`Error::Config`] instead.
    #[error("idempotency store `{store}` failed: {source}")]
    Store {
        /// Which store.
        store: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },

    /// A setting is refused, or was changed at the wrong time, or the store's server refuses
    /// this client for a reason time will not fix: credentials, a missing database, table or
    /// privilege, an ACL. Not retryable: the message says what to change.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Whether calling again later can succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::InFlight { .. }
                | Error::OwnerFailed { .. }
                | Error::LeaseLost { .. }
                | Error::Store { .. }
                | Error::Capacity { .. }
        )
    }

    /// Wraps a backend error.
    pub fn store(store: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Store {
            store,
            source: source.into(),
        }
    }
}
