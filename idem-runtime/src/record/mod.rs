//! The record format: how a completed value is laid out in every store.
//!
//! # Format, version 1
//!
//! A completed record's value is one byte string, identical in every store (memory, Redis,
//! PostgreSQL), so what passes against the memory store in tests behaves the same in production:
//!
//! | offset | size | field | value |
//! |---|---|---|---|
//! | 0 | 3 | magic | `b"idm"` |
//! | 3 | 1 | format version | `1` |
//! | 4 | 1 | codec id | `1` = JSON (serde_json) |
//! | 5 | 1 | kind | `0` = value; `1` is reserved for a future *recorded error* state |
//! | 6 | … | payload | the value, encoded by the codec |
//!
//! The state (in progress / completed), the fingerprint, the fencing token and the expiry live
//! next to these bytes in the store's own structure: a Rust struct in memory, a fixed header in
//! front of these bytes in the one Redis string of the key (see
//! `RedisStore`'s documentation), columns in PostgreSQL.
//!
//! # Why JSON
//!
//! The codec must be *self-describing*: `serde_json::Value`, `#[serde(untagged)]` and internally
//! tagged enums and `#[serde(flatten)]` all rely on `deserialize_any`, which compact non-describing
//! formats (bincode, postcard) cannot serve. JSON is the self-describing format with the most
//! mature serde support, it is fast to decode for the small values idempotent calls return, and a
//! human can read a record with `redis-cli` or `psql`. Floats are read with serde_json's
//! `float_roundtrip` (enabled by this crate), so an `f64` replays bit for bit. A new codec would
//! get a new codec id; old records stay readable.

//!
//! # Values JSON cannot tell apart
//!
//! JSON writes `None`, `()`, unit structs and non-finite floats (NaN, ±infinity) all as
//! `null`. A result holding `Some(None)`, `Some(())` or `Some(f64::NAN)` would therefore replay
//! as `None`, and a NaN or infinite `f64` would not replay at all. The engine refuses to record
//! such a value ([`Error::Encode`], the claim released, nothing replayed wrong): a value holding
//! a `Some` of something written as `null`, or a non-finite float, is read back once and
//! compared with itself by its canonical digest. Types whose `Deserialize` tells the cases
//! apart (serde_with's `double_option`) pass. Not detected: an `#[serde(untagged)]` enum whose
//! variants are written alike (a unit variant next to an `Option`), which serde itself reads
//! back as the first variant that fits.

mod ambiguity;

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

const MAGIC: &[u8; 3] = b"idm";
const FORMAT_VERSION: u8 = 1;
const CODEC_JSON: u8 = 1;
const KIND_VALUE: u8 = 0;
/// Reserved for a recorded error (a future opt-in policy).
#[allow(dead_code)]
const KIND_ERROR: u8 = 1;
const HEADER_LEN: usize = 6;

/// Encodes `value` as a version-1 record.
///
/// The record is written into a reusable per-thread buffer and then copied into an allocation of
/// exactly its size: one allocation per record, however large the value.
pub fn encode<T: Serialize + ?Sized>(operation: &'static str, value: &T) -> Result<Bytes, Error> {
    encode_noting_null(operation, value).map(|(record, _)| record)
}

/// [`encode`], refusing a value that would not read back as itself.
///
/// JSON writes `None`, `()`, unit structs and non-finite floats all as `null`, so `Some(None)`,
/// `Some(())` or `Some(f64::NAN)` would replay as `None` and a NaN `f64` would not replay at
/// all: a silently different value on every replay, or a decode error blaming a type change.
/// A value written without a `null` cannot have lost anything that way (the encoder notes every
/// `null` it writes, at no cost). One written with one is searched for an ambiguous `null` (a
/// `Some` of something written as `null`, or a non-finite float: `ambiguity`); a plain `None`
/// reads back as itself. Only a value with such a part is read back and compared with itself by
/// canonical digest (the key encoding), so a type whose own `Deserialize` tells the cases apart
/// (serde_with's `double_option`) passes, and a value that merely holds a `None` is never
/// refused for another difference (a `HashSet`'s order, a field skipped when read back).
pub(crate) fn encode_faithful<T: Serialize + DeserializeOwned>(
    operation: &'static str,
    value: &T,
) -> Result<Bytes, Error> {
    let (record, wrote_null) = encode_noting_null(operation, value)?;
    if wrote_null && ambiguity::has_ambiguous_null(value) {
        check_reads_back(operation, value, &record[HEADER_LEN..])?;
    }
    Ok(record)
}

/// [`encode`], also answering whether the encoder wrote a `null`.
fn encode_noting_null<T: Serialize + ?Sized>(
    operation: &'static str,
    value: &T,
) -> Result<(Bytes, bool), Error> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    /// Scratch capacity kept between calls; a larger buffer is given back after use.
    const KEEP: usize = 64 * 1024;
    let wrote_null = Cell::new(false);
    let encoded = SCRATCH.try_with(|scratch| {
        // Busy only if a `Serialize` impl encodes a record itself: use a fresh buffer then.
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let result = write_record(&mut scratch, operation, value, &wrote_null)
            .map(|()| Bytes::copy_from_slice(&scratch));
        if scratch.capacity() > KEEP {
            *scratch = Vec::new();
        }
        Some(result)
    });
    let record = match encoded {
        Ok(Some(result)) => result?,
        _ => {
            let mut out = Vec::with_capacity(128);
            write_record(&mut out, operation, value, &wrote_null)?;
            Bytes::from(out)
        }
    };
    Ok((record, wrote_null.get()))
}

