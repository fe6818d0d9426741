//! The engine: one idempotent call, driven through the record state machine of a store.
//!
//! ```text
//! claim ─┬─ Acquired ──── run body ─┬─ Ok(v)  → complete(v) → Ok(v)        (LeaseLost if fenced out)
//!        │                          ├─ Err(e) → release      → Err(e)
//!        │                          └─ panic / dropped → release (drop guard), panic resumes
//!        ├─ Completed ── same fingerprint? → decode → Ok(v)   (replay; the body never runs)
//!        └─ InProgress ─ same fingerprint? → reject: InFlight
//!                                          → wait: until completed (replay), released (OwnerFailed)
//!                                                  or the wait timeout (InFlight)
//! ```
//! A different fingerprint is [`Error::PayloadMismatch`] at once, in either state.

use std::any::Any;
use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, Sleep};

use crate::__private::probe;
use crate::context::{self, Frame};
use crate::guard::ClaimGuard;
use crate::operation::{Call, OnConflict, Operation};
use crate::store::memory::{Replay, ReplayValue};
use crate::store::{Claim, MemoryStore, Record, Store, deadline};
use crate::{Error, Fingerprint, Key, Token, record};

impl Call<'_> {
    /// Runs the call: replays a recorded result, waits for or rejects a running duplicate, or
    /// claims the key, runs `body` and records its `Ok` value.
    ///
    /// `Err` from the body releases the claim (a later call runs again) and is returned as is.
    /// Idempotency failures arrive as `E::from(idem_runtime::Error)`.
    pub fn run<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        self.run_with(body, DecodeEachReplay)
    }

    /// Like [`run`](Self::run), for values that are cheap to clone: on the memory store, the
    /// first replay of a record keeps the value it decoded next to the record, and later
    /// replays clone that copy instead of decoding the bytes again (the naive handler's cost,
    /// without losing the encoded record that other stores and processes see). A replayed
    /// value is therefore always what decoding the recorded bytes gives, never the owner's
    /// original value. Other stores decode on every replay, as with `run`.
    ///
    /// `#[idempotent]` picks this automatically when the value type is
    /// `Clone + Send + Sync + 'static`.
    pub fn run_cached<T, E, F>(self, body: F) -> impl Future<Output = Result<T, E>>
    where
        F: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: From<Error>,
    {
        self.run_with(body, KeepDecoded)
    }

    /// [`run`](Self::run), with replays on the memory store answered as `C` says.
    pub(crate) async fn run_with<T, E, F, C>(mut self, body: F, _cache: C) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        C: ReplayCache<T>,
    {
        // Performance notes (see `benches/engine_paired.rs`): this future is what every call
        // creates, moves and polls, so it holds only the replay path: the call, the body and,
        // for first calls and remote stores, a boxed `claim_and_run`. A replay on the memory
        // store is answered in the first poll without a token, guard or claim; a first call pays
        // one allocation for the box, and its future never has to be moved again.
        //
        // A call built by hand inside `key_of`/`forget_call` reports its key there instead of
        // running (the attribute's calls were offered already, in `__private::prepare`): one
        // atomic load while no probe is active.
        if probe::any_active()
            && let Some(refusal) =
                probe::refusal_for(self.operation.name(), self.key, self.store.as_deref())
        {
            return Err(refusal.into());
        }
        let store = self.resolve_store()?;
        match start::<T, E, F, C>(self.operation, self.key, self.fingerprint, store, body) {
            Started::Settled(outcome) => Ok(outcome?),
            Started::Claim(claim_and_run) => claim_and_run.await,
        }
    }
}

/// How a call goes on once its store is known ([`start`]).
pub(crate) enum Started<T, G> {
    /// Settled at once: a replay from the memory store, or an error.
    Settled(Result<T, Error>),
    /// To claim the key and run the body: this future, boxed (a replay never pays for it, and
    /// once polled it is never moved again).
    Claim(Pin<Box<G>>),
}

