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
