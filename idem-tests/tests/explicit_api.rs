//! The explicit API: check / start / complete / fail / execute / cleanup.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idem_runtime::{Check, Error, Idempotency, MemoryStore, Operation, Start, Store};

fn handle<T: serde::Serialize + serde::de::DeserializeOwned>(
    name: &'static str,
) -> (Idempotency<T>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    (Idempotency::new(Operation::new(name), store.clone()), store)
}

#[tokio::test]
async fn start_complete_then_duplicate() {
    let (orders, _) = handle::<String>("explicit.orders");
    let key = orders.key(&"order-1").unwrap();
    assert_eq!(orders.check(&key).await.unwrap(), Check::New);
    let Start::New(claim) = orders.start(key).await.unwrap() else {
        panic!("fresh key")
    };
    assert_eq!(claim.key(), key);
    assert_eq!(orders.check(&key).await.unwrap(), Check::InFlight);
    let busy = orders.start(key).await.unwrap_err();
    assert!(matches!(busy, Error::InFlight { .. }), "{busy}");
    claim.complete(&"created".to_owned()).await.unwrap();
    assert_eq!(
        orders.check(&key).await.unwrap(),
        Check::Duplicate("created".to_owned())
    );
    match orders.start(key).await.unwrap() {
        Start::Duplicate(v) => assert_eq!(v, "created"),
        Start::New(_) => panic!("completed keys do not start again"),
    }
}

#[tokio::test]
async fn fail_and_drop_release_the_claim() {
    let (jobs, _) = handle::<u32>("explicit.jobs");
    let key = jobs.key(&7u32).unwrap();
    let Start::New(claim) = jobs.start(key).await.unwrap() else {
        panic!()
    };
    assert!(claim.fail().await.unwrap());
    assert_eq!(jobs.check(&key).await.unwrap(), Check::New);
    let Start::New(claim) = jobs.start(key).await.unwrap() else {
        panic!()
    };
    drop(claim);
    assert_eq!(
        jobs.check(&key).await.unwrap(),
        Check::New,
        "a dropped guard released the key"
    );
    assert!(matches!(jobs.start(key).await.unwrap(), Start::New(_)));
}

#[tokio::test]
async fn a_stale_claim_cannot_complete() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let jobs = Idempotency::<u32>::new(
        Operation::new("explicit.stale").with_lease(Duration::from_millis(50)),
        store,
    );
    let key = jobs.key(&1u8).unwrap();
    let Start::New(stale) = jobs.start(key).await.unwrap() else {
        panic!()
    };
    // A blocked executor: the holder's renewal task cannot run, so its lease lapses.
    std::thread::sleep(Duration::from_millis(100));
    let Start::New(fresh) = jobs.start(key).await.unwrap() else {
        panic!("lapsed lease is taken over")
    };
    let err = stale.complete(&1).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    fresh.complete(&2).await.unwrap();
    assert_eq!(jobs.check(&key).await.unwrap(), Check::Duplicate(2));
}

#[tokio::test]
async fn execute_replays_and_mismatched_payloads_are_refused() {
    let (payments, _) = handle::<u64>("explicit.payments");
    let key = payments.key(&"idem-key-from-client").unwrap();
    let first: Result<u64, Error> = payments.execute(key, || async { Ok(1999) }).await;
    let second: Result<u64, Error> = payments.execute(key, || async { Ok(0) }).await;
    assert_eq!((first.unwrap(), second.unwrap()), (1999, 1999));
    let fp_a = payments.operation().fingerprint(&"a").unwrap();
    let fp_b = payments.operation().fingerprint(&"b").unwrap();
    let other = payments.key(&"second-key").unwrap();
    let Start::New(claim) = payments.start_with(other, fp_a).await.unwrap() else {
        panic!()
    };
    claim.complete(&5).await.unwrap();
    assert!(matches!(
        payments.start_with(other, fp_b).await,
        Err(Error::PayloadMismatch { .. })
    ));
    assert!(payments.forget(&other).await.unwrap());
    assert_eq!(payments.check(&other).await.unwrap(), Check::New);
}

