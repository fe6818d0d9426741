//! The memory default purges its own expired records (its own process: the global is per
//! process). Nothing else can: the default store is not reachable from outside.

use std::time::Duration;

use idem_runtime::{Error, Operation};
use idem_tests::logs::capture;

#[tokio::test(start_paused = true)]
async fn the_memory_default_sweeps_its_expired_records() {
    static OP: Operation = Operation::new("global.sweep")
        .with_ttl(Duration::from_secs(2))
        .with_lease(Duration::from_secs(1));
    let (log, _guard) = capture();
    for n in 0..3u8 {
        let out: Result<u8, Error> = OP.call(OP.key(&n).unwrap()).run(async { Ok(n) }).await;
        assert_eq!(out.unwrap(), n);
    }
    // Paused time: the sleep jumps to each timer in turn, the sweeper's included.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let lines = log.take();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("memory store sweep") && l.contains("purged=3")),
        "{lines:#?}"
    );
}
