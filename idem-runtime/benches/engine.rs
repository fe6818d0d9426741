//! The engine on the memory store, side by side with the alternatives a user would write.
//!
//! `cargo bench -p idem-runtime --bench engine -- --warm-up-time 1 --measurement-time 3`
//!
//! Workload: a 4-field input (`Charge`) and a 3-field output (`Receipt`). Every contender derives
//! its key from the input inside the timed loop (idem: blake3 over the canonical encoding; the
//! others: a `format!` of the fields) and produces the receipt the same way.
//!
//! - `idem_macro` (in `replay` and `first_call`): the same workload through an `#[idempotent]` fn
//!   taking a `#[derive(IdempotencyKey)]` input by reference (the content-hashed key the macro
//!   writes), with the store given by `store = …`; `idem_engine` is the engine called by hand
//!   with the key hashed by hand from the same fields.
//! - `replay`: the key is already recorded; the value comes back (a clone, or a decode for idem).
//! - `first_call`: a fresh key every iteration (a counter in `amount_cents`): check, claim, run the
//!   body, record. Every contender starts a fresh, empty store every [`CHUNK`] iterations (outside
//!   the timing), so all maps stay at the same size, far below the memory store's capacity bound:
//!   no eviction is measured, and no contender grows without bound.
//! - `pieces`: the parts of idem's replay path, to see where the time goes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use idem_runtime::key::AsBytes;
use idem_runtime::record;

#[path = "support/contenders.rs"]
mod contenders;
use contenders::*;

fn config(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(50);
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let input = charge(1999);
    let derived = DerivedCharge::from(input.clone());
    // The derived key writes the bytes of the hand-written impl.
    assert_eq!(OP.key(&derived).unwrap(), OP.key(&input).unwrap());
    let mut contenders = Contenders::new();
    // Record the value once in every contender.
    let expected = receipt(&input);
    assert_eq!(contenders.floor(&input), expected);
    rt.block_on(async {
        assert_eq!(contenders.naive(&input).await, expected);
        assert_eq!(contenders.moka(&input).await, expected);
        assert_eq!(contenders.idem(&input).await, expected);
        assert_eq!(contenders.idem_cached(&input).await, expected);
        assert_eq!(contenders.idem_macro(&derived).await, expected);
    });

    let mut group = c.benchmark_group("replay");
    config(&mut group);
    group.bench_function("hashmap_floor", |b| {
        b.iter(|| contenders.floor(black_box(&input)))
    });
    let contenders = &contenders;
    let input = &input;
    let derived = &derived;
    group.bench_function("naive_handler", |b| {
        b.to_async(&rt).iter(|| contenders.naive(black_box(input)))
    });
    group.bench_function("moka_get_with", |b| {
        b.to_async(&rt).iter(|| contenders.moka(black_box(input)))
    });
    group.bench_function("idem_engine", |b| {
        b.to_async(&rt).iter(|| contenders.idem(black_box(input)))
    });
    group.bench_function("idem_engine_cached", |b| {
        b.to_async(&rt)
            .iter(|| contenders.idem_cached(black_box(input)))
    });
    group.bench_function("idem_macro", |b| {
        b.to_async(&rt)
            .iter(|| contenders.idem_macro(black_box(derived)))
    });
    group.finish();
}

