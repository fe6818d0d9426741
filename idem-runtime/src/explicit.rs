//! The explicit API, for code that cannot use the attribute (dynamic operation names, message
//! consumers that acknowledge by hand, …).
//!
//! [`Idempotency<T>`] is a typed handle over an [`Operation`] and a store. [`execute`] is the
//! whole engine in one call; [`start`] hands out a [`Claimed`] guard for code that must place
//! the body itself. Both carry the fencing token on every write.
//!
//! [`execute`]: Idempotency::execute
//! [`start`]: Idempotency::start

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::Frame;
use crate::engine::{AbortOnDrop, check_lease, claim_still_held, renew_lease, renewal_period};
use crate::guard::ClaimGuard;
use crate::key::IdempotencyKey;
use crate::store::{Claim, Record, Store};
use crate::{Error, Fingerprint, Key, Operation, Token, record};

/// A typed handle for one operation whose results are `T`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_runtime::Error> {
/// use std::sync::Arc;
/// use idem_runtime::{Check, Idempotency, MemoryStore, Operation, Start};
///
/// let orders = Idempotency::<u64>::new(Operation::new("orders.create"), Arc::new(MemoryStore::new()));
/// let key = orders.key(&"order-17")?;
///
/// assert!(matches!(orders.check(&key).await?, Check::New));
/// match orders.start(key).await? {
///     Start::New(claim) => claim.complete(&17).await?,
///     Start::Duplicate(id) => println!("already created: {id}"),
/// }
/// assert!(matches!(orders.check(&key).await?, Check::Duplicate(17)));
/// # Ok(()) }
/// ```
pub struct Idempotency<T> {
    operation: Operation,
    store: Arc<dyn Store>,
    _output: PhantomData<fn() -> T>,
}

/// What [`Idempotency::check`] saw. Advisory: the answer may be stale by the time you act on it;
/// only [`Idempotency::start`] and [`Idempotency::execute`] decide atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// No live record: a call would run.
    New,
    /// A completed record with this value.
    Duplicate(T),
    /// A call is running.
    InFlight,
}

/// What [`Idempotency::start`] got.
#[derive(Debug)]
pub enum Start<T> {
    /// The key is ours: do the work, then [`Claimed::complete`] or [`Claimed::fail`].
    New(Claimed<T>),
    /// The key was completed before, with this value.
    Duplicate(T),
}

/// An owned claim on a key. Dropping it without [`complete`](Self::complete) or
/// [`fail`](Self::fail) releases the claim, so a later call runs again.
///
/// While it is held, a task renews its lease every third of the lease, as the engine does for
/// a running body, so a claim held longer than the lease is not taken over. If a renewal finds
/// the claim gone (another caller took the key over after renewals failed, or the record was
/// removed), [`lease_lost`](Self::lease_lost) turns true and `complete` returns
/// [`Error::LeaseLost`]. Renewal needs a tokio runtime; a claim made outside one is not
/// renewed and lapses after its lease.
pub struct Claimed<T> {
    // Dropped first: renewal stops before the guard releases the claim.
    renewer: Option<AbortOnDrop>,
    frame: Arc<Frame>,
    guard: ClaimGuard<'static>,
    ttl: std::time::Duration,
    _output: PhantomData<fn(&T)>,
}

/// Renews the claim of `frame`, sent at `claimed_at`, every third of `lease`, starting a third
/// of a lease after the claim.
fn spawn_renewal(
    store: &Arc<dyn Store>,
    frame: &Arc<Frame>,
    lease: Duration,
    claimed_at: tokio::time::Instant,
) -> Option<AbortOnDrop> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let period = renewal_period(lease);
    let task = renew_lease(store.clone(), frame.clone(), lease, period, claimed_at);
    Some(AbortOnDrop(runtime.spawn(task)))
}

impl<T: Serialize + DeserializeOwned> Idempotency<T> {
    /// A handle for `operation` over `store`.
    pub fn new(operation: Operation, store: Arc<dyn Store>) -> Self {
        Idempotency {
            operation,
            store,
            _output: PhantomData,
        }
    }

    /// The operation.
    pub fn operation(&self) -> &Operation {
        &self.operation
    }

    /// The key for `material` under this operation (see [`Operation::key`]).
    pub fn key<M: IdempotencyKey + ?Sized>(&self, material: &M) -> Result<Key, Error> {
        self.operation.key(material)
    }

    /// Looks at the record of `key` without claiming it (advisory, see [`Check`]).
    pub async fn check(&self, key: &Key) -> Result<Check<T>, Error> {
        Ok(match self.store.get(key).await? {
            None => Check::New,
            Some(Record::InProgress { .. }) => Check::InFlight,
            Some(Record::Completed { value, .. }) => {
                Check::Duplicate(record::decode(self.operation.name(), &value)?)
            }
        })
    }

