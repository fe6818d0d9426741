//! Support for generated code. Not a public API: anything here may change in any release.
//!
//! `#[idempotent]` and `#[derive(IdempotencyKey)]` reach the runtime only through this module,
//! with one absolute import per expansion (`use ::idem_runtime::__private as __idem;`, or the
//! `crate = "…"` path) and `__idem::…` paths after it.

use std::borrow::Cow;
pub use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use ::core::option::Option::{self, None, Some};
pub use ::core::pin::pin;
pub use ::core::result::Result;
pub use ::core::{concat, file, line, module_path, stringify};
pub use ::std::time::Duration;
pub use inventory;
pub use std::mem::ManuallyDrop;

pub use crate::Error;
pub use crate::engine::{DecodeEachReplay, KeepDecoded, ReplayCache};
pub use crate::key::{Fingerprint, IdempotencyKey, Key, KeyHasher};
pub use crate::operation::{IntoCallStore, Location, OnConflict, Operation};
pub use crate::output::IdempotentOutput;
pub use crate::registry::Registration;

mod dispatch;
pub(crate) mod probe;
pub mod walk;

pub use dispatch::{BySerde, Dispatch, Unhashable, dispatch};

use crate::engine::Started;
use crate::store::Store;

/// A hasher for `op`'s key: `KeyHasher::for_key(name, version)`, with the operation's hash key
/// derived once.
#[inline(always)]
pub fn key_hasher(op: &Operation) -> KeyHasher {
    KeyHasher::with_key_hash_key(op.hash_keys().0)
}

/// A hasher for `op`'s payload fingerprint.
#[inline(always)]
pub fn fingerprint_hasher(op: &Operation) -> KeyHasher {
    KeyHasher::with_fingerprint_hash_key(op.hash_keys().1)
}

/// `hasher.finish_key()` without moving the hasher (a move copies its 600 bytes).
#[inline(always)]
pub fn finish_key(hasher: &mut KeyHasher) -> Result<Key, Error> {
    hasher.finish_key_in_place()
}

/// `hasher.finish_fingerprint()` without moving the hasher.
#[inline(always)]
pub fn finish_fingerprint(hasher: &mut KeyHasher) -> Result<Fingerprint, Error> {
    hasher.finish_fingerprint_in_place()
}

/// `Operation::new(name).with_location(…)`: the start of an `#[idempotent]` fn's static, in
/// one const call (a chain of builder calls written in the expansion is type-checked and
/// evaluated again in every annotated fn: 0.05 G rustc instructions over 200 of them).
#[inline]
pub const fn operation_at(
    name: &'static str,
    module: &'static str,
    file: &'static str,
    line: u32,
) -> Operation {
    Operation::new(name).with_location(Location { module, file, line })
}

/// A value of type `R`, never produced: `if false { return typed::<R>(); }` at the top of an
/// annotated fn's `async move` block fixes the block's output type before the body is checked,
/// so that a wrong value or `return` in the body is reported where it is written, as in a
/// plain `async fn`. A call, not a diverging expression, so that no code after it is
/// unreachable (the expansion needs no `allow(unreachable_code)`).
#[inline(always)]
pub fn typed<R>() -> R {
    unreachable!("`__private::typed` is only called under `if false`")
}

/// Marks the key material written while the returned guard lives as `#[idem(include)]`d: a
/// time value in it is hashed on purpose, and the serde bridge does not warn about it.
#[inline]
pub fn include_time() -> IncludedTime {
    crate::key::time_guard::allow()
}

pub use crate::key::time_guard::Allowed as IncludedTime;

/// The key of a call to `op`, its key material written by `write` (the generated closure that
/// dispatches each key argument).
///
/// The hasher lives here rather than in the annotated fn's future: its set-up, its finish and
/// its drop glue (with their unwinding paths) are compiled once, in this crate, instead of in
/// every annotated fn (in a debug build this saved 5 % of the rustc instructions of a crate of
/// 200 annotated fns). Inlined in optimised builds only, where the closure is then inlined too;
/// in a debug build, `#[inline]` would compile a copy in every codegen unit that calls it.
#[cfg_attr(not(debug_assertions), inline)]
pub fn key_of(op: &Operation, write: &dyn WriteKeyMaterial) -> Result<Key, Error> {
    let mut hasher = key_hasher(op);
    write.write_key_material(&mut hasher);
    finish_key(&mut hasher)
}

