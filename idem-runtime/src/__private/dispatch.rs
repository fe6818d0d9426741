//! Per-value dispatch of key material: the [`IdempotencyKey`] impl if the type has one, else
//! its `serde::Serialize` impl, else a compile error that says what to do.
//!
//! Autoderef specialization: `dispatch(&v).write(h)` finds the inherent `write` of
//! [`Dispatch`] if `T: IdempotencyKey`, else derefs to [`BySerde`] (`T: Serialize`), else to
//! [`Unhashable`], whose `write` requires a trait nothing implements and whose diagnostic is
//! the error message. Method resolution happens on the concrete type at the call site, so a
//! field of a generic type `T` is dispatched by `T`'s declared bounds. No trait has to be in
//! scope, and generated code names only this function.
//!
//! `inline(always)` in optimised builds only (here and in `key::hasher`): in a debug build it
//! would inline these calls into every annotated fn and derived impl, which costs compile time
//! and buys nothing at `opt-level = 0`.

use std::ops::Deref;

use crate::key::{IdempotencyKey, KeyHasher};

/// First choice: the value's [`IdempotencyKey`] impl.
pub struct Dispatch<'a, T: ?Sized>(BySerde<'a, T>);

/// Second choice: the value's `serde::Serialize` impl, through the serde bridge.
pub struct BySerde<'a, T: ?Sized>(Unhashable<'a, T>);

/// Last resort: a compile error.
pub struct Unhashable<'a, T: ?Sized>(&'a T);

/// Wraps a key-material value for dispatch; call `.write(hasher)` on the result.
#[cfg_attr(debug_assertions, inline)]
#[cfg_attr(not(debug_assertions), inline(always))]
pub fn dispatch<T: ?Sized>(value: &T) -> Dispatch<'_, T> {
    Dispatch(BySerde(Unhashable(value)))
}

impl<'a, T: ?Sized> Deref for Dispatch<'a, T> {
    type Target = BySerde<'a, T>;
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn deref(&self) -> &BySerde<'a, T> {
        &self.0
    }
}

impl<'a, T: ?Sized> Deref for BySerde<'a, T> {
    type Target = Unhashable<'a, T>;
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn deref(&self) -> &Unhashable<'a, T> {
        &self.0
    }
}

impl<T: IdempotencyKey + ?Sized> Dispatch<'_, T> {
    /// Writes the value through its [`IdempotencyKey`] impl.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn write(&self, out: &mut KeyHasher) {
        self.0.0.0.write_key(out);
    }
}

impl<T: serde::Serialize + ?Sized> BySerde<'_, T> {
    /// Writes the value through the serde bridge.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn write(&self, out: &mut KeyHasher) {
        out.write_serde(self.0.0);
    }
}

/// Implemented by nothing: the message of a value that is neither key material nor
/// `Serialize`.
///
/// rustc names it in the `help: the trait … is not implemented for …` line of that error, so
/// its name says what the type needs (an `IdempotencyKey` or a `Serialize` impl) rather than
/// inviting an impl of a private trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be hashed into an idempotency key or payload fingerprint",
    label = "implements neither `IdempotencyKey` nor `serde::Serialize`",
    note = "derive `IdempotencyKey` (or `serde::Serialize`) for it, or leave it out of the key with `#[idem(exclude)]`, \
            or hash it yourself with `#[idem(with = path)]` (derive fields only)",
    note = "with `key = …`, the parameters the key does not name whole are hashed too, into the payload fingerprint \
            (`key = req.id` keeps all of `req` there): exclude what is not part of the request",
    note = "a value of a generic type needs a declared bound (`T: IdempotencyKey` or `T: serde::Serialize`); a type \
            deriving `IdempotencyKey` over an undeclared `T` (`Wrap<T>`) implements it only for a `T` that does: \
            declare `T: serde::Serialize` on it to accept serde-only arguments (`Wrap<Uuid>`)"
)]
pub trait IdempotencyKeyOrSerialize {}

impl<T: ?Sized> Unhashable<'_, T> {
    /// Never callable: its bound is never met.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn write(&self, _out: &mut KeyHasher)
    where
        T: IdempotencyKeyOrSerialize,
    {
        unreachable!("IdempotencyKeyOrSerialize has no impls")
    }
}