    /// Claims `key` atomically. [`Error::InFlight`] while another call holds it.
    pub async fn start(&self, key: Key) -> Result<Start<T>, Error> {
        self.start_with(key, Fingerprint::NONE).await
    }

    /// [`start`](Self::start) with a payload fingerprint ([`Error::PayloadMismatch`] if the key
    /// was used with another one).
    pub async fn start_with(&self, key: Key, fingerprint: Fingerprint) -> Result<Start<T>, Error> {
        let op = &self.operation;
        check_lease(op)?;
        let token = Token::generate();
        let mut guard = ClaimGuard::new(op.name(), Cow::Owned(self.store.clone()), key, token);
        let mut claimed_at = tokio::time::Instant::now();
        let give_up_at = crate::store::deadline(claimed_at, op.wait_timeout());
        let claim = loop {
            let claim = guard.claim(&fingerprint, op.lease(), claimed_at).await?;
            // A late answer is confirmed before the caller's work starts (else claim again).
            if !matches!(claim, Claim::Acquired)
                || claim_still_held(
                    &self.store,
                    &key,
                    token,
                    op.lease(),
                    &mut claimed_at,
                    give_up_at,
                )
                .await?
            {
                break claim;
            }
        };
        let mismatch = || Error::PayloadMismatch {
            operation: op.name(),
            key,
        };
        match claim {
            Claim::Acquired => {
                let frame = Frame::enter(op.name(), key, token);
                let renewer = spawn_renewal(&self.store, &frame, op.lease(), claimed_at);
                Ok(Start::New(Claimed {
                    renewer,
                    frame,
                    guard,
                    ttl: op.ttl(),
                    _output: PhantomData,
                }))
            }
            Claim::Completed {
                fingerprint: recorded,
                value,
            } => {
                guard.disarm();
                if recorded != fingerprint {
                    return Err(mismatch());
                }
                Ok(Start::Duplicate(record::decode(op.name(), &value)?))
            }
            Claim::InProgress {
                fingerprint: running,
                remaining,
            } => {
                guard.disarm();
                if running != fingerprint {
                    return Err(mismatch());
                }
                Err(Error::InFlight {
                    operation: op.name(),
                    key,
                    retry_after: remaining,
                })
            }
        }
    }

    /// Replays, waits or rejects, or runs `work` and records its `Ok` value: the engine of
    /// `#[idempotent]`, with this handle's operation and store. `work` is called only when
    /// the key is claimed (not on a replay), inside the call (so [`current`](crate::current)
    /// answers there).
    pub async fn execute<E, F, Fut>(&self, key: Key, work: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Error>,
    {
        self.operation
            .call(key)
            .store(&self.store)
            .run(async move { work().await })
            .await
    }

    /// Deletes expired records; returns how many.
    pub async fn cleanup(&self) -> Result<usize, Error> {
        self.store.purge_expired(usize::MAX).await
    }

    /// Deletes the record of `key` whatever its state (manual retry).
    pub async fn forget(&self, key: &Key) -> Result<bool, Error> {
        self.store.remove(key).await
    }
}

impl<T> Claimed<T> {
    /// The claimed key.
    pub fn key(&self) -> Key {
        self.guard.key
    }

    /// This claim's fencing token.
    pub fn token(&self) -> Token {
        self.guard.token
    }

    /// Whether a renewal found this claim gone (then `complete` returns [`Error::LeaseLost`]),
    /// or no renewal could be confirmed for a whole lease (the store unreachable or not
    /// answering, flagged when the lease ends): another caller may own the key now. Work that
    /// has not started yet can stop.
    pub fn lease_lost(&self) -> bool {
        self.frame.lease.may_be_lost()
    }

    /// Gives the key back without a result, so a later call runs again.
    /// `Ok(false)` if the claim had already lapsed or been removed.
    pub async fn fail(mut self) -> Result<bool, Error> {
        self.renewer = None;
        self.guard.release().await
    }
}

impl<T: Serialize + DeserializeOwned> Claimed<T> {
    /// Records `value` as the result. [`Error::LeaseLost`] if the claim lapsed and someone else
    /// took the key over; then nothing was written.
    pub async fn complete(mut self, value: &T) -> Result<(), Error> {
        let operation = self.frame.operation;
        let bytes = record::encode_faithful(operation, value)?;
        self.renewer = None;
        let key = self.guard.key;
        // Seen through if this future is dropped meanwhile (`ClaimGuard::complete`); released
        // after a failure as by the engine (`release_after_failed_complete`).
        let completed = match self.guard.complete_erased(bytes, self.ttl).await {
            Ok(completed) => completed,
            Err(error) => {
                self.guard.release_after_failed_complete(&error).await;
                return Err(error);
            }
        };
        if completed {
            Ok(())
        } else {
            Err(Error::LeaseLost { operation, key })
        }
    }
}

impl<T> std::fmt::Debug for Claimed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("operation", &self.frame.operation)
            .field("key", &self.guard.key)
            .finish_non_exhaustive()
    }
}