/// The generated closure that writes a call's key material, as [`key_of`] and
/// [`fingerprint_of`] take it.
///
/// A trait of its own rather than `dyn Fn(&mut KeyHasher)`: the vtable of a `dyn Fn` holds
/// `call_once` and `call_mut` too, and each annotated fn would compile their shims.
pub trait WriteKeyMaterial {
    /// Writes the key material into `hasher`.
    fn write_key_material(&self, hasher: &mut KeyHasher);
}

impl<F: Fn(&mut KeyHasher)> WriteKeyMaterial for F {
    #[inline]
    fn write_key_material(&self, hasher: &mut KeyHasher) {
        self(hasher)
    }
}

/// The payload fingerprint of a call to `op` (`key = …` given), as [`key_of`].
#[cfg_attr(not(debug_assertions), inline)]
pub fn fingerprint_of(op: &Operation, write: &dyn WriteKeyMaterial) -> Result<Fingerprint, Error> {
    let mut hasher = fingerprint_hasher(op);
    write.write_key_material(&mut hasher);
    finish_fingerprint(&mut hasher)
}

/// The value type of an `#[idempotent]` fn: recorded in the store and replayed.
#[diagnostic::on_unimplemented(
    message = "the value `{Self}` returned by an `#[idempotent]` fn must implement `Serialize` and `DeserializeOwned`",
    label = "recorded in the store and replayed to later callers, so it must serialize and deserialize",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (owned data only: no borrowed `&str`/`&[u8]`)"
)]
pub trait Recordable: serde::Serialize + serde::de::DeserializeOwned {}

// `do_not_recommend`: a missing `Serialize` or `Deserialize` is reported once, with this trait's
// message, instead of once more per missing serde trait with the compiler's own.
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Recordable for T {}

/// The error type of an `#[idempotent]` fn: idempotency failures are returned through it.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an `#[idempotent]` fn must implement `From<idem_runtime::Error>`",
    label = "idempotency failures (payload mismatch, running duplicate, store outage) are returned as this error",
    note = "for an error type of your crate, add `impl From<idem_runtime::Error> for {Self}` (e.g. a `#[from]` variant); \
            otherwise (a `String`, another crate's type) return `Result<T, idem_runtime::Error>` or wrap the error in a type of yours"
)]
pub trait FromIdemError: From<Error> {}

// `do_not_recommend`: one error with this trait's message, not a second one about `From`.
#[diagnostic::do_not_recommend]
impl<E: From<Error>> FromIdemError for E {}

/// `Box::pin` for `#[async_trait]` methods (a function, so that no prelude path appears in
/// code spanned on user tokens, which `unused_qualifications` would flag).
#[inline]
pub fn pin_box<F: Future>(future: F) -> Pin<Box<F>> {
    Box::pin(future)
}

/// `store = <expr>`: the store of one call (borrowed when the expression is a
/// `&Arc<dyn Store>`).
#[inline]
pub fn store<'a, S: IntoCallStore<'a>>(store: S) -> Option<Cow<'a, Arc<dyn Store>>> {
    Some(store.into_call_store())
}

/// `store = <expr>` when the body may move what the expression borrows from (a receiver other
/// than `&self`, an owned parameter): the store is taken as an owned `Arc` (a clone of a
/// borrowed `Arc<dyn Store>`) before the body is built, so the call does not borrow it.
#[inline]
pub fn store_owned<'a, S: IntoCallStore<'a>>(store: S) -> Option<Cow<'static, Arc<dyn Store>>> {
    Some(Cow::Owned(store.into_call_store().into_owned()))
}

