//! Parsing the `Idempotency-Key` request header.

use std::borrow::Cow;
use std::fmt;

use http::HeaderMap;
use http::header::HeaderName;

/// The request header that carries the client's idempotency key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header set on every replayed response (`Idempotent-Replayed: true`).
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest accepted key, in characters (after removing the quotes and escapes of the
/// structured-field string form).
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    Repeated,
    Empty,
    TooLong(usize),
    NotVisibleAscii { position: usize },
    UnterminatedString,
    BadEscape { position: usize },
    TrailingCharacters,
    QuoteInToken { position: usize },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Repeated => f.write_str(
                "the request has more than one Idempotency-Key header; send exactly one",
            ),
            KeyError::Empty => f.write_str("the Idempotency-Key header is empty"),
            KeyError::TooLong(len) => write!(
                f,
                "the Idempotency-Key is {len} characters long; at most {MAX_KEY_LEN} are accepted"
            ),
            KeyError::NotVisibleAscii { position } => write!(
                f,
                "the Idempotency-Key has a character that is not visible ASCII at byte {position}; \
                 use printable ASCII characters only (e.g. a UUID)"
            ),
            KeyError::UnterminatedString => f.write_str(
                "the Idempotency-Key starts with a double quote but has no closing quote; send \
                 \"my-key\" (a structured-field string) or my-key (a bare token)",
            ),
            KeyError::BadEscape { position } => write!(
                f,
                "the Idempotency-Key has an invalid escape at byte {position}; inside quotes only \\\" \
                 and \\\\ are allowed"
            ),
            KeyError::TrailingCharacters => {
                f.write_str("the Idempotency-Key has characters after its closing double quote")
            }
            KeyError::QuoteInToken { position } => write!(
                f,
                "the Idempotency-Key has an unbalanced double quote or a backslash at byte \
                 {position}; quote the whole key (\"…\") or leave quotes and backslashes out"
            ),
        }
    }
}

/// Reads the key from the headers: `Ok(None)` when there is no `Idempotency-Key` header.
pub(crate) fn key_from_headers(headers: &HeaderMap) -> Result<Option<Cow<'_, str>>, KeyError> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    parse_key(value.as_bytes()).map(Some)
}

/// Parses one `Idempotency-Key` field value.
///
/// Accepted forms:
/// - a structured-field string (RFC 8941 §3.3.3): `"…"`, where `\"` and `\\` are the only
///   escapes and the characters are ASCII 0x20–0x7E;
/// - a bare token: visible ASCII (0x21–0x7E) except `"` and `\`.
///
/// Both forms name the same key: `"abc"` and `abc` are one key. Surrounding spaces and tabs are
/// ignored (HTTP's optional whitespace); the key itself is 1 to 255 characters.
pub(crate) fn parse_key(raw: &[u8]) -> Result<Cow<'_, str>, KeyError> {
    let start = raw.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    let end = raw.len()
        - raw[start..]
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
    let value = &raw[start..end];
    let key: Cow<'_, [u8]> = if value.first() == Some(&b'"') {
        parse_sf_string(value, start)?
    } else {
        if let Some(i) = value.iter().position(|b| !(0x21..=0x7e).contains(b)) {
            return Err(KeyError::NotVisibleAscii {
                position: start + i,
            });
        }
        if let Some(i) = value.iter().position(|b| matches!(b, b'"' | b'\\')) {
            return Err(KeyError::QuoteInToken {
                position: start + i,
            });
        }
        Cow::Borrowed(value)
    };
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    // Every byte is ASCII by now.
    Ok(match key {
        Cow::Borrowed(b) => Cow::Borrowed(
            std::str::from_utf8(b).map_err(|_| KeyError::NotVisibleAscii { position: 0 })?,
        ),
        Cow::Owned(b) => {
            Cow::Owned(String::from_utf8(b).map_err(|_| KeyError::NotVisibleAscii { position: 0 })?)
        }
    })
}