/// serde_json's compact output, noting whether it wrote a `null`: `None`, `()`, unit structs
/// and non-finite floats all reach the formatter as `write_null`.
struct NoteNull<'a>(&'a Cell<bool>);

impl serde_json::ser::Formatter for NoteNull<'_> {
    #[inline]
    fn write_null<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.set(true);
        writer.write_all(b"null")
    }

    /// A `serde_json::value::RawValue`, written verbatim: it may be a `null` too.
    fn write_raw_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if fragment.trim() == "null" {
            self.0.set(true);
        }
        writer.write_all(fragment.as_bytes())
    }
}

#[cold]
#[inline(never)]
fn check_reads_back<T: Serialize + DeserializeOwned>(
    operation: &'static str,
    value: &T,
    payload: &[u8],
) -> Result<(), Error> {
    let lost = |how: String| Error::Encode {
        operation,
        reason: format!(
            "the value would not replay as itself: {how}. JSON records `None`, `()`, unit \
             structs and non-finite floats (NaN, ±infinity) all as `null`, so `Some(None)` and \
             `Some(())` read back as `None` and a NaN or infinite float cannot be read back; \
             change the output type (e.g. an enum instead of a nested `Option`, `None` for a \
             missing number)"
        ),
    };
    // `from_str`, as `decode` reads: one instantiation of the JSON reader per output type.
    let text = std::str::from_utf8(payload)
        .map_err(|e| lost(format!("it is not valid UTF-8 JSON ({e})")))?;
    let read: T = serde_json::from_str(text).map_err(|e| {
        lost(format!(
            "reading it back fails ({})",
            redact_values(&e.to_string())
        ))
    })?;
    match (canonical_digest(value), canonical_digest(&read)) {
        (Some(written), Some(read)) if written != read => {
            Err(lost("it reads back as a different value".to_owned()))
        }
        // Equal, or a `Serialize` impl that fails the key encoding: nothing to compare.
        _ => Ok(()),
    }
}

fn canonical_digest<T: Serialize>(value: &T) -> Option<crate::Key> {
    // A value, not key material: a time value in it is no mistake.
    let _value = crate::key::time_guard::allow();
    let mut hasher = crate::KeyHasher::for_key("idem.record.reads_back", 1);
    hasher.unscoped();
    hasher.write_serde(value);
    hasher.finish_key().ok()
}

fn write_record<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    operation: &'static str,
    value: &T,
    wrote_null: &Cell<bool>,
) -> Result<(), Error> {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[FORMAT_VERSION, CODEC_JSON, KIND_VALUE]);
    let mut json = serde_json::Serializer::with_formatter(&mut *out, NoteNull(wrote_null));
    value.serialize(&mut json).map_err(|e| Error::Encode {
        operation,
        reason: e.to_string(),
    })
}

/// Decodes a record written by [`encode`]; every malformed input is an [`Error::Decode`].
pub fn decode<T: DeserializeOwned>(operation: &'static str, record: &[u8]) -> Result<T, Error> {
    let fail = |reason: String| Error::Decode { operation, reason };
    let Some((header, payload)) = record.split_first_chunk::<HEADER_LEN>() else {
        return Err(fail(format!(
            "record is {} bytes, shorter than its header",
            record.len()
        )));
    };
    if &header[..3] != MAGIC {
        return Err(fail("not an idem record (bad magic bytes)".into()));
    }
    if header[3] != FORMAT_VERSION {
        return Err(fail(format!(
            "record format version {} is not supported by this build (expected {FORMAT_VERSION})",
            header[3]
        )));
    }
    if header[4] != CODEC_JSON {
        return Err(fail(format!("unknown codec id {}", header[4])));
    }
    if header[5] != KIND_VALUE {
        return Err(fail(format!("unsupported record kind {}", header[5])));
    }
    // JSON is UTF-8: validating the payload once up front lets the parser skip validating each
    // string it reads (the same inputs are accepted either way).
    let payload = std::str::from_utf8(payload)
        .map_err(|e| fail(format!("value is not valid UTF-8 JSON: {e}")))?;
    serde_json::from_str(payload).map_err(|e| {
        fail(format!(
            "value does not match the output type: {}",
            redact_values(&e.to_string())
        ))
    })
}

