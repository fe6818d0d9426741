//! [`KeyHasher`]: the writer of the canonical encoding, and the [`IdempotencyKey`] trait.
//!
//! The byte layout written here is specified in the [module docs](crate::key); every writer
//! names the tag it writes.
//!
//! The `inline(always)` here applies to optimised builds only: in a debug build it would inline
//! the hasher's set-up and finish into every derived impl and annotated fn (compile time for
//! nothing at `opt-level = 0`).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use super::digest::{Fingerprint, Key};
use super::one_chunk;

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
    note = "derive `IdempotencyKey` for it, or mark the field/argument `#[idem(exclude)]`; a type that implements `serde::Serialize` \
            is taken as it is by `#[derive(IdempotencyKey)]` fields and `#[idempotent]` parameters, and elsewhere \
            (`Operation::key`, `KeyHasher::write`) as `idem_runtime::key::AsSerde(&value)`",
    note = "if it already implements `serde::Serialize` and is the type argument of a type deriving `IdempotencyKey` \
            (`Wrap<Uuid>`), declare `T: serde::Serialize` on that type's parameter: an undeclared `T` is bound by `IdempotencyKey`"
)]
pub trait IdempotencyKey {
    /// Writes `self` in the canonical encoding.
    fn write_key(&self, out: &mut KeyHasher);
}

/// Size of the buffer that holds the stream until it outgrows it. A stream that fits (the usual
/// case: a scope marker plus a few fields) is hashed in one blake3 call at the end.
const BUF: usize = 512;
// A buffered stream is hashed as one chunk.
const _: () = assert!(BUF <= one_chunk::CHUNK_LEN);

/// Streaming hashers kept per thread for streams that outgrow the buffer.
const SPARE_HASHERS: usize = 4;

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
    pub const FIXED_STRUCT: u8 = 0x1B;
}

/// blake3 `derive_key` context of the keys' hash keys: separates keys from fingerprints and
/// from every other use of blake3, and names the encoding version.
pub(crate) const KEY_CONTEXT: &str = "idem key encoding v1";
/// blake3 `derive_key` context of the fingerprints' hash keys.
pub(crate) const FINGERPRINT_CONTEXT: &str = "idem fingerprint encoding v1";
/// Scope marker: no scope.
pub(crate) const UNSCOPED: u8 = 0x00;
/// Scope marker: a scope value follows.
pub(crate) const SCOPED: u8 = 0x01;

/// Writes `n` as unsigned LEB128 (7 bits per byte, least significant first, high bit set on
/// every byte but the last; minimal length) and returns the number of bytes written (1..=10).
#[inline]
pub(crate) fn leb128(mut n: u64, out: &mut [u8]) -> usize {
    let mut i = 0;
    while n >= 0x80 {
        out[i] = (n as u8) | 0x80;
        n >>= 7;
        i += 1;
    }
    out[i] = n as u8;
    i + 1
}

