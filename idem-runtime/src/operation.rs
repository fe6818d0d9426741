//! Operations: the static description of one idempotent function, and the calls made with it.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::global;
use crate::key::{IdempotencyKey, KeyHasher};
use crate::store::Store;
use crate::{Error, Fingerprint, Key};

/// Default time a completed record is kept: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Default lease of an in-progress record: 60 seconds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default time a duplicate waits for the running call: 30 seconds.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a call does when another call with the same key is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Wait for the running call (up to the wait timeout, then [`Error::InFlight`]) and return
    /// its result; if that call fails instead (`Err`, panic, cancellation: its claim released),
    /// return the retryable [`Error::OwnerFailed`] (the body is not run again by each waiter);
    /// if its lease lapses (the owner crashed), one waiter claims the key and runs the body.
    Wait,
    /// Return [`Error::InFlight`] at once.
    Reject,
}

/// Where an operation is defined (filled in by `#[idempotent]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// `module_path!()` of the function.
    pub module: &'static str,
    /// `file!()`.
    pub file: &'static str,
    /// `line!()`.
    pub line: u32,
}

/// The static description of an idempotent operation: its stable name, version and timings.
///
/// `#[idempotent]` generates one per function. Code that cannot use the attribute builds one as a
/// `static` and runs calls through it:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_runtime::Error> {
/// use std::time::Duration;
/// use idem_runtime::Operation;
///
/// static CHARGE: Operation = Operation::new("payments.charge").with_ttl(Duration::from_secs(3600));
///
/// let key = CHARGE.key(&("cus_42", 1999u64))?;
/// let first: Result<String, idem_runtime::Error> =
///     CHARGE.call(key).run(async { Ok("rcpt_1".to_owned()) }).await;
/// let again: Result<String, idem_runtime::Error> =
///     CHARGE.call(key).run(async { Ok("rcpt_2".to_owned()) }).await;
/// assert_eq!(first?, again?); // the second body never ran
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    name: &'static str,
    version: u32,
    ttl: Duration,
    lease: Duration,
    on_conflict: OnConflict,
    wait_timeout: Duration,
    location: Option<Location>,
    hash_keys: HashKeys,
}

/// The blake3 hash keys of an operation's keys and fingerprints, derived from its name and
/// version on first use (deriving costs two small hashes, about as much as hashing a key).
///
/// Atomics rather than a `OnceLock`, so that `Operation` stays buildable in `const` (its
/// builders replace this field, which needs a type without `Drop`). Racing first uses derive
/// the same bytes, and `ready` is published after all of them.
struct HashKeys {
    ready: AtomicBool,
    words: [AtomicU64; 8],
}

impl HashKeys {
    const fn new() -> Self {
        HashKeys {
            ready: AtomicBool::new(false),
            words: [const { AtomicU64::new(0) }; 8],
        }
    }

