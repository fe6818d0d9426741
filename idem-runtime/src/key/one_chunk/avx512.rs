//! The AVX-512 kernel: one 128-bit vector per row of the BLAKE3 state.
//!
//! The four G functions of a step run side by side, one per lane. Message additions are done
//! before the late addend arrives, so each quarter step's chain is one addition and one "xor
//! then rotate". That last one comes in two forms, chosen per CPU ([`Rotate`]):
//!
//! - `xor` then `vprord`: 2 operations, 2 cycles where a rotate takes 1 (Intel);
//! - `ror(x ^ y) = ror(x) ^ (y >> n) ^ (y << (32 - n))`: `ror(x)` is ready before the late
//!   input `y`, the two shifts run in parallel and one `vpternlogd` does the three-way xor, so
//!   2 cycles where a rotate takes 2 (AMD Zen 4), at the price of twice the operations, which
//!   crowd the vector ports of an Intel core (a 47-byte key's block on a Sapphire Rapids core:
//!   64 ns against 58 ns with the rotate instruction).
//!
//! Only 128- and 256-bit instructions: on Intel cores a 512-bit one shuts a vector port while it
//! is in flight (73 against 64 ns for the same block, both with the three-way xor).
//!
//! Not used on AMD Zen 5 and later ([`kernel`]): there every simple vector integer operation
//! (`vpaddd`, `vpxor`, `vprord`, `vpternlogd`) has a 2-cycle latency, against 1 cycle for a
//! scalar one (measured on a family 0x1A core: chains of each, 0.445 ns per vector operation and
//! 0.223 ns per scalar addition at 4.5 GHz), so either form takes 4 cycles per "xor then
//! rotate" and the portable kernel's scalar chain is faster.

use std::arch::x86_64::{
    __cpuid, __m128i, __m256i, _mm_add_epi32, _mm_ror_epi32, _mm_setr_epi32, _mm_shuffle_epi32,
    _mm_slli_epi32, _mm_srli_epi32, _mm_storeu_si128, _mm_ternarylogic_epi32, _mm_xor_si128,
    _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_maskz_loadu_epi8,
    _mm256_permutex2var_epi32,
};

use std::sync::OnceLock;

use super::{BLOCK_LEN, IV, SCHEDULE, for_each_block};

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

/// How the kernel writes "xor then rotate right".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rotate {
    /// An xor, then `vprord`.
    Instruction,
    /// Two shifts and a three-way xor (`vpternlogd`), off the rotate instruction.
    ThreeWayXor,
}

/// Whether this kernel is the fastest one on this CPU and, if so, the faster form of "xor then
/// rotate" on it. Measured per core (a 47-byte key, each depending on the previous digest):
///
/// - Intel (Sapphire Rapids): the rotate instruction, 58 ns against 68 ns for the portable
///   kernel;
/// - AMD Zen 4 (family 0x19): the three-way xor, since its rotate instruction has a 2-cycle
///   latency (90 against 103 ns through the public API);
/// - AMD Zen 5 and later (family 0x1A and up): not at all. Their simple vector integer
///   operations take 2 cycles where the scalar ones take 1, and a block is one long chain of
///   them: the portable kernel hashes the key in 67 ns, this one in 95 ns.
///
/// Detected once (`cpuid` is slow in a virtual machine); then one atomic load.
#[inline]
pub(super) fn kernel() -> Option<Rotate> {
    static KERNEL: OnceLock<Option<Rotate>> = OnceLock::new();
    *KERNEL.get_or_init(|| match cpu_vendor() {
        _ if !runs() => None,
        Vendor::Amd { family } if family >= 0x1A => None,
        Vendor::Amd { .. } => Some(Rotate::ThreeWayXor),
        Vendor::Other => Some(Rotate::Instruction),
    })
}

/// Whether this CPU has the features the kernel is built with (AVX-512F, AVX-512VL and
/// AVX-512BW), whether or not [`kernel`] picks it.
pub(super) fn runs() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512bw")
}

enum Vendor {
    /// With the family number `cpuid` leaf 1 gives (base plus extended family).
    Amd {
        family: u32,
    },
    Other,
}

fn cpu_vendor() -> Vendor {
    let vendor = __cpuid(0);
    if [vendor.ebx, vendor.edx, vendor.ecx] != AUTHENTIC_AMD {
        return Vendor::Other;
    }
    let signature = __cpuid(1).eax;
    let base = (signature >> 8) & 0xF;
    let extended = (signature >> 20) & 0xFF;
    Vendor::Amd {
        family: if base == 0xF { base + extended } else { base },
    }
}

