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

/// The Lua claim together with the local cache (the script answers the record's `PTTL`).
mod script_claim_local_cache {
    use std::time::Duration;

    use idem_runtime::store::RedisStore;
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_builder(
        RedisStore::builder()
            .claim_with_script(true)
            .local_cache(1000, Duration::from_secs(60))
    ));
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

/// The local cache never holds more than `max_entries` records: the bound used to be rounded
/// up to a multiple of its 16 shards (`local_cache(1, …)` kept up to 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_holds_at_most_max_entries() {
    use std::time::Duration;

    use idem_runtime::store::{Claim, RedisStore, Store};
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;
    use idem_tests::servers::delete_redis_keys;

    for max_entries in [1, 5, 17] {
        let fixture = RedisFixture::with_builder(
            RedisStore::builder().local_cache(max_entries, Duration::from_secs(60)),
        )
        .await;
        let store = fixture.redis();
        assert!(
            format!("{store:?}").contains(&format!("Some(({max_entries}, ")),
            "{store:?}"
        );
        let keys: Vec<_> = (0..48)
            .map(|i| unique_key(&format!("redis-cache-bound-{i}")))
            .collect();
        let lease = Duration::from_secs(30);
        for key in &keys {
            let token = Token::generate();
            let claim = store.claim(key, &Fingerprint::NONE, token, lease).await;
            assert_eq!(claim.unwrap(), Claim::Acquired);
            let value = idem_runtime::record::encode("redis", &"v").unwrap();
            let ttl = Duration::from_secs(60);
            assert!(store.complete(key, token, value, ttl).await.unwrap());
            // A replay that reaches Redis: this is what fills the cache.
            let replay = store.claim(key, &Fingerprint::NONE, Token::generate(), lease);
            assert!(matches!(replay.await.unwrap(), Claim::Completed { .. }));
        }
        // Behind the store's back: only cached records are still replayed.
        delete_redis_keys(
            &idem_tests::servers::redis_url(),
            &format!("{}*", fixture.prefix()),
        )
        .unwrap();
        let mut cached = 0;
        for key in &keys {
            let claim = store.claim(key, &Fingerprint::NONE, Token::generate(), lease);
            if matches!(claim.await.unwrap(), Claim::Completed { .. }) {
                cached += 1;
            }
        }
        assert!(
            (1..=max_entries).contains(&cached),
            "local_cache({max_entries}, …) answered {cached} replays from memory"
        );
    }
}

/// Values at a record's Redis key that are not idem records are errors naming that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_name_the_redis_key() {
    use std::time::Duration;

    use idem_runtime::store::Store;
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;

    let fixture = RedisFixture::new().await;
    let store = fixture.redis();
    let client = redis::Client::open(idem_tests::servers::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut in_progress_without_lease = vec![b'p'];
    in_progress_without_lease.extend([0; 48]);
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("short", b"pxx".to_vec()),
        ("unknown state", vec![b'z'; 60]),
        ("in progress without lease", in_progress_without_lease),
    ] {
        let key = unique_key(what);
        let rkey = store.redis_key(&key);
        let () = redis::cmd("SET")
            .arg(&rkey)
            .arg(&bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
        for message in idem_tests::conformance::claim_and_get_errors(store, &key).await {
            assert!(
                message.contains("malformed")
                    && message.contains(std::str::from_utf8(&rkey).unwrap()),
                "{what}: {message}"
            );
        }
    }
    // Another type at the key (Redis answers WRONGTYPE): an error, never a panic.
    let key = unique_key("hash");
    let () = redis::cmd("HSET")
        .arg(store.redis_key(&key))
        .arg("a")
        .arg("b")
        .query_async(&mut conn)
        .await
        .unwrap();
    let claim = store
        .claim(
            &key,
            &Fingerprint::NONE,
            Token::generate(),
            Duration::from_secs(5),
        )
        .await;
    assert!(claim.is_err(), "{claim:?}");
    let wait = store.wait_for_change(&key, Duration::from_millis(50)).await;
    assert!(wait.is_err(), "{wait:?}");
}

