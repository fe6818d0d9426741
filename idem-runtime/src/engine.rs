//! The engine: one idempotent call, driven through the record state machine of a store.
//!
//! ```text
//! claim ─┬─ Acquired ──── run body ─┬─ Ok(v)  → complete(v) → Ok(v)        (LeaseLost if fenced out)
//!        │                          ├─ Err(e) → release      → Err(e)
//!        │                          └─ panic / dropped → release (drop guard), panic resumes
//!        ├─ Completed ── same fingerprint? → decode → Ok(v)   (replay; the body never runs)
//!        └─ InProgress ─ same fingerprint? → reject: InFlight
//!                                          → wait: until completed (replay), released (OwnerFailed),
//!                                                  its lease lapsed (claim again: one waiter
//!                                                  takes over) or the wait timeout (InFlight)
//! ```
//! A different fingerprint is [`Error::PayloadMismatch`] at once, in either state.

use std::any::Any;
use std::borrow::Cow;
use std::mem::ManuallyDrop;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

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
    ///
    /// The future is `Send` exactly when the body and its output are, so it can be spawned on
    /// a multi-threaded runtime:
    ///
    /// ```
    /// # use idem_runtime::{Error, Operation};
    /// static OP: Operation = Operation::new("docs.call_send");
    /// fn assert_send<T: Send>(_: T) {}
    /// let call = OP.call(OP.key(&1).unwrap());
    /// assert_send(call.run(async { Ok::<u32, Error>(1) }));
    /// ```
    ///
    /// A body that is not `Send` gives a future that is not:
    ///
    /// ```compile_fail
    /// # use idem_runtime::{Error, Operation};
    /// static OP: Operation = Operation::new("docs.call_not_send");
    /// fn assert_send<T: Send>(_: T) {}
    /// let call = OP.call(OP.key(&1).unwrap());
    /// assert_send(call.run(async {
    ///     let local = std::rc::Rc::new(1);
    ///     std::future::ready(()).await;
    ///     Ok::<u32, Error>(*local)
    /// }));
    /// ```
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
///
/// Only the ends depend on the value type: the body's output is kept in its [`BodySlot`], an
/// `Ok` value is encoded from there and a recorded one decoded here. The claim, the run and the
/// record are [`claim_and_run_erased`]'s, which is not generic: a crate that calls the engine
/// compiles its future once (an `async fn`'s future awaited from generic code is compiled in
/// the calling crate), not once per value type (that was 40 % of what each return type of an
/// `#[idempotent]` fn cost to compile).
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
    let mut slot = pin!(BodySlot::new(body));
    let ran = claim_and_run_erased(
        op,
        key,
        fingerprint,
        store,
        BodyRef(slot.as_mut()),
        claimed_at,
    )
    .await;
    match ran {
        Ok(Ran::Recorded | Ran::Failed) => match slot.take_output() {
            Some(output) => output,
            None => unreachable!("the engine reported a body's output that it did not keep"),
        },
        Ok(Ran::Replayed(value)) => Ok(record::decode(op.name(), &value)?),
        Err(error) => Err(error.into()),
    }
}

/// What [`claim_and_run_erased`] did with a call.
enum Ran {
    /// The body ran and its `Ok` value, kept in its slot, is recorded.
    Recorded,
    /// The body ran and returned `Err`, kept in its slot; the claim is released.
    Failed,
    /// Another call's recorded value: a replay, or the value of the call it waited for.
    Replayed(Bytes),
}