fn parse_sf_string(value: &[u8], offset: usize) -> Result<Cow<'_, [u8]>, KeyError> {
    let inner = &value[1..];
    // Fast path: no escapes.
    let mut owned: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        match b {
            b'"' => {
                if i + 1 != inner.len() {
                    return Err(KeyError::TrailingCharacters);
                }
                return Ok(match owned {
                    Some(v) => Cow::Owned(v),
                    None => Cow::Borrowed(&inner[..i]),
                });
            }
            b'\\' => {
                let next = inner.get(i + 1).copied();
                match next {
                    Some(c @ (b'"' | b'\\')) => {
                        owned.get_or_insert_with(|| inner[..i].to_vec()).push(c);
                        i += 2;
                        continue;
                    }
                    None => return Err(KeyError::UnterminatedString),
                    Some(_) => {
                        return Err(KeyError::BadEscape {
                            position: offset + 1 + i,
                        });
                    }
                }
            }
            0x20..=0x7e => {
                if let Some(v) = owned.as_mut() {
                    v.push(b);
                }
            }
            _ => {
                return Err(KeyError::NotVisibleAscii {
                    position: offset + 1 + i,
                });
            }
        }
        i += 1;
    }
    Err(KeyError::UnterminatedString)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        parse_key(raw.as_bytes()).unwrap().into_owned()
    }

    fn err(raw: &[u8]) -> KeyError {
        parse_key(raw).unwrap_err()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(ok("abc-123"), "abc-123");
        assert_eq!(ok("\"abc-123\""), "abc-123");
        assert_eq!(ok("  \"a b\"\t"), "a b");
        assert_eq!(ok(r#""a\"b\\c""#), r#"a"b\c"#);
        assert_eq!(
            ok("8e03978e-40d5-43e8-bc93-6894a57f9324"),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(ok(&"k".repeat(255)), "k".repeat(255));
        assert_eq!(ok(&format!("\"{}\"", "k".repeat(255))), "k".repeat(255));
        assert!(matches!(parse_key(b"\"plain\"").unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn refused_forms() {
        assert_eq!(err(b""), KeyError::Empty);
        assert_eq!(err(b"   "), KeyError::Empty);
        assert_eq!(err(b"\"\""), KeyError::Empty);
        assert_eq!(err("k".repeat(256).as_bytes()), KeyError::TooLong(256));
        assert_eq!(
            err(format!("\"{}\"", "k".repeat(256)).as_bytes()),
            KeyError::TooLong(256)
        );
        assert_eq!(
            err("clé".as_bytes()),
            KeyError::NotVisibleAscii { position: 2 }
        );
        assert_eq!(err(b"a\x01b"), KeyError::NotVisibleAscii { position: 1 });
        assert_eq!(err(b"a b"), KeyError::NotVisibleAscii { position: 1 });
        assert_eq!(
            err(b"\"a\x7fb\""),
            KeyError::NotVisibleAscii { position: 2 }
        );
        assert_eq!(err(b"\"abc"), KeyError::UnterminatedString);
        assert_eq!(err(b"\"abc\\\""), KeyError::UnterminatedString);
        assert_eq!(err(b"\"abc\\"), KeyError::UnterminatedString);
        assert_eq!(err(b"abc\""), KeyError::QuoteInToken { position: 3 });
        assert_eq!(err(b"a\\b"), KeyError::QuoteInToken { position: 1 });
        assert_eq!(err(b"\"a\"b"), KeyError::TrailingCharacters);
        assert_eq!(err(b"\"a\";p=1"), KeyError::TrailingCharacters);
        assert_eq!(err(b"\"a\\nb\""), KeyError::BadEscape { position: 2 });
    }

    #[test]
    fn repeated_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_from_headers(&headers), Ok(None));
        headers.append(IDEMPOTENCY_KEY, "a".parse().unwrap());
        assert_eq!(key_from_headers(&headers).unwrap().as_deref(), Some("a"));
        headers.append(IDEMPOTENCY_KEY, "b".parse().unwrap());
        assert_eq!(key_from_headers(&headers), Err(KeyError::Repeated));
    }
}