/// One call of an `#[idempotent]` fn: checks the registry (cached), answers a
/// [`key_of`](crate::key_of) probe, then runs `body` through the engine.
///
/// The generated code pins the body (`async move { … }`, the user's tokens) in its own future
/// and lends it here by reference, erased to `dyn Future` by [`body`]: nothing here is
/// instantiated per annotated fn, only per return type `R` (the probe, the registry check, the
/// engine). That is most of the compile time of `#[idempotent]`: a function or a future generic
/// over the body would be compiled once per annotated fn.
///
/// The bounds are the compile-time checks of the return type `R` (inferred from the body,
/// whose type [`body`] declares): `R` is a `Result` ([`IdempotentOutput`]), its value is
/// [`Recordable`], its error [`FromIdemError`]. Each is a bound of its own, so a failing one
/// is reported with its own message.
///
/// A call settled at once (a replay from the memory store, or an error) drops the lent body
/// here; otherwise the returned future owns it (it drops it) and holds it with its type erased,
/// so it is `Send` whatever the body's type: hence the [`SlotKept`] promise that lending it
/// takes.
///
/// ```
/// # use idem_runtime::__private::{DecodeEachReplay, ManuallyDrop, Operation, body, pin, run, slot_kept};
/// static OP: Operation = Operation::new("docs.run_send");
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(async {
///     let slot = pin!(ManuallyDrop::new(async { Ok::<u32, idem_runtime::Error>(1) }));
///     run(&OP, OP.key(&1), DecodeEachReplay, body(slot, slot_kept!())).await
/// });
/// ```
///
/// A body that is not `Send` makes the annotated fn's future not `Send`, although the engine
/// only sees the erased body:
///
/// ```compile_fail
/// # use idem_runtime::__private::{DecodeEachReplay, ManuallyDrop, Operation, body, pin, run, slot_kept};
/// static OP: Operation = Operation::new("docs.run_not_send");
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(async {
///     let slot = pin!(ManuallyDrop::new(async {
///         let local = std::rc::Rc::new(1);
///         std::future::ready(()).await;
///         Ok::<u32, idem_runtime::Error>(*local)
///     }));
///     run(&OP, OP.key(&1), DecodeEachReplay, body(slot, slot_kept!())).await
/// });
/// ```
#[inline]
pub fn run<'a, R, T, E, C>(
    op: &'static Operation,
    key: Result<Key, Error>,
    cache: C,
    body: Lent<'a, R>,
) -> impl Future<Output = R> + use<'a, R, T, E, C>
where
    R: IdempotentOutput<Ok = T, Err = E> + 'a,
    T: Recordable,
    E: FromIdemError,
    C: ReplayCache<T> + 'a,
{
    run_erased(op, key, None, None, cache, body.0)
}

/// [`run`] for an operation with a payload fingerprint (`key = …`) or its own store
/// (`store = …`): `None` for what the attribute was not given.
///
/// A function of its own, so that the common call passes neither: each argument the generated
/// code evaluates also gets its drop on the unwinding paths of every annotated fn's future.
#[inline]
pub fn run_with<'a, R, T, E, C>(
    op: &'static Operation,
    key: Result<Key, Error>,
    fingerprint: Option<Result<Fingerprint, Error>>,
    store: Option<Cow<'a, Arc<dyn Store>>>,
    cache: C,
    body: Lent<'a, R>,
) -> impl Future<Output = R> + use<'a, R, T, E, C>
where
    R: IdempotentOutput<Ok = T, Err = E> + 'a,
    T: Recordable,
    E: FromIdemError,
    C: ReplayCache<T> + 'a,
{
    run_erased(op, key, fingerprint, store, cache, body.0)
}

/// The promise of the generated code that makes lending a body ([`body`]) sound: the body is
/// lent once, to [`run`], and its slot stays in the future that awaits `run`'s (so that that
/// future is `Send` only if the body is).
///
/// Made by the generated code (through [`slot_kept!`], so that the `unsafe` block is this
/// crate's whatever `crate = "…"` path the attribute was given), which pins the slot in the
/// annotated fn's own future and awaits `run`'s future there. Without the promise, safe code
/// could let a slot go while its pinned body was never dropped (its memory reused under, say, a
/// registered waker), poll a body through `run`'s `Send` future from a thread the body may not
/// go to, or drop a body twice.
///
/// ```compile_fail
/// let _ = idem_runtime::__private::SlotKept::promise();
/// ```
pub struct SlotKept(());

impl SlotKept {
    /// # Safety
    ///
    /// The body lent with this promise ([`body`]) is lent only this once, and the [`Lent`]
    /// is passed to [`run`] at once; the body's slot stays in the future that awaits `run`'s
    /// (it is pinned there, and the `run` future is awaited there, never moved out of it or
    /// leaked).
    #[inline(always)]
    pub const unsafe fn promise() -> Self {
        SlotKept(())
    }
}

/// `unsafe { SlotKept::promise() }`, as this crate's own tokens: the attribute's expansion holds
/// no `unsafe` of its own (nor one that a user's `crate = "…"` path could point elsewhere). For
/// the expansion only, like everything in this module.
#[doc(hidden)]
#[macro_export]
macro_rules! __idem_slot_kept {
    () => {
        // SAFETY: invoked by `#[idempotent]`'s expansion only, which keeps that promise.
        unsafe { $crate::__private::SlotKept::promise() }
    };
}
pub use crate::__idem_slot_kept as slot_kept;

/// The body of an `#[idempotent]` fn (`async move { … }`, the user's tokens), pinned in the
/// fn's own future, lent to [`run`] with its type erased. The fn's return type `R` is declared
/// here for the body: [`run`] infers its own `R` from it, so a typo in the type is reported
/// once, at the type's own tokens.
///
/// The slot is a `ManuallyDrop`: once lent, the body belongs to the [`Lent`] and then to the
/// engine, which drops it where it lies, inside its call frame and before its claim is
/// released (a call cancelled mid-body, as for a body the engine owns: `Call::run`).
#[inline(always)]
pub fn body<'a, R, B: Future<Output = R> + 'a>(
    slot: Pin<&'a mut ManuallyDrop<B>>,
    _kept: SlotKept,
) -> Lent<'a, R> {
    // SAFETY: a projection to the only field, which is never moved out; from here on the
    // body is owned (and dropped) by the `Erased`, the caller's promise keeping its slot alive.
    Lent(Erased {
        body: unsafe { Pin::new_unchecked(&mut **Pin::get_unchecked_mut(slot)) },
    })
}

/// A body lent to [`run`]: opaque (no access to the body); dropping it drops the body.
#[must_use = "a lent body runs only when passed to `run`"]
pub struct Lent<'a, R>(Erased<'a, R>);

