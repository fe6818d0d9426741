//! Hashing key material allocates nothing for common types; maps and sets allocate only their
//! entry-digest vector (one per map or set of more than 8 entries).
//!
//! Streams longer than the hasher's inline buffer (512 bytes) continue in a streaming blake3
//! hasher that is allocated once per thread and then reused; each test warms that pool up first
//! (and checks that the warm-up is the only allocation of that kind).
//!
//! A counting global allocator counts the allocations of the current thread, so tests running
//! in parallel do not disturb each other.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hint::black_box;

use idem_runtime::key::{IdempotencyKey, Key, KeyHasher};
use idem_tests::alloc_counter::{CountingAllocator, allocations_so_far};
use serde::Serialize;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations made by `f` on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = allocations_so_far();
    let r = black_box(f());
    (allocations_so_far() - before, r)
}

fn native<T: IdempotencyKey + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key("alloc.op", 1);
    h.unscoped();
    h.write(value);
    h.finish_key().unwrap()
}

fn serde<T: Serialize + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key("alloc.op", 1);
    h.unscoped();
    h.write_serde(value);
    h.finish_key().unwrap()
}

/// Fills this thread's pool of streaming hashers: a stream that outgrows the inline buffer,
/// with a map entry that outgrows it too (two streaming hashers at once).
fn warm_up() {
    let long = "x".repeat(2000);
    let value = BTreeMap::from([(1u8, long.clone())]);
    let (n, _) = allocations(|| native(&(&long, &value)));
    assert!(n <= 2, "warm-up allocated {n} times");
    let (n, _) = allocations(|| native(&(&long, &value)));
    assert_eq!(n, 0, "streaming hashers are reused");
}

#[track_caller]
fn assert_no_alloc<T: IdempotencyKey + Serialize + ?Sized>(value: &T) {
    let (n, _) = allocations(|| native(value));
    assert_eq!(n, 0, "native hashing allocated {n} times");
    let (n, _) = allocations(|| serde(value));
    assert_eq!(n, 0, "serde hashing allocated {n} times");
}

use idem_tests::fixtures::charge;

#[derive(Serialize)]
enum Kind {
    Plain,
    Weighted(f64),
    Pair(u8, i64),
    Labelled { label: String, rank: u32 },
}

#[derive(Serialize)]
struct Inner {
    name: String,
    kind: Kind,
    limits: [u32; 3],
}

#[derive(Serialize)]
struct Outer {
    id: u128,
    inner: Inner,
    children: Vec<Inner>,
    tags: Vec<String>,
    note: Option<String>,
    small_map: BTreeMap<String, u32>,
    json: serde_json::Value,
}

#[test]
fn common_types_do_not_allocate() {
    warm_up();
    // The counter works.
    let (n, _) = allocations(|| String::from("counted"));
    assert_eq!(n, 1);
    assert_no_alloc(&42u64);
    assert_no_alloc(&-7i128);
    assert_no_alloc(&u8::MAX);
    assert_no_alloc(&1.5f64);
    assert_no_alloc(&f32::NAN);
    assert_no_alloc(&true);
    assert_no_alloc(&'λ');
    assert_no_alloc(&());
    assert_no_alloc("a str");
    let s = String::from("a string");
    assert_no_alloc(&s);
    let long = "0123456789".repeat(1000);
    assert_no_alloc(&long);
    assert_no_alloc(&Some(String::from("x")));
    assert_no_alloc(&None::<String>);
    let tags: Vec<String> = (0..50).map(|i| format!("tag-{i}")).collect();
    assert_no_alloc(&tags);
    assert_no_alloc(&vec![vec![1u8, 2], vec![]]);
    assert_no_alloc(&(1u8, "two", 3.0f64, Some(4i32), [5u16; 4]));
    assert_no_alloc(&(
        1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8,
    ));
    assert_no_alloc(&[[1u64; 4]; 4]);
    assert_no_alloc(&(tags.clone(), long.clone(), Some(s.clone())));
    assert_no_alloc(&Box::new(String::from("boxed")));
    assert_no_alloc(&std::time::Duration::from_millis(1500));
    assert_no_alloc(&charge());
    assert_no_alloc(&vec![charge(), charge()]);
}

