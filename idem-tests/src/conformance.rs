//! The store conformance suite: the same state-machine tests for every [`Store`].
//!
//! Each check takes a fresh store (its own keys: tests never share state) and uses real, short
//! durations, because remote stores measure leases and TTLs with their own clocks.
//! Instantiate the whole suite for a backend with [`conformance_suite!`](crate::conformance_suite).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use idem_runtime::store::{Claim, Record, Store};
use idem_runtime::{Error, Fingerprint, Key, Operation, Token};

const LEASE: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_secs(60);

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

/// A key no other test uses.
pub fn unique_key(label: &str) -> Key {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Operation::new("conformance")
        .key(&(label, n, std::process::id(), Token::generate().to_string()))
        .expect("key material is plain data")
}

fn value(text: &str) -> Bytes {
    idem_runtime::record::encode("conformance", &text).expect("a string encodes")
}

/// Absent → claim → in progress for everyone else, with the owner's fingerprint.
pub async fn claim_is_exclusive(store: Arc<dyn Store>) {
    let key = unique_key("exclusive");
    let (a, b) = (Token::generate(), Token::generate());
    assert_eq!(
        store.claim(&key, &fp(1), a, LEASE).await.unwrap(),
        Claim::Acquired
    );
    match store.claim(&key, &fp(2), b, LEASE).await.unwrap() {
        Claim::InProgress {
            fingerprint,
            remaining,
        } => {
            assert_eq!(fingerprint, fp(1));
            assert!(
                remaining <= LEASE && remaining > Duration::ZERO,
                "{remaining:?}"
            );
        }
        other => panic!("second claim must see the first: {other:?}"),
    }
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::InProgress { .. })
    ));
}

/// In progress → completed; a claim then returns the value and fingerprint.
pub async fn complete_then_replay(store: Arc<dyn Store>) {
    let key = unique_key("complete");
    let token = Token::generate();
    store.claim(&key, &fp(3), token, LEASE).await.unwrap();
    assert!(
        store
            .complete(&key, token, value("done"), TTL)
            .await
            .unwrap()
    );
    let claim = store
        .claim(&key, &fp(9), Token::generate(), LEASE)
        .await
        .unwrap();
    assert_eq!(
        claim,
        Claim::Completed {
            fingerprint: fp(3),
            value: value("done")
        }
    );
    match store.get(&key).await.unwrap() {
        Some(Record::Completed {
            fingerprint,
            value: v,
            expires_in,
        }) => {
            assert_eq!((fingerprint, v), (fp(3), value("done")));
            assert!(expires_in <= TTL && expires_in > TTL - Duration::from_secs(10));
        }
        other => panic!("expected a completed record, got {other:?}"),
    }
    // A completed record cannot be completed, renewed or released again.
    assert!(
        !store
            .complete(&key, token, value("again"), TTL)
            .await
            .unwrap()
    );
    assert!(!store.renew(&key, token, LEASE).await.unwrap());
    assert!(!store.release(&key, token).await.unwrap());
}

/// Only the current token may complete, release or renew.
pub async fn writes_are_fenced(store: Arc<dyn Store>) {
    let key = unique_key("fenced");
    let (owner, stranger) = (Token::generate(), Token::generate());
    store.claim(&key, &fp(1), owner, LEASE).await.unwrap();
    assert!(
        !store
            .complete(&key, stranger, value("x"), TTL)
            .await
            .unwrap()
    );
    assert!(!store.release(&key, stranger).await.unwrap());
    assert!(!store.renew(&key, stranger, LEASE).await.unwrap());
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::InProgress { .. })
    ));
    // Writes on a key nobody claimed are refused too.
    let absent = unique_key("fenced-absent");
    assert!(
        !store
            .complete(&absent, owner, value("x"), TTL)
            .await
            .unwrap()
    );
    assert!(store.get(&absent).await.unwrap().is_none());
}

