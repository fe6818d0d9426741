//! How a recorded response is laid out inside a [record].
//!
//! The value of a completed record is a version-1 record (`idm`, format 1, JSON codec, kind
//! *value*) whose JSON payload is:
//!
//! ```json
//! {"status":201,"headers":[["content-type","application/json"]],"body":{"json":{"id":"pay_1"}}}
//! ```
//!
//! - `status`: the status code;
//! - `headers`: the allowlisted headers in the order the handler sent them, as `[name, value]`
//!   pairs; a value's bytes are mapped one to one onto the characters U+0000–U+00FF (Latin-1),
//!   so values that are not ASCII survive unchanged;
//! - `body`, in the most compact form that keeps its exact bytes:
//!   - `{"json": …}`: a JSON body, embedded verbatim (no escaping: the record stays as small
//!     and as readable with `redis-cli` or `psql` as the response itself, and a replay copies
//!     it out without unescaping);
//!   - `{"text": "…"}`: other UTF-8 (HTML, plain text, JSON with surrounding whitespace);
//!   - `{"base64": "…"}`: anything else (standard alphabet, padded), 4/3 of its size instead of
//!     the 3–4× of a JSON array of numbers.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Error, record};

/// What [`encode`] writes: borrowed, so recording copies nothing but the JSON output.
#[derive(Serialize)]
struct StoredOut<'a> {
    status: u16,
    headers: Vec<(&'a str, Cow<'a, str>)>,
    body: BodyOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum BodyOut<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    Base64(String),
}

/// What [`decode`] reads: headers and body go straight into their `http` / `bytes` types
/// from the parser's string slices, without intermediate `String`s.
#[derive(Deserialize)]
struct StoredIn {
    status: u16,
    headers: HeadersIn,
    body: BodyIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum BodyIn {
    Json(JsonBytes),
    Text(TextBytes),
    Base64(Base64Bytes),
}

/// A response as recorded, ready to be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordedResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Header value bytes as Latin-1 characters (borrowed when the value is ASCII).
fn latin1(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => Cow::Borrowed(text),
        _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Encodes a response with the headers named in `allowlist` (in the handler's order).
pub(crate) fn encode(
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    allowlist: &[HeaderName],
    body: &[u8],
) -> Result<Bytes, Error> {
    let headers = headers
        .iter()
        .filter(|(name, _)| allowlist.contains(name))
        .map(|(name, value)| (name.as_str(), latin1(value.as_bytes())))
        .collect();
    let raw: Option<Box<RawValue>>;
    let body = match std::str::from_utf8(body) {
        Ok(text) => {
            // A JSON body is embedded as JSON, verbatim (the raw value keeps its exact bytes;
            // surrounding whitespace, which it would trim, makes it text instead).
            raw = serde_json::from_str::<Box<RawValue>>(text).ok();
            match &raw {
                Some(raw) if raw.get() == text => BodyOut::Json(raw),
                // Escaping can grow text six-fold (control characters); base64 by a third.
                _ if escaped_len(text) > base64_len(body.len()) => {
                    BodyOut::Base64(STANDARD.encode(body))
                }
                _ => BodyOut::Text(text),
            }
        }
        Err(_) => BodyOut::Base64(STANDARD.encode(body)),
    };
    record::encode(
        operation,
        &StoredOut {
            status: status.as_u16(),
            headers,
            body,
        },
    )
}

/// The length of `text` as a JSON string (quotes included), as `serde_json` escapes it.
fn escaped_len(text: &str) -> usize {
    text.bytes().fold(2, |len, b| {
        len + match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        }
    })
}

/// The length of `len` bytes in padded base64, quotes included.
fn base64_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 2
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode(operation: &'static str, bytes: &[u8]) -> Result<RecordedResponse, Error> {
    let stored: StoredIn = record::decode(operation, bytes)?;
    let status = StatusCode::from_u16(stored.status).map_err(|_| Error::Decode {
        operation,
        reason: format!("invalid status {}", stored.status),
    })?;
    let body = match stored.body {
        BodyIn::Json(JsonBytes(body))
        | BodyIn::Text(TextBytes(body))
        | BodyIn::Base64(Base64Bytes(body)) => body,
    };
    Ok(RecordedResponse {
        status,
        headers: stored.headers.0,
        body,
    })
}

struct HeadersIn(HeaderMap);

impl<'de> Deserialize<'de> for HeadersIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = HeadersIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of [name, value] header pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeadersIn, A::Error> {
                let mut map = HeaderMap::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(Pair(name, value)) = seq.next_element()? {
                    map.append(name, value);
                }
                Ok(HeadersIn(map))
            }
        }
        deserializer.deserialize_seq(Pairs)
    }
}

struct Pair(HeaderName, HeaderValue);

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairVisitor;
        impl<'de> Visitor<'de> for PairVisitor {
            type Value = Pair;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a [name, value] header pair")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pair, A::Error> {
                let NameIn(name) = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let ValueIn(value) = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Pair(name, value))
            }
        }
        deserializer.deserialize_seq(PairVisitor)
    }
}

