//! The structural walk of std containers, for generated code.
//!
//! `dispatch(&v)` picks one impl for the *whole* value: its [`IdempotencyKey`] impl if the
//! whole type has one, else its `serde::Serialize` impl. A container that mixes a derived type
//! with a serde-only one (`Vec<(Inner, Uuid)>`) has no key-trait impl, so all of it, the derived
//! `Inner` included, would go through serde, and `Inner`'s `#[idem(exclude)]` fields would be
//! hashed. `#[derive(IdempotencyKey)]` therefore walks such containers by their type syntax
//! (`idem-macros/src/walk.rs`) and dispatches each element on its own, with these helpers. Each writes exactly the bytes of the container's key-trait impl (which are
//! also the serde bridge's bytes for the same container; sets are the one exception, see
//! [`btree_set`]), with `each` writing the elements.
//!
//! The `each` closures receive the hasher to write to: the caller's for sequences, tuples and
//! options, a headerless sub-hasher per entry for maps and sets (whose entries are hashed on
//! their own and sorted by digest).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Deref;

use crate::key::{IdempotencyKey, KeyHasher};

/// `None` (`0x12`), or `Some` (`0x13`) and the value written by `some`.
#[inline(always)]
pub fn option<T>(value: &Option<T>, out: &mut KeyHasher, some: impl FnOnce(&T, &mut KeyHasher)) {
    match value {
        None => out.write_none(),
        Some(v) => {
            out.write_some();
            some(v, out);
        }
    }
}

/// The newtype variant `"Ok"` or `"Err"`, then the value written by `ok` or `err` (as the
/// `Result` impl and serde write it).
#[inline(always)]
pub fn result<T, E>(
    value: &Result<T, E>,
    out: &mut KeyHasher,
    ok: impl FnOnce(&T, &mut KeyHasher),
    err: impl FnOnce(&E, &mut KeyHasher),
) {
    match value {
        Ok(v) => {
            out.variant("Ok");
            ok(v, out);
        }
        Err(e) => {
            out.variant("Err");
            err(e, out);
        }
    }
}

/// The sequence form: `0x14`, the elements, `0x15` + count.
#[inline(always)]
pub fn slice<T>(value: &[T], out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
    out.write_seq_with(value.iter(), each);
}

/// A `Vec` as a sequence ([`slice`]). Takes `&Vec` on purpose: generated code names the
/// element type (`vec::<T>`), and a user type named `Vec` must not coerce.
#[allow(clippy::ptr_arg)]
#[inline(always)]
pub fn vec<T>(value: &Vec<T>, out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
    slice(value, out, each);
}

/// A `VecDeque` as a sequence, front to back.
#[inline(always)]
pub fn vec_deque<T>(
    value: &VecDeque<T>,
    out: &mut KeyHasher,
    each: impl FnMut(&T, &mut KeyHasher),
) {
    out.write_seq_with(value.iter(), each);
}

/// An array `[T; N]` in the tuple form: `0x16` + N, the elements.
#[inline(always)]
pub fn array<T, const N: usize>(
    value: &[T; N],
    out: &mut KeyHasher,
    mut each: impl FnMut(&T, &mut KeyHasher),
) {
    out.begin_tuple(N as u64);
    for item in value {
        each(item, out);
    }
}

/// Starts a tuple of `arity` elements (`0x16` + arity); the caller writes the elements.
#[inline(always)]
pub fn begin_tuple(out: &mut KeyHasher, arity: u64) {
    out.begin_tuple(arity);
}

/// The target of a transparent pointer (`Box`, `Rc`, `Arc`, `&T`, `&mut T`), which is written
/// as its target.
#[inline(always)]
pub fn deref<P: Deref + ?Sized>(value: &P) -> &P::Target {
    value
}

/// The map form: `0x17`, the entry count, the sorted digests of the entries, each entry written
/// by `each` (key, then value) into its own sub-hasher.
#[inline]
pub fn btree_map<K, V>(
    value: &BTreeMap<K, V>,
    out: &mut KeyHasher,
    mut each: impl FnMut(&K, &V, &mut KeyHasher),
) {
    out.write_map_with(value.iter(), |(k, v), sub| each(k, v, sub));
}

/// A `HashMap` in the map form (see [`btree_map`]): independent of iteration order.
#[inline]
pub fn hash_map<K, V, S>(
    value: &HashMap<K, V, S>,
    out: &mut KeyHasher,
    mut each: impl FnMut(&K, &V, &mut KeyHasher),
) {
    out.write_map_with(value.iter(), |(k, v), sub| each(k, v, sub));
}

/// A `BTreeSet` to walk: call `.write(out, each)`.
///
/// Sets are where the key-trait impls and the serde bridge differ: natively a set is written in
/// the set form (sorted element digests), but serde has no set type and writes it as a
/// sequence in iteration order. So that walking changes no key other than those of derived
/// types reached through serde, the form follows what `dispatch` would have picked for the
/// whole set: the set form if the element type implements [`IdempotencyKey`] ([`SetForm`]),
/// else, for a `BTreeSet`, the sequence form in its sorted order ([`SeqForm`]). A `HashSet` of
/// such elements gets the set form too: serde's sequence would follow its iteration order,
/// which differs between two equal sets, so that key was never reproducible to keep.
#[inline(always)]
pub fn btree_set<T>(value: &BTreeSet<T>) -> SetForm<'_, BTreeSet<T>> {
    SetForm(SeqForm(value))
}

/// A `HashSet` to walk: call `.write(out, each)` (see [`btree_set`]).
#[inline(always)]
pub fn hash_set<T, S>(value: &HashSet<T, S>) -> SetForm<'_, HashSet<T, S>> {
    SetForm(SeqForm(value))
}

/// First choice for a set: the set form, if its element type implements [`IdempotencyKey`].
pub struct SetForm<'a, C>(SeqForm<'a, C>);

/// Second choice for a set: the sequence form, as the serde bridge writes a set.
pub struct SeqForm<'a, C>(&'a C);

impl<'a, C> Deref for SetForm<'a, C> {
    type Target = SeqForm<'a, C>;
    #[inline(always)]
    fn deref(&self) -> &SeqForm<'a, C> {
        &self.0
    }
}

impl<T: IdempotencyKey> SetForm<'_, BTreeSet<T>> {
    /// The set form: `0x18`, the count, the sorted digests of the elements written by `each`.
    #[inline]
    pub fn write(&self, out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
        out.write_set_with(self.0.0.iter(), each);
    }
}

impl<T: IdempotencyKey, S> SetForm<'_, HashSet<T, S>> {
    /// The set form: `0x18`, the count, the sorted digests of the elements written by `each`.
    #[inline]
    pub fn write(&self, out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
        out.write_set_with(self.0.0.iter(), each);
    }
}

impl<T> SeqForm<'_, BTreeSet<T>> {
    /// The sequence form, in the set's (sorted) order, as the serde bridge writes it.
    #[inline]
    pub fn write(&self, out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
        out.write_seq_with(self.0.iter(), each);
    }
}

impl<T, S> SeqForm<'_, HashSet<T, S>> {
    /// The set form, as for key-trait elements (see [`btree_set`]).
    #[inline]
    pub fn write(&self, out: &mut KeyHasher, each: impl FnMut(&T, &mut KeyHasher)) {
        out.write_set_with(self.0.iter(), each);
    }
}