/// `derive_key(context, str(name) ‖ u32(version))`: an operation's hash key (the name and
/// version written as the *str* and *u32* values of the encoding).
fn derive_operation_key(context: &str, operation: &str, version: u32) -> [u8; 32] {
    let mut framing = [0u8; 11];
    framing[0] = tag::STR;
    let n = leb128(operation.len() as u64, &mut framing[1..]);
    let mut hasher = blake3::Hasher::new_derive_key(context);
    hasher.update(&framing[..=n]);
    hasher.update(operation.as_bytes());
    hasher.update(&[tag::U32]);
    hasher.update(&version.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// `buf[..len]`, whose bytes the hasher initialised.
#[inline]
fn filled(buf: &[MaybeUninit<u8>; BUF], len: usize) -> &[u8] {
    // SAFETY: every write advances the hasher's `len` only over bytes it initialised, and
    // `len <= BUF`.
    unsafe { buf[..len].assume_init_ref() }
}

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
/// Writes land in an inline buffer; a stream that fits in it (512 bytes: a scope marker and a
/// typical argument list) is hashed with a single call of our one-chunk BLAKE3 when finished. A longer
/// stream continues in a streaming `blake3::Hasher` taken from a small per-thread pool (so it is
/// allocated once per thread, not per key). Apart from that, hashing allocates nothing except
/// for maps and sets of more than 8 entries, which allocate one vector of 32-byte entry digests.
///
/// The struct is kept small on purpose (about 600 bytes): it is moved when created and when
/// finished, and a `blake3::Hasher` inside it would triple the cost of a typical key.
///
/// A key is built as: [`KeyHasher::for_key`], then exactly one of [`KeyHasher::unscoped`] or
/// [`KeyHasher::scoped`] (followed by the scope value), then the material, then
/// [`KeyHasher::finish_key`]. A fingerprint: [`KeyHasher::for_fingerprint`], the payload,
/// [`KeyHasher::finish_fingerprint`].
// `repr(C)` with the buffer last: otherwise LLVM may merge the small fields' zero stores with
// the uninitialised buffer into one 512-byte memset, which costs more than a typical key.
#[repr(C)]
pub struct KeyHasher {
    /// The streaming hasher, once the stream outgrew `buf`; `buf` then holds its unsent tail.
    tree: Option<Box<blake3::Hasher>>,
    len: usize,
    error: Option<String>,
    stage: Stage,
    /// The blake3 hash key of a key or fingerprint (derived from the operation); unused by
    /// bare sub-hashers, which hash without a key.
    hash_key: [u8; 32],
    /// The stream's unsent bytes: `buf[..len]` is initialised, the rest is not.
    buf: [MaybeUninit<u8>; BUF],
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
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn with_stage(stage: Stage, hash_key: [u8; 32]) -> Self {
        KeyHasher {
            buf: [MaybeUninit::uninit(); BUF],
            tree: None,
            len: 0,
            error: None,
            stage,
            hash_key,
        }
    }

    /// A hasher without header, for the digests of map entries and set elements.
    #[inline]
    pub(crate) fn bare() -> Self {
        Self::with_stage(Stage::Bare, [0; 32])
    }

    /// The blake3 hash key of `operation`'s keys: `derive_key("idem key encoding v1", name ‖
    /// version)` (see the [module docs](crate::key)). [`Operation`](crate::Operation) computes
    /// it once and keeps it.
    pub fn operation_key(operation: &str, version: u32) -> [u8; 32] {
        derive_operation_key(KEY_CONTEXT, operation, version)
    }

    /// The blake3 hash key of `operation`'s fingerprints (context
    /// `"idem fingerprint encoding v1"`).
    pub fn operation_fingerprint_key(operation: &str, version: u32) -> [u8; 32] {
        derive_operation_key(FINGERPRINT_CONTEXT, operation, version)
    }

    /// Starts a key of `operation` at `version`: the digest will be blake3 keyed by
    /// [`operation_key`](Self::operation_key), which derives it (two small hashes; prefer
    /// [`Operation::key`](crate::Operation::key), which derives it once per operation).
    ///
    /// Exactly one of [`unscoped`](Self::unscoped) or [`scoped`](Self::scoped) must be called
    /// next, before any material (checked in debug builds).
    #[inline]
    pub fn for_key(operation: &str, version: u32) -> Self {
        Self::with_key_hash_key(Self::operation_key(operation, version))
    }

    /// Starts a fingerprint of `operation` at `version` (keyed by
    /// [`operation_fingerprint_key`](Self::operation_fingerprint_key)). Fingerprints have no
    /// scope marker: the payload follows directly.
    #[inline]
    pub fn for_fingerprint(operation: &str, version: u32) -> Self {
        Self::with_fingerprint_hash_key(Self::operation_fingerprint_key(operation, version))
    }

    /// Starts a key whose hash key ([`operation_key`](Self::operation_key)) is already known.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn with_key_hash_key(hash_key: [u8; 32]) -> Self {
        Self::with_stage(Stage::NeedScope, hash_key)
    }

    /// Starts a fingerprint whose hash key
    /// ([`operation_fingerprint_key`](Self::operation_fingerprint_key)) is already known.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn with_fingerprint_hash_key(hash_key: [u8; 32]) -> Self {
        Self::with_stage(Stage::Fingerprint, hash_key)
    }

    /// The key hashed with `hash_key` whose scope marker and material `write` writes: what
    /// `with_key_hash_key` + `write` + `finish_key` give, with the hasher never moved (a move
    /// copies its 600 bytes, a good part of the cost of hashing a small key).
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn key_in_place(
        hash_key: [u8; 32],
        write: impl FnOnce(&mut KeyHasher),
    ) -> Result<Key, crate::Error> {
        let mut h = Self::with_stage(Stage::NeedScope, hash_key);
        write(&mut h);
        h.finish_key_in_place()
    }

    /// [`finish_key`](Self::finish_key) through a reference, for generated code that must not
    /// move the hasher. The hasher is spent: use it for nothing else afterwards.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn finish_key_in_place(&mut self) -> Result<Key, crate::Error> {
        debug_assert_eq!(
            self.stage,
            Stage::Key,
            "KeyHasher::finish_key: start with for_key() followed by unscoped() or scoped()"
        );
        self.finish_raw().map(Key::from_bytes)
    }

    /// [`finish_fingerprint`](Self::finish_fingerprint) through a reference.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn finish_fingerprint_in_place(&mut self) -> Result<Fingerprint, crate::Error> {
        debug_assert_eq!(
            self.stage,
            Stage::Fingerprint,
            "KeyHasher::finish_fingerprint: start with for_fingerprint()"
        );
        self.finish_raw().map(Fingerprint::from_bytes)
    }

    /// The fingerprint counterpart of [`key_in_place`](Self::key_in_place).
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn fingerprint_in_place(
        hash_key: [u8; 32],
        write: impl FnOnce(&mut KeyHasher),
    ) -> Result<Fingerprint, crate::Error> {
        let mut h = Self::with_stage(Stage::Fingerprint, hash_key);
        write(&mut h);
        h.finish_fingerprint_in_place()
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
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn finish_key(mut self) -> Result<Key, crate::Error> {
        self.finish_key_in_place()
    }

    /// Ends a fingerprint. Fails like [`finish_key`](Self::finish_key).
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn finish_fingerprint(mut self) -> Result<Fingerprint, crate::Error> {
        self.finish_fingerprint_in_place()
    }

    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn finish_raw(&mut self) -> Result<[u8; 32], crate::Error> {
        if let Some(reason) = self.error.take() {
            return Err(crate::Error::KeyMaterial { reason });
        }
        Ok(self.digest())
    }

    /// The digest of the stream so far (all of it must be written already).
    #[inline]
    fn digest(&mut self) -> [u8; 32] {
        match &mut self.tree {
            None if self.stage == Stage::Bare => one_chunk::plain_hash(self.filled()),
            None => one_chunk::keyed_hash(&self.hash_key, self.filled()),
            Some(tree) => {
                tree.update(filled(&self.buf, self.len));
                self.len = 0;
                *tree.finalize().as_bytes()
            }
        }
    }

    /// Digest of what was written since the last call (sub-hashers only), then resets the
    /// hasher for the next entry. An error recorded meanwhile moves to `errors`.
    #[inline]
    pub(crate) fn take_digest(&mut self, errors: &mut Option<String>) -> [u8; 32] {
        if let Some(e) = self.error.take() {
            errors.get_or_insert(e);
        }
        let digest = self.digest();
        self.len = 0;
        if let Some(tree) = &mut self.tree {
            tree.reset();
        }
        digest
    }

    /// Records an error of the key material; the first one wins and `finish_*` returns it.
    #[cold]
    pub(crate) fn record_error(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    // ---- raw output ---------------------------------------------------------------------

    /// The buffered, not yet hashed part of the stream.
    #[inline]
    fn filled(&self) -> &[u8] {
        filled(&self.buf, self.len)
    }

    /// Appends raw bytes to the stream.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let len = self.len;
        if bytes.len() <= BUF - len {
            self.buf[len..len + bytes.len()].write_copy_of_slice(bytes);
            self.len = len + bytes.len();
        } else {
            self.put_large(bytes);
        }
    }

    /// The stream outgrows the buffer: hand the buffer to the streaming hasher.
    #[inline(never)]
    fn put_large(&mut self, bytes: &[u8]) {
        let (stage, hash_key) = (self.stage, self.hash_key);
        let tree = self.tree.get_or_insert_with(|| {
            let mut tree = spare_hasher();
            if stage != Stage::Bare {
                *tree = blake3::Hasher::new_keyed(&hash_key);
            }
            tree
        });
        tree.update(filled(&self.buf, self.len));
        if bytes.len() < BUF {
            self.buf[..bytes.len()].write_copy_of_slice(bytes);
            self.len = bytes.len();
        } else {
            tree.update(bytes);
            self.len = 0;
        }
    }

    /// Appends a tag and a fixed-width payload in one copy.
    #[inline]
    fn put_tagged<const N: usize>(&mut self, tag: u8, payload: [u8; N]) {
        let len = self.len;
        if N < BUF - len {
            self.buf[len] = MaybeUninit::new(tag);
            self.buf[len + 1..len + 1 + N].write_copy_of_slice(&payload);
            self.len = len + 1 + N;
        } else {
            self.put(&[tag]);
            self.put(&payload);
        }
    }

    /// Tag + a length or count as unsigned LEB128 (minimal form).
    #[inline]
    pub(crate) fn put_len(&mut self, tag: u8, n: u64) {
        if n < 0x80 {
            self.put_tagged(tag, [n as u8]);
        } else {
            self.put_len_long(tag, n);
        }
    }

    #[inline(never)]
    fn put_len_long(&mut self, tag: u8, n: u64) {
        let mut out = [0u8; 11];
        out[0] = tag;
        let len = leb128(n, &mut out[1..]);
        self.put(&out[..=len]);
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

    /// `0x10` + LEB128 byte length + the UTF-8 bytes.
    // Always inlined in optimised builds: the most common key material, and left to itself
    // LLVM sometimes calls it out of line from a derived `write_key` (+2 % per replay).
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn write_str(&mut self, v: &str) {
        self.put_len(tag::STR, v.len() as u64);
        self.put(v.as_bytes());
    }

    /// `0x11` + LEB128 length + the bytes.
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

    /// `0x15` + LEB128 element count: ends a sequence.
    #[inline]
    pub fn end_seq(&mut self, count: u64) {
        self.put_len(tag::END, count);
    }

    /// `0x16` + LEB128 arity: starts a tuple (or array). Exactly `arity` values must follow;
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

    /// `0x15` + LEB128 field count: ends a struct.
    #[inline]
    pub fn end_struct(&mut self, count: u64) {
        self.put_len(tag::END, count);
    }

    /// `0x1B` + LEB128 field count: starts a struct whose set of fields is fixed at compile
    /// time, which is what `#[derive(IdempotencyKey)]` writes. Exactly `count` values follow,
    /// in the bytewise order of the fields' names (or `#[idem(rename)]` names), without the
    /// names: the position of a value already says which field it is, so names would only
    /// lengthen the stream (for a 4-field struct, from one blake3 block to two).
    ///
    /// Only for fields that are always written: a struct that may leave fields out at run
    /// time (as serde's `skip_serializing_if` does) must use the named form
    /// ([`begin_struct`](Self::begin_struct)), or two values could share an encoding.
    #[inline]
    pub fn begin_fixed_struct(&mut self, count: u64) {
        self.put_len(tag::FIXED_STRUCT, count);
    }

    /// `0x1A` + the variant name as a string. Exactly one value must follow: unit
    /// ([`write_unit`](Self::write_unit)) for a unit variant, the value for a newtype variant,
    /// the tuple form for a tuple variant, the struct form for a struct variant.
    #[inline]
    pub fn variant(&mut self, name: &str) {
        self.put(&[tag::VARIANT]);
        self.write_str(name);
    }

    /// `0x17` + LEB128 entry count + the entries' 32-byte digests in ascending order, where an
    /// entry's digest is `blake3(enc(key) ‖ enc(value))`. Independent of iteration order.
    ///
    /// Allocates one vector of digests for more than 8 entries, nothing otherwise.
    pub fn write_map<'a, K, V, I>(&mut self, entries: I)
    where
        I: IntoIterator<Item = (&'a K, &'a V)>,
        K: IdempotencyKey + ?Sized + 'a,
        V: IdempotencyKey + ?Sized + 'a,
    {
        self.write_map_with(entries.into_iter(), |(k, v), sub| {
            k.write_key(sub);
            v.write_key(sub);
        });
    }

    /// `0x18` + LEB128 element count + the elements' 32-byte digests in ascending order, where
    /// an element's digest is `blake3(enc(element))`. Independent of iteration order.
    ///
    /// Allocates one vector of digests for more than 8 elements, nothing otherwise.
    pub fn write_set<'a, T, I>(&mut self, items: I)
    where
        I: IntoIterator<Item = &'a T>,
        T: IdempotencyKey + ?Sized + 'a,
    {
        self.write_set_with(items.into_iter(), |item, sub| item.write_key(sub));
    }

    /// The map form of [`write_map`](Self::write_map), with each entry written by `write` into
    /// a headerless sub-hasher (the key's encoding, then the value's): the same bytes when
    /// `write` writes what the key and value impls write. For the structural walk of
    /// `#[derive(IdempotencyKey)]`, which writes each entry's parts by their own impls.
    #[inline]
    pub(crate) fn write_map_with<E>(
        &mut self,
        entries: impl Iterator<Item = E>,
        write: impl FnMut(E, &mut KeyHasher),
    ) {
        self.write_digested(tag::MAP, entries, write);
    }

    /// The sequence form of `items` (`0x14`, each item written by `write`, `0x15` + count): the
    /// one writer of slices, `VecDeque`s and the sets that serde shows as sequences.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub(crate) fn write_seq_with<E>(
        &mut self,
        items: impl ExactSizeIterator<Item = E>,
        mut write: impl FnMut(E, &mut KeyHasher),
    ) {
        let count = items.len() as u64;
        self.begin_seq();
        for item in items {
            write(item, self);
        }
        self.end_seq(count);
    }

    /// The set form of [`write_set`](Self::write_set), with each element written by `write`
    /// (see [`write_map_with`](Self::write_map_with)).
    #[inline]
    pub(crate) fn write_set_with<E>(
        &mut self,
        items: impl Iterator<Item = E>,
        write: impl FnMut(E, &mut KeyHasher),
    ) {
        self.write_digested(tag::SET, items, write);
    }

    /// Hashes each item on its own with `write` into a bare sub-hasher, then writes `tag`, the
    /// count and the sorted digests. An error recorded by a sub-hasher moves to `self`.
    fn write_digested<E>(
        &mut self,
        tag: u8,
        items: impl Iterator<Item = E>,
        mut write: impl FnMut(E, &mut KeyHasher),
    ) {
        let mut digests = DigestList::with_hint(items.size_hint().0);
        let mut sub = KeyHasher::bare();
        for item in items {
            write(item, &mut sub);
            digests.push(sub.take_digest(&mut self.error));
        }
        self.write_digests(tag, &mut digests);
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
        super::time_guard::begin();
        let written = value.serialize(super::serde_bridge::Bridge(self));
        super::time_guard::written::<T>();
        if let Err(e) = written {
            self.record_error(e.into_reason());
        }
    }

    /// Writes a value through its [`IdempotencyKey`] impl (`value.write_key(self)`).
    #[inline]
    pub fn write<T: IdempotencyKey + ?Sized>(&mut self, value: &T) {
        value.write_key(self);
    }
}

