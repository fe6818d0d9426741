//! BLAKE3 of an input of at most one chunk (1,024 bytes), tuned for latency.
//!
//! Why not `blake3::keyed_hash`: nearly every key and fingerprint is a single 64-byte block, and
//! one block is a chain of dependent operations. The crate's kernels are built for throughput
//! over many blocks, and for a single block they pay the streaming hasher's set-up and their
//! message shuffles on top of that chain. Two kernels here:
//!
//! - [`portable`]: scalar code, for every target.
//! - `avx512` (x86-64, chosen at run time on CPUs with AVX-512F/VL/BW where it is faster than
//!   the portable kernel: Intel, AMD Zen 4): one 4-lane vector per row of the state, each
//!   round's message words picked by two permutations, and every "xor then rotate" of the chain
//!   in the form that is faster on the CPU.
//!
//! Longer streams go through the crate. The tests below check both kernels against the crate
//! for every length up to a chunk and both modes.

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

#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

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

/// The root output of the single chunk `input` (chunk counter 0) under `key` and `mode`, by the
/// fastest kernel this CPU runs.
#[inline]
fn hash(key: [u32; 8], mode: u32, input: &[u8]) -> [u8; 32] {
    #[cfg(target_arch = "x86_64")]
    match avx512::kernel() {
        Some(avx512::Rotate::Instruction) => {
            // SAFETY: `kernel` is `Some` only on CPUs with the features the kernel is built with.
            return unsafe { avx512::hash::<false>(key, mode, input) };
        }
        Some(avx512::Rotate::ThreeWayXor) => {
            // SAFETY: as above.
            return unsafe { avx512::hash::<true>(key, mode, input) };
        }
        None => {}
    }
    portable::hash(key, mode, input)
}

/// Runs `compress(block, flags)` over the blocks of the one-chunk `input`, in order, with
/// BLAKE3's flags: every block but the last is 64 bytes, the last one holds the rest (possibly
/// nothing; the kernels zero-pad it), `CHUNK_START` marks the first and `CHUNK_END | ROOT` the
/// last. The one place of the chunk's framing, shared by the kernels.
#[inline(always)]
fn for_each_block(input: &[u8], mode: u32, mut compress: impl FnMut(&[u8], u32)) {
    debug_assert!(input.len() <= CHUNK_LEN);
    let mut flags = mode | CHUNK_START;
    let mut rest = input;
    while rest.len() > BLOCK_LEN {
        let (block, tail) = rest.split_at(BLOCK_LEN);
        compress(block, flags);
        flags = mode;
        rest = tail;
    }
    compress(rest, flags | CHUNK_END | ROOT);
}

fn words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|i| {
        u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
    })
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

    type Kernel = fn([u32; 8], u32, &[u8]) -> [u8; 32];

    /// Every kernel this CPU runs, by name.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![("portable", portable::hash)];
        #[cfg(target_arch = "x86_64")]
        if avx512::runs() {
            // SAFETY: the CPU has the kernel's features.
            all.push(("avx512 rotate", |key, mode, input| unsafe {
                avx512::hash::<false>(key, mode, input)
            }));
            // SAFETY: as above.
            all.push(("avx512 three-way xor", |key, mode, input| unsafe {
                avx512::hash::<true>(key, mode, input)
            }));
        }
        all
    }

    #[test]
    fn every_kernel_matches_the_blake3_crate_at_every_length_in_keyed_mode() {
        let keys = [[0u8; 32], [0xff; 32], *blake3::hash(b"idem").as_bytes()];
        for (name, kernel) in kernels() {
            for key in &keys {
                for input in inputs() {
                    assert_eq!(
                        kernel(words(key), KEYED_HASH, &input),
                        *blake3::keyed_hash(key, &input).as_bytes(),
                        "{name}, length {}",
                        input.len()
                    );
                }
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_blake3_crate_at_every_length_in_plain_mode() {
        for (name, kernel) in kernels() {
            for input in inputs() {
                assert_eq!(
                    kernel(IV, 0, &input),
                    *blake3::hash(&input).as_bytes(),
                    "{name}, length {}",
                    input.len()
                );
            }
        }
    }

    #[test]
    fn the_dispatching_functions_match_the_blake3_crate() {
        let key = *blake3::hash(b"idem").as_bytes();
        for input in inputs().step_by(7) {
            assert_eq!(
                keyed_hash(&key, &input),
                *blake3::keyed_hash(&key, &input).as_bytes()
            );
            assert_eq!(plain_hash(&input), *blake3::hash(&input).as_bytes());
        }
    }

    /// The kernels hash the input's bytes only: whatever follows them in memory (here all
    /// zeros or all ones) never changes the digest.
    #[test]
    fn bytes_past_the_input_do_not_change_the_digest() {
        for (name, kernel) in kernels() {
            for len in 0..=130 {
                let mut zeros = vec![0x5a; len + 64];
                let mut ones = zeros.clone();
                zeros[len..].fill(0);
                ones[len..].fill(0xff);
                assert_eq!(
                    kernel(IV, 0, &zeros[..len]),
                    kernel(IV, 0, &ones[..len]),
                    "{name}, length {len}"
                );
            }
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