/// Everything after the body's type is erased: instantiated once per return type.
///
/// Not an `async fn`: the registry check, the probe, the key's errors and a replay from the
/// memory store are settled here, when the annotated fn's own future first runs (it calls
/// [`run`] in its first poll). A replay is answered before any engine future is made, and a
/// first call's future is the engine's alone, not nested in more state machines that would
/// each keep a copy of the call.
fn run_erased<'a, R, C>(
    op: &'static Operation,
    key: Result<Key, Error>,
    fingerprint: Option<Result<Fingerprint, Error>>,
    store: Option<Cow<'a, Arc<dyn Store>>>,
    _cache: C,
    body: Erased<'a, R>,
) -> Engine<impl Future<Output = Result<R::Ok, R::Err>> + 'a, R>
where
    R: IdempotentOutput<Ok: Recordable, Err: FromIdemError> + 'a,
    C: ReplayCache<R::Ok> + 'a,
{
    let stopped = |outcome: Result<R::Ok, Error>| {
        Engine::Stopped(Some(R::from_result(outcome.map_err(Into::into))))
    };
    let Prepared {
        key,
        fingerprint,
        store,
    } = match prepare(op, key, fingerprint, store) {
        Ok(prepared) => prepared,
        Err(error) => return stopped(Err(error)),
    };
    match crate::engine::start::<R::Ok, R::Err, _, C>(op, key, fingerprint, store, body) {
        Started::Settled(outcome) => stopped(outcome),
        Started::Claim(claim_and_run) => Engine::Running(claim_and_run),
    }
}

/// The key, fingerprint and store of the call to run, or why it cannot: a duplicate operation
/// name, a [`key_of`](crate::key_of) probe that took the key, key material that could not be
/// hashed, or no store to resolve.
fn prepare<'a>(
    op: &'static Operation,
    key: Result<Key, Error>,
    fingerprint: Option<Result<Fingerprint, Error>>,
    store: Option<Cow<'a, Arc<dyn Store>>>,
) -> Result<Prepared<'a>, Error> {
    if let Err(duplicate) = crate::registry::check_unique(op) {
        // A `key_of`/`forget_call` probe reports this error, not "no idempotent call".
        return Err(probe::offer_error(op.name(), duplicate, store.as_deref()));
    }
    let key = match probe::offer(op.name(), key, store.as_deref()) {
        probe::Offer::Taken(refusal) => return Err(refusal),
        probe::Offer::NotProbed(key) => key?,
    };
    let fingerprint = match fingerprint {
        Some(fingerprint) => fingerprint?,
        None => Fingerprint::NONE,
    };
    let store = match store {
        Some(store) => store,
        None => crate::global::resolve()?,
    };
    Ok(Prepared {
        key,
        fingerprint,
        store,
    })
}

