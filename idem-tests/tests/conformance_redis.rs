//! The store conformance suite against a Redis server (`IDEM_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Each test uses a key prefix of its own and deletes its keys.

use idem_tests::servers::RedisFixture;

idem_tests::conformance_suite!(RedisFixture::new());

/// The same suite with the Lua claim script that servers before Redis 7.0 get.
mod script_claim {
    use idem_tests::servers::RedisFixture;

    idem_tests::conformance_suite!(RedisFixture::with_script_claim());
}