/// Release → absent → the next claim acquires.
pub async fn release_allows_retry(store: Arc<dyn Store>) {
    let key = unique_key("release");
    let token = Token::generate();
    store.claim(&key, &fp(1), token, LEASE).await.unwrap();
    assert!(store.release(&key, token).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(
        store
            .claim(&key, &fp(2), Token::generate(), LEASE)
            .await
            .unwrap(),
        Claim::Acquired
    );
}

/// A lapsed lease lets another caller take over; the old owner is fenced out.
pub async fn lease_expiry_allows_takeover(store: Arc<dyn Store>) {
    let key = unique_key("takeover");
    let (old, new) = (Token::generate(), Token::generate());
    store
        .claim(&key, &fp(1), old, Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "a lapsed lease reads as absent"
    );
    assert_eq!(
        store.claim(&key, &fp(1), new, LEASE).await.unwrap(),
        Claim::Acquired
    );
    assert!(
        !store
            .complete(&key, old, value("stale"), TTL)
            .await
            .unwrap()
    );
    assert!(!store.release(&key, old).await.unwrap());
    assert!(
        store
            .complete(&key, new, value("fresh"), TTL)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.claim(&key, &fp(1), Token::generate(), LEASE).await.unwrap(),
        Claim::Completed { value: v, .. } if v == value("fresh")
    ));
}

/// Renewal keeps a claim alive past its original lease.
///
/// Each renewal comes a third of a lease after the previous one, as the engine's renewals do,
/// so a round trip delayed by up to two thirds of a lease (a loaded CI machine, a slow
/// database) still renews in time; four of them outlast the first lease.
pub async fn renew_extends_the_lease(store: Arc<dyn Store>) {
    const RENEW_LEASE: Duration = Duration::from_millis(900);
    let key = unique_key("renew");
    let token = Token::generate();
    store.claim(&key, &fp(1), token, RENEW_LEASE).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(RENEW_LEASE / 3).await;
        assert!(
            store.renew(&key, token, RENEW_LEASE).await.unwrap(),
            "a renewal a third of a lease after the previous one must succeed"
        );
    }
    assert!(matches!(
        store
            .claim(&key, &fp(1), Token::generate(), LEASE)
            .await
            .unwrap(),
        Claim::InProgress { .. }
    ));
    assert!(
        store
            .complete(&key, token, value("late"), TTL)
            .await
            .unwrap()
    );
}

/// A completed record expires after its TTL and then behaves as absent.
pub async fn ttl_expiry(store: Arc<dyn Store>) {
    let key = unique_key("ttl");
    let token = Token::generate();
    store.claim(&key, &fp(1), token, LEASE).await.unwrap();
    assert!(
        store
            .complete(&key, token, value("short"), Duration::from_millis(100))
            .await
            .unwrap()
    );
    assert!(store.get(&key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(
        store
            .claim(&key, &fp(1), Token::generate(), LEASE)
            .await
            .unwrap(),
        Claim::Acquired
    );
}

/// A completed record lives for its TTL from the completion, not from the claim: a body that
/// ran for a while still leaves its result for the whole TTL.
pub async fn ttl_counts_from_completion(store: Arc<dyn Store>) {
    let key = unique_key("ttl-from-completion");
    let token = Token::generate();
    store
        .claim(&key, &fp(1), token, Duration::from_secs(5))
        .await
        .unwrap();
    // The body runs for 400 ms, then the result is kept for 600 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store
            .complete(&key, token, value("v"), Duration::from_millis(600))
            .await
            .unwrap()
    );
    // 700 ms after the claim: expired if counted from the claim, not from the completion.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(
            store.get(&key).await.unwrap(),
            Some(Record::Completed { .. })
        ),
        "the TTL was counted from the claim"
    );
    // 1,200 ms after the claim, 800 ms after the completion: gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.get(&key).await.unwrap().is_none());
}

/// `remove` deletes in any state and reports whether a live record was there.
pub async fn remove_forgets(store: Arc<dyn Store>) {
    let key = unique_key("remove");
    assert!(!store.remove(&key).await.unwrap());
    let token = Token::generate();
    store.claim(&key, &fp(1), token, LEASE).await.unwrap();
    assert!(store.complete(&key, token, value("v"), TTL).await.unwrap());
    assert!(store.remove(&key).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none());
    // Removing an in-progress record fences its owner out.
    let owner = Token::generate();
    store.claim(&key, &fp(1), owner, LEASE).await.unwrap();
    assert!(store.remove(&key).await.unwrap());
    assert!(!store.complete(&key, owner, value("v"), TTL).await.unwrap());
}