    #[inline]
    fn get(&self, name: &str, version: u32) -> ([u8; 32], [u8; 32]) {
        if !self.ready.load(Ordering::Acquire) {
            return self.derive(name, version);
        }
        let mut out = [[0u8; 32]; 2];
        for (chunk, word) in out.as_flattened_mut().chunks_exact_mut(8).zip(&self.words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        (out[0], out[1])
    }

    #[cold]
    fn derive(&self, name: &str, version: u32) -> ([u8; 32], [u8; 32]) {
        let keys = [
            KeyHasher::operation_key(name, version),
            KeyHasher::operation_fingerprint_key(name, version),
        ];
        for (chunk, word) in keys.as_flattened().chunks_exact(8).zip(&self.words) {
            let bytes: [u8; 8] = chunk.try_into().unwrap_or_default();
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.ready.store(true, Ordering::Release);
        (keys[0], keys[1])
    }
}

/// Derived from the name and version, which `Operation`'s own `PartialEq` compares.
impl PartialEq for HashKeys {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HashKeys {}

/// A clone derives its keys again (it may get another name or version).
impl Clone for HashKeys {
    fn clone(&self) -> Self {
        HashKeys::new()
    }
}

impl std::fmt::Debug for HashKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Operation {
    /// An operation named `name` with default settings: version 0, TTL 24 h, lease 60 s, wait
    /// up to 30 s for a running duplicate.
    ///
    /// The name is part of every key: keep it stable (e.g. `"payments.charge"`). It must not be
    /// the name of another operation, since both would compute the same keys; the registry
    /// refuses duplicates among `#[idempotent]` fns, but does not see operations built by hand
    /// (see [`check_operations`](crate::check_operations)).
    pub const fn new(name: &'static str) -> Self {
        Operation {
            name,
            version: 0,
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            on_conflict: OnConflict::Wait,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            location: None,
            hash_keys: HashKeys::new(),
        }
    }

    /// Sets the version; bumping it gives every call a fresh key (old records are ignored).
    pub const fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self.hash_keys = HashKeys::new();
        self
    }

    /// How long a completed record is kept, measured from completion (default 24 h). It must be
    /// at least the [lease](Self::with_lease): a call of an operation with a shorter ttl (a
    /// zero one, say) is refused with [`Error::Config`] before its claim.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim lives without renewal (default 60 s). The engine renews it every third
    /// of the lease while the body runs; after a crash, others may take the key over once it
    /// lapses. A call of an operation whose lease is under 3 ms or longer than its ttl is
    /// refused with [`Error::Config`] before its claim.
    pub const fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// What to do when the same key is already running.
    pub const fn with_on_conflict(mut self, on_conflict: OnConflict) -> Self {
        self.on_conflict = on_conflict;
        self
    }

    /// How long a duplicate waits for the running call before [`Error::InFlight`].
    pub const fn with_wait_timeout(mut self, wait_timeout: Duration) -> Self {
        self.wait_timeout = wait_timeout;
        self
    }

    /// Records where the operation is defined.
    pub const fn with_location(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    /// The blake3 hash keys of this operation's keys and fingerprints
    /// ([`KeyHasher::operation_key`], [`KeyHasher::operation_fingerprint_key`]), derived once.
    #[inline]
    pub(crate) fn hash_keys(&self) -> ([u8; 32], [u8; 32]) {
        self.hash_keys.get(self.name, self.version)
    }

    /// The stable name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The version.
    pub const fn version(&self) -> u32 {
        self.version
    }

    /// The TTL of completed records.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The lease of in-progress records.
    pub const fn lease(&self) -> Duration {
        self.lease
    }

    /// The conflict policy.
    pub const fn on_conflict(&self) -> OnConflict {
        self.on_conflict
    }

    /// The wait timeout.
    pub const fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// Where the operation is defined, if known.
    pub const fn location(&self) -> Option<Location> {
        self.location
    }

    /// The key of a call whose key material is `material` (no scope).
    pub fn key<M: IdempotencyKey + ?Sized>(&self, material: &M) -> Result<Key, Error> {
        KeyHasher::key_in_place(self.hash_keys().0, |hasher| {
            hasher.unscoped();
            material.write_key(hasher);
        })
    }

    /// The key of a call with key material `material` that belongs to `scope` (a tenant or
    /// account): the same material in two scopes gives two keys.
    pub fn scoped_key<S, M>(&self, scope: &S, material: &M) -> Result<Key, Error>
    where
        S: IdempotencyKey + ?Sized,
        M: IdempotencyKey + ?Sized,
    {
        KeyHasher::key_in_place(self.hash_keys().0, |hasher| {
            hasher.scoped();
            scope.write_key(hasher);
            material.write_key(hasher);
        })
    }

    /// The fingerprint of a payload (the arguments that are not part of the key).
    pub fn fingerprint<P: IdempotencyKey + ?Sized>(
        &self,
        payload: &P,
    ) -> Result<Fingerprint, Error> {
        KeyHasher::fingerprint_in_place(self.hash_keys().1, |hasher| {
            payload.write_key(hasher);
        })
    }

    /// Starts describing a call with `key`; finish with [`Call::run`].
    pub fn call(&self, key: Key) -> Call<'_> {
        Call {
            operation: self,
            key,
            fingerprint: Fingerprint::NONE,
            store: None,
        }
    }

    /// Deletes the record of `key` in the current store, whatever its state, so the next call
    /// runs the body again (a manual retry). `Ok(true)` if a live record was removed; `Ok(false)`
    /// also before any store is set, without settling the memory default.
    pub async fn forget(&self, key: &Key) -> Result<bool, Error> {
        forget_key(self.name, key).await
    }
}

/// [`Operation::forget`] by the operation's name. Before any store is set (no call, no
/// `install`), nothing can have been recorded: `Ok(false)`, and the memory default is not
/// settled by it (a later `install` still works).
pub(crate) async fn forget_key(operation: &'static str, key: &Key) -> Result<bool, Error> {
    let Some(resolved) = global::resolve_existing()? else {
        return Ok(false);
    };
    let removed = resolved.remove(key).await?;
    tracing::debug!(target: "idem", operation, %key, removed, "forget");
    Ok(removed)
}

/// One call of an [`Operation`], being described.
#[must_use = "a call does nothing until `.run(body).await`"]
pub struct Call<'a> {
    pub(crate) operation: &'a Operation,
    pub(crate) key: Key,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) store: Option<Cow<'a, Arc<dyn Store>>>,
}

