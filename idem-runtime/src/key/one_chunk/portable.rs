//! The portable kernel: the BLAKE3 compression function in scalar code.

use super::{BLOCK_LEN, IV, SCHEDULE, for_each_block};

/// The root output of the single chunk `input` (chunk counter 0) under `key` and `mode`.
pub(super) fn hash(key: [u32; 8], mode: u32, input: &[u8]) -> [u8; 32] {
    let mut cv = key;
    for_each_block(input, mode, |block, flags| {
        compress(&mut cv, block_words(block), block.len() as u32, flags);
    });
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
    keep_scalar(s);
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

/// Keeps the state in general-purpose registers when the build targets x86-64 CPUs with wide
/// vectors (`-C target-cpu=native`, `x86-64-v3` and up). There LLVM's SLP vectorizer turns this
/// kernel into a row-per-vector one: the AVX-512 kernel's form, which [`super::hash`] chooses
/// at run time where it is faster, and which is slower than scalar code where it is not (AMD
/// Zen 5, whose vector integer operations take 2 cycles: 107 against 66 ns per key). An empty
/// `asm!` that takes and returns a word is opaque to the vectorizer and emits no instruction.
/// Baseline x86-64 builds (SSE2, no vector rotate) are not vectorized and do not need it: the
/// constraint costs them 15 ns per `#[idempotent]` replay, by the register allocation it forces.
#[inline(always)]
fn keep_scalar(s: &mut [u32; 16]) {
    // One word per column is enough: a vector of the columns would have to be rebuilt from
    // general-purpose registers every round, which the vectorizer's cost model refuses.
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    for word in &mut s[..4] {
        // SAFETY: the assembly is empty: it reads and writes only the register holding `word`.
        unsafe {
            std::arch::asm!(
                "/* {0:e} */",
                inout(reg) * word,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
    let _ = s;
}