/// Implements `Deserialize` for a newtype read from one string slice.
macro_rules! from_str_slice {
    ($name:ident($ty:ty), $expecting:literal, |$s:ident| $convert:expr) => {
        struct $name($ty);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, $s: &str) -> Result<$name, E> {
                        $convert.map($name)
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

from_str_slice!(NameIn(HeaderName), "a header name", |s| {
    HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| E::custom(format!("invalid header name {s:?}")))
});

from_str_slice!(ValueIn(HeaderValue), "a header value", |s| {
    let value = if s.is_ascii() {
        HeaderValue::from_str(s)
    } else {
        let bytes = s
            .chars()
            .map(|c| {
                u8::try_from(c)
                    .map_err(|_| E::custom("a header value has a character above U+00FF"))
            })
            .collect::<Result<Vec<u8>, E>>()?;
        HeaderValue::from_bytes(&bytes)
    };
    value.map_err(|_| E::custom(format!("invalid header value {s:?}")))
});

/// A body embedded as JSON: its exact bytes, borrowed from the record while parsing.
struct JsonBytes(Bytes);

impl<'de> Deserialize<'de> for JsonBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        Ok(JsonBytes(Bytes::copy_from_slice(raw.get().as_bytes())))
    }
}

from_str_slice!(TextBytes(Bytes), "the body as text", |s| {
    Ok::<_, E>(Bytes::copy_from_slice(s.as_bytes()))
});

from_str_slice!(Base64Bytes(Bytes), "the body in base64", |s| {
    STANDARD
        .decode(s)
        .map(Bytes::from)
        .map_err(|e| E::custom(format!("invalid base64 body: {e}")))
});

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};

    #[test]
    fn escaped_len_is_serde_jsons() {
        for text in [
            "",
            "plain",
            "a \"quote\" and \\",
            "lines\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}é€😀",
        ] {
            assert_eq!(
                escaped_len(text),
                serde_json::to_string(text).unwrap().len(),
                "{text:?}"
            );
        }
        for len in 0..10 {
            let encoded = serde_json::to_string(&STANDARD.encode(vec![0u8; len])).unwrap();
            assert_eq!(base64_len(len), encoded.len());
        }
    }

    /// Text that escaping would grow beyond base64 is recorded as base64: no body takes more
    /// than 4/3 of its size in the record.
    #[test]
    fn heavily_escaped_text_is_recorded_as_base64() {
        let allow = [];
        for body in [
            "\u{1}".repeat(3000),
            "\"\n".repeat(3000),
            "plain text ".repeat(300),
        ] {
            let bytes = encode(
                "http:t",
                StatusCode::OK,
                &HeaderMap::new(),
                &allow,
                body.as_bytes(),
            )
            .unwrap();
            assert!(
                bytes.len() <= body.len() * 4 / 3 + 64,
                "{} for {}",
                bytes.len(),
                body.len()
            );
            assert_eq!(&decode("http:t", &bytes).unwrap().body[..], body.as_bytes());
        }
    }

    #[test]
    fn round_trip_text_and_binary() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(SET_COOKIE, HeaderValue::from_static("session=secret"));
        headers.append(LOCATION, HeaderValue::from_bytes(b"/p/\xe9t\xe9").unwrap());
        let allow = [CONTENT_TYPE, LOCATION];
        let bytes = encode(
            "http:t",
            StatusCode::CREATED,
            &headers,
            &allow,
            br#"{"id":"pay_1"}"#,
        )
        .unwrap();
        let json = std::str::from_utf8(&bytes[6..]).unwrap();
        assert!(json.contains(r#""body":{"json":{"id":"pay_1"}}"#), "{json}");
        let back = decode("http:t", &bytes).unwrap();
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(back.headers.len(), 2);
        assert!(back.headers.get(SET_COOKIE).is_none());
        assert_eq!(back.headers[LOCATION].as_bytes(), b"/p/\xe9t\xe9");
        assert_eq!(&back.body[..], br#"{"id":"pay_1"}"#);

        let binary = [0u8, 159, 146, 150, 255];
        let bytes = encode("http:t", StatusCode::OK, &HeaderMap::new(), &allow, &binary).unwrap();
        assert!(
            std::str::from_utf8(&bytes[6..])
                .unwrap()
                .contains(r#"{"base64":"AJ+Slv8="}"#)
        );
        assert_eq!(&decode("http:t", &bytes).unwrap().body[..], &binary);

        // Exact bytes for every form: JSON with odd spacing, JSON with surrounding whitespace
        // (text), escapes, plain text, empty.
        for (body, form) in [
            (&br#"{ "a" : [1, 2.50, "\u00e9\n"] }"#[..], "json"),
            (b" {\"a\":1}\n", "text"),
            (b"<p>caf\xc3\xa9</p>", "text"),
            (b"\"quoted\"", "json"),
            (b"", "text"),
        ] {
            let bytes = encode("http:t", StatusCode::OK, &HeaderMap::new(), &allow, body).unwrap();
            let json = std::str::from_utf8(&bytes[6..]).unwrap();
            assert!(json.contains(&format!(r#""body":{{"{form}":"#)), "{json}");
            assert_eq!(&decode("http:t", &bytes).unwrap().body[..], body, "{json}");
        }
    }

    #[test]
    fn malformed_records_are_decode_errors() {
        for payload in [
            r#"{"status":99,"headers":[],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[["bad name","x"]],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[["x-a","\u0001"]],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[["x-a","\u0100"]],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[["x-a"]],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[["x-a","b","c"]],"body":{"text":""}}"#,
            r#"{"status":200,"headers":[],"body":{"base64":"!!"}}"#,
            r#"{"status":200,"headers":[],"body":{"gzip":""}}"#,
        ] {
            let bytes = record::encode(
                "http:t",
                &serde_json::from_str::<serde_json::Value>(payload).unwrap(),
            )
            .unwrap();
            let err = decode("http:t", &bytes).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{payload}: {err}");
        }
    }
}