/// `purge_expired` deletes expired records, at most `limit`, and counts them.
pub async fn purge_counts(store: Arc<dyn Store>) {
    let short = Duration::from_millis(50);
    let mut keys = Vec::new();
    for i in 0..5 {
        let key = unique_key(&format!("purge-{i}"));
        let token = Token::generate();
        store.claim(&key, &fp(1), token, LEASE).await.unwrap();
        store
            .complete(&key, token, value("p"), short)
            .await
            .unwrap();
        keys.push(key);
    }
    let live = unique_key("purge-live");
    let token = Token::generate();
    store.claim(&live, &fp(1), token, LEASE).await.unwrap();
    store
        .complete(&live, token, value("live"), TTL)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Stores with native expiry may have dropped some already; what is left is purged.
    let first = store.purge_expired(2).await.unwrap();
    assert!(first <= 2, "purge must respect its limit, purged {first}");
    let rest = store.purge_expired(usize::MAX).await.unwrap();
    assert!(first + rest <= 5);
    assert_eq!(store.purge_expired(usize::MAX).await.unwrap(), 0);
    assert!(
        store.get(&live).await.unwrap().is_some(),
        "live records survive a purge"
    );
    for key in &keys {
        assert!(store.get(key).await.unwrap().is_none());
    }
}