/// Runs `iters` first calls of `call`, a fresh key each, with a fresh store every [`CHUNK`].
async fn first_calls<S>(
    iters: u64,
    mut fresh: impl FnMut() -> S,
    mut call: impl AsyncFnMut(&mut S, Charge) -> Receipt,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let mut state = fresh();
        let inputs: Vec<Charge> = (done..done + n).map(charge).collect();
        let start = Instant::now();
        for input in inputs {
            black_box(call(&mut state, input).await);
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn first_call(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("first_call");
    config(&mut group);
    group.bench_function("hashmap_floor", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| first_calls(iters, Contenders::new, async |s, c| s.floor(&c)))
    });
    group.bench_function("naive_handler", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            first_calls(iters, Contenders::new, async |s, c| s.naive(&c).await)
        })
    });
    group.bench_function("moka_get_with", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| first_calls(iters, Contenders::new, async |s, c| s.moka(&c).await))
    });
    group.bench_function("idem_engine", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| first_calls(iters, Contenders::new, async |s, c| s.idem(&c).await))
    });
    group.bench_function("idem_engine_cached", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            first_calls(iters, Contenders::new, async |s, c| s.idem_cached(&c).await)
        })
    });
    // The move into `DerivedCharge` reuses the fields' allocations (no copy).
    group.bench_function("idem_macro", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            first_calls(iters, Contenders::new, async |s, c| {
                s.idem_macro(&c.into()).await
            })
        })
    });
    group.finish();
}

/// The parts of idem's replay path, and the naive handler's key, for comparison.
fn pieces(c: &mut Criterion) {
    let rt = runtime();
    let input = charge(1999);
    let contenders = Contenders::new();
    let key = OP.key(&input).unwrap();
    let encoded = record::encode(OP.name(), &receipt(&input)).unwrap();
    rt.block_on(contenders.idem(&input));

    let mut group = c.benchmark_group("pieces");
    config(&mut group);
    group.bench_function("format_key", |b| b.iter(|| string_key(black_box(&input))));
    group.bench_function("idem_key_hash", |b| {
        b.iter(|| OP.key(black_box(&input)).unwrap())
    });
    // The kernel against the blake3 crate: a 47-byte stream (the size of the `Charge` key's),
    // through a key (the bytes form adds 3 bytes of framing) and through the crate alone.
    let stream: [u8; 47] = std::array::from_fn(|i| i as u8);
    group.bench_function("idem_key_47_bytes", |b| {
        b.iter(|| OP.key(&AsBytes(black_box(&stream))).unwrap())
    });
    group.bench_function("blake3_crate_keyed_47_bytes", |b| {
        let hash_key = [7u8; 32];
        b.iter(|| blake3::keyed_hash(&hash_key, black_box(&stream)))
    });
    // The same two as latencies: each stream's first byte is the previous digest's, so one
    // hash cannot start before the last one ends, as a replay's lookup waits for its key.
    group.bench_function("idem_key_47_bytes_chained", |b| {
        let mut stream = stream;
        b.iter(|| {
            let key = OP.key(&AsBytes(black_box(&stream))).unwrap();
            stream[0] = key.as_bytes()[0];
        })
    });
    group.bench_function("blake3_crate_keyed_47_bytes_chained", |b| {
        let hash_key = [7u8; 32];
        let mut stream = stream;
        b.iter(|| {
            let digest = blake3::keyed_hash(&hash_key, black_box(&stream));
            stream[0] = digest.as_bytes()[0];
        })
    });
    group.bench_function("idem_decode", |b| {
        b.iter(|| record::decode::<Receipt>(OP.name(), black_box(&encoded)).unwrap())
    });
    group.bench_function("idem_encode", |b| {
        let value = receipt(&input);
        b.iter(|| record::encode(OP.name(), black_box(&value)).unwrap())
    });
    group.bench_function("receipt_clone", |b| {
        let value = receipt(&input);
        b.iter(|| black_box(&value).clone())
    });
    group.bench_function("idem_replay_prehashed", |b| {
        b.to_async(&rt).iter(|| async {
            let out: Result<Receipt, idem_runtime::Error> = OP
                .call(black_box(key))
                .store(contenders.store.clone())
                .run(async { Ok(receipt(&input)) })
                .await;
            out.unwrap()
        })
    });
    group.bench_function("chrono_utc_now", |b| b.iter(chrono::Utc::now));
    // The memory store's clock, read once per replay for the expiry check.
    group.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    group.finish();
}

criterion_group!(benches, replay, first_call, pieces);
criterion_main!(benches);