/// serde's messages quote the value they could not take (`invalid type: string "4111…",
/// expected u64`). A recorded result may hold personal data, and this message goes to logs
/// and error reports, so the value is left out; the types, field and variant names (which
/// tell what changed between deploys) and the position stay.
fn redact_values(message: &str) -> String {
    // A variant or field name serde did not expect comes from the data too (a string
    // recorded where an enum is now expected, a map key where a struct is).
    const QUOTED: [(&str, char); 7] = [
        ("string \"", '"'),
        ("integer `", '`'),
        ("floating point `", '`'),
        ("character `", '`'),
        ("boolean `", '`'),
        ("unknown variant `", '`'),
        ("unknown field `", '`'),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, prefix, close)) = QUOTED
        .iter()
        .filter_map(|&(prefix, close)| rest.find(prefix).map(|at| (at, prefix, close)))
        .min_by_key(|&(at, ..)| at)
    {
        let kind = &prefix[..prefix.len() - 2];
        out.push_str(&rest[..at]);
        out.push_str(kind);
        out.push_str(" (value not shown)");
        let value = &rest[at + prefix.len()..];
        // `string "…"` is written with `{:?}`: a `\` escapes the next character.
        let mut escaped = false;
        let end = value.char_indices().find(|&(_, c)| {
            let closes = c == close && !escaped;
            escaped = close == '"' && c == '\\' && !escaped;
            closes
        });
        match end {
            Some((i, c)) => rest = &value[i + c.len_utf8()..],
            // Unterminated (cannot happen with serde's own messages): drop the rest.
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_notes_every_null_it_writes_and_nothing_else() {
        fn null<T: Serialize>(value: &T) -> bool {
            encode_noting_null("op", value).unwrap().1
        }
        assert!(!null(&(1u8, "null", vec!["nullable"])));
        assert!(!null(&Some(1u8)));
        assert!(null(&None::<u8>));
        assert!(null(&Some(())));
        assert!(null(&vec![1.0, f64::NAN]));
        assert!(null(&[f32::INFINITY]));
    }

    #[test]
    fn round_trip_and_corruption() {
        let bytes = encode("op", &(1u32, "two")).unwrap();
        assert_eq!(&bytes[..6], b"idm\x01\x01\x00");
        assert_eq!(
            decode::<(u32, String)>("op", &bytes).unwrap(),
            (1, "two".to_owned())
        );
        for bad in [
            &b""[..],
            b"idm",
            b"xyz\x01\x01\x00[]",
            b"idm\x02\x01\x00[]",
            b"idm\x01\x09\x00[]",
            b"idm\x01\x01\x01[]",
            b"idm\x01\x01\x00{",
            b"idm\x01\x01\x00\"\xff\"",
        ] {
            let err = decode::<Vec<u8>>("op", bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Decode {
                        operation: "op",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("bump the operation's `version`"));
        }
    }

    #[test]
    fn decode_errors_leave_the_recorded_values_out() {
        let message = |json: &str| {
            let record = [&b"idm\x01\x01\x00"[..], json.as_bytes()].concat();
            decode::<(u64, String)>("op", &record)
                .unwrap_err()
                .to_string()
        };
        let cases = [
            (
                r#"["4111 1111 \"x\" 1111", "a"]"#,
                "string (value not shown), expected u64",
            ),
            (
                "[5, 4111111111]",
                "integer (value not shown), expected a string",
            ),
            (
                "[5, -41.5]",
                "floating point (value not shown), expected a string",
            ),
            (r#"[true, "a"]"#, "boolean (value not shown), expected u64"),
            ("[5]", "invalid length 1, expected a tuple of size 2"),
        ];
        for (record, expected) in cases {
            let message = message(record);
            assert!(message.contains(expected), "{message}");
            assert!(
                !message.contains("4111") && !message.contains("41.5"),
                "{message}"
            );
            assert!(message.contains("at line 1 column"), "{message}");
        }
        assert_eq!(
            redact_values("a `b` string \"c\\\\\" d"),
            "a `b` string (value not shown) d"
        );
        assert_eq!(
            redact_values("character `x` and integer `7`"),
            "character (value not shown) and integer (value not shown)"
        );
        assert_eq!(redact_values("string \"open"), "string (value not shown)");
        assert_eq!(
            redact_values("unknown variant `ada@example.com`, expected `Card` or `Bank`"),
            "unknown variant (value not shown), expected `Card` or `Bank`"
        );
        assert_eq!(
            redact_values("unknown field `bob`, expected `id`"),
            "unknown field (value not shown), expected `id`"
        );
    }

    #[test]
    fn large_and_nested_values_round_trip() {
        // Larger than the kept scratch buffer, then a small one on the same thread.
        let big = "x".repeat(200_000);
        assert_eq!(
            decode::<String>("op", &encode("op", &big).unwrap()).unwrap(),
            big
        );
        assert_eq!(
            decode::<u64>("op", &encode("op", &7u64).unwrap()).unwrap(),
            7
        );

        // A `Serialize` impl that encodes a record itself while the scratch buffer is in use.
        struct Nested;
        impl Serialize for Nested {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let inner = encode("inner", &"inner value").unwrap();
                s.serialize_bytes(&inner)
            }
        }
        let outer = encode("op", &Nested).unwrap();
        let bytes: Vec<u8> = decode("op", &outer).unwrap();
        assert_eq!(decode::<String>("inner", &bytes).unwrap(), "inner value");
    }
}