/// A waiter wakes when the record leaves the in-progress state.
pub async fn waiters_wake_on_completion(store: Arc<dyn Store>) {
    let key = unique_key("wake");
    let token = Token::generate();
    store
        .claim(&key, &fp(1), token, Duration::from_secs(30))
        .await
        .unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                store
                    .wait_for_change(&key, Duration::from_secs(20))
                    .await
                    .unwrap();
                if !matches!(
                    store.get(&key).await.unwrap(),
                    Some(Record::InProgress { .. })
                ) {
                    return started.elapsed();
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.complete(&key, token, value("w"), TTL).await.unwrap());
    let waited = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter must wake well before its 20 s bound")
        .unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// Values are stored byte for byte; undecodable bytes become `Error::Decode` in the engine.
pub async fn corrupt_record_is_a_decode_error(store: Arc<dyn Store>) {
    static OP: Operation = Operation::new("conformance.corrupt");
    let key = unique_key("corrupt");
    let token = Token::generate();
    store
        .claim(&key, &Fingerprint::NONE, token, LEASE)
        .await
        .unwrap();
    let garbage = Bytes::from_static(b"idm\x01\x01\x00{not json");
    assert!(store.complete(&key, token, garbage, TTL).await.unwrap());
    let out: Result<u32, Error> = OP.call(key).store(store.clone()).run(async { Ok(1) }).await;
    match out {
        Err(Error::Decode { operation, reason }) => {
            assert_eq!(operation, "conformance.corrupt");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}

/// 1,000 concurrent callers of one key: the body runs once and every caller gets its value.
pub async fn storm_runs_once(store: Arc<dyn Store>) {
    static OP: Operation = Operation::new("conformance.storm");
    let key = unique_key("storm");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (store, runs) = (store.clone(), runs.clone());
        tasks.push(tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, Error>(String::from("the one result"))
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "the one result");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Calls dropped at every point of their claim (aborted after 0 to 1.5 ms, three times over: before it is sent,
/// in flight, answered, while the body runs), through the engine and through the explicit
/// API, leave no key in progress: each ends absent or completed, well before its lease.
/// A pooled backend may run a dropped claim's statement after the release sent for it, so the
/// release must wait for the claim's answer.
pub async fn cancelled_claims_are_released(store: Arc<dyn Store>) {
    static OP: Operation = Operation::new("conformance.cancel").with_lease(Duration::from_secs(60));
    let explicit = Arc::new(idem_runtime::Idempotency::<u64>::new(
        Operation::new("conformance.cancel_explicit").with_lease(Duration::from_secs(60)),
        store.clone(),
    ));
    let mut keys = Vec::new();
    for n in 0..360u64 {
        let key = unique_key("cancelled");
        let call = if n % 2 == 0 {
            tokio::spawn(
                OP.call(key)
                    .store(store.clone())
                    .run(async { Ok::<u64, Error>(1) }),
            )
        } else {
            let explicit = explicit.clone();
            tokio::spawn(async move {
                match explicit.start(key).await? {
                    idem_runtime::Start::New(claimed) => claimed.complete(&1).await.map(|()| 1),
                    idem_runtime::Start::Duplicate(value) => Ok(value),
                }
            })
        };
        let aborted_at = std::time::Instant::now() + Duration::from_micros(n / 2 % 60 * 25);
        while std::time::Instant::now() < aborted_at {
            std::hint::spin_loop();
        }
        call.abort();
        let _ = call.await;
        keys.push(key);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for key in keys {
        loop {
            match store.get(&key).await.unwrap() {
                Some(Record::InProgress { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(Record::InProgress { .. }) => {
                    panic!("a cancelled call left its key in progress for the whole lease")
                }
                None | Some(Record::Completed { .. }) => break,
            }
        }
    }
}

/// The default value size limit of every built-in store: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;

/// A value just above the default limit is refused with `Error::ValueTooLarge` and nothing is
/// written: the claim stays in progress (for its owner to release); one at the limit is stored.
/// Through the engine, the caller gets the error once the claim is released.
pub async fn value_size_limit(store: Arc<dyn Store>) {
    static OP: Operation = Operation::new("conformance.too_large");
    let key = unique_key("too-large");
    let token = Token::generate();
    store.claim(&key, &fp(1), token, LEASE).await.unwrap();
    let big = Bytes::from(vec![b'x'; DEFAULT_MAX_VALUE_BYTES + 1]);
    match store.complete(&key, token, big, TTL).await {
        Err(Error::ValueTooLarge { size, limit }) => {
            assert_eq!(
                (size, limit),
                (DEFAULT_MAX_VALUE_BYTES + 1, DEFAULT_MAX_VALUE_BYTES)
            );
        }
        other => panic!("expected Error::ValueTooLarge, got {other:?}"),
    }
    assert!(
        matches!(
            store.get(&key).await.unwrap(),
            Some(Record::InProgress { .. })
        ),
        "nothing may be half-written"
    );
    let fits = Bytes::from(vec![b'y'; DEFAULT_MAX_VALUE_BYTES]);
    assert!(
        store
            .complete(&key, token, fits.clone(), TTL)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::Completed { value, .. }) if value == fits
    ));

    let key = unique_key("too-large-engine");
    let out: Result<String, Error> = OP
        .call(key)
        .store(store.clone())
        .run(async { Ok("z".repeat(DEFAULT_MAX_VALUE_BYTES)) })
        .await;
    assert!(matches!(out, Err(Error::ValueTooLarge { .. })), "{out:?}");
    // The engine released the claim before returning the error: a retry runs at once.
    assert!(store.get(&key).await.unwrap().is_none(), "still claimed");
}

/// An owner whose lease lapsed, even if nobody took over, can no longer renew, complete or
/// release.
pub async fn lapsed_owner_is_fenced(store: Arc<dyn Store>) {
    let key = unique_key("lapsed");
    let token = Token::generate();
    store
        .claim(&key, &fp(1), token, Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!store.renew(&key, token, LEASE).await.unwrap());
    assert!(
        !store
            .complete(&key, token, value("late"), TTL)
            .await
            .unwrap()
    );
    assert!(!store.release(&key, token).await.unwrap());
    assert!(store.get(&key).await.unwrap().is_none());
}

/// An owner whose lease lapsed, and whose key another caller then claimed and completed, is
/// fenced out even when its value is byte for byte the new owner's (deterministic bodies often
/// return the same value): its `complete` answers `false`, so its caller learns that the body
/// ran twice (`LeaseLost`).
pub async fn a_lapsed_owner_is_fenced_even_with_the_same_value(store: Arc<dyn Store>) {
    let key = unique_key("lapsed-same-value");
    let lapsed = Token::generate();
    let short = Duration::from_millis(100);
    assert_eq!(
        store.claim(&key, &fp(1), lapsed, short).await.unwrap(),
        Claim::Acquired
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let owner = Token::generate();
    assert_eq!(
        store.claim(&key, &fp(1), owner, LEASE).await.unwrap(),
        Claim::Acquired
    );
    assert!(
        store
            .complete(&key, owner, value("same"), TTL)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete(&key, lapsed, value("same"), TTL)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::Completed { value: stored, .. }) if stored == value("same")
    ));
}

/// Arbitrary bytes (every byte value, NUL included) and an empty value come back unchanged, in
/// the claim's replay and in `get`.
pub async fn values_are_stored_byte_for_byte(store: Arc<dyn Store>) {
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    for bytes in [all, Vec::new()] {
        let key = unique_key("bytes");
        let token = Token::generate();
        store.claim(&key, &fp(7), token, LEASE).await.unwrap();
        let value = Bytes::from(bytes);
        assert!(
            store
                .complete(&key, token, value.clone(), TTL)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .claim(&key, &fp(7), Token::generate(), LEASE)
                .await
                .unwrap(),
            Claim::Completed {
                fingerprint: fp(7),
                value: value.clone()
            }
        );
        assert!(matches!(
            store.get(&key).await.unwrap(),
            Some(Record::Completed { value: v, .. }) if v == value
        ));
    }
}

/// 100 keys with 5 concurrent callers each: every body runs once per key, every caller gets
/// its key's value (on a cluster, the keys spread over all nodes).
pub async fn many_keys_in_parallel(store: Arc<dyn Store>) {
    static OP: Operation = Operation::new("conformance.many_keys");
    let runs = Arc::new(AtomicUsize::new(0));
    let keys: Vec<(usize, Key)> = (0..100)
        .map(|i| (i, unique_key(&format!("many-{i}"))))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        for &(i, key) in &keys {
            let (store, runs) = (store.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                let out = OP
                    .call(key)
                    .store(store)
                    .run(async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, Error>(format!("value {i}"))
                    })
                    .await;
                (i, out)
            }));
        }
    }
    for task in tasks {
        let (i, out) = task.await.unwrap();
        assert_eq!(out.unwrap(), format!("value {i}"));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 100);
}

/// 20 fresh keys, each claimed by 25 callers at once with different fingerprints: exactly one
/// caller per key acquires, and every other caller sees the winner's claim (this is the
/// snapshot race of a single-statement upsert in SQL stores).
pub async fn claim_race_has_one_winner(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for k in 0..20 {
        let key = unique_key(&format!("race-{k}"));
        for j in 1..=25u8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let claim = store
                    .claim(&key, &fp(j), Token::generate(), Duration::from_secs(30))
                    .await;
                (k, j, claim.unwrap())
            }));
        }
    }
    let mut winners = std::collections::HashMap::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (k, j, claim) = task.await.unwrap();
        match claim {
            Claim::Acquired => assert!(winners.insert(k, j).is_none(), "two winners for key {k}"),
            Claim::InProgress { fingerprint, .. } => seen.push((k, fingerprint)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 20, "every key has a winner");
    for (k, fingerprint) in seen {
        assert_eq!(
            fingerprint,
            fp(winners[&k]),
            "key {k} reports the winner's claim"
        );
    }
}