impl Drop for KeyHasher {
    fn drop(&mut self) {
        if let Some(tree) = self.tree.take() {
            return_hasher(tree);
        }
    }
}

thread_local! {
    /// Reset streaming hashers, reused by [`KeyHasher`]s whose stream outgrows their buffer.
    static SPARES: RefCell<[Option<Box<blake3::Hasher>>; SPARE_HASHERS]> =
        const { RefCell::new([const { None }; SPARE_HASHERS]) };
}

/// A reset streaming hasher: a spare one of this thread, or a new one.
#[cold]
fn spare_hasher() -> Box<blake3::Hasher> {
    SPARES
        .try_with(|spares| {
            let mut spares = spares.try_borrow_mut().ok()?;
            spares.iter_mut().find_map(Option::take)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Box::new(blake3::Hasher::new()))
}

/// Keeps a streaming hasher for reuse on this thread (or frees it if enough are kept).
#[cold]
fn return_hasher(mut tree: Box<blake3::Hasher>) {
    // A keyed hasher must not come back as a plain one: start over unkeyed.
    *tree = blake3::Hasher::new();
    let _ = SPARES.try_with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut()
            && let Some(slot) = spares.iter_mut().find(|slot| slot.is_none())
        {
            *slot = Some(tree);
        }
    });
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
        let mut sizes = vec![0usize, 1, 7, 200, 1000, 1023, 1024, 1025, 5000, 100_000];
        sizes.extend(BUF - 20..BUF + 20);
        for n in sizes {
            let s = "x".repeat(n);
            let mut expected = vec![tag::U8, 7, tag::STR];
            let mut len = [0u8; 10];
            let k = leb128(n as u64, &mut len);
            expected.extend_from_slice(&len[..k]);
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
    fn key_module_docs_example() {
        let hash_key_material: &[u8] = &[
            0x10, 0x02, 0x6f, 0x70, // "op"
            0x03, 0x01, 0x00, 0x00, 0x00, // u32 1
        ];
        let stream: &[u8] = &[
            0x00, // unscoped
            0x16, 0x02, // tuple, arity 2
            0x10, 0x02, 0x61, 0x62, // "ab"
            0x13, 0x01, 0x07, // Some(7u8)
        ];
        let hash_key = blake3::derive_key("idem key encoding v1", hash_key_material);
        assert_eq!(KeyHasher::operation_key("op", 1), hash_key);
        let mut h = KeyHasher::for_key("op", 1);
        h.unscoped();
        h.write(&("ab", Some(7u8)));
        assert_eq!(
            h.finish_key().unwrap().as_bytes(),
            blake3::keyed_hash(&hash_key, stream).as_bytes()
        );
    }

    #[test]
    fn keyed_streams_past_the_buffer_match_one_shot_keyed_hash() {
        // A key whose stream spills into the streaming hasher stays keyed, and the spare
        // hasher it used comes back unkeyed for bare sub-hashers.
        let hash_key = KeyHasher::operation_key("op", 3);
        for n in [BUF - 3, BUF - 2, BUF, BUF + 1, 4 * BUF] {
            let s = "y".repeat(n);
            let mut expected = vec![UNSCOPED, tag::STR];
            let mut len = [0u8; 10];
            let k = leb128(n as u64, &mut len);
            expected.extend_from_slice(&len[..k]);
            expected.extend_from_slice(s.as_bytes());
            let mut h = KeyHasher::for_key("op", 3);
            h.unscoped();
            h.write_str(&s);
            let got = h.finish_key().unwrap();
            assert_eq!(
                got.as_bytes(),
                blake3::keyed_hash(&hash_key, &expected).as_bytes(),
                "n = {n}"
            );
            let long = "z".repeat(2 * BUF);
            let bare = bare_bytes(|h| h.write_str(&long));
            let mut plain = vec![tag::STR];
            let k = leb128(long.len() as u64, &mut len);
            plain.extend_from_slice(&len[..k]);
            plain.extend_from_slice(long.as_bytes());
            assert_eq!(bare, *blake3::hash(&plain).as_bytes());
        }
    }

    #[test]
    fn key_leb128_is_minimal() {
        let cases: [(u64, &[u8]); 7] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (n, expected) in cases {
            let mut out = [0u8; 10];
            let len = leb128(n, &mut out);
            assert_eq!(&out[..len], expected, "{n}");
        }
        // Through the hasher: a 300-element sequence ends with END + LEB128(300).
        let got = bare_bytes(|h| {
            h.begin_seq();
            h.end_seq(300);
            h.begin_tuple(5);
        });
        assert_eq!(
            got,
            *blake3::hash(&[tag::SEQ, tag::END, 0xac, 0x02, tag::TUPLE, 5]).as_bytes()
        );
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
                assert_eq!(
                    got,
                    (0..n as u8).collect::<Vec<_>>(),
                    "n = {n}, hint = {hint}"
                );
            }
        }
    }

    #[test]
    fn fingerprint_and_key_hash_keys_differ() {
        let mut k = KeyHasher::for_key("op", 1);
        k.unscoped();
        let k = k.finish_key().unwrap();
        let f = KeyHasher::for_fingerprint("op", 1)
            .finish_fingerprint()
            .unwrap();
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