/// The synchronous start of a call: a replay from the memory store, [`Error::Reentrant`] for a
/// body calling its own operation with its own key, or the future that claims the key and runs
/// `body`. `body` is dropped here when it will not run.
///
/// Synchronous, so that `#[idempotent]` answers a replay in the first poll of its own future,
/// before any engine future is made (`__private::run`).
#[inline]
pub(crate) fn start<'a, T, E, F, C>(
    op: &'a Operation,
    key: Key,
    fingerprint: Fingerprint,
    store: Cow<'a, Arc<dyn Store>>,
    body: F,
) -> Started<T, impl Future<Output = Result<T, E>> + 'a>
where
    F: Future<Output = Result<T, E>> + 'a,
    T: Serialize + DeserializeOwned + 'a,
    E: From<Error> + 'a,
    C: ReplayCache<T>,
{
    // Taken before the claim, so the lease renewal is never scheduled later than a third of
    // the lease after the store started it.
    let claimed_at = Instant::now();
    if let Some(replayed) = replay_from_memory::<T, C>(op, &key, &fingerprint, &store, claimed_at) {
        return Started::Settled(replayed);
    }
    if context::is_running(&key) {
        return Started::Settled(Err(Error::Reentrant {
            operation: op.name(),
            key,
        }));
    }
    Started::Claim(Box::pin(claim_and_run(
        op,
        key,
        fingerprint,
        store,
        body,
        claimed_at,
    )))
}

/// The common duplicate, answered at once: `Some` when `store` is the memory store and holds a
/// completed record of `key` (its value, or [`Error::PayloadMismatch`]), with no token, guard or
/// claim (a completed record only changes by expiring or being removed). No re-entrancy check
/// is needed first: while a body runs, its record is in progress.
#[inline]
fn replay_from_memory<T: DeserializeOwned, C: ReplayCache<T>>(
    op: &Operation,
    key: &Key,
    fingerprint: &Fingerprint,
    store: &Arc<dyn Store>,
    now: Instant,
) -> Option<Result<T, Error>> {
    let memory = store.as_memory()?;
    let replay = memory.replay_at(key, now, C::clone_out)?;
    if let Err(mismatch) = check_fingerprint(op, key, &replay.fingerprint, fingerprint) {
        return Some(Err(mismatch));
    }
    tracing::debug!(target: "idem", operation = op.name(), %key, "replayed a recorded result");
    Some(replayed_value::<T, C>(op, memory, key, replay))
}

/// Claims `key` and runs `body` (or replays, waits or rejects, as the claim answers), then
/// records the body's `Ok` value: [`Call::run_with`] past the memory store's replay path.
async fn claim_and_run<T, E, F>(
    op: &Operation,
    key: Key,
    fingerprint: Fingerprint,
    store: Cow<'_, Arc<dyn Store>>,
    body: F,
    claimed_at: Instant,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
    E: From<Error>,
{
    let store: &Arc<dyn Store> = &store;
    // Every byte of this future is written once (it is boxed): it holds the body at most twice
    // (the argument and the running `Drive`), the rare path (waiting for another caller) is
    // boxed again, and the renewal timer is only created for bodies that do not finish in their
    // first poll. On the memory store the claim is a synchronous call, and the clock is read
    // once here (`claimed_at`) plus once in `complete`.
    check_lease(op)?;
    let backend = Backend::of(store);
    let token = Token::generate();
    // Releases the claim on `Err`, panic or cancellation; dropped while a remote claim is in
    // flight, it sees the claim through to the store's answer first (`guard.rs`).
    let mut guard = ClaimGuard::new(op.name(), Cow::Borrowed(store), key, token);
    // The body moves into its driver before the first `.await`, so no other copy of it stays
    // alive. Declared after the guard: dropped before it, so a cancelled body is gone before
    // its claim is released.
    let mut drive = pin!(Drive::new(body, store, op.lease()));
    let claim = match backend {
        Backend::Memory(m) => m.claim_at(&key, &fingerprint, token, op.lease(), claimed_at),
        Backend::Dyn(_) => guard.claim_remote_boxed(&fingerprint, op.lease()).await,
    };
    let claim = claim?;
    let recorded = match claim {
        Claim::Acquired => None,
        Claim::Completed { fingerprint, value } => Some((fingerprint, value)),
        Claim::InProgress {
            fingerprint: running,
            remaining,
        } => {
            guard.disarm();
            check_fingerprint(op, &key, &running, &fingerprint)?;
            return match op.on_conflict() {
                OnConflict::Reject => {
                    tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: rejected");
                    Err(in_flight(op, key, remaining).into())
                }
                OnConflict::Wait => {
                    let value = wait_for_owner(op, backend, key, &fingerprint, remaining).await?;
                    Ok(record::decode(op.name(), &value)?)
                }
            };
        }
    };
    if let Some((recorded, value)) = recorded {
        guard.disarm();
        check_fingerprint(op, &key, &recorded, &fingerprint)?;
        tracing::debug!(target: "idem", operation = op.name(), %key, "replayed a recorded result");
        return Ok(record::decode(op.name(), &value)?);
    }

    // Claimed: run the body in its call frame, then record its value.
    tracing::debug!(target: "idem", operation = op.name(), %key, "claimed; running the body");
    let frame = Frame::enter(op.name(), key, token);
    drive.as_mut().start(frame.clone(), claimed_at);
    let outcome = drive.await;
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            guard.release_quietly_erased().await;
            tracing::debug!(target: "idem", operation = op.name(), %key, "body failed; claim released");
            return Err(error);
        }
    };
    let bytes = match record::encode_faithful(op.name(), &value) {
        Ok(bytes) => bytes,
        Err(error) => {
            guard.release_quietly_erased().await;
            return Err(error.into());
        }
    };
    // Seen through if this call is dropped meanwhile. A failed `complete` recorded nothing of
    // ours (a too large value is refused before any write; a release never deletes a completed
    // record): the claim is released before the error is returned, so that a retry can run at
    // once, rather than by the guard's drop in the background.
    let completed = match guard.complete_erased(bytes, op.ttl()).await {
        Ok(completed) => completed,
        Err(error) => {
            guard.release_quietly_erased().await;
            return Err(error.into());
        }
    };
    if completed {
        Ok(value)
    } else {
        frame.lease_lost.store(true, Ordering::Release);
        tracing::warn!(target: "idem", operation = op.name(), %key, "lease lost; result not recorded");
        Err(Error::LeaseLost {
            operation: op.name(),
            key,
        }
        .into())
    }
}