/// What a conformance test gets from its factory: the store, plus whatever must stay alive
/// while the test runs and be cleaned up afterwards (a key prefix, a schema, a server). The
/// fixture is dropped at the end of the test, also when the test panics.
pub trait Fixture {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

/// `Duration::MAX` as lease or TTL means "practically never" (never an overflow or an
/// out-of-range argument), and 1 µs is a valid lease (remote stores round it up to 1 ms, never
/// to 0, which would delete the key at once).
pub async fn extreme_durations(store: Arc<dyn Store>) {
    let year = Duration::from_secs(3600 * 24 * 365);
    let key = unique_key("huge");
    let token = Token::generate();
    let fp = Fingerprint::NONE;
    assert_eq!(
        store.claim(&key, &fp, token, Duration::MAX).await.unwrap(),
        Claim::Acquired
    );
    match store
        .claim(&key, &fp, Token::generate(), Duration::MAX)
        .await
    {
        Ok(Claim::InProgress { remaining, .. }) => assert!(remaining > year, "{remaining:?}"),
        other => panic!("{other:?}"),
    }
    assert!(store.renew(&key, token, Duration::MAX).await.unwrap());
    assert!(
        store
            .complete(&key, token, value("v"), Duration::MAX)
            .await
            .unwrap()
    );
    match store.get(&key).await {
        Ok(Some(Record::Completed { expires_in, .. })) => assert!(expires_in > year),
        other => panic!("{other:?}"),
    }
    assert!(store.remove(&key).await.unwrap());
    let tiny = unique_key("tiny");
    let claim = store.claim(&tiny, &fp, Token::generate(), Duration::from_micros(1));
    assert_eq!(claim.await.unwrap(), Claim::Acquired);
}

/// `wait_for_change(key, Duration::MAX)` returns at once for an absent key, and once a running
/// claim's lease lapses (a crashed owner sends no notification).
pub async fn waiting_ends_when_the_lease_lapses(store: Arc<dyn Store>) {
    let bounded = Duration::from_secs(5);
    let absent = unique_key("wait-absent");
    tokio::time::timeout(bounded, store.wait_for_change(&absent, Duration::MAX))
        .await
        .expect("an absent key is settled at once")
        .unwrap();
    let running = unique_key("wait-running");
    assert_eq!(
        store
            .claim(
                &running,
                &fp(4),
                Token::generate(),
                Duration::from_millis(200)
            )
            .await
            .unwrap(),
        Claim::Acquired
    );
    tokio::time::timeout(bounded, store.wait_for_change(&running, Duration::MAX))
        .await
        .expect("returns once the lease lapsed")
        .unwrap();
}

/// The error messages of a claim and of a `get` of `key`, whose record a test corrupted behind
/// the store's back: both must fail (never panic, never answer).
pub async fn claim_and_get_errors(store: &dyn Store, key: &Key) -> [String; 2] {
    let claim = store
        .claim(
            key,
            &Fingerprint::NONE,
            Token::generate(),
            Duration::from_secs(5),
        )
        .await;
    let get = store.get(key).await;
    [claim.map(drop), get.map(drop)].map(|outcome| {
        outcome
            .expect_err("a corrupt record is an error")
            .to_string()
    })
}

/// Instantiates every conformance check as a `#[tokio::test]` for the store built by
/// `$factory`: an async expression, evaluated inside each test's runtime, that yields an
/// `Arc<dyn Store>` or any other [`Fixture`].
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            claim_is_exclusive, complete_then_replay, writes_are_fenced, release_allows_retry,
            lease_expiry_allows_takeover, renew_extends_the_lease, ttl_expiry, remove_forgets,
            ttl_counts_from_completion,
            purge_counts, waiters_wake_on_completion, corrupt_record_is_a_decode_error,
            storm_runs_once, value_size_limit, lapsed_owner_is_fenced,
            a_lapsed_owner_is_fenced_even_with_the_same_value,
            values_are_stored_byte_for_byte, many_keys_in_parallel, claim_race_has_one_winner,
            extreme_durations, waiting_ends_when_the_lease_lapses, cancelled_claims_are_released);
    };
    (@tests $factory:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $factory.await;
                let store = $crate::conformance::Fixture::store(&fixture);
                $crate::conformance::$name(store).await;
                drop(fixture);
            }
        )*
    };
}

