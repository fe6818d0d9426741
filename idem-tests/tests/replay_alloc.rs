//! The replay path through the memory store allocates nothing beyond decoding the value.
//!
//! A counting global allocator counts the allocations of the current thread; the calls run on
//! a current-thread runtime, so everything they do happens on this thread.
//!
//! What is counted, per replay:
//! - a `u64` value: 0 allocations (key hashing, claim, fingerprint check and decoding are all
//!   allocation-free);
//! - a struct with two `String` fields: exactly 2, the two strings the decoder builds (or, with
//!   `run_cached`, the two strings of the clone of the kept value).
//!
//! The one exception is the very first replay of a record: the record's bytes are created as a
//! uniquely owned buffer (one exact-size allocation when the value is recorded) and become
//! shared, with one allocation for the reference count, the first time a replay takes a handle on
//! them. Records that are never replayed (the common case) never pay for it.

use std::hint::black_box;
use std::sync::Arc;

use idem_runtime::{Error, MemoryStore, Operation, Store};
use idem_tests::alloc_counter::{CountingAllocator, allocations_so_far};
use serde::{Deserialize, Serialize};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn count() -> usize {
    allocations_so_far()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
    amount_cents: u64,
    status: String,
}

/// `run` (decode every replay) or `run_cached` (clone what the first replay decoded).
#[derive(Clone, Copy)]
enum Replay {
    Decode,
    Cached,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Allocations of: the first call (recording), the first replay, then the most of 100 further
/// replays (each must return `expected`).
async fn replay_allocations<T>(
    op: &'static Operation,
    value: T,
    replay: Replay,
) -> (usize, usize, usize)
where
    T: Serialize
        + for<'de> Deserialize<'de>
        + Clone
        + PartialEq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = op.key(&("cus_42", 1999u64)).unwrap();
    let call = |body_value: T| {
        let store = store.clone();
        async move {
            let call = op.call(black_box(key)).store(store);
            let body = async move { Ok(body_value) };
            let out: Result<T, Error> = match replay {
                Replay::Decode => call.run(body).await,
                Replay::Cached => call.run_cached(body).await,
            };
            out.unwrap()
        }
    };

    // The body value is built outside the counted region.
    let body = value.clone();
    let before = count();
    assert_eq!(call(body).await, value);
    let first_call = count() - before;

    let body = value.clone();
    let before = count();
    let replayed = call(body).await;
    let first_replay = count() - before;
    assert_eq!(replayed, value);
    drop(replayed);

    let mut steady = 0;
    for _ in 0..100 {
        let body = value.clone();
        let before = count();
        let replayed = call(body).await;
        steady = steady.max(count() - before);
        assert_eq!(replayed, value);
    }
    (first_call, first_replay, steady)
}

#[test]
fn replaying_a_u64_allocates_nothing() {
    static OP: Operation = Operation::new("alloc.replay_u64");
    let (first_call, first_replay, steady) =
        runtime().block_on(replay_allocations(&OP, 42u64, Replay::Decode));
    assert_eq!(
        steady, 0,
        "a steady-state replay of a u64 allocated {steady} times"
    );
    assert_eq!(
        first_replay, 1,
        "the first replay shares the record's buffer (one allocation)"
    );
    // The first call: the call frame, the record's bytes, the store's map growing.
    assert!(first_call > 0);
}

#[test]
fn replaying_a_struct_with_two_strings_allocates_the_two_strings() {
    static OP: Operation = Operation::new("alloc.replay_struct");
    let value = Receipt {
        id: "rcpt_0123456789abcdef".to_owned(),
        amount_cents: 1999,
        status: "succeeded".to_owned(),
    };
    let (_, first_replay, steady) =
        runtime().block_on(replay_allocations(&OP, value, Replay::Decode));
    assert_eq!(
        steady, 2,
        "a steady-state replay of the struct allocated {steady} times"
    );
    assert_eq!(first_replay, 3);
}

#[test]
fn cached_replays_allocate_only_the_clone() {
    static OP: Operation = Operation::new("alloc.replay_cached");
    let value = Receipt {
        id: "rcpt_0123456789abcdef".to_owned(),
        amount_cents: 1999,
        status: "succeeded".to_owned(),
    };
    let (_, first_replay, steady) =
        runtime().block_on(replay_allocations(&OP, value, Replay::Cached));
    // Later replays clone the kept value: its two strings, nothing else.
    assert_eq!(
        steady, 2,
        "a steady-state cached replay allocated {steady} times"
    );
    // The first replay shares the buffer (1), decodes (2), keeps a copy (`Arc` + 2 strings).
    assert_eq!(first_replay, 6);

    static OP_U64: Operation = Operation::new("alloc.replay_cached_u64");
    let (_, _, steady) = runtime().block_on(replay_allocations(&OP_U64, 7u64, Replay::Cached));
    assert_eq!(steady, 0, "a cached u64 replay allocated {steady} times");
}

#[test]
fn a_first_call_with_a_quick_body_allocates_only_its_claim_future_the_frame_and_the_record() {
    static OP: Operation = Operation::new("alloc.first_call");
    let rt = runtime();
    rt.block_on(async {
        // A store big enough that its maps do not grow during the measured calls.
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for warm in 0..2_000u64 {
            let key = OP.key(&warm).unwrap();
            let _: Result<u64, Error> =
                OP.call(key).store(store.clone()).run(async { Ok(1) }).await;
        }
        // Fresh keys whose shards have room: count the calls that did not grow a map.
        let mut counts = Vec::new();
        for n in 10_000..10_050u64 {
            let key = OP.key(&n).unwrap();
            let store = store.clone();
            let before = count();
            let out: Result<u64, Error> = OP.call(key).store(store).run(async { Ok(n) }).await;
            counts.push(count() - before);
            assert_eq!(out.unwrap(), n);
        }
        let min = *counts.iter().min().unwrap();
        // The boxed claim-and-run future (replays never create it), the call frame (an `Arc`)
        // and the record's bytes; no timer, no renewal task.
        assert_eq!(min, 3, "allocations per first call: {counts:?}");
    });
}
