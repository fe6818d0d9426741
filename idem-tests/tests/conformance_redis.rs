//! The store conformance suite against a Redis server (`IDEM_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Each test uses a key prefix of its own and deletes its keys.

use idem_tests::servers::RedisFixture;

idem_tests::conformance_suite!(RedisFixture::new());

/// The same suite with the Lua claim script that servers before Redis 7.0 get.
mod script_claim {
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_script_claim());
}

/// The same suite with the local cache of completed records in front of Redis: a cached replay
/// must be indistinguishable from one answered by the server (TTL expiry and `remove` included).
mod local_cache {
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_local_cache());
}

/// The same suite reading each record before claiming it (`read_first`).
mod read_first {
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_read_first());
}

/// `read_first` together with the local cache (the read pipelines its `PTTL`).
mod read_first_local_cache {
    use std::time::Duration;

    use idem_runtime::store::RedisStore;
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_builder(
        RedisStore::builder()
            .claim_order(idem_runtime::store::ClaimOrder::ReadFirst)
            .local_cache(1000, Duration::from_secs(60))
    ));
}

/// The local cache answers replays without Redis (a record deleted behind the store's back is
/// still replayed until the entry's maximum age), forgets on `remove` at once, and never
/// outlives the record's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_serves_replays_within_its_bounds() {
    use std::time::Duration;

    use idem_runtime::store::RedisStore;
    use idem_tests::servers::delete_redis_keys;

    let max_age = Duration::from_secs(1);
    let fixture = RedisFixture::with_builder(RedisStore::builder().local_cache(100, max_age)).await;
    let url = idem_tests::servers::redis_url();
    let pattern = format!("{}*", fixture.prefix());
    idem_tests::conformance::local_cache_bounds(fixture.redis(), max_age, async || {
        delete_redis_keys(&url, &pattern).unwrap();
    })
    .await;
}

/// The default claim order reads first during a run of replays and claims first again once
/// first calls return (the thresholds are unit-tested in `claim_order.rs`); every body still
/// runs once and every replay returns the recorded value, in both orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_claim_order_follows_the_share_of_replays() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use idem_runtime::{Error, Operation};

    static OP: Operation = Operation::new("redis.adaptive_order");
    let fixture = RedisFixture::new().await;
    let store = idem_tests::conformance::Fixture::store(&fixture);
    let runs = AtomicUsize::new(0);
    let call = |n: u64| {
        let (store, runs) = (&store, &runs);
        async move {
            let out: Result<u64, Error> = OP
                .call(OP.key(&n).unwrap())
                .store(store)
                .run(async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(n * 2)
                })
                .await;
            out.unwrap()
        }
    };
    assert!(!fixture.redis().reads_first(), "a new store claims first");
    assert_eq!(call(21).await, 42);
    for _ in 0..800 {
        assert_eq!(call(21).await, 42);
    }
    assert!(
        fixture.redis().reads_first(),
        "800 replays in a row: reads first"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    for n in 1..=13 {
        assert_eq!(call(n).await, n * 2);
    }
    assert!(
        !fixture.redis().reads_first(),
        "13 first calls: claims first again"
    );
    assert_eq!(call(21).await, 42);
    assert_eq!(call(7).await, 14);
    assert_eq!(runs.load(Ordering::SeqCst), 14);
}