/// [`claim_and_run`] without the value type: the body is driven through [`RunBody`].
async fn claim_and_run_erased(
    op: &Operation,
    key: Key,
    fingerprint: Fingerprint,
    store: Cow<'_, Arc<dyn Store>>,
    body: BodyRef<'_>,
    mut claimed_at: Instant,
) -> Result<Ran, Error> {
    let store: &Arc<dyn Store> = &store;
    // The claim-and-run future is boxed with the generic end around it, once per call: it
    // holds the body's slot, this future and, for the rare path (waiting for another caller),
    // a box of its own; the renewal task is only spawned for bodies that do not finish in
    // their first poll. On the memory store the claim is a synchronous call, and the clock is
    // read once here (`claimed_at`) plus once in `complete`.
    check_lease(op)?;
    let backend = Backend::of(store);
    let token = Token::generate();
    // Releases the claim on `Err`, panic or cancellation; dropped while a remote claim is in
    // flight, it sees the claim through to the store's answer first (`guard.rs`).
    let mut guard = ClaimGuard::new(op.name(), Cow::Borrowed(store), key, token);
    // Declared after the guard: dropped before it, and it drops the body, so a cancelled body
    // is gone before its claim is released.
    let mut drive = Drive::new(body, store, op.lease());
    let give_up_at = deadline(claimed_at, op.wait_timeout());
    let recorded = loop {
        let claim = match backend {
            Backend::Memory(m) => m.claim_at(&key, &fingerprint, token, op.lease(), claimed_at),
            Backend::Dyn(_) => guard.claim_remote_boxed(&fingerprint, op.lease()).await,
        };
        match claim? {
            // A remote claim is confirmed if its answer came late; if it lapsed meanwhile,
            // claim again as a new caller would.
            Claim::Acquired if matches!(backend, Backend::Dyn(_)) => {
                if claim_still_held(store, &key, token, op.lease(), &mut claimed_at, give_up_at)
                    .await?
                {
                    break None;
                }
            }
            Claim::Acquired => break None,
            Claim::Completed { fingerprint, value } => break Some((fingerprint, value)),
            Claim::InProgress {
                fingerprint: running,
                remaining,
            } => {
                guard.disarm();
                check_fingerprint(op, &key, &running, &fingerprint)?;
                match op.on_conflict() {
                    OnConflict::Reject => {
                        tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: rejected");
                        return Err(in_flight(op, key, remaining));
                    }
                    OnConflict::Wait => {
                        let claim_latency = Instant::now().saturating_duration_since(claimed_at);
                        let waited = wait_for_owner(
                            op,
                            backend,
                            key,
                            &fingerprint,
                            remaining,
                            give_up_at,
                            claim_latency,
                        );
                        match waited.await? {
                            Waited::Recorded(value) => return Ok(Ran::Replayed(value)),
                            // The owner's lease lapsed (it crashed, or lost its store): claim
                            // the key as any new caller would; one waiter wins, the others
                            // wait for it.
                            Waited::Lapsed => {
                                guard.arm();
                                claimed_at = Instant::now();
                            }
                        }
                    }
                }
            }
        }
    };
    if let Some((recorded, value)) = recorded {
        guard.disarm();
        check_fingerprint(op, &key, &recorded, &fingerprint)?;
        tracing::debug!(target: "idem", operation = op.name(), %key, "replayed a recorded result");
        return Ok(Ran::Replayed(value));
    }

    // Claimed: run the body in its call frame, then record its value.
    tracing::debug!(target: "idem", operation = op.name(), %key, "claimed; running the body");
    let frame = Frame::enter(op.name(), key, token);
    drive.start(frame.clone(), claimed_at);
    if !(&mut drive).await {
        guard.release_quietly_erased().await;
        tracing::debug!(target: "idem", operation = op.name(), %key, "body failed; claim released");
        return Ok(Ran::Failed);
    }
    let bytes = match drive.body.0.as_ref().get_ref().encode_value(op.name()) {
        Ok(bytes) => bytes,
        Err(error) => {
            guard.release_quietly_erased().await;
            return Err(error);
        }
    };
    // Seen through if this call is dropped meanwhile. A failed `complete` may still have
    // recorded the value (a store that did not answer), or not (a too large value is refused
    // before any write): the claim is released either way (a release never deletes a completed
    // record); after a store failure in the background (`release_after_failed_complete`).
    let completed = match guard.complete_erased(bytes, op.ttl()).await {
        Ok(completed) => completed,
        Err(error) => {
            guard.release_after_failed_complete(&error).await;
            return Err(error);
        }
    };
    if completed {
        Ok(Ran::Recorded)
    } else {
        frame.lease.lost();
        tracing::warn!(target: "idem", operation = op.name(), %key, "lease lost; result not recorded");
        Err(Error::LeaseLost {
            operation: op.name(),
            key,
        })
    }
}