/// Over RESP3 (`?protocol=resp3`), both claims work: the script's Lua `false` arrives as a
/// boolean there, not as nil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_work_over_resp3() {
    use std::time::Duration;

    use idem_runtime::store::{Claim, Record, RedisStore, Store};
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;
    use idem_tests::servers::{delete_redis_keys, redis_url, unique_suffix};

    for script in [false, true] {
        let prefix = format!("idem-test:{}:", unique_suffix());
        let url = format!("{}/?protocol=resp3", redis_url().trim_end_matches('/'));
        let store = RedisStore::builder()
            .key_prefix(&prefix)
            .claim_with_script(script)
            .local_cache(10, Duration::from_secs(10))
            .connect(&url)
            .await
            .unwrap();
        let key = unique_key("resp3");
        let (token, lease, fp) = (Token::generate(), Duration::from_secs(5), Fingerprint::NONE);
        let first = store.claim(&key, &fp, token, lease).await;
        let duplicate = store.claim(&key, &fp, Token::generate(), lease).await;
        let value = idem_runtime::record::encode("redis", &"v").unwrap();
        let done = store
            .complete(&key, token, value, Duration::from_secs(60))
            .await;
        let replay = store.claim(&key, &fp, Token::generate(), lease).await;
        let get = store.get(&key).await;
        let _ = delete_redis_keys(&redis_url(), &format!("{prefix}*"));
        assert_eq!(first.unwrap(), Claim::Acquired, "script claim: {script}");
        assert!(matches!(duplicate.unwrap(), Claim::InProgress { .. }));
        assert!(done.unwrap());
        assert!(matches!(replay.unwrap(), Claim::Completed { .. }));
        assert!(matches!(get.unwrap(), Some(Record::Completed { .. })));
    }
}

/// After `SCRIPT FLUSH` (a private server), every script step falls back from `EVALSHA` to
/// `EVAL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_script_flush() {
    use std::time::Duration;

    use idem_runtime::store::{Claim, Record, RedisStore, Store};
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;

    let server = idem_tests::servers::RedisServer::start();
    let store = RedisStore::builder()
        .claim_with_script(true)
        .connect(&server.url())
        .await
        .unwrap();
    let flush = || {
        let () = server.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
    };
    let (key, token, lease) = (
        unique_key("noscript"),
        Token::generate(),
        Duration::from_secs(5),
    );
    flush();
    let claim = store.claim(&key, &Fingerprint::NONE, token, lease).await;
    assert_eq!(claim.unwrap(), Claim::Acquired);
    flush();
    assert!(store.renew(&key, token, lease).await.unwrap());
    flush();
    let value = idem_runtime::record::encode("redis", &"v").unwrap();
    assert!(
        store
            .complete(&key, token, value, Duration::from_secs(60))
            .await
            .unwrap()
    );
    flush();
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::Completed { .. })
    ));
    flush();
    assert!(!store.release(&key, token).await.unwrap());
}

/// A replay cached locally is never served past the record's TTL, and a `remove` through a
/// clone of the store drops it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_expires_with_the_record_and_forgets_through_clones() {
    use std::time::Duration;

    use idem_runtime::store::{Claim, RedisStore, Store};
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;

    let fixture =
        RedisFixture::with_builder(RedisStore::builder().local_cache(100, Duration::from_secs(60)))
            .await;
    let store = fixture.redis().clone();
    let (fp, lease) = (Fingerprint::NONE, Duration::from_secs(5));
    let complete = async |ttl: Duration| {
        let (key, token) = (unique_key("redis-cache"), Token::generate());
        assert_eq!(
            store.claim(&key, &fp, token, lease).await.unwrap(),
            Claim::Acquired
        );
        let value = idem_runtime::record::encode("redis", &"v").unwrap();
        assert!(store.complete(&key, token, value, ttl).await.unwrap());
        // A replay through Redis: now cached.
        let replay = store.claim(&key, &fp, Token::generate(), lease).await;
        assert!(matches!(replay.unwrap(), Claim::Completed { .. }));
        key
    };
    let key = complete(Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let claim = store.claim(&key, &fp, Token::generate(), lease).await;
    assert_eq!(claim.unwrap(), Claim::Acquired, "expired with the record");

    let key = complete(Duration::from_secs(60)).await;
    assert!(store.clone().remove(&key).await.unwrap());
    let claim = store.claim(&key, &fp, Token::generate(), lease).await;
    assert_eq!(
        claim.unwrap(),
        Claim::Acquired,
        "forgotten through the clone"
    );
}