/// Polls the body inside its call frame, once [started](Drive::start). If the body is still
/// running a third of the lease after the claim, a `'static` renewal task takes over keeping
/// the lease alive; short bodies (the common case) never pay for spawning it, and bodies that
/// finish in their first poll do not even register a timer.
///
/// A hand-written future rather than an `async fn`, so the body is stored once in it.
struct Drive<'a, F> {
    // Fields drop in this order: the renewal task is aborted before the body is dropped.
    renewer: Option<AbortOnDrop>,
    first_renewal: Option<Pin<Box<Sleep>>>,
    /// Structurally pinned: never moved out of `Drive` or accessed unpinned; dropped by hand
    /// (inside its call frame once started).
    body: ManuallyDrop<F>,
    /// The call frame, set by `start`.
    frame: Option<Arc<Frame>>,
    store: &'a Arc<dyn Store>,
    lease: Duration,
    claimed_at: Option<Instant>,
}

impl<'a, F: Future> Drive<'a, F> {
    fn new(body: F, store: &'a Arc<dyn Store>, lease: Duration) -> Self {
        Drive {
            renewer: None,
            first_renewal: None,
            body: ManuallyDrop::new(body),
            frame: None,
            store,
            lease,
            claimed_at: None,
        }
    }

    /// Arms the driver for a claim taken at `claimed_at` by the call `frame`.
    fn start(self: Pin<&mut Self>, frame: Arc<Frame>, claimed_at: Instant) {
        // SAFETY: only unpinned fields are touched.
        let this = unsafe { self.get_unchecked_mut() };
        this.frame = Some(frame);
        this.claimed_at = Some(claimed_at);
    }
}

