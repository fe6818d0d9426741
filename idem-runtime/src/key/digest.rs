//! The 32-byte digests: [`Key`] and [`Fingerprint`].

use std::fmt;
use std::str::FromStr;

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw digest bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseDigestError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex(s).map(Self)
            }
        }
    };
}

digest_type! {
    /// An idempotency key: the blake3 digest of an operation's identity and its key material.
    ///
    /// Shown as 64 lowercase hex digits. Stores only ever see this digest, never user data.
    Key
}

digest_type! {
    /// The digest of a call's payload: the arguments that are not part of the key.
    ///
    /// Stored with the record so that a reused key with a different payload is refused
    /// ([`Error::PayloadMismatch`](crate::Error::PayloadMismatch)) instead of replaying someone
    /// else's result. Calls whose key covers all their arguments use [`Fingerprint::NONE`].
    Fingerprint
}

impl Fingerprint {
    /// The fingerprint of a call whose key already covers its whole input.
    pub const NONE: Fingerprint = Fingerprint([0; 32]);
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hexadecimal digits for an idem digest, got {found}")]
pub struct ParseDigestError {
    found: String,
}

fn write_hex(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    // Only ASCII hex digits were written above.
    f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
}

fn parse_hex(s: &str) -> Result<[u8; 32], ParseDigestError> {
    let error = || ParseDigestError {
        found: if s.len() > 80 {
            format!("{} characters", s.len())
        } else {
            format!("{s:?}")
        },
    };
    let raw = s.as_bytes();
    if raw.len() != 64 {
        return Err(error());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let (hi, lo) = (
            nibble(pair[0]).ok_or_else(error)?,
            nibble(pair[1]).ok_or_else(error)?,
        );
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_bad_input() {
        let key = Key::from_bytes(std::array::from_fn(|i| i as u8 * 7));
        let shown = key.to_string();
        assert_eq!(shown.len(), 64);
        assert_eq!(shown, shown.to_lowercase());
        assert_eq!(shown.parse::<Key>().unwrap(), key);
        assert_eq!(shown.to_uppercase().parse::<Key>().unwrap(), key);
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
            &"é".repeat(32),
        ] {
            let err = bad.parse::<Key>().unwrap_err();
            assert!(err.to_string().contains("64 hexadecimal digits"), "{err}");
        }
    }
}