/// What [`prepare`] settles for a call.
struct Prepared<'a> {
    key: Key,
    fingerprint: Fingerprint,
    store: Cow<'a, Arc<dyn Store>>,
}

/// The engine's future (boxed: it claims the key and runs the body), or the outcome of a call
/// settled in [`run`]: a replay from the memory store, or an error (see [`prepare`]).
enum Engine<F, R> {
    Running(Pin<Box<F>>),
    Stopped(Option<R>),
}

// Nothing in an `Engine` is pinned in place: the engine's future is pinned in its box, and the
// outcome is only ever moved out.
impl<F, R> Unpin for Engine<F, R> {}

impl<F, R> Future for Engine<F, R>
where
    R: IdempotentOutput,
    F: Future<Output = Result<R::Ok, R::Err>>,
{
    type Output = R;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        match self.get_mut() {
            Engine::Running(engine) => engine.as_mut().poll(cx).map(R::from_result),
            Engine::Stopped(outcome) => match outcome.take() {
                Some(outcome) => Poll::Ready(outcome),
                None => panic!("an `#[idempotent]` call's future was polled after it completed"),
            },
        }
    }
}

/// Picks the replay cache of an `#[idempotent]` fn's value type (see
/// [`Call::run_cached`](crate::Call::run_cached)): `CacheProbe::<R>::new().replay_cache()` is
/// [`KeepDecoded`] when the value of the return type `R` is `Clone + Send + Sync + 'static`,
/// else [`DecodeEachReplay`] (autoderef specialization on the concrete type, like `dispatch`;
/// it never fails to compile, so a bad return type gets only the errors of `run`'s own bounds).
pub struct CacheProbe<R>(NoCache<R>);

/// The fallback of [`CacheProbe`]: no cache.
pub struct NoCache<R>(PhantomData<fn() -> R>);

impl<R> CacheProbe<R> {
    /// A probe for return type `R`.
    #[inline(always)]
    pub const fn new() -> Self {
        CacheProbe(NoCache(PhantomData))
    }
}

impl<R> Default for CacheProbe<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> std::ops::Deref for CacheProbe<R> {
    type Target = NoCache<R>;
    #[inline(always)]
    fn deref(&self) -> &NoCache<R> {
        &self.0
    }
}

impl<R> CacheProbe<R>
where
    R: IdempotentOutput<Ok: Recordable + Clone + Send + Sync + 'static>,
{
    /// The value type is `Clone`: replays on the memory store clone a kept decoded copy.
    #[inline(always)]
    pub fn replay_cache(&self) -> KeepDecoded {
        KeepDecoded
    }
}

impl<R> NoCache<R> {
    /// Any other value type: every replay decodes.
    #[inline(always)]
    pub fn replay_cache(&self) -> DecodeEachReplay {
        DecodeEachReplay
    }
}

/// The body with its type erased, its output split into a `Result` for the engine. It owns the
/// body (see [`body`]): dropping it drops the body in place.
struct Erased<'a, R> {
    body: Pin<&'a mut (dyn Future<Output = R> + 'a)>,
}

impl<R> Drop for Erased<'_, R> {
    /// The engine drops its body inside the call frame, before the claim's release: this
    /// drops the lent body itself there.
    fn drop(&mut self) {
        // SAFETY: the body is live (its slot never drops it, see `body`), dropped in place,
        // once (an `Erased` is made once per slot, by `run`) and never used again.
        unsafe { std::ptr::drop_in_place(self.body.as_mut().get_unchecked_mut()) }
    }
}

// SAFETY: an `Erased` is a type-erased `Pin<&'a mut ManuallyDrop<B>>`, only ever created by
// [`run`], whose caller keeps the slot itself in the future that awaits the engine's (its
// [`SlotKept`] promise): that future is `Send` only if `B` is, and the engine polls the body
// in place, only from it, never handing it to another task (the lease renewal task it spawns
// owns only the key, the token and the store).
unsafe impl<R> Send for Erased<'_, R> {}

impl<R: IdempotentOutput> Future for Erased<'_, R> {
    type Output = Result<R::Ok, R::Err>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.body
            .as_mut()
            .poll(cx)
            .map(IdempotentOutput::into_result)
    }
}