impl<F: Future> Future for Drive<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `body` is structurally pinned (see the field): it is only ever used through
        // the `Pin` made here and dropped in place by `Drop`; `Drive` does not implement `Unpin`
        // by hand, and no other field is pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let body = unsafe { Pin::new_unchecked(&mut *this.body) };
        let (Some(frame), Some(claimed_at)) = (&this.frame, this.claimed_at) else {
            unreachable!("Drive polled before start");
        };
        if let Poll::Ready(output) = context::in_frame(frame, || body.poll(cx)) {
            // The body is done: stop renewing before its value is recorded.
            this.renewer = None;
            this.first_renewal = None;
            return Poll::Ready(output);
        }
        if this.renewer.is_none() {
            let lease = this.lease;
            let timer = this.first_renewal.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(deadline(
                    claimed_at,
                    renewal_period(lease),
                )))
            });
            if timer.as_mut().poll(cx).is_ready() {
                this.first_renewal = None;
                this.renewer = Some(spawn_renewal(this.store, frame, lease));
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for Drive<'_, F> {
    fn drop(&mut self) {
        // Abort the renewal first, as before the body is dropped.
        self.renewer = None;
        let body = &mut self.body;
        // SAFETY: `body` is dropped exactly once, here, in place (it stays pinned).
        match &self.frame {
            // A started body is dropped inside its call frame, like the rest of its life.
            Some(frame) => context::in_frame(frame, || unsafe { ManuallyDrop::drop(body) }),
            None => unsafe { ManuallyDrop::drop(body) },
        }
    }
}

/// The shortest lease a claim may have: renewals come every third of the lease, and no
/// sooner than every millisecond (the timer's and the remote stores' resolution), so a shorter
/// lease would lapse before its first renewal.
pub(crate) const MIN_LEASE: Duration = Duration::from_millis(3);