/// "AuthenticAMD" as `cpuid` leaf 0 returns it in `ebx`, `edx`, `ecx`.
const AUTHENTIC_AMD: [u32; 3] = [
    u32::from_le_bytes(*b"Auth"),
    u32::from_le_bytes(*b"enti"),
    u32::from_le_bytes(*b"cAMD"),
];

/// The root output of the single chunk `input` (chunk counter 0) under `key` and `mode`, with
/// "xor then rotate" written as `TERNLOG` says (`true`: [`Rotate::ThreeWayXor`]).
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512VL and AVX-512BW ([`kernel`] is `Some`).
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
pub(super) unsafe fn hash<const TERNLOG: bool>(key: [u32; 8], mode: u32, input: &[u8]) -> [u8; 32] {
    let mut cv = [row(&key, 0), row(&key, 4)];
    for_each_block(input, mode, |block, flags| {
        cv = compress::<TERNLOG>(cv, load_block(block), block.len() as u32, flags);
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

/// The block's bytes, zero-padded to 64, as two halves. Bytes past its end are masked out:
/// never read.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
fn load_block(block: &[u8]) -> [__m256i; 2] {
    const HALF: usize = BLOCK_LEN / 2;
    let mask = |len: usize| {
        u32::MAX
            .checked_shr((HALF - len.min(HALF)) as u32)
            .unwrap_or(0)
    };
    let ptr = block.as_ptr();
    // SAFETY: each mask covers only bytes of `block` (at most 64): the first half's its first
    // `min(len, 32)`, the second half's the rest, at offset 32 (`wrapping_add`: the address is
    // not dereferenced where the mask is empty).
    unsafe {
        [
            _mm256_maskz_loadu_epi8(mask(block.len()), ptr.cast()),
            _mm256_maskz_loadu_epi8(
                mask(block.len().saturating_sub(HALF)),
                ptr.wrapping_add(HALF).cast(),
            ),
        ]
    }
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
fn compress<const TERNLOG: bool>(
    cv: [__m128i; 2],
    block: [__m256i; 2],
    block_len: u32,
    flags: u32,
) -> [__m128i; 2] {
    let mut s = State {
        a: cv[0],
        b: cv[1],
        c: row(&IV, 0),
        d: _mm_setr_epi32(0, 0, block_len as i32, flags as i32),
    };
    let [lo, hi] = block;
    for words in &ROUND_WORDS {
        // SAFETY: a `[u32; 16]` is 64 readable bytes, two 32-byte halves.
        let [columns, diagonals] = unsafe {
            [
                _mm256_loadu_si256(words.as_ptr().cast()),
                _mm256_loadu_si256(words.as_ptr().add(8).cast()),
            ]
        };
        let columns = _mm256_permutex2var_epi32(lo, columns, hi);
        let diagonals = _mm256_permutex2var_epi32(lo, diagonals, hi);
        s.step::<TERNLOG>(
            _mm256_castsi256_si128(columns),
            _mm256_extracti128_si256::<1>(columns),
        );
        s.diagonalize();
        s.step::<TERNLOG>(
            _mm256_castsi256_si128(diagonals),
            _mm256_extracti128_si256::<1>(diagonals),
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
    fn step<const TERNLOG: bool>(&mut self, x: __m128i, y: __m128i) {
        self.a = _mm_add_epi32(_mm_add_epi32(self.a, x), self.b);
        self.d = xor_ror::<TERNLOG, 16, 16>(self.d, self.a);
        self.c = _mm_add_epi32(self.c, self.d);
        self.b = xor_ror::<TERNLOG, 12, 20>(self.b, self.c);
        self.a = _mm_add_epi32(_mm_add_epi32(self.a, y), self.b);
        self.d = xor_ror::<TERNLOG, 8, 24>(self.d, self.a);
        self.c = _mm_add_epi32(self.c, self.d);
        self.b = xor_ror::<TERNLOG, 7, 25>(self.b, self.c);
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

/// `(x ^ y).rotate_right(N)` for each lane, where `L = 32 - N` and `y` arrives last, in the
/// form `TERNLOG` picks ([`Rotate`]).
#[inline]
#[target_feature(enable = "avx512f,avx512vl")]
fn xor_ror<const TERNLOG: bool, const N: i32, const L: i32>(x: __m128i, y: __m128i) -> __m128i {
    if TERNLOG {
        _mm_ternarylogic_epi32::<0x96>(
            _mm_ror_epi32::<N>(x),
            _mm_srli_epi32::<N>(y),
            _mm_slli_epi32::<L>(y),
        )
    } else {
        _mm_ror_epi32::<N>(_mm_xor_si128(x, y))
    }
}
