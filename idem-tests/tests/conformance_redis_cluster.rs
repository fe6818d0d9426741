//! The store conformance suite against a real 3-node Redis Cluster that this test binary
//! starts on loopback from the machine's `redis-server` (`--cluster-enabled yes`, free ports,
//! temporary directories, no persistence) and `redis-cli --cluster create`, and tears down when
//! its last test ends (also after a failure).

use idem_tests::servers::RedisClusterFixture;

idem_tests::conformance_suite!(RedisClusterFixture::new());

/// The same suite reading each record before claiming it (`read_first`).
mod read_first {
    use idem_tests::servers::RedisClusterFixture;

    idem_tests::conformance_suite!(RedisClusterFixture::with_read_first());
}

/// The same suite with the local cache: its claims and reads send `PTTL` in one
/// `MULTI`/`EXEC` with them, routed to the key's node.
mod local_cache {
    use std::time::Duration;

    use idem_runtime::store::{ClaimOrder, RedisStore};
    use idem_tests::servers::RedisClusterFixture;

    idem_tests::conformance_suite!(RedisClusterFixture::with_builder(
        RedisStore::builder().local_cache(1000, Duration::from_secs(60))
    ));

    mod read_first {
        use super::*;

        idem_tests::conformance_suite!(RedisClusterFixture::with_builder(
            RedisStore::builder()
                .claim_order(ClaimOrder::ReadFirst)
                .local_cache(1000, Duration::from_secs(60))
        ));
    }
}