/// `#[idempotent]` refuses a lease under [`MIN_LEASE`] at compile time; this catches an
/// [`Operation`] built by hand.
#[inline]
pub(crate) fn check_lease(op: &Operation) -> Result<(), Error> {
    if op.lease() < MIN_LEASE {
        return Err(lease_too_short(op));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn lease_too_short(op: &Operation) -> Error {
    Error::Config(format!(
        "operation `{}` has a lease of {:?}: a claim would lapse before its body could \
             finish; give it a lease of at least 3 ms (e.g. `Operation::with_lease`), longer \
             than a third of the body's slowest run",
        op.name(),
        op.lease()
    ))
}

pub(crate) fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Renews the lease every `period` until aborted or fenced out (then flags `lease_lost`).
/// Started `period` after the claim. Renewals that fail (the store unreachable) are retried;
/// once none has been confirmed for a whole lease, the lease may have lapsed and another
/// caller may hold the key: `lease_lost` is flagged too, and renewal goes on, so the claim
/// is kept if the store comes back in time.
pub(crate) async fn renew_lease(
    store: Arc<dyn Store>,
    frame: Arc<Frame>,
    lease: Duration,
    period: Duration,
) {
    // The claim confirmed the lease `period` ago.
    let mut held_until = deadline(Instant::now(), lease.saturating_sub(period));
    loop {
        let sent = Instant::now();
        match store.renew(&frame.key, frame.token, lease).await {
            Ok(true) => held_until = deadline(sent, lease),
            Ok(false) => {
                frame.lease_lost.store(true, Ordering::Release);
                tracing::warn!(
                    target: "idem",
                    operation = frame.operation,
                    key = %frame.key,
                    "lease lost while the body runs: another caller took the key over or the record was removed"
                );
                return;
            }
            Err(error) if Instant::now() >= held_until => {
                if !frame.lease_lost.swap(true, Ordering::AcqRel) {
                    tracing::warn!(target: "idem", operation = frame.operation, key = %frame.key, %error, "no lease renewal confirmed for a whole lease: the lease may have lapsed and another caller may hold the key; retrying");
                }
            }
            Err(error) => {
                tracing::warn!(target: "idem", operation = frame.operation, key = %frame.key, %error, "lease renewal failed; retrying");
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Starts renewing the lease of the call `frame` in a task of its own.
///
/// Not generic, so that the task (and tokio's machinery for it) is compiled once, in this
/// crate, not in every crate that instantiates the engine's generic code.
fn spawn_renewal(store: &Arc<dyn Store>, frame: &Arc<Frame>, lease: Duration) -> AbortOnDrop {
    let task = renew_lease(
        Arc::clone(store),
        Arc::clone(frame),
        lease,
        renewal_period(lease),
    );
    AbortOnDrop(tokio::spawn(task))
}

/// Aborts the task when dropped: renewal stops with the call that started it.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for the running call of `key` to finish; answers its recorded value.
///
/// Boxed here, by a non-generic function: waiting is rare and slow anyway, and the future is
/// then compiled once, in this crate, rather than in every crate that instantiates the engine
/// (see [`guard::Answer`](crate::guard::Answer)).
fn wait_for_owner<'a>(
    op: &'a Operation,
    backend: Backend<'a>,
    key: Key,
    fingerprint: &'a Fingerprint,
    remaining: Duration,
) -> Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send + 'a>> {
    Box::pin(wait_for_owner_unboxed(
        op,
        backend,
        key,
        fingerprint,
        remaining,
    ))
}

async fn wait_for_owner_unboxed(
    op: &Operation,
    backend: Backend<'_>,
    key: Key,
    fingerprint: &Fingerprint,
    mut remaining: Duration,
) -> Result<Bytes, Error> {
    tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: waiting for the running call");
    let give_up_at = deadline(Instant::now(), op.wait_timeout());
    loop {
        let now = Instant::now();
        if now >= give_up_at {
            return Err(in_flight(op, key, remaining));
        }
        // Wake up at the latest when the owner's lease would lapse, to notice a crashed owner.
        let max = (give_up_at - now).min(remaining.max(Duration::from_millis(1)));
        backend.wait_for_change(&key, max).await?;
        match backend.get(&key).await? {
            Some(Record::Completed {
                fingerprint: recorded,
                value,
                ..
            }) => {
                check_fingerprint(op, &key, &recorded, fingerprint)?;
                tracing::debug!(target: "idem", operation = op.name(), %key, "replayed after waiting");
                return Ok(value);
            }
            Some(Record::InProgress {
                fingerprint: running,
                remaining: left,
            }) => {
                check_fingerprint(op, &key, &running, fingerprint)?;
                remaining = left;
            }
            None => {
                return Err(Error::OwnerFailed {
                    operation: op.name(),
                    key,
                });
            }
        }
    }
}

/// How a replay on the memory store gets its value: by decoding the recorded bytes
/// ([`DecodeEachReplay`], [`Call::run`]) or by cloning a copy that an earlier replay decoded
/// and kept next to the record ([`KeepDecoded`], [`Call::run_cached`]).
///
/// A type rather than a value (such as a pair of function pointers), so the replay path calls
/// the clone directly and the compiler can inline it.
pub trait ReplayCache<T> {
    /// A clone of `kept`, if this cache keeps values and `kept` is a `T` (a record is only ever
    /// replayed as the value type of its operation, but a type check costs nothing and keeps
    /// this safe regardless).
    fn clone_out(kept: &(dyn Any + Send + Sync)) -> Option<T>;

    /// A copy of the freshly decoded `value` to keep, if this cache keeps values.
    fn keep(value: &T) -> Option<Box<dyn Any + Send + Sync>>;
}

/// Every replay decodes the recorded bytes ([`Call::run`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeEachReplay;

impl<T> ReplayCache<T> for DecodeEachReplay {
    #[inline(always)]
    fn clone_out(_: &(dyn Any + Send + Sync)) -> Option<T> {
        None
    }

    #[inline(always)]
    fn keep(_: &T) -> Option<Box<dyn Any + Send + Sync>> {
        None
    }
}

/// The first replay keeps the value it decoded, later ones clone it ([`Call::run_cached`]):
/// for `Clone + Send + Sync + 'static` values.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepDecoded;

impl<T: Clone + Send + Sync + 'static> ReplayCache<T> for KeepDecoded {
    #[inline(always)]
    fn clone_out(kept: &(dyn Any + Send + Sync)) -> Option<T> {
        kept.downcast_ref::<T>().cloned()
    }

    fn keep(value: &T) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(value.clone()))
    }
}

/// The value of a completed record of the memory store: a clone of the kept decoded value, or
/// a decode (kept for the next replay when `T` has a cache).
fn replayed_value<T: DeserializeOwned, C: ReplayCache<T>>(
    op: &Operation,
    memory: &MemoryStore,
    key: &Key,
    replay: Replay<T>,
) -> Result<T, Error> {
    let (bytes, seq) = match replay.value {
        ReplayValue::Decoded(value) => return Ok(value),
        ReplayValue::Encoded { bytes, seq } => (bytes, seq),
    };
    let value: T = record::decode(op.name(), &bytes)?;
    if let Some(kept) = C::keep(&value) {
        memory.keep_decoded(key, seq, kept);
    }
    Ok(value)
}

#[inline]
fn check_fingerprint(
    op: &Operation,
    key: &Key,
    recorded: &Fingerprint,
    ours: &Fingerprint,
) -> Result<(), Error> {
    if recorded == ours {
        Ok(())
    } else {
        Err(payload_mismatch(op, key))
    }
}

#[cold]
fn payload_mismatch(op: &Operation, key: &Key) -> Error {
    tracing::debug!(target: "idem", operation = op.name(), %key, "payload mismatch");
    Error::PayloadMismatch {
        operation: op.name(),
        key: *key,
    }
}

fn in_flight(op: &Operation, key: Key, remaining: Duration) -> Error {
    Error::InFlight {
        operation: op.name(),
        key,
        retry_after: remaining,
    }
}

/// The store, dispatched statically when it is the built-in memory store (no boxed futures).
#[derive(Clone, Copy)]
pub(crate) enum Backend<'a> {
    Memory(&'a MemoryStore),
    Dyn(&'a dyn Store),
}

impl<'a> Backend<'a> {
    pub(crate) fn of(store: &'a Arc<dyn Store>) -> Self {
        match store.as_memory() {
            Some(memory) => Backend::Memory(memory),
            None => Backend::Dyn(&**store),
        }
    }

    pub(crate) async fn get(self, key: &Key) -> Result<Option<Record>, Error> {
        match self {
            Backend::Memory(m) => Ok(m.get_now(key)),
            Backend::Dyn(s) => s.get(key).await,
        }
    }

    async fn wait_for_change(self, key: &Key, max: Duration) -> Result<(), Error> {
        match self {
            Backend::Memory(m) => {
                m.wait_now(key, max).await;
                Ok(())
            }
            Backend::Dyn(s) => s.wait_for_change(key, max).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    static OP: Operation = Operation::new("engine.unit");

    fn memory() -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }

    /// The call's future holds its body at most twice (the argument and the running driver),
    /// not once per internal layer.
    #[test]
    fn the_call_future_holds_the_body_at_most_twice() {
        let key = OP.key(&1u8).unwrap();
        let payload = [7u8; 4096];
        let body = async move {
            let payload = std::hint::black_box(payload);
            tokio::task::yield_now().await;
            Ok::<u8, Error>(payload[1])
        };
        let body_size = std::mem::size_of_val(&body);
        let call = OP.call(key).store(memory()).run(body);
        let call_size = std::mem::size_of_val(&call);
        assert!(body_size >= 4096);
        assert!(
            call_size <= 2 * body_size + 1024,
            "call future {call_size} bytes for a {body_size}-byte body"
        );
    }

    /// A body dropped mid-run (the caller's future was dropped) runs its destructors inside its
    /// own call frame, as while it ran, and before its claim is released.
    #[tokio::test]
    async fn a_dropped_body_is_dropped_inside_its_frame_before_the_release() {
        struct Witness {
            key: Key,
            store: Arc<dyn Store>,
            seen: Arc<AtomicBool>,
        }
        impl Drop for Witness {
            fn drop(&mut self) {
                let in_frame = crate::current().is_some_and(|c| c.key() == self.key);
                let memory = self.store.as_memory().unwrap();
                let still_claimed =
                    matches!(memory.get_now(&self.key), Some(Record::InProgress { .. }));
                self.seen.store(in_frame && still_claimed, Ordering::SeqCst);
            }
        }
        let key = OP.key(&2u8).unwrap();
        let store = memory();
        let seen = Arc::new(AtomicBool::new(false));
        let witness = Witness {
            key,
            store: store.clone(),
            seen: seen.clone(),
        };
        let call = OP.call(key).store(store.clone()).run(async move {
            let _witness = witness;
            std::future::pending::<Result<u8, Error>>().await
        });
        let outcome = tokio::time::timeout(Duration::from_millis(10), call).await;
        assert!(outcome.is_err());
        assert!(seen.load(Ordering::SeqCst));
        assert!(crate::current().is_none());
        assert_eq!(
            store.as_memory().unwrap().get_now(&key),
            None,
            "released after the drop"
        );
    }
}
