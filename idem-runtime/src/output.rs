//! What an `#[idempotent]` function may return.

use crate::Error;

/// Return types of `#[idempotent]` functions: a [`Result`].
///
/// The attribute checks the return type through this trait rather than by its spelling, so
/// `Result<T, E>`, `std::io::Result<T>`, `anyhow::Result<T>` and any other alias of `Result`
/// work. Two more conditions are checked with their own messages:
///
/// - the error type `E` converts from [`idem_runtime::Error`](crate::Error) (`E: From<Error>`),
///   so that idempotency failures (a payload mismatch, a running duplicate, a store outage)
///   reach the caller as values; or use `Result<T, idem_runtime::Error>` directly;
/// - the value type `T` is `Serialize + DeserializeOwned`: it is recorded in the store and
///   replayed to later callers.
///
/// `std::io::Error` converts from [`Error`] (see the `From` impl below), so `std::io::Result<T>`
/// works out of the box.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` functions must return a `Result`, not `{Self}`",
    label = "not a `Result`",
    note = "return `Result<T, E>` with `E: From<idem_runtime::Error>`, or `Result<T, idem_runtime::Error>`: \
            idempotency failures (payload mismatch, running duplicate, store outage) are returned as errors"
)]
pub trait IdempotentOutput: Sized {
    /// The recorded value type.
    type Ok;
    /// The error type.
    type Err;
    /// Splits `self` into a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Builds `Self` from a `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E> IdempotentOutput for Result<T, E> {
    type Ok = T;
    type Err = E;

    #[inline]
    fn into_result(self) -> Result<T, E> {
        self
    }

    #[inline]
    fn from_result(result: Result<T, E>) -> Self {
        result
    }
}

/// Lets `std::io::Result<T>` be the return type of an `#[idempotent]` fn: the
/// [`std::io::Error`] has kind [`Other`](std::io::ErrorKind::Other) and wraps the [`Error`]
/// (get it back with `io_error.into_inner()` and `downcast`).
impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        std::io::Error::other(error)
    }
}
