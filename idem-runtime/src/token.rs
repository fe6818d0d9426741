//! Fencing tokens.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A claim's fencing token: 128 bits, unique per claim attempt across processes.
///
/// The caller generates the token *before* it sends the claim, so a claim that was recorded but
/// whose answer was lost (a dropped future, a network fault) can still be released by token.
/// Every write after a claim (`complete`, `release`, `renew`) carries it, and a store accepts the
/// write only while the token is the record's current one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u128);

impl Token {
    /// A fresh token: 64 random bits drawn once per process, then a per-process counter.
    ///
    /// The counter makes tokens unique within a process without a syscall per claim; the random
    /// half makes them unique across processes and restarts. Each thread takes counter values in
    /// blocks, so concurrent callers do not contend on one shared atomic.
    pub fn generate() -> Self {
        static NONCE: OnceLock<u64> = OnceLock::new();
        let nonce = *NONCE.get_or_init(process_nonce);
        Token(u128::from(nonce) << 64 | u128::from(next_count()))
    }

    /// Rebuilds a token from its 16 big-endian bytes (as stored by a backend).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Token(u128::from_be_bytes(bytes))
    }

    /// The 16 big-endian bytes of the token.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

/// Counter values a thread reserves from the shared counter at a time.
const BLOCK: u64 = 1024;

/// The next value of the per-process counter: unique within the process, never 0.
fn next_count() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        /// The thread's reserved block: `(next, end)`; empty when `next == end`.
        static LOCAL: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    LOCAL
        .try_with(|local| {
            let (mut next, mut end) = local.get();
            if next == end {
                next = COUNTER.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            local.set((next + 1, end));
            next
        })
        // During thread teardown: take a single value from the shared counter.
        .unwrap_or_else(|_| COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn process_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the OS's randomness; mixing in the pid and the clock keeps two
    // processes apart even if a platform hands out weak seeds.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(now);
    hasher.finish()
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_round_trip() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(Token::from_bytes(a.to_bytes()), a);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn tokens_are_unique_across_threads() {
        let per_thread: Vec<Vec<Token>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..3000).map(|_| Token::generate()).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: std::collections::HashSet<Token> = per_thread.iter().flatten().copied().collect();
        assert_eq!(all.len(), 4 * 3000);
    }
}