/// A claimed call's body as the engine's core drives it, its value type erased
/// ([`BodySlot`]).
trait RunBody {
    /// Polls the body; once it is done, keeps its output and answers whether it is `Ok`. Not
    /// polled again after that, nor after [`drop_body`](Self::drop_body).
    fn poll_body(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool>;

    /// The record of the kept `Ok` value ([`record::encode_faithful`]).
    fn encode_value(&self, operation: &'static str) -> Result<Bytes, Error>;

    /// Drops the body where it lies, if it is still there.
    fn drop_body(self: Pin<&mut Self>);
}

/// The body of a call being claimed, and the output it gave, kept for the caller.
struct BodySlot<F, T, E> {
    /// Structurally pinned: never moved out or used unpinned; dropped in place, once (by
    /// `drop_body` inside the call frame, else by `Drop`).
    body: ManuallyDrop<F>,
    body_dropped: bool,
    output: Option<Result<T, E>>,
}

impl<F, T, E> BodySlot<F, T, E> {
    fn new(body: F) -> Self {
        BodySlot {
            body: ManuallyDrop::new(body),
            body_dropped: false,
            output: None,
        }
    }

    fn take_output(self: Pin<&mut Self>) -> Option<Result<T, E>> {
        // SAFETY: `output` is not pinned.
        unsafe { self.get_unchecked_mut() }.output.take()
    }

    /// Drops the body in place (it stays pinned), once: the flag is set first, so a destructor
    /// that panics is not run again.
    fn drop_body_in_place(&mut self) {
        if !std::mem::replace(&mut self.body_dropped, true) {
            // SAFETY: the body is live (the flag was clear) and never used again.
            unsafe { ManuallyDrop::drop(&mut self.body) }
        }
    }
}

impl<F, T, E> RunBody for BodySlot<F, T, E>
where
    F: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
{
    fn poll_body(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        // SAFETY: `body` is structurally pinned (see the field), `output` is not pinned, and
        // `BodySlot` does not implement `Unpin` by hand.
        let this = unsafe { self.get_unchecked_mut() };
        debug_assert!(!this.body_dropped, "a dropped body polled");
        let body = unsafe { Pin::new_unchecked(&mut *this.body) };
        body.poll(cx).map(|output| {
            let ok = output.is_ok();
            this.output = Some(output);
            ok
        })
    }

    fn encode_value(&self, operation: &'static str) -> Result<Bytes, Error> {
        match &self.output {
            Some(Ok(value)) => record::encode_faithful(operation, value),
            _ => unreachable!("a body's value encoded before the body returned `Ok`"),
        }
    }

    fn drop_body(self: Pin<&mut Self>) {
        // SAFETY: `drop_body_in_place` drops the body where it lies.
        unsafe { self.get_unchecked_mut() }.drop_body_in_place();
    }
}

impl<F, T, E> Drop for BodySlot<F, T, E> {
    fn drop(&mut self) {
        self.drop_body_in_place();
    }
}

/// The body's slot, lent to the engine's core for one call.
struct BodyRef<'a>(Pin<&'a mut (dyn RunBody + 'a)>);

// SAFETY: a `BodyRef` is made only by `claim_and_run`, from the `BodySlot` pinned in its own
// future, and lent to the `claim_and_run_erased` future that it awaits there and that never
// leaves it: that future is polled and dropped only where `claim_and_run`'s is, which is
// `Send` only if the body and its output are (the slot is one of its fields). The core polls
// and drops the body in place, from its own poll and drop only, never from the renewal task
// it spawns (that task holds the store and the call frame, not the body).
unsafe impl Send for BodyRef<'_> {}

/// Polls the body inside its call frame, once [started](Drive::start). A body that does not
/// finish in its first poll gets a `'static` renewal task at once, which renews the lease from
/// a third of it after the claim until the body ends: the lease is then kept alive for as long
/// as the call is, polled or not (a call that a slow consumer of `buffer_unordered` leaves
/// unpolled for longer than its lease keeps its claim). Bodies that finish in their first
/// poll, the cheapest first calls, spawn nothing. Dropping it drops the body (inside its call
/// frame once started).
struct Drive<'b, 's> {
    // Fields drop in this order: the renewal task is aborted before the body is dropped.
    renewer: Option<AbortOnDrop>,
    body: BodyRef<'b>,
    /// The call frame, set by `start`.
    frame: Option<Arc<Frame>>,
    store: &'s Arc<dyn Store>,
    lease: Duration,
    claimed_at: Option<Instant>,
}

impl<'b, 's> Drive<'b, 's> {
    fn new(body: BodyRef<'b>, store: &'s Arc<dyn Store>, lease: Duration) -> Self {
        Drive {
            renewer: None,
            body,
            frame: None,
            store,
            lease,
            claimed_at: None,
        }
    }

    /// Arms the driver for a claim taken at `claimed_at` by the call `frame`.
    fn start(&mut self, frame: Arc<Frame>, claimed_at: Instant) {
        self.frame = Some(frame);
        self.claimed_at = Some(claimed_at);
    }
}

impl Future for Drive<'_, '_> {
    /// Whether the body returned `Ok` (its output is in its slot).
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.get_mut();
        let (Some(frame), Some(claimed_at)) = (&this.frame, this.claimed_at) else {
            unreachable!("Drive polled before start");
        };
        let body = this.body.0.as_mut();
        if let Poll::Ready(ok) = context::in_frame(frame, || body.poll_body(cx)) {
            // The body is done: stop renewing before its value is recorded.
            this.renewer = None;
            return Poll::Ready(ok);
        }
        if this.renewer.is_none() {
            this.renewer = Some(spawn_renewal(this.store, frame, this.lease, claimed_at));
        }
        Poll::Pending
    }
}

impl Drop for Drive<'_, '_> {
    fn drop(&mut self) {
        // Abort the renewal first, as before the body is dropped.
        self.renewer = None;
        let body = self.body.0.as_mut();
        match &self.frame {
            // A started body is dropped inside its call frame, like the rest of its life.
            Some(frame) => context::in_frame(frame, || body.drop_body()),
            None => body.drop_body(),
        }
    }
}

/// The shortest lease a claim may have: renewals come every third of the lease, and no
/// sooner than every millisecond (the timer's and the remote stores' resolution), so a shorter
/// lease would lapse before its first renewal.
pub(crate) const MIN_LEASE: Duration = Duration::from_millis(3);

/// `#[idempotent]` refuses at compile time a lease under [`MIN_LEASE`] and a ttl shorter than
/// the lease; this catches an [`Operation`] built by hand (the HTTP layer's `build` checks the
/// same). Checked before every claim; replays never reach it.
#[inline]
pub(crate) fn check_lease(op: &Operation) -> Result<(), Error> {
    if op.lease() < MIN_LEASE || op.ttl() < op.lease() {
        return Err(refused_timing(op));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn refused_timing(op: &Operation) -> Error {
    if op.lease() < MIN_LEASE {
        return Error::Config(format!(
            "operation `{}` has a lease of {:?}: a claim would lapse before its body could \
             finish; give it a lease of at least 3 ms (e.g. `Operation::with_lease`), longer \
             than a third of the body's slowest run",
            op.name(),
            op.lease()
        ));
    }
    Error::Config(format!(
        "operation `{}` has a ttl of {:?}, shorter than its lease of {:?}: a completed record \
         must outlive the claim that wrote it (with a zero ttl nothing would ever be replayed); \
         give it a ttl of at least the lease (`Operation::with_ttl`) or a shorter lease \
         (`Operation::with_lease`)",
        op.name(),
        op.ttl(),
        op.lease()
    ))
}

/// Whether a remote claim that answered `Acquired` still holds its key, before any work
/// starts under it. An answer read a third of a lease or more after the claim was sent (at
/// `claimed_at`), by a call left unpolled meanwhile or a slow store, may come after the lease
/// lapsed and another caller claimed the key: a renewal, fenced by the token, confirms it
/// (and `claimed_at` becomes its sending time), or answers that the claim is lost. A prompt
/// answer costs one clock read.
///
/// A renewal answered with less than two thirds of its lease left is sent again (the body
/// would start on a lease about to lapse); a store that never answers in time (its round trips
/// are as long as the lease) fails the call at `give_up_at` rather than holding it forever.
pub(crate) async fn claim_still_held(
    store: &Arc<dyn Store>,
    key: &Key,
    token: Token,
    lease: Duration,
    claimed_at: &mut Instant,
    give_up_at: Instant,
) -> Result<bool, Error> {
    let period = renewal_period(lease);
    if Instant::now() < deadline(*claimed_at, period) {
        return Ok(true);
    }
    loop {
        if Instant::now() >= give_up_at {
            return Err(answers_too_slowly(store.name(), lease));
        }
        let sent = Instant::now();
        if !store.renew(key, token, lease).await? {
            tracing::debug!(target: "idem", %key, "claim lapsed before its answer was read; claiming again");
            *claimed_at = Instant::now();
            return Ok(false);
        }
        *claimed_at = sent;
        // Applied no earlier than it was sent: held for at least a lease from then.
        if Instant::now() < deadline(sent, lease.saturating_sub(period)) {
            return Ok(true);
        }
    }
}

#[cold]
fn answers_too_slowly(store: &'static str, lease: Duration) -> Error {
    Error::store(
        store,
        format!(
            "the store answered the claim and its confirmations too late to hold a lease of \
             {lease:?} (each answer came with less than two thirds of it left); nothing ran. \
             Retry, or give the operation a longer lease"
        ),
    )
}

pub(crate) fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// Renews the lease every `period`, the first time `period` after the claim (sent at
/// `claimed_at`), until aborted or fenced out (then marks it lost).
///
/// Renewals are sent every `period` whether the previous one answered or not (at most
/// [`RENEWALS_IN_FLIGHT`] at once): one that hangs (a connection that a partition left open,
/// answering nothing) must not keep the next ones from being sent on another. Renewals that
/// fail (the store unreachable) are retried. Once none has been confirmed for a whole lease,
/// counted from the sending of the last one confirmed (or of the claim), the lease may have
/// lapsed and another caller may hold the key: it is marked in doubt then, when that lease
/// ends (not when a hung renewal gives up), and held again if a later renewal is confirmed.
pub(crate) async fn renew_lease(
    store: Arc<dyn Store>,
    frame: Arc<Frame>,
    lease: Duration,
    period: Duration,
    claimed_at: Instant,
) {
    // What the store has confirmed: the claim, sent at `claimed_at`, then each renewal from
    // the time it was sent (the store may have applied it later, never earlier).
    let mut held_until = deadline(claimed_at, lease);
    let mut renewals = tokio::task::JoinSet::new();
    let mut next = deadline(claimed_at, period);
    loop {
        let now = Instant::now();
        if now >= held_until && frame.lease.in_doubt() {
            tracing::warn!(target: "idem", operation = frame.operation, key = %frame.key, "no lease renewal confirmed for a whole lease: the lease may have lapsed and another caller may hold the key; still renewing");
        }
        if now >= next && renewals.len() < RENEWALS_IN_FLIGHT {
            let (store, frame) = (Arc::clone(&store), Arc::clone(&frame));
            renewals.spawn(async move { (now, store.renew(&frame.key, frame.token, lease).await) });
            next = deadline(now, period);
        }
        tokio::select! {
            Some(answered) = renewals.join_next() => {
                // A renewal task panics only if the store does; it is not ours to resume.
                let Ok((sent, answer)) = answered else { continue };
                match answer {
                    Ok(true) => {
                        held_until = held_until.max(deadline(sent, lease));
                        frame.lease.confirmed();
                    }
                    Ok(false) => {
                        frame.lease.lost();
                        tracing::warn!(
                            target: "idem",
                            operation = frame.operation,
                            key = %frame.key,
                            "lease lost while the body runs: another caller took the key over or the record was removed"
                        );
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(target: "idem", operation = frame.operation, key = %frame.key, %error, "lease renewal failed; retrying");
                    }
                }
            }
            // Wakes when the confirmed lease ends, to mark it in doubt at once.
            () = tokio::time::sleep_until(held_until), if held_until > now => {}
            // The next renewal is due (unless as many as allowed still await their answer).
            () = tokio::time::sleep_until(next), if renewals.len() < RENEWALS_IN_FLIGHT => {}
        }
    }
}

/// How many renewals of one call may await their answer at once: a few, so that a hung one
/// does not stop renewing, and a store that answers nothing is not sent a pile of them.
const RENEWALS_IN_FLIGHT: usize = 3;

/// Starts renewing the lease of the call `frame` in a task of its own.
///
/// Not generic, so that the task (and tokio's machinery for it) is compiled once, in this
/// crate, not in every crate that instantiates the engine's generic code.
fn spawn_renewal(
    store: &Arc<dyn Store>,
    frame: &Arc<Frame>,
    lease: Duration,
    claimed_at: Instant,
) -> AbortOnDrop {
    let period = renewal_period(lease);
    // Made here, in the caller: on a runtime without timers it panics in the call, with
    // tokio's message (`enable_time`), rather than unseen in the task, leaving the lease to lapse.
    let first = tokio::time::sleep_until(deadline(claimed_at, period));
    let task = renew_lease(
        Arc::clone(store),
        Arc::clone(frame),
        lease,
        period,
        claimed_at,
    );
    AbortOnDrop(tokio::spawn(async move {
        first.await;
        task.await;
    }))
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
pub(crate) fn wait_for_owner<'a>(
    op: &'a Operation,
    backend: Backend<'a>,
    key: Key,
    fingerprint: &'a Fingerprint,
    remaining: Duration,
    give_up_at: Instant,
    claim_latency: Duration,
) -> Pin<Box<dyn Future<Output = Result<Waited, Error>> + Send + 'a>> {
    Box::pin(wait_for_owner_unboxed(
        op,
        backend,
        key,
        fingerprint,
        remaining,
        give_up_at,
        claim_latency,
    ))
}

/// How waiting for the running call of a key ended, if not with an error.
pub(crate) enum Waited {
    /// It recorded this value.
    Recorded(Bytes),
    /// Its lease lapsed without a renewal (the owner crashed or lost its store): the key is
    /// free for a new claim.
    Lapsed,
}

/// How long before the end of the running call's lease, as last seen, a waiter looks again,
/// for reads that take `latency` (the slowest seen by this waiter).
///
/// A live owner renews every third of its lease, so by then it has renewed and its lease has
/// far more than this left; a lease seen with no more than this left belongs to an owner that
/// missed its renewals, and if its record then vanishes, its lease lapsed (rather than a
/// failure releasing it). A sixth of the lease, at most 300 ms (more than a shared store's
/// polling step, 200 ms, so that the look happens in time), plus the reads' latency (a slow
/// read must still reach the store before the lapse), at least a millisecond (the timer's
/// resolution) and at most a third of the lease (so that a live owner, renewed by then, is
/// never taken for a crashed one).
fn lapse_margin(lease: Duration, latency: Duration) -> Duration {
    let base = (lease / 6).clamp(Duration::from_millis(1), Duration::from_millis(300));
    (base + latency)
        .min(lease / 3)
        .max(Duration::from_millis(1))
}

async fn wait_for_owner_unboxed(
    op: &Operation,
    backend: Backend<'_>,
    key: Key,
    fingerprint: &Fingerprint,
    mut remaining: Duration,
    give_up_at: Instant,
    claim_latency: Duration,
) -> Result<Waited, Error> {
    tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: waiting for the running call");
    // The slowest round trip seen: the claim's, then each read's.
    let mut latency = claim_latency;
    // When the running call's lease ends, as last seen (the time of an answer plus the
    // remaining lease it gave: never earlier than the store's end).
    let mut seen_end = deadline(Instant::now(), remaining);
    loop {
        let margin = lapse_margin(op.lease(), latency);
        let now = Instant::now();
        if now >= give_up_at {
            return Err(in_flight(op, key, remaining));
        }
        // Look again a margin before the owner's lease would lapse (then at its end), to tell
        // a crashed owner from a live one.
        let look_in = if remaining > margin {
            remaining - margin
        } else {
            remaining
        };
        let max = (give_up_at - now).min(look_in.max(Duration::from_millis(1)));
        backend.wait_for_change(&key, max).await?;
        let looked_at = Instant::now();
        let record = backend.get(&key).await?;
        let answered_at = Instant::now();
        latency = latency.max(answered_at.saturating_duration_since(looked_at));
        match record {
            Some(Record::Completed {
                fingerprint: recorded,
                value,
                ..
            }) => {
                check_fingerprint(op, &key, &recorded, fingerprint)?;
                tracing::debug!(target: "idem", operation = op.name(), %key, "replayed after waiting");
                return Ok(Waited::Recorded(value));
            }
            Some(Record::InProgress {
                fingerprint: running,
                remaining: left,
            }) => {
                check_fingerprint(op, &key, &running, fingerprint)?;
                remaining = left;
                seen_end = deadline(answered_at, left);
            }
            // Its lease was about to lapse, unrenewed, when last seen; or this look, meant for
            // a margin before the end of the lease as last seen, came within a margin after it
            // (a timer late by a millisecond or two, as with leases of a few milliseconds): a
            // lapse, taken over. A look later than that (a waiter left unpolled meanwhile)
            // cannot tell a lapse from an owner that renewed and then failed, and answers the
            // failure: a failing body is not run again by its waiters.
            None if remaining <= margin
                || (looked_at >= seen_end && looked_at < deadline(seen_end, margin)) =>
            {
                tracing::debug!(target: "idem", operation = op.name(), %key, "the running call's lease lapsed; claiming the key");
                return Ok(Waited::Lapsed);
            }
            None => {
                // Released: its body failed, panicked or was cancelled. Not run again by each
                // waiter in turn.
                tracing::debug!(target: "idem", operation = op.name(), %key, "the running call ended without a result");
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
    use std::sync::atomic::{AtomicBool, Ordering};

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