#[tokio::test(start_paused = true)]
async fn cleanup_counts_expired_records() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let short = Idempotency::<u8>::new(
        Operation::new("explicit.cleanup")
            .with_ttl(Duration::from_secs(1))
            .with_lease(Duration::from_secs(1)),
        store,
    );
    for n in 0..3u8 {
        let r: Result<u8, Error> = short
            .execute(short.key(&n).unwrap(), || async move { Ok(n) })
            .await;
        r.unwrap();
    }
    assert_eq!(short.cleanup().await.unwrap(), 0);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(short.cleanup().await.unwrap(), 3);
}

/// A `Claimed` held longer than its lease is renewed in the background, like a running body,
/// so a second `start` is refused instead of taking the key over.
#[tokio::test(start_paused = true)]
async fn a_held_claim_is_renewed_and_not_taken_over() {
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.renewed").with_lease(Duration::from_secs(3)),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(first) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    // Paused time: the runtime jumps from timer to timer, so renewals run on schedule.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = idem.start(key).await.unwrap_err();
    assert!(matches!(second, Error::InFlight { .. }), "{second}");
    assert!(!first.lease_lost());
    first.complete(&1).await.unwrap();
    assert_eq!(idem.check(&key).await.unwrap(), Check::Duplicate(1));
}

/// A renewal that finds the claim gone (the record was removed) flags it, and `complete` is
/// `LeaseLost`.
#[tokio::test(start_paused = true)]
async fn a_removed_claim_is_seen_as_lost() {
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.lost").with_lease(Duration::from_secs(3)),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    assert!(idem.forget(&key).await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(claim.lease_lost());
    let err = claim.complete(&1).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
}

/// `fail` dropped while its (remote) release is in flight still releases the claim.
#[tokio::test]
async fn a_fail_dropped_mid_release_still_releases() {
    let slow = Arc::new(idem_tests::slow_store::SlowStore::releasing_in(
        Duration::from_millis(200),
    ));
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.fail_dropped"),
        slow.clone() as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    let dropped = tokio::time::timeout(Duration::from_millis(20), claim.fail()).await;
    assert!(dropped.is_err(), "still releasing when dropped");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(slow.inner.get(&key).await.unwrap(), None, "released");
    assert!(matches!(idem.start(key).await.unwrap(), Start::New(_)));
}

/// A `complete` the store fails to record releases the claim (in the background: the store
/// just failed), and a retry from this process waits for that release and starts at once
/// (not `Conflict`).
#[tokio::test]
async fn a_complete_that_fails_to_record_releases_and_a_retry_starts() {
    let slow = Arc::new(
        idem_tests::slow_store::SlowStore::failing_completes_in(Duration::from_millis(1))
            .and_releasing_in(Duration::from_millis(100)),
    );
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.complete_fails"),
        slow.clone() as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    assert!(matches!(claim.complete(&7).await, Err(Error::Store { .. })));
    assert!(matches!(idem.start(key).await.unwrap(), Start::New(_)));
}

/// `complete` dropped while its (remote) write is in flight still records the value.
#[tokio::test]
async fn a_complete_dropped_mid_write_still_records() {
    let slow = Arc::new(idem_tests::slow_store::SlowStore::completing_in(
        Duration::from_millis(200),
    ));
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.complete_dropped"),
        slow.clone() as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    let dropped = tokio::time::timeout(Duration::from_millis(20), claim.complete(&7)).await;
    assert!(dropped.is_err(), "still recording when dropped");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        idem.start(key).await.unwrap(),
        Start::Duplicate(7)
    ));
}

