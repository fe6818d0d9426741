//! `run_cached` on the memory store: later replays clone what the first replay decoded. The
//! value is always the recorded one, and the kept copy never outlives its record.

use std::sync::Arc;
use std::time::Duration;

use idem_runtime::{Error, MemoryStore, Operation, Store};
use serde::{Deserialize, Serialize};

/// A value whose serde round trip is lossy: `note` is not recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Lossy {
    id: u32,
    #[serde(skip)]
    note: String,
}

async fn cached<T>(op: &Operation, key: &str, store: &Arc<dyn Store>, value: T) -> Result<T, Error>
where
    T: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static,
{
    op.call(op.key(&key)?)
        .store(store.clone())
        .run_cached(async move { Ok(value) })
        .await
}

#[tokio::test]
async fn cached_replays_return_the_recorded_value_not_the_owners() {
    static OP: Operation = Operation::new("cache.lossy");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let original = Lossy {
        id: 7,
        note: "only in memory".into(),
    };
    // The owner gets its own value back.
    assert_eq!(
        cached(&OP, "k", &store, original.clone()).await.unwrap(),
        original
    );
    // Every replay, the first (decoded) and the later ones (cloned), is what the record holds.
    let recorded = Lossy {
        id: 7,
        note: String::new(),
    };
    for _ in 0..3 {
        let replayed = cached(&OP, "k", &store, original.clone()).await.unwrap();
        assert_eq!(replayed, recorded);
    }
}

#[tokio::test]
async fn a_forgotten_record_takes_its_kept_copy_with_it() {
    static OP: Operation = Operation::new("cache.forget");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert_eq!(cached(&OP, "k", &store, 1u64).await.unwrap(), 1);
    assert_eq!(cached(&OP, "k", &store, 2u64).await.unwrap(), 1);
    assert_eq!(cached(&OP, "k", &store, 3u64).await.unwrap(), 1);
    assert!(store.remove(&OP.key(&"k").unwrap()).await.unwrap());
    // Runs again and records the new value; replays give the new value, not the kept 1.
    assert_eq!(cached(&OP, "k", &store, 4u64).await.unwrap(), 4);
    assert_eq!(cached(&OP, "k", &store, 5u64).await.unwrap(), 4);
    assert_eq!(cached(&OP, "k", &store, 6u64).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_expired_record_takes_its_kept_copy_with_it() {
    static OP: Operation = Operation::new("cache.ttl").with_ttl(Duration::from_secs(60));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert_eq!(cached(&OP, "k", &store, 1u64).await.unwrap(), 1);
    assert_eq!(cached(&OP, "k", &store, 2u64).await.unwrap(), 1);
    assert_eq!(cached(&OP, "k", &store, 2u64).await.unwrap(), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(cached(&OP, "k", &store, 3u64).await.unwrap(), 3);
    assert_eq!(cached(&OP, "k", &store, 4u64).await.unwrap(), 3);
}

#[tokio::test]
async fn a_payload_mismatch_is_caught_before_the_kept_copy_is_used() {
    static OP: Operation = Operation::new("cache.mismatch");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = OP.key(&"k").unwrap();
    let call = |payload: &str, value: u64| {
        let fingerprint = OP.fingerprint(&payload).unwrap();
        OP.call(key)
            .fingerprint(fingerprint)
            .store(store.clone())
            .run_cached(async move { Ok::<_, Error>(value) })
    };
    assert_eq!(call("a", 1).await.unwrap(), 1);
    assert_eq!(call("a", 2).await.unwrap(), 1);
    assert_eq!(call("a", 3).await.unwrap(), 1);
    assert!(matches!(
        call("b", 4).await,
        Err(Error::PayloadMismatch { .. })
    ));
}

#[tokio::test]
async fn a_record_replayed_as_two_types_gives_each_its_own_value() {
    // Two value types reading one record (a by-hand misuse the attribute cannot produce): the
    // kept copy is checked by type, so each gets a decode of the record, never the other's.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct A {
        n: u64,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct B {
        n: u64,
    }
    static OP: Operation = Operation::new("cache.two_types");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert_eq!(
        cached(&OP, "k", &store, A { n: 1 }).await.unwrap(),
        A { n: 1 }
    );
    for _ in 0..2 {
        assert_eq!(
            cached(&OP, "k", &store, A { n: 9 }).await.unwrap(),
            A { n: 1 }
        );
        assert_eq!(
            cached(&OP, "k", &store, B { n: 9 }).await.unwrap(),
            B { n: 1 }
        );
    }
}

#[tokio::test]
async fn uncached_and_cached_replays_agree() {
    static OP: Operation = Operation::new("cache.agree");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = OP.key(&"k").unwrap();
    let value = vec![String::from("a"), String::from("b")];
    assert_eq!(
        cached(&OP, "k", &store, value.clone()).await.unwrap(),
        value
    );
    for _ in 0..2 {
        assert_eq!(
            cached(&OP, "k", &store, Vec::<String>::new())
                .await
                .unwrap(),
            value
        );
        let plain: Result<Vec<String>, Error> = OP
            .call(key)
            .store(store.clone())
            .run(async { Ok(Vec::new()) })
            .await;
        assert_eq!(plain.unwrap(), value);
    }
}
