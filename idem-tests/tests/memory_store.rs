//! Behaviour specific to the memory store: the capacity bound, eviction order, the sweeper.

use std::sync::Arc;
use std::time::Duration;

use idem_runtime::store::{Claim, Store};
use idem_runtime::{Error, Fingerprint, Key, MemoryStore, Operation, Token};

const LEASE: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(3600);

fn key(n: u32) -> Key {
    Operation::new("memory").key(&n).unwrap()
}

fn value() -> bytes::Bytes {
    idem_runtime::record::encode("memory", &1u8).unwrap()
}

async fn claim(store: &MemoryStore, n: u32) -> Result<Token, Error> {
    let token = Token::generate();
    match store
        .claim(&key(n), &Fingerprint::NONE, token, LEASE)
        .await?
    {
        Claim::Acquired => Ok(token),
        other => panic!("key {n} should be new, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn capacity_is_never_exceeded_and_in_progress_is_never_evicted() {
    let store = MemoryStore::builder().shards(1).max_entries(4).build();
    let mut owners = Vec::new();
    for n in 0..4 {
        owners.push((n, claim(&store, n).await.unwrap()));
    }
    assert_eq!(store.len(), 4);
    // Full of in-progress records: a new claim is refused, nothing is evicted.
    let refused = store
        .claim(&key(99), &Fingerprint::NONE, Token::generate(), LEASE)
        .await;
    let err = refused.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Capacity {
                max_entries: 4,
                shard_capacity: 4
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_entries"));
    assert_eq!(store.len(), 4);
    // Complete two (0 first, then 1): they become evictable, oldest completion first.
    for (n, token) in &owners[..2] {
        assert!(
            store
                .complete(&key(*n), *token, value(), TTL)
                .await
                .unwrap()
        );
    }
    claim(&store, 10).await.unwrap();
    assert_eq!(store.len(), 4);
    assert!(
        store.get(&key(0)).await.unwrap().is_none(),
        "the least recently completed goes first"
    );
    assert!(store.get(&key(1)).await.unwrap().is_some());
    claim(&store, 11).await.unwrap();
    assert!(store.get(&key(1)).await.unwrap().is_none());
    // The in-progress owners were never evicted: they can still complete.
    for (n, token) in &owners[2..] {
        assert!(
            store
                .complete(&key(*n), *token, value(), TTL)
                .await
                .unwrap(),
            "owner {n} kept its claim"
        );
    }
    assert!(store.len() <= 4);
}

#[tokio::test(start_paused = true)]
async fn a_full_store_drops_expired_records_first() {
    let store = MemoryStore::builder().shards(1).max_entries(3).build();
    let short = claim(&store, 0).await.unwrap();
    store
        .complete(&key(0), short, value(), Duration::from_secs(1))
        .await
        .unwrap();
    let long = claim(&store, 1).await.unwrap();
    store.complete(&key(1), long, value(), TTL).await.unwrap();
    let lapsing = Token::generate();
    store
        .claim(&key(2), &Fingerprint::NONE, lapsing, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    claim(&store, 3).await.unwrap();
    // Both expired records (a completed one and a lapsed lease) went before the live one.
    assert!(store.get(&key(1)).await.unwrap().is_some());
    assert_eq!(store.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn many_keys_over_many_shards_stay_within_the_bound() {
    let store = MemoryStore::builder().max_entries(1000).build();
    for n in 0..5000 {
        let token = claim(&store, n).await.unwrap();
        store.complete(&key(n), token, value(), TTL).await.unwrap();
        assert!(store.len() <= 1000, "bound exceeded at {n}");
    }
    assert!(
        store.len() > 500,
        "eviction should not empty the store: {}",
        store.len()
    );
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_purges_expired_records() {
    let store = Arc::new(MemoryStore::new());
    let sweeper = store.spawn_sweeper(Duration::from_secs(10));
    let token = claim(&store, 1).await.unwrap();
    store
        .complete(&key(1), token, value(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(store.len(), 1);
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert_eq!(store.len(), 0, "the sweep removed the expired record");
    drop(store);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        sweeper.is_finished(),
        "the sweeper stops once the store is gone"
    );
}

/// Small stores get one shard, so the bound is the whole store's, and the capacity error says
/// what was full.
#[tokio::test]
async fn a_small_store_uses_its_whole_bound() {
    let store = MemoryStore::builder().max_entries(10).build();
    let mut held = 0;
    let err = loop {
        match store
            .claim(&key(held), &Fingerprint::NONE, Token::generate(), LEASE)
            .await
        {
            Ok(Claim::Acquired) => held += 1,
            Ok(other) => panic!("{other:?}"),
            Err(err) => break err,
        }
    };
    assert_eq!(held, 10, "refused only when all 10 records are in progress");
    assert!(
        matches!(
            err,
            Error::Capacity {
                max_entries: 10,
                shard_capacity: 10
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("holds 10 records"), "{message}");
}

/// Every shard of a large store takes records: with 65,536 shards requested, no more are made
/// than 16 bits of the key can pick, so the bound stays reachable.
#[tokio::test]
async fn shards_are_capped_so_every_one_can_be_used() {
    let store = MemoryStore::builder()
        .max_entries(1 << 24)
        .shards(1 << 20)
        .build();
    let debug = format!("{store:?}");
    assert!(debug.contains("shards: 65536"), "{debug}");
}

/// A sweeper asked to run every zero seconds runs every millisecond instead of dying.
#[tokio::test(start_paused = true)]
async fn a_zero_period_sweeper_still_sweeps() {
    let store = Arc::new(MemoryStore::new());
    let sweeper = store.spawn_sweeper(Duration::ZERO);
    store
        .claim(
            &key(1),
            &Fingerprint::NONE,
            Token::generate(),
            Duration::from_millis(5),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!sweeper.is_finished(), "the sweeper is alive");
    assert_eq!(store.len(), 0, "the lapsed claim was swept");
    sweeper.abort();
}

/// A store nobody sweeps (the process-wide default has no sweeper) still gives back the memory
/// of expired records long before it is full: its shards drop them as they take new keys, and
/// in amortised O(1) per insert (a pass after as many new keys as half the shard's records).
#[tokio::test(start_paused = true)]
async fn new_keys_drop_expired_records_without_a_sweeper() {
    let store = MemoryStore::builder().shards(1).build();
    for n in 0..1_000 {
        let token = claim(&store, n).await.unwrap();
        assert!(
            store
                .complete(&key(n), token, value(), Duration::from_secs(1))
                .await
                .unwrap()
        );
    }
    assert_eq!(store.len(), 1_000, "nothing expired yet, nothing dropped");
    tokio::time::advance(Duration::from_secs(2)).await;
    // A pass comes once the new keys outnumber half the records (expired ones included) plus
    // 64: within 1,130 of them here, whatever the count since the last pass.
    for n in 1_000..2_130 {
        claim(&store, n).await.unwrap();
    }
    assert_eq!(
        store.len(),
        1_130,
        "the 1,000 expired records were dropped, the live ones kept"
    );
}
