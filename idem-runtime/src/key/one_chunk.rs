//! BLAKE3 of an input of at most one chunk (1,024 bytes), in portable scalar code.
//!
//! Why not `blake3::keyed_hash`: nearly every key and fingerprint is a single 64-byte block, and
//! one block is a chain of dependent operations. The crate's SIMD kernels (SSE4.1, AVX-512) pay
//! their row shuffles on that chain and gain nothing from parallel lanes with only one block to
//! hash: on an x86-64 server CPU they take about 95 ns per key where this scalar code takes about
//! 62 ns (`benches/engine_paired.rs`, replay path). Longer streams still go through the crate,
//! and the tests below check this function against it for every length and both modes.

/// The BLAKE3 initialisation vector (the first words of SHA-256's).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

const CHUNK_START: u32 = 1 << 0;
const CHUNK_END: u32 = 1 << 1;
const ROOT: u32 = 1 << 3;
const KEYED_HASH: u32 = 1 << 4;

/// Bytes in one chunk: the most this module hashes.
pub(crate) const CHUNK_LEN: usize = 1024;
const BLOCK_LEN: usize = 64;

/// The message word order of each of the seven rounds.
const SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

/// `blake3::keyed_hash(key, input)` for `input.len() <= CHUNK_LEN`.
#[inline]
pub(crate) fn keyed_hash(key: &[u8; 32], input: &[u8]) -> [u8; 32] {
    hash(words(key), KEYED_HASH, input)
}

/// `blake3::hash(input)` for `input.len() <= CHUNK_LEN`.
#[inline]
pub(crate) fn plain_hash(input: &[u8]) -> [u8; 32] {
    hash(IV, 0, input)
}

fn words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
    })
}

/// The root output of the single chunk `input` (chunk counter 0) under `key` and `mode`.
fn hash(key: [u32; 8], mode: u32, input: &[u8]) -> [u8; 32] {
    debug_assert!(input.len() <= CHUNK_LEN);
    let mut cv = key;
    let mut flags = mode | CHUNK_START;
    let mut rest = input;
    // Every block but the last is full; the last (possibly empty) one is zero-padded.
    while rest.len() > BLOCK_LEN {
        let (block, tail) = rest.split_at(BLOCK_LEN);
        compress(&mut cv, block_words(block), BLOCK_LEN as u32, flags);
        flags = mode;
        rest = tail;
    }
    compress(
        &mut cv,
        block_words(rest),
        rest.len() as u32,
        flags | CHUNK_END | ROOT,
    );
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(cv) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The little-endian words of a block of at most 64 bytes, zero-padded.
#[inline(always)]
fn block_words(block: &[u8]) -> [u32; 16] {
    let mut padded = [0u8; BLOCK_LEN];
    padded[..block.len()].copy_from_slice(block);
    std::array::from_fn(|i| {
        u32::from_le_bytes([
            padded[4 * i],
            padded[4 * i + 1],
            padded[4 * i + 2],
            padded[4 * i + 3],
        ])
    })
}

/// The compression function, truncated to the new chaining value (counter 0: one chunk).
#[inline(always)]
fn compress(cv: &mut [u32; 8], m: [u32; 16], block_len: u32, flags: u32) {
    let mut s = [
        cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7], IV[0], IV[1], IV[2], IV[3], 0, 0,
        block_len, flags,
    ];
    // Seven calls with constant round numbers, so that every message index is a constant.
    round(&mut s, &m, 0);
    round(&mut s, &m, 1);
    round(&mut s, &m, 2);
    round(&mut s, &m, 3);
    round(&mut s, &m, 4);
    round(&mut s, &m, 5);
    round(&mut s, &m, 6);
    for i in 0..8 {
        cv[i] = s[i] ^ s[i + 8];
    }
}

#[inline(always)]
fn round(s: &mut [u32; 16], m: &[u32; 16], r: usize) {
    let o = &SCHEDULE[r];
    g(s, 0, 4, 8, 12, m[o[0]], m[o[1]]);
    g(s, 1, 5, 9, 13, m[o[2]], m[o[3]]);
    g(s, 2, 6, 10, 14, m[o[4]], m[o[5]]);
    g(s, 3, 7, 11, 15, m[o[6]], m[o[7]]);
    g(s, 0, 5, 10, 15, m[o[8]], m[o[9]]);
    g(s, 1, 6, 11, 12, m[o[10]], m[o[11]]);
    g(s, 2, 7, 8, 13, m[o[12]], m[o[13]]);
    g(s, 3, 4, 9, 14, m[o[14]], m[o[15]]);
}

#[inline(always)]
fn g(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, x: u32, y: u32) {
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(x);
    s[d] = (s[d] ^ s[a]).rotate_right(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(12);
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(y);
    s[d] = (s[d] ^ s[a]).rotate_right(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(7);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs of every length up to a chunk, with contents that differ per length.
    fn inputs() -> impl Iterator<Item = Vec<u8>> {
        (0..=CHUNK_LEN).map(|len| {
            (0..len)
                .map(|i| {
                    (i as u32)
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add(len as u32) as u8
                })
                .collect()
        })
    }

    #[test]
    fn keyed_hash_matches_the_blake3_crate_at_every_length() {
        let keys = [[0u8; 32], [0xff; 32], *blake3::hash(b"idem").as_bytes()];
        for key in &keys {
            for input in inputs() {
                assert_eq!(
                    keyed_hash(key, &input),
                    *blake3::keyed_hash(key, &input).as_bytes(),
                    "length {}",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn plain_hash_matches_the_blake3_crate_at_every_length() {
        for input in inputs() {
            assert_eq!(
                plain_hash(&input),
                *blake3::hash(&input).as_bytes(),
                "length {}",
                input.len()
            );
        }
    }

    #[test]
    fn empty_input_gives_the_published_digest() {
        // BLAKE3's published hash of the empty input.
        assert_eq!(
            blake3::Hash::from(plain_hash(&[])).to_hex().as_str(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
