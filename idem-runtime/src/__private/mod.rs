//! Support for generated code. Not a public API: anything here may change in any release.
//!
//! `#[idempotent]` and `#[derive(IdempotencyKey)]` reach the runtime only through this module,
//! with absolute paths (`::idem_runtime::__private::…`, or the `crate = "…"` path).

use std::sync::Arc;

pub use ::core::option::Option::{self, None, Some};
pub use ::core::result::Result;
pub use ::core::{concat, file, line, module_path, stringify};
pub use ::std::time::Duration;
pub use inventory;

pub use crate::Error;
pub use crate::key::{Fingerprint, IdempotencyKey, Key, KeyHasher};
pub use crate::operation::{Location, OnConflict, Operation};
pub use crate::output::IdempotentOutput;
pub use crate::registry::Registration;

mod dispatch;
pub(crate) mod probe;

pub use dispatch::{BySerde, Dispatch, Unhashable, dispatch};

use crate::store::Store;

/// A hasher for `op`'s key: `KeyHasher::for_key(name, version)`, with the operation's hash key
/// derived once.
#[inline]
pub fn key_hasher(op: &Operation) -> KeyHasher {
    KeyHasher::with_key_hash_key(op.hash_keys().0)
}

/// A hasher for `op`'s payload fingerprint.
#[inline]
pub fn fingerprint_hasher(op: &Operation) -> KeyHasher {
    KeyHasher::with_fingerprint_hash_key(op.hash_keys().1)
}

/// The value type of an `#[idempotent]` fn: recorded in the store and replayed.
#[diagnostic::on_unimplemented(
    message = "the value `{Self}` returned by an `#[idempotent]` fn must implement `Serialize` and `DeserializeOwned`",
    label = "recorded in the store and replayed to later callers, so it must serialize and deserialize",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it (owned data only: no borrowed `&str`/`&[u8]`)"
)]
pub trait Recordable: serde::Serialize + serde::de::DeserializeOwned {}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Recordable for T {}

/// The error type of an `#[idempotent]` fn: idempotency failures are returned through it.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an `#[idempotent]` fn must implement `From<idem_runtime::Error>`",
    label = "idempotency failures (payload mismatch, running duplicate, store outage) are returned as this error",
    note = "add `impl From<idem_runtime::Error> for {Self}` (e.g. a `#[from]` variant), or return `Result<T, idem_runtime::Error>`"
)]
pub trait FromIdemError: From<Error> {}

impl<E: From<Error>> FromIdemError for E {}

/// What `store = <expr>` may evaluate to: an `Arc` of a store (`Arc<dyn Store>`,
/// `Arc<MemoryStore>`, …) or a reference to one.
#[diagnostic::on_unimplemented(
    message = "`store = …` must be an `Arc` of an idempotency store, or a reference to one; `{Self}` is not",
    label = "expected `Arc<dyn Store>`, `Arc<S: Store>`, or `&Arc<…>`"
)]
pub trait IntoStore {
    /// The store, shared.
    fn into_store(self) -> Arc<dyn Store>;
}

impl<S: Store> IntoStore for Arc<S> {
    #[inline]
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

impl IntoStore for Arc<dyn Store> {
    #[inline]
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

impl<S: Store> IntoStore for &Arc<S> {
    #[inline]
    fn into_store(self) -> Arc<dyn Store> {
        self.clone()
    }
}

impl IntoStore for &Arc<dyn Store> {
    #[inline]
    fn into_store(self) -> Arc<dyn Store> {
        self.clone()
    }
}

/// `Box::pin` for `#[async_trait]` methods (a function, so that no prelude path appears in
/// code spanned on user tokens, which `unused_qualifications` would flag).
#[inline]
pub fn pin_box<F: Future>(future: F) -> ::core::pin::Pin<Box<F>> {
    Box::pin(future)
}

/// `store = <expr>`: the store of one call.
#[inline]
pub fn store<S: IntoStore>(store: S) -> Option<Arc<dyn Store>> {
    Some(store.into_store())
}

/// One call of an `#[idempotent]` fn: checks the registry (cached), answers a
/// [`key_of`](crate::key_of) probe, then runs `body` through the engine.
///
/// The bounds are the compile-time checks of the return type `R` (turbofished by the macro,
/// with the return type's span): `R` is a `Result` ([`IdempotentOutput`]), its value is
/// [`Recordable`], its error [`FromIdemError`]. Each is a bound of its own, so a failing one
/// is reported with its own message.
pub async fn run<R, T, E, F>(
    op: &'static Operation,
    key: Result<Key, Error>,
    fingerprint: Option<Result<Fingerprint, Error>>,
    store: Option<Arc<dyn Store>>,
    body: F,
) -> R
where
    R: IdempotentOutput<Ok = T, Err = E>,
    T: Recordable,
    E: FromIdemError,
    F: Future<Output = R>,
{
    let body = std::pin::pin!(IntoResult(body));
    R::from_result(run_erased(op, key, fingerprint, store, Erased { body }).await)
}

/// Everything after the body's type is erased: instantiated once per value and error type.
async fn run_erased<T, E>(
    op: &'static Operation,
    key: Result<Key, Error>,
    fingerprint: Option<Result<Fingerprint, Error>>,
    store: Option<Arc<dyn Store>>,
    body: Erased<'_, T, E>,
) -> Result<T, E>
where
    T: Recordable,
    E: FromIdemError,
{
    crate::registry::check_unique(op)?;
    let key = match probe::offer(op, key, store.as_ref()) {
        probe::Offer::Taken(refusal) => return Err(refusal.into()),
        probe::Offer::NotProbed(key) => key,
    };
    let mut call = op.call(key?);
    if let Some(fingerprint) = fingerprint {
        call = call.fingerprint(fingerprint?);
    }
    if let Some(store) = store {
        call = call.store(store);
    }
    call.run(body).await
}

/// The body's output as a `Result`.
struct IntoResult<F>(F);

impl<F: Future<Output: IdempotentOutput>> Future for IntoResult<F> {
    type Output = Result<<F::Output as IdempotentOutput>::Ok, <F::Output as IdempotentOutput>::Err>;

    #[inline]
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; `IntoResult` has no `Drop` and never
        // moves it.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        inner.poll(cx).map(IdempotentOutput::into_result)
    }
}

/// The body with its type erased, so that the engine is instantiated once per value and error
/// type, not once per annotated function (each `async` body is a type of its own): this is
/// most of the compile time of `#[idempotent]`.
struct Erased<'a, T, E> {
    body: std::pin::Pin<&'a mut (dyn Future<Output = Result<T, E>> + 'a)>,
}

// SAFETY: `Erased` only lives inside the future of `run`, which also owns the body it
// points to: that future is `Send` exactly when the body is (and its other parts are), so an
// `Erased` is only ever moved to another thread together with the body it borrows. The engine
// polls it in place and never hands it to another task (the lease renewal task it spawns owns
// only the key, the token and the store).
unsafe impl<T, E> Send for Erased<'_, T, E> {}

impl<T, E> Future for Erased<'_, T, E> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.body.as_mut().poll(cx)
    }
}
