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
    TrailingCharacters { position: usize },
    QuoteInToken { position: usize },
    List { position: usize },
    BadParameter { position: usize },
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
            KeyError::TrailingCharacters { position } => write!(
                f,
                "the Idempotency-Key has characters after its closing double quote at byte \
                 {position}; only structured-field parameters (;name or ;name=value) may follow it"
            ),
            KeyError::QuoteInToken { position } => write!(
                f,
                "the Idempotency-Key has an unbalanced double quote or a backslash at byte \
                 {position}; quote the whole key (\"…\") or leave quotes and backslashes out"
            ),
            KeyError::List { position } => write!(
                f,
                "the Idempotency-Key has a comma at byte {position}, which makes it a list (two \
                 keys joined into one field, e.g. by an intermediary); send exactly one key, and \
                 quote it (\"…\") if the key itself contains a comma"
            ),
            KeyError::BadParameter { position } => write!(
                f,
                "the Idempotency-Key has a malformed structured-field parameter at byte \
                 {position}; parameters after the quoted key are ;name or ;name=value, with a \
                 lowercase name (RFC 8941 §3.1.2)"
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
///   it may be followed by parameters (RFC 8941 §3.1.2: `;name` or `;name=value`, e.g.
///   `"abc";v=1`), which are checked and ignored;
/// - a bare token: visible ASCII (0x21–0x7E) except `"`, `\` and `,` (a comma makes the field a
///   list: two keys joined into one field line, e.g. by an intermediary).
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
        if let Some(i) = value.iter().position(|&b| b == b',') {
            return Err(KeyError::List {
                position: start + i,
            });
        }
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
                parse_parameters(&inner[i + 1..], offset + 2 + i)?;
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

/// Checks what follows the closing quote of the structured-field string: parameters only
/// (RFC 8941 §3.1.2), `*( ";" *SP key [ "=" bare-item ] )`, and nothing after them. `offset` is
/// the position of `rest` in the field value, for error messages.
fn parse_parameters(rest: &[u8], offset: usize) -> Result<(), KeyError> {
    let mut i = 0;
    while rest.get(i) == Some(&b';') {
        i += 1;
        while rest.get(i) == Some(&b' ') {
            i += 1;
        }
        // key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
        if !matches!(rest.get(i), Some(b'a'..=b'z' | b'*')) {
            return Err(KeyError::BadParameter {
                position: offset + i,
            });
        }
        i += 1;
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = rest.get(i) {
            i += 1;
        }
        if rest.get(i) == Some(&b'=') {
            i += 1;
            i = bare_item_end(rest, i).ok_or(KeyError::BadParameter {
                position: offset + i,
            })?;
        }
    }
    if i == rest.len() {
        return Ok(());
    }
    let after_spaces = i + rest[i..].iter().take_while(|&&b| b == b' ').count();
    if rest.get(after_spaces) == Some(&b',') {
        return Err(KeyError::List {
            position: offset + after_spaces,
        });
    }
    Err(KeyError::TrailingCharacters {
        position: offset + i,
    })
}

/// The end of the RFC 8941 bare item (§3.3) that starts at `start` in `input`, or `None` if
/// there is no valid one there: an integer or decimal, a string, a token, a byte sequence or
/// a boolean.
fn bare_item_end(input: &[u8], start: usize) -> Option<usize> {
    let at = |i: usize| input.get(i).copied();
    let mut i = start;
    match at(i)? {
        // sf-integer = ["-"] 1*15DIGIT; sf-decimal = ["-"] 1*12DIGIT "." 1*3DIGIT
        b'-' | b'0'..=b'9' => {
            if at(i) == Some(b'-') {
                i += 1;
            }
            let digits = |from: usize| {
                input[from.min(input.len())..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count()
            };
            let integer = digits(i);
            i += integer;
            if at(i) == Some(b'.') {
                let fraction = digits(i + 1);
                if !(1..=12).contains(&integer) || !(1..=3).contains(&fraction) {
                    return None;
                }
                Some(i + 1 + fraction)
            } else {
                (1..=15).contains(&integer).then_some(i)
            }
        }
        // sf-string = DQUOTE *chr DQUOTE; chr = unescaped / escaped (`\"` or `\\`)
        b'"' => {
            i += 1;
            loop {
                match at(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => {
                        if !matches!(at(i + 1)?, b'"' | b'\\') {
                            return None;
                        }
                        i += 2;
                    }
                    0x20..=0x7e => i += 1,
                    _ => return None,
                }
            }
        }
        // sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )
        b'a'..=b'z' | b'A'..=b'Z' | b'*' => {
            i += 1;
            while at(i).is_some_and(|b| is_tchar(b) || b == b':' || b == b'/') {
                i += 1;
            }
            Some(i)
        }
        // sf-binary = ":" *(base64) ":"
        b':' => {
            i += 1;
            while at(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                i += 1;
            }
            (at(i)? == b':').then_some(i + 1)
        }
        // sf-boolean = "?" boolean
        b'?' => matches!(at(i + 1)?, b'0' | b'1').then_some(i + 2),
        _ => None,
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
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
        assert_eq!(err(b"\"a\"b"), KeyError::TrailingCharacters { position: 3 });
        assert_eq!(err(b"\"a\\nb\""), KeyError::BadEscape { position: 2 });
    }

    #[test]
    fn a_comma_in_a_bare_token_is_a_list() {
        // Two keys joined into one field line by an intermediary.
        assert_eq!(err(b"a,b"), KeyError::List { position: 1 });
        assert_eq!(err(b"a, b"), KeyError::List { position: 1 });
        assert_eq!(err(b" key-1,key-2"), KeyError::List { position: 6 });
        assert_eq!(err(b","), KeyError::List { position: 0 });
        // Two structured-field strings, with or without parameters.
        assert_eq!(err(b"\"a\",\"b\""), KeyError::List { position: 3 });
        assert_eq!(err(b"\"a\" , \"b\""), KeyError::List { position: 4 });
        assert_eq!(err(b"\"a\";p=1,\"b\""), KeyError::List { position: 7 });
        // Inside quotes, a comma is part of the key.
        assert_eq!(ok("\"a,b\""), "a,b");
        assert_eq!(ok("\"a, b\""), "a, b");
    }

    #[test]
    fn parameters_after_a_string_are_ignored() {
        for raw in [
            "\"a\";p=1",
            "\"a\"; p",
            "\"a\";p=\"x\"",
            "\"a\";p",
            "\"a\";*",
            "\"a\";p=1;q=2",
            "\"a\";p=1;  q",
            "\"a\";p=-12",
            "\"a\";p=1.5",
            "\"a\";p=-123456789012.123",
            "\"a\";p=123456789012345",
            "\"a\";p=?0",
            "\"a\";p=?1",
            "\"a\";p=tok",
            "\"a\";p=*tok:/!#$%&'*+-.^_`|~9",
            "\"a\";p=Tok",
            "\"a\";p=:aGVsbG8=:",
            "\"a\";p=::",
            "\"a\";p=\"\"",
            "\"a\";p=\"x\\\"y\\\\z;,\"",
            "\"a\";a-b_c.d*e9=1",
            "\"a\";p=1 ",
            "  \"a\";p=1\t",
        ] {
            assert_eq!(ok(raw), "a", "{raw}");
        }
        // The key's own escapes still apply.
        assert_eq!(ok(r#""a\"b";p=1"#), r#"a"b"#);
        assert!(matches!(
            parse_key(b"\"plain\";v=2").unwrap(),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn malformed_parameters_are_refused() {
        let bad = |raw: &str| parse_key(raw.as_bytes()).unwrap_err();
        for (raw, position) in [
            ("\"a\";", 4),                   // no key
            ("\"a\"; ", 4),                  // no key (trailing spaces are trimmed first)
            ("\"a\";  =1", 6),               // no key after the spaces
            ("\"a\";P=1", 4),                // uppercase key
            ("\"a\";1p=1", 4),               // key starts with a digit
            ("\"a\";_p", 4),                 // key starts with `_`
            ("\"a\";=1", 4),                 // empty key
            ("\"a\";p=", 6),                 // missing value
            ("\"a\";p=\"x", 6),              // unterminated string
            ("\"a\";p=\"\\n\"", 6),          // bad escape
            ("\"a\";p=-", 6),                // sign without digits
            ("\"a\";p=1234567890123456", 6), // integer of 16 digits
            ("\"a\";p=1.", 6),               // decimal without a fraction
            ("\"a\";p=1.1234", 6),           // decimal with 4 fraction digits
            ("\"a\";p=1234567890123.1", 6),  // decimal with 13 integer digits
            ("\"a\";p=?2", 6),               // not a boolean
            ("\"a\";p=?", 6),                // boolean without a value
            ("\"a\";p=:abc", 6),             // unterminated byte sequence
            ("\"a\";p=:a b:", 6),            // not base64
            ("\"a\";p==1", 6),               // not a bare item
            ("\"a\";p=(1)", 6),              // an inner list is not a bare item
            ("\"a\";p=@1", 6),               // RFC 9651 date: not RFC 8941
        ] {
            assert_eq!(bad(raw), KeyError::BadParameter { position }, "{raw}");
        }
        for (raw, position) in [
            ("\"a\" ;p=1", 3), // no space before `;`
            ("\"a\";p=1x", 7), // junk after an integer
            ("\"a\";p=\"x\"y", 9),
            ("\"a\";p=1 x", 7),
            ("\"a\";p=?1x", 8),
            ("\"a\";p=1;q=2=", 11),
        ] {
            assert_eq!(bad(raw), KeyError::TrailingCharacters { position }, "{raw}");
        }
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