/// The bounds of a remote store's local cache (`local_cache(_, max_age)`): a replayed record
/// is still answered after the backend lost it (`lose_all` deletes every record of the store
/// behind its back), until `max_age`; `remove` through the store forgets it at once; an entry
/// never outlives its record's TTL.
pub async fn local_cache_bounds(store: &dyn Store, max_age: Duration, lose_all: impl AsyncFn()) {
    let (fp, lease) = (fp(5), Duration::from_secs(30));
    let value = idem_runtime::record::encode("cache", &"cached").expect("encodable");
    let complete = async |ttl: Duration| {
        let key = unique_key("local-cache");
        let token = Token::generate();
        assert_eq!(
            store.claim(&key, &fp, token, lease).await.unwrap(),
            Claim::Acquired
        );
        assert!(
            store
                .complete(&key, token, value.clone(), ttl)
                .await
                .unwrap()
        );
        key
    };
    let replayed = Claim::Completed {
        fingerprint: fp,
        value: value.clone(),
    };
    let claim = async |key: Key| {
        store
            .claim(&key, &fp, Token::generate(), lease)
            .await
            .unwrap()
    };

    // Cached by the first replay; served from memory after the backend lost it, until `max_age`.
    let key = complete(Duration::from_secs(60)).await;
    assert_eq!(claim(key).await, replayed);
    lose_all().await;
    assert_eq!(claim(key).await, replayed, "answered by the cache");
    tokio::time::sleep(max_age + Duration::from_millis(100)).await;
    assert_eq!(claim(key).await, Claim::Acquired, "entry aged out");

    // `remove` through the store forgets at once.
    let key = complete(Duration::from_secs(60)).await;
    assert_eq!(claim(key).await, replayed);
    assert!(store.remove(&key).await.unwrap());
    assert_eq!(claim(key).await, Claim::Acquired);

    // An entry never outlives its record's TTL (shorter than `max_age` here): looked up after
    // the TTL but before `max_age`, the entry is gone with its record.
    let key = complete(max_age * 2 / 5).await;
    assert_eq!(claim(key).await, replayed);
    tokio::time::sleep(max_age * 3 / 5).await;
    assert_eq!(claim(key).await, Claim::Acquired, "expired with the record");
}
