//! The AVX-512 kernel: one 128-bit vector per row of the BLAKE3 state.
//!
//! The four G functions of a step run side by side, one per lane. A rotate instruction
//! (`vprord`) takes 2 cycles on AMD Zen 4, so each "xor then rotate" on the chain is written as
//! `ror(x ^ y) = ror(x) ^ (y >> n) ^ (y << (32 - n))`: `ror(x)` is ready before the late input `y`,
//! the two shifts run in parallel, and one `vpternlogd` does the three-way xor, 2 cycles in all.
//! Additions of message words are done before the late addend arrives, so a quarter step costs
//! 3 cycles and a block about 170.

use std::arch::x86_64::{
    __m128i, __m512i, _mm_add_epi32, _mm_ror_epi32, _mm_setr_epi32, _mm_shuffle_epi32,
    _mm_slli_epi32, _mm_srli_epi32, _mm_storeu_si128, _mm_ternarylogic_epi32, _mm_xor_si128,
    _mm512_castsi512_si128, _mm512_extracti32x4_epi32, _mm512_loadu_si512, _mm512_maskz_loadu_epi8,
    _mm512_permutexvar_epi32,
};

use super::{BLOCK_LEN, IV, SCHEDULE, for_each_block};

/// Whether this CPU runs the kernel. std caches the detection: a few relaxed loads.
#[inline]
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512bw")
}

/// Per round, the message word of each lane, in the order the round uses them: the column
/// step's first and second words, then the diagonal step's. The diagonal step keeps row `b` in
/// place and rotates rows `a`, `c` and `d` (`State::diagonalize`), so its lane `j` computes the
/// G function of state word `4 + j`: lane 0 takes the words of the fourth diagonal G.
static ROUND_WORDS: [[u32; 16]; 7] = round_words();

const fn round_words() -> [[u32; 16]; 7] {
    const ORDER: [usize; 16] = [0, 2, 4, 6, 1, 3, 5, 7, 14, 8, 10, 12, 15, 9, 11, 13];
    let mut out = [[0; 16]; 7];
    let mut round = 0;
    while round < 7 {
        let mut lane = 0;
        while lane < 16 {
            out[round][lane] = SCHEDULE[round][ORDER[lane]] as u32;
            lane += 1;
        }
        round += 1;
    }
    out
}

/// The root output of the single chunk `input` (chunk counter 0) under `key` and `mode`.
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512VL and AVX-512BW ([`available`]).
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
pub(super) unsafe fn hash(key: [u32; 8], mode: u32, input: &[u8]) -> [u8; 32] {
    let mut cv = [row(&key, 0), row(&key, 4)];
    for_each_block(input, mode, |block, flags| {
        cv = compress(cv, load_block(block), block.len() as u32, flags);
    });
    let [lo, hi] = cv;
    let mut out = [0u8; 32];
    // SAFETY: `out` has room for the two 16-byte stores.
    unsafe {
        _mm_storeu_si128(out.as_mut_ptr().cast(), lo);
        _mm_storeu_si128(out.as_mut_ptr().add(16).cast(), hi);
    }
    out
}

/// The block's bytes, zero-padded to 64. Bytes past its end are masked out: never read.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load_block(block: &[u8]) -> __m512i {
    let present = u64::MAX.checked_shr(BLOCK_LEN as u32 - block.len() as u32);
    // SAFETY: the mask covers exactly the `block.len()` (at most 64) bytes of `block`.
    unsafe { _mm512_maskz_loadu_epi8(present.unwrap_or(0), block.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
fn row(words: &[u32; 8], at: usize) -> __m128i {
    // The casts keep the bits: the intrinsic takes signed lanes.
    _mm_setr_epi32(
        words[at] as i32,
        words[at + 1] as i32,
        words[at + 2] as i32,
        words[at + 3] as i32,
    )
}

/// The compression function, truncated to the new chaining value (counter 0: one chunk).
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
fn compress(cv: [__m128i; 2], block: __m512i, block_len: u32, flags: u32) -> [__m128i; 2] {
    let mut s = State {
        a: cv[0],
        b: cv[1],
        c: row(&IV, 0),
        d: _mm_setr_epi32(0, 0, block_len as i32, flags as i32),
    };
    for words in &ROUND_WORDS {
        // SAFETY: a `[u32; 16]` is 64 readable bytes.
        let order = unsafe { _mm512_loadu_si512(words.as_ptr().cast()) };
        let m = _mm512_permutexvar_epi32(order, block);
        s.step(_mm512_castsi512_si128(m), _mm512_extracti32x4_epi32::<1>(m));
        s.diagonalize();
        s.step(
            _mm512_extracti32x4_epi32::<2>(m),
            _mm512_extracti32x4_epi32::<3>(m),
        );
        s.undiagonalize();
    }
    [_mm_xor_si128(s.a, s.c), _mm_xor_si128(s.b, s.d)]
}

struct State {
    a: __m128i,
    b: __m128i,
    c: __m128i,
    d: __m128i,
}

impl State {
    /// Four G functions, one per lane, with message words `x` and `y`. The message word is
    /// added first: `a` is ready long before `b`, the end of the previous step's chain.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl")]
    fn step(&mut self, x: __m128i, y: __m128i) {
        self.a = _mm_add_epi32(_mm_add_epi32(self.a, x), self.b);
        self.d = xor_ror::<16, 16>(self.d, self.a);
        self.c = _mm_add_epi32(self.c, self.d);
        self.b = xor_ror::<12, 20>(self.b, self.c);
        self.a = _mm_add_epi32(_mm_add_epi32(self.a, y), self.b);
        self.d = xor_ror::<8, 24>(self.d, self.a);
        self.c = _mm_add_epi32(self.c, self.d);
        self.b = xor_ror::<7, 25>(self.b, self.c);
    }

    /// Moves the diagonals into the lanes of row `b`, which stays in place: the step ends by
    /// computing `b`, so rotating the other rows keeps the shuffles off the chain.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl")]
    fn diagonalize(&mut self) {
        self.a = _mm_shuffle_epi32::<0b10_01_00_11>(self.a);
        self.c = _mm_shuffle_epi32::<0b00_11_10_01>(self.c);
        self.d = _mm_shuffle_epi32::<0b01_00_11_10>(self.d);
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vl")]
    fn undiagonalize(&mut self) {
        self.a = _mm_shuffle_epi32::<0b00_11_10_01>(self.a);
        self.c = _mm_shuffle_epi32::<0b10_01_00_11>(self.c);
        self.d = _mm_shuffle_epi32::<0b01_00_11_10>(self.d);
    }
}

/// `(x ^ y).rotate_right(N)` for each lane, where `L = 32 - N` and `y` arrives last.
#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
fn xor_ror<const N: i32, const L: i32>(x: __m128i, y: __m128i) -> __m128i {
    _mm_ternarylogic_epi32::<0x96>(
        _mm_ror_epi32::<N>(x),
        _mm_srli_epi32::<N>(y),
        _mm_slli_epi32::<L>(y),
    )
}
