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

/// The local cache answers replays without Redis (a record deleted behind the store's back is
/// still replayed until the entry's maximum age), forgets on `remove` at once, and never
/// outlives the record's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_serves_replays_within_its_bounds() {
    use std::time::Duration;

    use idem_runtime::store::{Claim, RedisStore, Store};
    use idem_runtime::{Fingerprint, Token};
    use idem_tests::conformance::unique_key;
    use idem_tests::servers::delete_redis_keys;

    let max_age = Duration::from_millis(300);
    let fixture = RedisFixture::with_builder(RedisStore::builder().local_cache(100, max_age)).await;
    let store = fixture.redis();
    let (fp, lease) = (Fingerprint::from_bytes([5; 32]), Duration::from_secs(30));
    let value = idem_runtime::record::encode("cache", &"cached").unwrap();
    let complete = |ttl: Duration| {
        let value = value.clone();
        async move {
            let key = unique_key("redis-cache");
            let token = Token::generate();
            assert_eq!(
                store.claim(&key, &fp, token, lease).await.unwrap(),
                Claim::Acquired
            );
            assert!(store.complete(&key, token, value, ttl).await.unwrap());
            key
        }
    };
    let replayed = Claim::Completed {
        fingerprint: fp,
        value: value.clone(),
    };
    let claim = |key| async move {
        store
            .claim(&key, &fp, Token::generate(), lease)
            .await
            .unwrap()
    };

    // Cached by the first replay; served from memory after Redis lost it, until `max_age`.
    let key = complete(Duration::from_secs(60)).await;
    assert_eq!(claim(key).await, replayed);
    let url = idem_tests::servers::redis_url();
    delete_redis_keys(&url, &format!("{}*", fixture.prefix())).unwrap();
    assert_eq!(claim(key).await, replayed, "answered by the cache");
    tokio::time::sleep(max_age + Duration::from_millis(100)).await;
    assert_eq!(claim(key).await, Claim::Acquired, "entry aged out");

    // `remove` through the store forgets at once.
    let key = complete(Duration::from_secs(60)).await;
    assert_eq!(claim(key).await, replayed);
    assert!(store.remove(&key).await.unwrap());
    assert_eq!(claim(key).await, Claim::Acquired);

    // An entry never outlives its record's TTL (shorter than `max_age` here).
    let key = complete(Duration::from_millis(150)).await;
    assert_eq!(claim(key).await, replayed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(claim(key).await, Claim::Acquired, "expired with the record");
}
