//! [`KeyHasher`]: the writer of the canonical encoding, and the [`IdempotencyKey`] trait.
//!
//! The byte layout written here is specified in the [module docs](crate::key); every writer
//! names the tag it writes.

use super::digest::{Fingerprint, Key};

/// Types that can be written as idempotency key material.
///
/// Implement it by writing the value through the [`KeyHasher`] primitives, following the
/// canonical encoding of the [module docs](crate::key). Usually you derive it
/// (`#[derive(IdempotencyKey)]`); types that only implement `serde::Serialize` are accepted
/// through the serde bridge ([`KeyHasher::write_serde`]) instead.
///
/// Implementations must be deterministic (no `std::hash::Hash`, no iteration order of unordered
/// containers, no addresses) and must keep their encoding stable: a change of the bytes changes
/// every key, which makes earlier calls unrecognisable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as idempotency key material",
    label = "not usable as idempotency key material",
    note = "derive `IdempotencyKey` for it, implement `serde::Serialize`, or mark the field/argument `#[idem(exclude)]`"
)]
pub trait IdempotencyKey {
    /// Writes `self` in the canonical encoding.
    fn write_key(&self, out: &mut KeyHasher);
}

/// Size of the stack buffer that batches small writes before they reach blake3.
const BUF: usize = 256;

/// Entry digests a map or set keeps on the stack before spilling to the heap.
const INLINE_DIGESTS: usize = 8;

/// Upper bound for trusting a length hint when pre-allocating digest storage.
const MAX_PREALLOC: usize = 1 << 16;

/// The one-byte type tags of the encoding, version 1.
pub(crate) mod tag {
    pub const U8: u8 = 0x01;
    pub const U16: u8 = 0x02;
    pub const U32: u8 = 0x03;
    pub const U64: u8 = 0x04;
    pub const U128: u8 = 0x05;
    pub const I8: u8 = 0x06;
    pub const I16: u8 = 0x07;
    pub const I32: u8 = 0x08;
    pub const I64: u8 = 0x09;
    pub const I128: u8 = 0x0A;
    pub const F32: u8 = 0x0B;
    pub const F64: u8 = 0x0C;
    pub const BOOL: u8 = 0x0D;
    pub const CHAR: u8 = 0x0E;
    pub const UNIT: u8 = 0x0F;
    pub const STR: u8 = 0x10;
    pub const BYTES: u8 = 0x11;
    pub const NONE: u8 = 0x12;
    pub const SOME: u8 = 0x13;
    pub const SEQ: u8 = 0x14;
    pub const END: u8 = 0x15;
    pub const TUPLE: u8 = 0x16;
    pub const MAP: u8 = 0x17;
    pub const SET: u8 = 0x18;
    pub const STRUCT: u8 = 0x19;
    pub const VARIANT: u8 = 0x1A;
}

/// Domain tag that starts every key.
pub(crate) const KEY_DOMAIN: &[u8] = b"idem\0key\0";
/// Domain tag that starts every fingerprint.
pub(crate) const FINGERPRINT_DOMAIN: &[u8] = b"idem\0fp\0";
/// Version of the encoding; part of both headers.
pub(crate) const ENCODING_VERSION: u8 = 0x01;
/// Scope marker: no scope.
pub(crate) const UNSCOPED: u8 = 0x00;
/// Scope marker: a scope value follows.
pub(crate) const SCOPED: u8 = 0x01;

/// What the hasher is for; only checked in debug builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `for_key` was called; `unscoped()` or `scoped()` must come next.
    NeedScope,
    /// A key whose scope marker is written.
    Key,
    /// A fingerprint.
    Fingerprint,
    /// A headerless sub-hasher (map entries, set elements).
    Bare,
}