impl<'a> Call<'a> {
    /// The payload fingerprint to store with the claim; a later call with the same key and a
    /// different fingerprint gets [`Error::PayloadMismatch`]. Default: [`Fingerprint::NONE`].
    pub fn fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = fingerprint;
        self
    }

    /// Uses `store` instead of the task's or the process-wide store: an `Arc` of any store,
    /// or a reference to an `Arc<dyn Store>`, which the call borrows (sparing the two atomic
    /// reference-count updates of a clone).
    pub fn store<'b>(self, store: impl IntoCallStore<'b>) -> Call<'b>
    where
        'a: 'b,
    {
        Call {
            operation: self.operation,
            key: self.key,
            fingerprint: self.fingerprint,
            store: Some(store.into_call_store()),
        }
    }

    pub(crate) fn resolve_store(&mut self) -> Result<Cow<'a, Arc<dyn Store>>, Error> {
        match self.store.take() {
            Some(store) => Ok(store),
            None => global::resolve(),
        }
    }
}

/// What [`Call::store`] (and `#[idempotent(store = …)]`) accepts: an `Arc` of a store
/// (`Arc<dyn Store>`, `Arc<MemoryStore>`, …), shared by the call, or a reference to one.
/// A reference to an `Arc<dyn Store>` is borrowed for the call; a reference to an `Arc` of a
/// concrete store is cloned.
#[diagnostic::on_unimplemented(
    message = "`store = …` (or `Call::store`) needs an `Arc` of an idempotency store, or a reference to one; `{Self}` is not",
    label = "expected `Arc<dyn Store>`, `Arc<S: Store>`, or `&Arc<…>`",
    note = "wrap the store in an `Arc` (e.g. `Arc::new(MemoryStore::new())`) and pass it or a reference to it"
)]
pub trait IntoCallStore<'a> {
    /// The store, owned or borrowed.
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>>;
}

impl<'a, S: Store> IntoCallStore<'a> for Arc<S> {
    #[inline]
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>> {
        Cow::Owned(self as Arc<dyn Store>)
    }
}

impl<'a> IntoCallStore<'a> for Arc<dyn Store> {
    #[inline]
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>> {
        Cow::Owned(self)
    }
}

impl<'a, S: Store> IntoCallStore<'a> for &Arc<S> {
    #[inline]
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>> {
        Cow::Owned(self.clone() as Arc<dyn Store>)
    }
}

impl<'a> IntoCallStore<'a> for &'a Arc<dyn Store> {
    #[inline]
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>> {
        Cow::Borrowed(self)
    }
}

/// A reference to a reference (`store = self.store` on a field holding `&Arc<…>`, which the
/// attribute borrows).
impl<'a, T: ?Sized> IntoCallStore<'a> for &&'a T
where
    &'a T: IntoCallStore<'a>,
{
    #[inline]
    fn into_call_store(self) -> Cow<'a, Arc<dyn Store>> {
        (*self).into_call_store()
    }
}
