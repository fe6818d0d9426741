//! Idempotency keys: digests, the canonical encoding, and the [`IdempotencyKey`] trait.
//!
//! A [`Key`] is the blake3 digest of an operation's identity and its key material; a
//! [`Fingerprint`] is the digest of the payload that is not part of the key. Both are computed
//! by a [`KeyHasher`] over the **canonical encoding, version 1**, specified below. The
//! encoding is a compatibility contract: records written by one build are found by the next one
//! only if every byte stays the same. Golden vectors in the test suite (`idem-tests/tests/keys.rs`)
//! fail on any change; a deliberate change needs a new encoding version byte.
//!
//! # Encoding, version 1
//!
//! Integer *values* are fixed-width little-endian (`LE` below). *Lengths and counts* (of strings,
//! bytes, sequences, tuples, structs, maps and sets) are unsigned LEB128 in minimal form
//! (`len` below): 7 bits per byte, least significant group first, the high bit set on every
//! byte but the last, so values below 128 take one byte (`300` is `ac 02`). LEB128 is itself
//! prefix-free, and it keeps the stream of a typical key short: a string costs 2 bytes of
//! framing instead of 9, which for a 4-field struct is the difference between two and three
//! blake3 blocks.
//!
//! ## Digest input
//!
//! Every operation has two 32-byte **hash keys**, derived from its name and version with
//! blake3's key derivation mode:
//!
//! ```text
//! key hash key         = blake3::derive_key("idem key encoding v1",         str(name) ‖ u32(version))
//! fingerprint hash key = blake3::derive_key("idem fingerprint encoding v1", str(name) ‖ u32(version))
//! ```
//!
//! where `str(name)` is the name as a *str* value (`10` + len + UTF-8) and `u32(version)` the
//! version as a *u32* value (`03` + 4 bytes LE), both defined below. The context strings
//! separate keys from fingerprints (and from any other use of blake3) and name the encoding
//! version; [`Operation`](crate::Operation) derives its hash keys once and keeps them.
//!
//! A **key** is `blake3::keyed_hash(key hash key, stream)` where the stream is:
//!
//! | part            | bytes                                                                  |
//! |-----------------|------------------------------------------------------------------------|
//! | scope marker    | `00` (no scope) or `01` followed by the scope value's encoding         |
//! | material        | the encodings of the key material values, back to back                 |
//!
//! A **fingerprint** is `blake3::keyed_hash(fingerprint hash key, payload values)`: no scope
//! marker.
//!
//! Keying by the operation rather than writing its identity into every stream keeps the
//! streams short: a typical request (say a 4-field struct) fits in one 64-byte blake3 block,
//! which halves the cost of a key compared with hashing a header in front of it.
//!
//! The material of a call with several key arguments is the arguments' encodings in argument
//! order (each value is self-delimiting, so no separator is needed); what exactly the
//! `#[idempotent]` macro writes is documented there.
//!
//! ## Values
//!
//! Every value starts with a one-byte type tag; the tag determines how many bytes follow, or
//! how the end is found. The encoding is therefore prefix-free: no value's encoding is a prefix
//! of another value's encoding, and a sequence of values can be split back unambiguously.
//!
//! | tag  | value                 | followed by                                                    |
//! |------|-----------------------|----------------------------------------------------------------|
//! | `01` | `u8`                  | 1 byte                                                         |
//! | `02` | `u16`                 | 2 bytes LE                                                     |
//! | `03` | `u32`                 | 4 bytes LE                                                     |
//! | `04` | `u64`, `usize`        | 8 bytes LE (`usize` is always widened to u64)                  |
//! | `05` | `u128`                | 16 bytes LE                                                    |
//! | `06` | `i8`                  | 1 byte (two's complement)                                      |
//! | `07` | `i16`                 | 2 bytes LE                                                     |
//! | `08` | `i32`                 | 4 bytes LE                                                     |
//! | `09` | `i64`, `isize`        | 8 bytes LE (`isize` is always widened to i64)                  |
//! | `0A` | `i128`                | 16 bytes LE                                                    |
//! | `0B` | `f32`                 | IEEE 754 bits, 4 bytes LE; `-0.0` as `0.0` (`00000000`), every NaN as `7fc00000` |
//! | `0C` | `f64`                 | IEEE 754 bits, 8 bytes LE; `-0.0` as `0.0`, every NaN as `7ff8000000000000` |
//! | `0D` | `bool`                | `00` (false) or `01` (true)                                    |
//! | `0E` | `char`                | the Unicode scalar value, u32 LE                               |
//! | `0F` | unit                  | nothing (`()`, unit structs, `PhantomData`, unit variants' value) |
//! | `10` | string                | len (in bytes), then the UTF-8 bytes (no normalisation)        |
//! | `11` | bytes                 | len, then the bytes                                            |
//! | `12` | `None`                | nothing                                                        |
//! | `13` | `Some`                | the inner value                                                |
//! | `14` | sequence              | the elements, then `15` + len (the element count)              |
//! | `15` | END (never a value)   | len (a count); closes a sequence or a struct                   |
//! | `16` | tuple / array         | len (the arity), then exactly that many values; no end marker  |
//! | `17` | map                   | len (entry count), then the entries' 32-byte digests, sorted ascending (bytewise) |
//! | `18` | set                   | len (element count), then the elements' 32-byte digests, sorted ascending (bytewise) |
//! | `19` | named struct          | per field: the name as a string value (`10` …) then the field's value; then `15` + len (field count) |
//! | `1A` | enum variant          | the variant name as a string value (`10` …), then exactly one value |
//! | `1B` | fixed struct          | len (field count), then the field values in the bytewise order of the field names, without the names |
//!
//! Details:
//!
//! - **Sequences** (`Vec<T>`, `[T]`, `VecDeque<T>`, serde sequences) end with a count rather
//!   than starting with a length so that serde sequences of unknown length stream without
//!   buffering. `15` is never a value tag, so an element cannot be mistaken for the end.
//! - **Tuples** of 1 to 12 elements and **arrays** `[T; N]` (as serde serializes them) use the
//!   tuple form; `()` is unit (`0F`), not an empty tuple. Tuple structs use the tuple form too.
//! - **Maps**: an entry's digest is `blake3(enc(key) ‖ enc(value))`, a set element's digest is
//!   `blake3(enc(element))`, both without any header. Sorting the digests makes the encoding
//!   independent of iteration order: a `HashMap` (with any `BuildHasher`) and a `BTreeMap` with
//!   the same content encode identically; so do `HashSet` and `BTreeSet`. Duplicate keys of a
//!   serde map (possible with foreign types) are kept, each as its own digest.
//! - **Structs** have two forms. `#[derive(IdempotencyKey)]` writes the *fixed struct* form
//!   (`1B`): its fields are known at compile time, sorted there by name (or `#[idem(rename)]`
//!   name), so a value's position says which field it is and the names are left out;
//!   reordering field declarations keeps keys, renaming a field keeps them as long as its
//!   place in the name order does not change (use `#[idem(rename = "old")]` to be sure), and
//!   adding or excluding a field changes them (the count and the positions change).
//!   Excluded fields are neither written nor counted. The serde bridge writes the *named
//!   struct* form (`19`): per field its name then its value, in serialization order, then
//!   `15` + the count. Serde can leave fields out at run time (`skip_serializing_if`), so
//!   there the names are what keeps `{min: 5}` and `{max: 5}` apart. The two forms never
//!   give the same bytes: the same struct has a different key through the derive and through
//!   the bridge (each is stable).
//! - **Newtype structs** are transparent: `struct UserId(u64)` through serde is written as its
//!   `u64`. `Box`, `Rc`, `Arc`, `&T`, `&mut T`, `Cow` and `NonZero<_>` are transparent too.
//! - **Enums** are written by variant *name*, never by index, so reordering or inserting
//!   variants keeps keys; renaming a variant changes them. Unit variant: `1A` name `0F`;
//!   newtype variant: `1A` name + the value; tuple variant: `1A` name + the tuple form; struct
//!   variant: `1A` name + the struct form (fixed when derived, named through serde).
//!   `Result<T, E>` is written as serde writes it: `1A` `"Ok"` or `"Err"`, then the value.
//! - **`Duration`** is the named struct form in serde's order: `19`, `"secs"` + u64, `"nanos"` + u32,
//!   `15 02`.
//! - **Bytes**: `Vec<u8>` and `[u8]` are sequences of `u8` values (as in serde).
//!   [`AsBytes`] and `bytes::Bytes` use the bytes form, as does serde's `serialize_bytes`
//!   (`serde_bytes`).
//!
//! ## Derived types inside containers
//!
//! A value is written by one impl for its whole type: the [`IdempotencyKey`] impl if the type
//! has one, else (in derived impls and `#[idempotent]` fns) its `Serialize` impl; the explicit
//! API writes a serde-only value wrapped in [`AsSerde`] (`OP.key(&AsSerde(&uuid))`), with the
//! same bytes. A std
//! container of a derived type and a serde-only type (`Vec<(Inner, Uuid)>`) has no key-trait
//! impl, so serde would write all of it, the derived `Inner` by its `Serialize` impl. To keep
//! nested types' own encoding (and their `#[idem(exclude)]`s), `#[derive(IdempotencyKey)]`
//! walks such containers by their type syntax and writes each element type by its own impl,
//! in exactly the bytes of the container forms above (the derive's docs list what is walked:
//! std containers recognised by name, tuples, arrays, references); `#[idempotent]` walks its
//! hashed parameters, and `key`/`scope` expressions that name a parameter, the same way. Sets
//! are the one container whose native form (`18`) and serde form (a sequence) differ: a walked
//! set uses the set form if its element type implements [`IdempotencyKey`]; otherwise a
//! `BTreeSet` uses the sequence form in its sorted order (the bytes serde would write), and a
//! `HashSet` the set form all the same, since serde's sequence would follow its iteration
//! order, which differs between equal sets. So walking changes the bytes of no container whose
//! elements are all key-trait types or all serde-only, except such a `HashSet` (whose serde
//! bytes were never reproducible); and a `HashSet` and a `BTreeSet` of the same serde-only
//! elements get different keys (of key-trait elements, the same key). Values the macro sees
//! only as a generic `T: Serialize`, containers of other crates, type aliases, and `key`/`scope`
//! expressions other than a parameter (`req.ids`, `ids.clone()`) are written whole (declare
//! `T: IdempotencyKey`, or wrap such values in a derived type, to keep nested exclusions).
//!
//! ## The serde bridge
//!
//! [`KeyHasher::write_serde`] hashes any `serde::Serialize` value by mapping serde's data model
//! onto the forms above: `bool`, integers (including `i128`/`u128`), floats, `char`, `str`,
//! bytes, `None`/`Some`, unit, unit struct (unit), newtype struct (transparent), sequence,
//! tuple, tuple struct (tuple form), map, struct, and the four variant kinds, exactly as in the
//! table. For the same value the bridge and the native impls produce the same bytes: strings,
//! integers, floats, options, results, vectors, tuples, arrays, maps, `Duration`, smart pointers.
//! `collect_str` is written as a string (the value is formatted twice, to learn its length
//! without allocating). The bridge reports itself as human-readable (serde's default), so
//! types with two representations hash their human-readable one (e.g. a `Uuid` or an
//! `IpAddr` as its text).
//!
//! Limits of the bridge, because serde hides structure:
//!
//! - Serde has no set type: a `HashSet`/`BTreeSet` arrives as a plain sequence. A `BTreeSet`
//!   is still deterministic, but a `HashSet` inside a foreign `Serialize` type is hashed in
//!   iteration order, which differs between processes: such a key is useless. Give those types
//!   a native [`IdempotencyKey`] impl (or exclude the field). Sets hashed natively use the set
//!   form and so differ from the same set through the bridge.
//! - Field order of serde structs is serialization order (see Structs above), and a
//!   `#[serde(flatten)]` struct arrives as a map.
//! - Serde attributes change the bytes: `rename`, `tag`, `untagged`, `skip_serializing_if`
//!   etc. are applied before the bridge sees the value.
//! - A per-call time value inside a `Serialize`-only type makes every key unique. The bridge
//!   recognises std's `SystemTime` and the chrono and jiff timestamps (by their serde struct
//!   name or the type name behind `collect_str`) and logs a warning once per type and field,
//!   unless the value is written under `#[idem(include)]`; the bytes are unchanged.
//! - If a `Serialize` impl fails, the first error is recorded; [`KeyHasher::finish_key`] /
//!   [`KeyHasher::finish_fingerprint`] then return
//!   [`Error::KeyMaterial`](crate::Error::KeyMaterial). Nothing panics.
//!
//! ## Example
//!
//! `KeyHasher::for_key("op", 1)`, `unscoped()`, then the material `("ab", Some(7u8))`: the hash
//! key is `derive_key("idem key encoding v1", 10 02 6f 70 03 01 00 00 00)` (`"op"`, u32 1), and
//! the keyed stream is these 10 bytes:
//!
//! ```text
//! 00                           unscoped
//! 16 02                        tuple of arity 2
//! 10 02 61 62                  str "ab"
//! 13 01 07                     Some, u8 7
//! ```
//!
//! ## Allocation
//!
//! Hashing allocates nothing for every form except maps and sets of more than 8 entries, which
//! allocate one vector for their entry digests (plus one per nested map or set of that size).
//! A stream longer than the hasher's 512-byte inline buffer continues in a streaming blake3
//! hasher taken from a small per-thread pool: allocated the first time on each thread, reused
//! afterwards. A failing `Serialize` impl allocates its error message.
//!
//! ## Determinism
//!
//! Nothing in the encoding depends on the platform, the compiler, the process or a random seed:
//! `std::hash::Hash` is never used, integer widths are fixed, and unordered containers are
//! sorted by digest.

mod digest;
mod hasher;
mod impls;
mod one_chunk;
mod serde_bridge;
pub(crate) mod time_guard;

pub use digest::{Fingerprint, Key, ParseDigestError};
pub use hasher::{IdempotencyKey, KeyHasher};
pub use impls::{Args, AsBytes, AsSerde};