/// `execute` calls its closure only when the key is claimed: side effects written before the
/// closure's `async` block do not run again on replays.
#[tokio::test]
async fn execute_calls_work_only_when_it_runs() {
    let idem = Idempotency::<u32>::new(
        Operation::new("explicit.execute_lazy"),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = idem
            .execute(key, || {
                calls.fetch_add(1, Ordering::SeqCst);
                let current = idem_runtime::current().map(|c| c.key());
                async move {
                    assert_eq!(current, Some(key), "called inside the call");
                    Ok::<_, Error>(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `complete` refuses a value that would not replay as itself (JSON writes `Some(None)` as
/// `null`, read back as `None`), and nothing is recorded.
#[tokio::test]
async fn complete_refuses_a_value_that_would_not_replay_as_itself() {
    let idem = Idempotency::<Option<Option<u8>>>::new(
        Operation::new("explicit.faithful"),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("a new key")
    };
    let err = claim.complete(&Some(None)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Encode { reason, .. } if reason.contains("would not replay as itself")),
        "{err}"
    );
    let Start::New(claim) = idem.start(key).await.unwrap() else {
        panic!("nothing was recorded, and the claim was released")
    };
    claim.complete(&Some(Some(3))).await.unwrap();
    assert!(matches!(
        idem.start(key).await.unwrap(),
        Start::Duplicate(Some(Some(3)))
    ));
}

/// A hand-built operation whose lease is zero is refused before the claim.
#[tokio::test]
async fn start_refuses_a_zero_lease() {
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.zero_lease").with_lease(Duration::ZERO),
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
    );
    let key = idem.key(&1u8).unwrap();
    let err = idem.start(key).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("lease")),
        "{err}"
    );
}

/// A hand-built operation whose ttl is zero, or shorter than its lease, would record nothing
/// that outlives its claim: refused before the claim, by `start` and by `execute`.
#[tokio::test]
async fn a_ttl_shorter_than_the_lease_is_refused() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for op in [
        Operation::new("explicit.zero_ttl").with_ttl(Duration::ZERO),
        Operation::new("explicit.short_ttl")
            .with_ttl(Duration::from_millis(10))
            .with_lease(Duration::from_secs(1)),
    ] {
        let idem = Idempotency::<u8>::new(op, store.clone());
        let key = idem.key(&1u8).unwrap();
        let err = idem.start(key).await.unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("shorter than its lease") && m.contains("with_ttl")),
            "{err}"
        );
        let ran = AtomicUsize::new(0);
        let err = idem
            .execute(key, || async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert!(store.get(&key).await.unwrap().is_none());
    }
    // A ttl equal to the lease is accepted.
    let idem = Idempotency::<u8>::new(
        Operation::new("explicit.ttl_is_lease")
            .with_ttl(Duration::from_secs(1))
            .with_lease(Duration::from_secs(1)),
        store,
    );
    let key = idem.key(&1u8).unwrap();
    let out: Result<u8, Error> = idem.execute(key, || async { Ok(4) }).await;
    assert_eq!(out.unwrap(), 4);
}

/// Outside a tokio runtime (a store driven by another executor), a claim whose `complete`
/// fails is released and the error returned. (The release's time limit needs tokio's timer:
/// it panicked there.)
#[test]
fn a_failed_complete_outside_a_tokio_runtime_is_released_without_a_panic() {
    let down = Arc::new(idem_tests::down_store::DownStore::down_after_claims());
    let handle: Idempotency<u32> = Idempotency::new(
        Operation::new("explicit.no_runtime"),
        down.clone() as Arc<dyn Store>,
    );
    let key = handle.operation().key(&1u8).unwrap();
    futures::executor::block_on(async {
        let Start::New(claimed) = handle.start(key).await.unwrap() else {
            panic!("a new key");
        };
        let out = claimed.complete(&7).await;
        assert!(matches!(out, Err(Error::Store { .. })), "{out:?}");
    });
    assert_eq!(down.releases(), 1, "released once, in the call");
}