#[test]
fn scoped_keys_and_fingerprints_do_not_allocate() {
    warm_up();
    let c = charge();
    let (n, _) = allocations(|| {
        let mut h = KeyHasher::for_key("payments.charge", 3);
        h.scoped();
        h.write("tenant-42");
        h.write(&c);
        h.write(&c.amount);
        h.finish_key().unwrap()
    });
    assert_eq!(n, 0);
    let (n, _) = allocations(|| {
        let mut h = KeyHasher::for_fingerprint("payments.charge", 3);
        h.write(&c);
        h.write_serde(&c);
        h.finish_fingerprint().unwrap()
    });
    assert_eq!(n, 0);
}

#[test]
fn nested_serde_structs_do_not_allocate() {
    warm_up();
    let inner = |i: u32| Inner {
        name: format!("inner-{i}"),
        kind: match i % 4 {
            0 => Kind::Plain,
            1 => Kind::Weighted(f64::from(i) / 3.0),
            2 => Kind::Pair(i as u8, -i64::from(i)),
            _ => Kind::Labelled {
                label: format!("l{i}"),
                rank: i,
            },
        },
        limits: [i, i + 1, i + 2],
    };
    let outer = Outer {
        id: u128::MAX - 1,
        inner: inner(0),
        children: (1..9).map(inner).collect(),
        tags: vec!["a".into(), "b".into()],
        note: Some("note".into()),
        small_map: (0..8).map(|i| (format!("k{i}"), i)).collect(),
        json: serde_json::json!({"a": [1, 2.5, null], "b": {"c": "d"}, "e": true}),
    };
    let (n, _) = allocations(|| serde(&outer));
    assert_eq!(n, 0, "nested serde structs allocated {n} times");
    // Chrono's Serialize goes through collect_str: formatted twice, no allocation.
    // (A bare time value is also warned about, once per process; that warning allocates.)
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    serde(&t);
    let (n, _) = allocations(|| serde(&t));
    assert_eq!(n, 0, "collect_str allocated {n} times");
}

#[test]
fn maps_and_sets_allocate_only_their_digest_vector() {
    warm_up();
    // Up to 8 entries the digests stay on the stack.
    let small: HashMap<String, u64> = (0..8).map(|i| (format!("k{i}"), i)).collect();
    assert_no_alloc(&small);
    let small_set: BTreeSet<u32> = (0..8).collect();
    let (n, _) = allocations(|| native(&small_set));
    assert_eq!(n, 0);

    // Larger ones allocate exactly one vector (its length is known up front).
    let big: HashMap<String, u64> = (0..1000).map(|i| (format!("k{i}"), i)).collect();
    let (n, _) = allocations(|| native(&big));
    assert_eq!(n, 1, "native map");
    let (n, _) = allocations(|| serde(&big));
    assert_eq!(n, 1, "serde map");
    let big_btree: BTreeMap<u32, Vec<String>> =
        (0..100).map(|i| (i, vec![i.to_string()])).collect();
    let (n, _) = allocations(|| native(&big_btree));
    assert_eq!(n, 1, "native btree map");
    let set: HashSet<u64> = (0..1000).collect();
    let (n, _) = allocations(|| native(&set));
    assert_eq!(n, 1, "native set");

    // Nested: one vector per map of more than 8 entries, nothing else.
    let nested: BTreeMap<u32, HashMap<u32, u32>> = (0..20)
        .map(|i| (i, (0..i).map(|j| (j, i)).collect()))
        .collect();
    let big_inner = (0..20).filter(|i| *i > 8).count();
    let (n, _) = allocations(|| native(&nested));
    assert_eq!(n, 1 + big_inner, "nested native maps");
    let (n, _) = allocations(|| serde(&nested));
    assert_eq!(n, 1 + big_inner, "nested serde maps");
}