/// Streams values in the canonical encoding into blake3 and produces a [`Key`] or a
/// [`Fingerprint`].
///
/// Small writes land in a stack buffer that is handed to blake3 when full, so hashing a
/// typical argument list is a handful of `memcpy`s plus one blake3 compression per 64 bytes, and
/// allocates nothing (maps and sets of more than 8 entries allocate one vector of 32-byte entry
/// digests).
///
/// A key is built as: [`KeyHasher::for_key`], then exactly one of [`KeyHasher::unscoped`] or
/// [`KeyHasher::scoped`] (followed by the scope value), then the material, then
/// [`KeyHasher::finish_key`]. A fingerprint: [`KeyHasher::for_fingerprint`], the payload,
/// [`KeyHasher::finish_fingerprint`].
pub struct KeyHasher {
    hasher: blake3::Hasher,
    buf: [u8; BUF],
    len: usize,
    error: Option<String>,
    stage: Stage,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHasher")
            .field("buffered", &self.len)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

macro_rules! fixed_writers {
    ($($(#[$doc:meta])* $name:ident($ty:ty) => $tag:expr;)*) => {$(
        $(#[$doc])*
        #[inline]
        pub fn $name(&mut self, v: $ty) {
            self.put_tagged($tag, v.to_le_bytes());
        }
    )*};
}

impl KeyHasher {
    #[inline]
    fn with_stage(stage: Stage) -> Self {
        KeyHasher {
            hasher: blake3::Hasher::new(),
            buf: [0; BUF],
            len: 0,
            error: None,
            stage,
        }
    }

    /// A hasher without header, for the digests of map entries and set elements.
    #[inline]
    pub(crate) fn bare() -> Self {
        Self::with_stage(Stage::Bare)
    }

    /// Starts a key: writes the key header (`"idem\0key\0"`, encoding version `0x01`, the
    /// operation name as a string, the operation version as a `u32`).
    ///
    /// Exactly one of [`unscoped`](Self::unscoped) or [`scoped`](Self::scoped) must be called
    /// next, before any material (checked in debug builds).
    #[inline]
    pub fn for_key(operation: &str, version: u32) -> Self {
        let mut h = Self::with_stage(Stage::NeedScope);
        h.put(KEY_DOMAIN);
        h.put(&[ENCODING_VERSION]);
        h.write_str(operation);
        h.write_u32(version);
        h
    }

    /// Starts a fingerprint: writes the fingerprint header (`"idem\0fp\0"`, encoding version
    /// `0x01`, the operation name as a string, the operation version as a `u32`). Fingerprints
    /// have no scope marker: the payload follows directly.
    #[inline]
    pub fn for_fingerprint(operation: &str, version: u32) -> Self {
        let mut h = Self::with_stage(Stage::Fingerprint);
        h.put(FINGERPRINT_DOMAIN);
        h.put(&[ENCODING_VERSION]);
        h.write_str(operation);
        h.write_u32(version);
        h
    }

    /// Writes the scope marker `0x00`: this key has no scope; the material follows.
    #[inline]
    pub fn unscoped(&mut self) {
        self.scope_marker(UNSCOPED);
    }

    /// Writes the scope marker `0x01`: the scope value's encoding follows, then the material.
    #[inline]
    pub fn scoped(&mut self) {
        self.scope_marker(SCOPED);
    }

    #[inline]
    fn scope_marker(&mut self, marker: u8) {
        debug_assert_eq!(
            self.stage,
            Stage::NeedScope,
            "KeyHasher: exactly one scope marker (unscoped()/scoped()) right after for_key()"
        );
        self.stage = Stage::Key;
        self.put(&[marker]);
    }

    /// Ends a key. Fails with [`Error::KeyMaterial`](crate::Error::KeyMaterial) if a
    /// `Serialize` impl written through [`write_serde`](Self::write_serde) returned an error.
    #[inline]
    pub fn finish_key(mut self) -> Result<Key, crate::Error> {
        debug_assert_eq!(
            self.stage,
            Stage::Key,
            "KeyHasher::finish_key: start with for_key() followed by unscoped() or scoped()"
        );
        self.finish_raw().map(Key::from_bytes)
    }

    /// Ends a fingerprint. Fails like [`finish_key`](Self::finish_key).
    #[inline]
    pub fn finish_fingerprint(mut self) -> Result<Fingerprint, crate::Error> {
        debug_assert_eq!(
            self.stage,
            Stage::Fingerprint,
            "KeyHasher::finish_fingerprint: start with for_fingerprint()"
        );
        self.finish_raw().map(Fingerprint::from_bytes)
    }

    #[inline]
    fn finish_raw(&mut self) -> Result<[u8; 32], crate::Error> {
        if let Some(reason) = self.error.take() {
            return Err(crate::Error::KeyMaterial { reason });
        }
        self.flush();
        Ok(*self.hasher.finalize().as_bytes())
    }

    /// Digest of what was written since the last call (sub-hashers only), then resets the
    /// hasher for the next entry. An error recorded meanwhile moves to `errors`.
    #[inline]
    pub(crate) fn take_digest(&mut self, errors: &mut Option<String>) -> [u8; 32] {
        if let Some(e) = self.error.take() {
            errors.get_or_insert(e);
        }
        self.flush();
        let digest = *self.hasher.finalize().as_bytes();
        self.hasher.reset();
        digest
    }

    /// Records an error of the key material; the first one wins and `finish_*` returns it.
    #[cold]
    pub(crate) fn record_error(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    // ---- raw output ---------------------------------------------------------------------

    #[inline]
    fn flush(&mut self) {
        if self.len > 0 {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Appends raw bytes to the stream.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let len = self.len;
        if bytes.len() <= BUF - len {
            self.buf[len..len + bytes.len()].copy_from_slice(bytes);
            self.len = len + bytes.len();
        } else {
            self.put_large(bytes);
        }
    }

    #[inline(never)]
    fn put_large(&mut self, bytes: &[u8]) {
        self.flush();
        if bytes.len() < BUF {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            self.hasher.update(bytes);
        }
    }

    /// Appends a tag and a fixed-width payload in one copy.
    #[inline]
    fn put_tagged<const N: usize>(&mut self, tag: u8, payload: [u8; N]) {
        let len = self.len;
        if N < BUF - len {
            self.buf[len] = tag;
            self.buf[len + 1..len + 1 + N].copy_from_slice(&payload);
            self.len = len + 1 + N;
        } else {
            self.put(&[tag]);
            self.put(&payload);
        }
    }

    /// Tag + u64 LE length or count.
    #[inline]
    fn put_len(&mut self, tag: u8, n: u64) {
        self.put_tagged(tag, n.to_le_bytes());
    }

    // ---- primitives -----------------------------------------------------------------------

    fixed_writers! {
        /// `0x01` + 1 byte.
        write_u8(u8) => tag::U8;
        /// `0x02` + 2 bytes LE.
        write_u16(u16) => tag::U16;
        /// `0x03` + 4 bytes LE.
        write_u32(u32) => tag::U32;
        /// `0x04` + 8 bytes LE.
        write_u64(u64) => tag::U64;
        /// `0x05` + 16 bytes LE.
        write_u128(u128) => tag::U128;
        /// `0x06` + 1 byte.
        write_i8(i8) => tag::I8;
        /// `0x07` + 2 bytes LE.
        write_i16(i16) => tag::I16;
        /// `0x08` + 4 bytes LE.
        write_i32(i32) => tag::I32;
        /// `0x09` + 8 bytes LE.
        write_i64(i64) => tag::I64;
        /// `0x0A` + 16 bytes LE.
        write_i128(i128) => tag::I128;
    }

    /// Written exactly like a `u64` (tag `0x04`), on every platform.
    #[inline]
    pub fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    /// Written exactly like an `i64` (tag `0x09`), on every platform.
    #[inline]
    pub fn write_isize(&mut self, v: isize) {
        self.write_i64(v as i64);
    }

    /// `0x0B` + IEEE bits LE; `-0.0` is written as `0.0`, every NaN as `0x7fc00000`.
    #[inline]
    pub fn write_f32(&mut self, v: f32) {
        let bits = if v.is_nan() {
            0x7fc0_0000
        } else if v == 0.0 {
            0
        } else {
            v.to_bits()
        };
        self.put_tagged(tag::F32, bits.to_le_bytes());
    }

    /// `0x0C` + IEEE bits LE; `-0.0` is written as `0.0`, every NaN as `0x7ff8000000000000`.
    #[inline]
    pub fn write_f64(&mut self, v: f64) {
        let bits = if v.is_nan() {
            0x7ff8_0000_0000_0000
        } else if v == 0.0 {
            0
        } else {
            v.to_bits()
        };
        self.put_tagged(tag::F64, bits.to_le_bytes());
    }

    /// `0x0D` + `0x00` or `0x01`.
    #[inline]
    pub fn write_bool(&mut self, v: bool) {
        self.put_tagged(tag::BOOL, [v as u8]);
    }

    /// `0x0E` + the scalar value as u32 LE.
    #[inline]
    pub fn write_char(&mut self, v: char) {
        self.put_tagged(tag::CHAR, u32::from(v).to_le_bytes());
    }

    /// `0x0F`.
    #[inline]
    pub fn write_unit(&mut self) {
        self.put(&[tag::UNIT]);
    }

    /// `0x10` + u64 LE byte length + the UTF-8 bytes.
    #[inline]
    pub fn write_str(&mut self, v: &str) {
        self.put_len(tag::STR, v.len() as u64);
        self.put(v.as_bytes());
    }

    /// `0x11` + u64 LE length + the bytes.
    #[inline]
    pub fn write_bytes(&mut self, v: &[u8]) {
        self.put_len(tag::BYTES, v.len() as u64);
        self.put(v);
    }

    /// `0x12`: `Option::None`.
    #[inline]
    pub fn write_none(&mut self) {
        self.put(&[tag::NONE]);
    }

    /// `0x13`: `Option::Some`; the value must follow.
    #[inline]
    pub fn write_some(&mut self) {
        self.put(&[tag::SOME]);
    }

    // ---- compound forms -------------------------------------------------------------------

    /// `0x14`: starts a sequence. Write the elements, then [`end_seq`](Self::end_seq) with
    /// their number.
    #[inline]
    pub fn begin_seq(&mut self) {
        self.put(&[tag::SEQ]);
    }

    /// `0x15` + u64 LE element count: ends a sequence.
    #[inline]
    pub fn end_seq(&mut self, count: u64) {
        self.put_len(tag::END, count);
    }

    /// `0x16` + u64 LE arity: starts a tuple (or array). Exactly `arity` values must follow;
    /// there is no end marker.
    #[inline]
    pub fn begin_tuple(&mut self, arity: u64) {
        self.put_len(tag::TUPLE, arity);
    }

    /// `0x19`: starts a struct. Write each field as [`field`](Self::field) + value, then
    /// [`end_struct`](Self::end_struct) with the number of fields written.
    #[inline]
    pub fn begin_struct(&mut self) {
        self.put(&[tag::STRUCT]);
    }

    /// A field name (written as a string, `0x10` + length + bytes); the field's value must
    /// follow.
    #[inline]
    pub fn field(&mut self, name: &str) {
        self.write_str(name);
    }

    /// `0x15` + u64 LE field count: ends a struct.
    #[inline]
    pub fn end_struct(&mut self, count: u64) {
        self.put_len(tag::END, count);
    }

    /// `0x1A` + the variant name as a string. Exactly one value must follow: unit
    /// ([`write_unit`](Self::write_unit)) for a unit variant, the value for a newtype variant,
    /// the tuple form for a tuple variant, the struct form for a struct variant.
    #[inline]
    pub fn variant(&mut self, name: &str) {
        self.put(&[tag::VARIANT]);
        self.write_str(name);
    }

    /// `0x17` + u64 LE entry count + the entries' 32-byte digests in ascending order, where an
    /// entry's digest is `blake3(enc(key) ‖ enc(value))`. Independent of iteration order.
    ///
    /// Allocates one vector of digests for more than 8 entries, nothing otherwise.
    pub fn write_map<'a, K, V, I>(&mut self, entries: I)
    where
        I: IntoIterator<Item = (&'a K, &'a V)>,
        K: IdempotencyKey + ?Sized + 'a,
        V: IdempotencyKey + ?Sized + 'a,
    {
        let entries = entries.into_iter();
        let mut digests = DigestList::with_hint(entries.size_hint().0);
        let mut sub = KeyHasher::bare();
        for (k, v) in entries {
            k.write_key(&mut sub);
            v.write_key(&mut sub);
            digests.push(sub.take_digest(&mut self.error));
        }
        self.write_digests(tag::MAP, &mut digests);
    }

    /// `0x18` + u64 LE element count + the elements' 32-byte digests in ascending order, where
    /// an element's digest is `blake3(enc(element))`. Independent of iteration order.
    ///
    /// Allocates one vector of digests for more than 8 elements, nothing otherwise.
    pub fn write_set<'a, T, I>(&mut self, items: I)
    where
        I: IntoIterator<Item = &'a T>,
        T: IdempotencyKey + ?Sized + 'a,
    {
        let items = items.into_iter();
        let mut digests = DigestList::with_hint(items.size_hint().0);
        let mut sub = KeyHasher::bare();
        for item in items {
            item.write_key(&mut sub);
            digests.push(sub.take_digest(&mut self.error));
        }
        self.write_digests(tag::SET, &mut digests);
    }

    /// Writes the sorted digest list of a map or set.
    pub(crate) fn write_digests(&mut self, tag: u8, digests: &mut DigestList) {
        let digests = digests.as_mut_slice();
        digests.sort_unstable();
        self.put_len(tag, digests.len() as u64);
        self.put(digests.as_flattened());
    }

    /// Writes a `serde::Serialize` value through the serde bridge (same bytes as the native
    /// impls for the same value; see the [module docs](crate::key) for the mapping and its
    /// limits). If the `Serialize` impl fails, the first error is recorded and `finish_*`
    /// returns [`Error::KeyMaterial`](crate::Error::KeyMaterial).
    #[inline]
    pub fn write_serde<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        if let Err(e) = value.serialize(super::serde_bridge::Bridge(self)) {
            self.record_error(e.into_reason());
        }
    }

    /// Writes a value through its [`IdempotencyKey`] impl (`value.write_key(self)`).
    #[inline]
    pub fn write<T: IdempotencyKey + ?Sized>(&mut self, value: &T) {
        value.write_key(self);
    }
}

/// Entry digests of a map or set: on the stack up to [`INLINE_DIGESTS`], then on the heap.
pub(crate) struct DigestList {
    inline: [[u8; 32]; INLINE_DIGESTS],
    len: usize,
    heap: Vec<[u8; 32]>,
}

impl DigestList {
    /// Storage for about `hint` digests (allocates at once if they cannot fit on the stack).
    #[inline]
    pub(crate) fn with_hint(hint: usize) -> Self {
        DigestList {
            inline: [[0; 32]; INLINE_DIGESTS],
            len: 0,
            heap: if hint > INLINE_DIGESTS {
                Vec::with_capacity(hint.min(MAX_PREALLOC))
            } else {
                Vec::new()
            },
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, digest: [u8; 32]) {
        if self.heap.capacity() == 0 && self.len < INLINE_DIGESTS {
            self.inline[self.len] = digest;
            self.len += 1;
        } else {
            if self.len > 0 {
                // Spill: move the inline digests first.
                self.heap.reserve(self.len * 2);
                self.heap.extend_from_slice(&self.inline[..self.len]);
                self.len = 0;
            }
            self.heap.push(digest);
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [[u8; 32]] {
        if self.heap.is_empty() {
            &mut self.inline[..self.len]
        } else {
            &mut self.heap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare_bytes(f: impl FnOnce(&mut KeyHasher)) -> [u8; 32] {
        let mut h = KeyHasher::bare();
        f(&mut h);
        let mut errs = None;
        let d = h.take_digest(&mut errs);
        assert!(errs.is_none());
        d
    }

    #[test]
    fn key_buffer_boundaries_match_one_shot_hash() {
        // Writes of every size around the buffer boundary hash like the concatenated stream.
        for n in [0usize, 1, 7, 200, 246, 247, 248, 255, 256, 257, 511, 512, 1000, 5000] {
            let s = "x".repeat(n);
            let mut expected = vec![tag::U8, 7, tag::STR];
            expected.extend_from_slice(&(n as u64).to_le_bytes());
            expected.extend_from_slice(s.as_bytes());
            expected.extend_from_slice(&[tag::U64]);
            expected.extend_from_slice(&9u64.to_le_bytes());
            let got = bare_bytes(|h| {
                h.write_u8(7);
                h.write_str(&s);
                h.write_u64(9);
            });
            assert_eq!(got, *blake3::hash(&expected).as_bytes(), "n = {n}");
        }
    }

    #[test]
    fn digest_list_spills_in_order() {
        for n in [0usize, 1, 8, 9, 30] {
            for hint in [0usize, n] {
                let mut list = DigestList::with_hint(hint);
                for i in 0..n {
                    list.push([i as u8; 32]);
                }
                let got: Vec<u8> = list.as_mut_slice().iter().map(|d| d[0]).collect();
                assert_eq!(got, (0..n as u8).collect::<Vec<_>>(), "n = {n}, hint = {hint}");
            }
        }
    }

    #[test]
    fn fingerprint_and_key_headers_differ() {
        let mut k = KeyHasher::for_key("op", 1);
        k.unscoped();
        let k = k.finish_key().unwrap();
        let f = KeyHasher::for_fingerprint("op", 1).finish_fingerprint().unwrap();
        assert_ne!(k.as_bytes(), f.as_bytes());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "scope marker")]
    fn scope_marker_is_required_once() {
        let mut k = KeyHasher::for_key("op", 1);
        k.unscoped();
        k.scoped();
    }
}
