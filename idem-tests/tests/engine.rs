//! The engine's state machine, driven through the public API on the memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idem_runtime::store::{Claim, Record};
use idem_runtime::{
    Error, Fingerprint, Idempotency, MemoryStore, OnConflict, Operation, Start, Store, Token,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Notify, oneshot};

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[tokio::test]
async fn same_key_twice_runs_once_and_replays() {
    static OP: Operation = Operation::new("engine.replay");
    let (store, runs) = (store(), counter());
    let key = OP.key(&"order-1").unwrap();
    for _ in 0..3 {
        let out: Result<String, Error> = OP
            .call(key)
            .store(store.clone())
            .run(async {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                Ok(format!("run {n}"))
            })
            .await;
        assert_eq!(out.unwrap(), "run 0");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_borrowed_store_serves_the_call_without_being_cloned() {
    static OP: Operation = Operation::new("engine.borrowed_store");
    let (store, runs) = (store(), counter());
    let key = OP.key(&"order-2").unwrap();
    for _ in 0..2 {
        let out: Result<usize, Error> = OP
            .call(key)
            .store(&store)
            .run(async {
                runs.fetch_add(1, Ordering::SeqCst);
                // Borrowed, not cloned: the test holds the only reference.
                Ok(Arc::strong_count(&store))
            })
            .await;
        assert_eq!(out.unwrap(), 1);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the second call replays");
    // The record is in the borrowed store, not in the process-wide default.
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::Completed { .. })
    ));
}

#[tokio::test]
async fn failure_releases_and_the_retry_runs_again() {
    static OP: Operation = Operation::new("engine.retry");
    let (store, runs) = (store(), counter());
    let key = OP.key(&1u64).unwrap();
    #[derive(Debug, PartialEq)]
    enum AppError {
        Declined,
        Idem(String),
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            AppError::Idem(e.to_string())
        }
    }
    let first: Result<u32, AppError> = OP
        .call(key)
        .store(store.clone())
        .run(async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(AppError::Declined)
        })
        .await;
    assert_eq!(first, Err(AppError::Declined));
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "an Err leaves no record"
    );
    let second: Result<u32, AppError> = OP
        .call(key)
        .store(store.clone())
        .run(async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        })
        .await;
    assert_eq!(second, Ok(7));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_failed_owner_get_a_retryable_error() {
    static OP: Operation = Operation::new("engine.owner_failed");
    let (store, runs) = (store(), counter());
    let key = OP.key(&"k").unwrap();
    let (fail_now, failed) = oneshot::channel::<()>();
    let owner = {
        let (store, runs) = (store.clone(), runs.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    failed.await.ok();
                    Err::<u32, Error>(Error::Config("declined".into()))
                })
                .await
        })
    };
    while store.get(&key).await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (store, runs) = (store.clone(), runs.clone());
            tokio::spawn(async move {
                OP.call(key)
                    .store(store)
                    .run(async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<u32, Error>(1)
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    fail_now.send(()).unwrap();
    assert!(matches!(owner.await.unwrap(), Err(Error::Config(_))));
    for waiter in waiters {
        let err = waiter.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::OwnerFailed { .. }), "{err}");
        assert!(err.is_retryable());
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "waiters must not re-run the body in turn"
    );
}

#[tokio::test]
async fn a_panic_releases_the_claim_and_resumes() {
    static OP: Operation = Operation::new("engine.panic");
    let store = store();
    let key = OP.key(&"boom").unwrap();
    let task = {
        let store = store.clone();
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    if key.as_bytes()[0] < 255 || key.as_bytes()[0] == 255 {
                        panic!("body exploded");
                    }
                    Ok::<u32, Error>(0)
                })
                .await
        })
    };
    let joined = task.await.unwrap_err();
    assert!(joined.is_panic());
    let message = joined.into_panic();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"body exploded"));
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "the panic released the claim"
    );
    let again: Result<u32, Error> = OP.call(key).store(store).run(async { Ok(5) }).await;
    assert_eq!(again.unwrap(), 5);
}

#[tokio::test]
async fn a_dropped_call_releases_its_claim() {
    static OP: Operation = Operation::new("engine.cancel");
    let store = store();
    let key = OP.key(&"slow").unwrap();
    let started = Arc::new(Notify::new());
    let call = {
        let (store, started) = (store.clone(), started.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    started.notify_one();
                    std::future::pending::<()>().await;
                    Ok::<u32, Error>(0)
                })
                .await
        })
    };
    started.notified().await;
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::InProgress { .. })
    ));
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "no key stays stuck after a drop"
    );
    let next: Result<u32, Error> = OP.call(key).store(store).run(async { Ok(9) }).await;
    assert_eq!(next.unwrap(), 9);
}

#[tokio::test]
async fn a_timed_out_caller_releases_its_claim() {
    static OP: Operation = Operation::new("engine.timeout");
    let store = store();
    let key = OP.key(&"timeout").unwrap();
    let call = OP.call(key).store(store.clone()).run(async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<u32, Error>(0)
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );
    assert!(store.get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn reentering_the_same_key_is_an_error_not_a_deadlock() {
    static OP: Operation = Operation::new("engine.reentrant");
    let store = store();
    let key = OP.key(&"again").unwrap();
    let other = OP.key(&"other").unwrap();
    let inner_store = store.clone();
    let out: Result<(u32, String), Error> = OP
        .call(key)
        .store(store.clone())
        .run(async move {
            // A different key nests fine.
            let nested: u32 = OP
                .call(other)
                .store(inner_store.clone())
                .run(async { Ok::<_, Error>(3) })
                .await?;
            let same: Result<u32, Error> =
                OP.call(key).store(inner_store).run(async { Ok(4) }).await;
            Ok((nested, same.unwrap_err().to_string()))
        })
        .await;
    let (nested, message) = out.unwrap();
    assert_eq!(nested, 3);
    assert!(
        message.contains("called itself with its own key"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_callers_with_wait_run_the_body_once() {
    static OP: Operation = Operation::new("engine.storm");
    let (store, runs) = (store(), counter());
    let key = OP.key(&"storm").unwrap();
    let barrier = Arc::new(Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (store, runs, barrier) = (store.clone(), runs.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                OP.call(key)
                    .store(store)
                    .run(async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Error>(vec![1u8, 2, 3])
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), vec![1, 2, 3]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_callers_with_reject_get_999_in_flight_errors() {
    static OP: Operation = Operation::new("engine.reject").with_on_conflict(OnConflict::Reject);
    let (store, runs) = (store(), counter());
    let key = OP.key(&"reject").unwrap();
    let barrier = Arc::new(Barrier::new(1000));
    let (hold_tx, hold_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..1000 {
        let (store, runs, barrier, done) = (
            store.clone(),
            runs.clone(),
            barrier.clone(),
            done_tx.clone(),
        );
        let mut hold = hold_rx.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            let out = OP
                .call(key)
                .store(store)
                .run(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Held until every other caller has been answered.
                    hold.wait_for(|released| *released).await.ok();
                    Ok::<_, Error>(42u32)
                })
                .await;
            done.send(out).ok();
        });
    }
    for _ in 0..999 {
        let out = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(out, Err(Error::InFlight { .. })), "{out:?}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), done_rx.recv())
            .await
            .is_err(),
        "the owner is still held"
    );
    hold_tx.send(true).unwrap();
    assert_eq!(done_rx.recv().await.unwrap().unwrap(), 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn renewal_keeps_a_slow_body_owned() {
    static OP: Operation = Operation::new("engine.renewal")
        .with_lease(Duration::from_secs(3))
        .with_on_conflict(OnConflict::Reject);
    let (store, runs) = (store(), counter());
    let key = OP.key(&"slow").unwrap();
    let owner = {
        let (store, runs) = (store.clone(), runs.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(9)).await; // 3× the lease
                    assert!(!idem_runtime::current().unwrap().lease_lost());
                    Ok::<_, Error>("slow result".to_owned())
                })
                .await
        })
    };
    for probe_at in [2, 4, 6, 8] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let probe: Result<String, Error> = OP
            .call(key)
            .store(store.clone())
            .run(async { Ok("intruder".into()) })
            .await;
        assert!(
            matches!(probe, Err(Error::InFlight { .. })),
            "probe at ~{probe_at}s: {probe:?}"
        );
    }
    assert_eq!(owner.await.unwrap().unwrap(), "slow result");
    let replay: Result<String, Error> = OP
        .call(key)
        .store(store)
        .run(async { Ok("intruder".into()) })
        .await;
    assert_eq!(replay.unwrap(), "slow result");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_visible_to_the_body_and_fails_complete() {
    static OP: Operation = Operation::new("engine.lease_lost").with_lease(Duration::from_secs(3));
    let store = store();
    let key = OP.key(&"lost").unwrap();
    let saw_loss = Arc::new(AtomicUsize::new(0));
    let owner = {
        let (store, saw_loss) = (store.clone(), saw_loss.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async move {
                    let me = idem_runtime::current().expect("inside a body");
                    while !me.lease_lost() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    saw_loss.store(1, Ordering::SeqCst);
                    Ok::<_, Error>(1u8)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    // An operator forgets the key while the body runs: the next renewal finds a stranger's record.
    assert!(
        OP.call(key)
            .store(store.clone())
            .run(async { Ok::<u8, Error>(0) })
            .await
            .is_err()
    );
    assert!(store.remove(&key).await.unwrap());
    let intruder: Result<u8, Error> = OP
        .call(key)
        .store(store.clone())
        .run(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(2)
        })
        .await;
    assert_eq!(intruder.unwrap(), 2);
    let out = owner.await.unwrap();
    assert!(matches!(out, Err(Error::LeaseLost { .. })), "{out:?}");
    assert_eq!(saw_loss.load(Ordering::SeqCst), 1);
    // The fenced-out owner did not overwrite the new owner's record.
    let replay: Result<u8, Error> = OP.call(key).store(store).run(async { Ok(3) }).await;
    assert_eq!(replay.unwrap(), 2);
}

#[tokio::test]
async fn payload_mismatch_against_in_progress_and_completed_records() {
    static OP: Operation = Operation::new("engine.mismatch");
    let store = store();
    let key = OP.key(&"client-key-1").unwrap();
    let (ours, theirs) = (
        OP.fingerprint(&("alice", 100u64)).unwrap(),
        OP.fingerprint(&("bob", 100u64)).unwrap(),
    );
    assert_ne!(ours, theirs);
    let (release, released) = oneshot::channel::<()>();
    let owner = {
        let store = store.clone();
        tokio::spawn(async move {
            OP.call(key)
                .fingerprint(ours)
                .store(store)
                .run(async {
                    released.await.ok();
                    Ok::<_, Error>(100u64)
                })
                .await
        })
    };
    while store.get(&key).await.unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    let during: Result<u64, Error> = OP
        .call(key)
        .fingerprint(theirs)
        .store(store.clone())
        .run(async { Ok(0) })
        .await;
    assert!(
        matches!(during, Err(Error::PayloadMismatch { .. })),
        "{during:?}"
    );
    release.send(()).unwrap();
    assert_eq!(owner.await.unwrap().unwrap(), 100);
    let after: Result<u64, Error> = OP
        .call(key)
        .fingerprint(theirs)
        .store(store.clone())
        .run(async { Ok(0) })
        .await;
    let err = after.unwrap_err();
    assert!(matches!(err, Error::PayloadMismatch { .. }));
    assert!(err.to_string().contains("different payload"));
    let same: Result<u64, Error> = OP
        .call(key)
        .fingerprint(ours)
        .store(store)
        .run(async { Ok(0) })
        .await;
    assert_eq!(same.unwrap(), 100);
}

#[tokio::test]
async fn the_body_reads_its_own_key_and_token() {
    static OP: Operation = Operation::new("engine.context");
    assert!(idem_runtime::current().is_none());
    let key = OP.key(&"ctx").unwrap();
    let seen: Result<(String, String, String), Error> = OP
        .call(key)
        .store(store())
        .run(async {
            let me = idem_runtime::current().unwrap();
            Ok((
                me.operation().to_owned(),
                me.key().to_string(),
                me.token().to_string(),
            ))
        })
        .await;
    let (operation, seen_key, token) = seen.unwrap();
    assert_eq!(operation, "engine.context");
    assert_eq!(seen_key, key.to_string());
    assert_eq!(token.len(), 32);
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_runs_the_body_again() {
    static OP: Operation = Operation::new("engine.ttl").with_ttl(Duration::from_secs(60));
    let (store, runs) = (store(), counter());
    let key = OP.key(&"ttl").unwrap();
    let call = || {
        let runs = runs.clone();
        OP.call(key)
            .store(store.clone())
            .run(async move { Ok::<_, Error>(runs.fetch_add(1, Ordering::SeqCst)) })
    };
    assert_eq!(call().await.unwrap(), 0);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(call().await.unwrap(), 0, "still within the TTL");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(call().await.unwrap(), 1, "expired: the body runs again");
}

#[tokio::test(start_paused = true)]
async fn waiting_gives_up_after_the_wait_timeout() {
    static OP: Operation =
        Operation::new("engine.wait_timeout").with_wait_timeout(Duration::from_secs(2));
    let store = store();
    let key = OP.key(&"busy").unwrap();
    let owner = {
        let store = store.clone();
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<_, Error>(1u8)
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let waited: Result<u8, Error> = OP.call(key).store(store.clone()).run(async { Ok(2) }).await;
    assert!(matches!(waited, Err(Error::InFlight { .. })), "{waited:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let message = waited.unwrap_err().to_string();
    assert!(message.contains("has 58.0s left"), "{message}");
    assert_eq!(owner.await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn self_describing_values_round_trip_through_a_replay() {
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Text(String),
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    #[serde(tag = "type")]
    enum Internal {
        Card { last4: String },
        Wire,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Base {
        id: String,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Receipt {
        #[serde(flatten)]
        base: Base,
        amount: Untagged,
        method: Internal,
        extra: serde_json::Value,
    }
    static OP: Operation = Operation::new("engine.serde");
    let store = store();
    let key = OP.key(&"serde").unwrap();
    let receipt = Receipt {
        base: Base { id: "r1".into() },
        amount: Untagged::Text("12.50".into()),
        method: Internal::Card {
            last4: "4242".into(),
        },
        extra: serde_json::json!({"nested": [1, "two", null, {"x": 1.5}]}),
    };
    let first = OP
        .call(key)
        .store(store.clone())
        .run(async { Ok::<_, Error>(receipt.clone()) })
        .await
        .unwrap();
    let replay = OP
        .call(key)
        .store(store)
        .run(async {
            let ran_again: Result<Receipt, Error> =
                Err(Error::Config("the body must not run on a replay".into()));
            ran_again
        })
        .await
        .unwrap();
    assert_eq!(first, receipt);
    assert_eq!(replay, receipt);
}

#[tokio::test]
async fn a_changed_output_type_is_a_decode_error_advising_a_version_bump() {
    static V0: Operation = Operation::new("engine.decode");
    static V1: Operation = Operation::new("engine.decode").with_version(1);
    let store = store();
    let old: u32 = V0
        .call(V0.key(&"k").unwrap())
        .store(store.clone())
        .run(async { Ok::<_, Error>(5) })
        .await
        .unwrap();
    assert_eq!(old, 5);
    let changed: Result<Vec<String>, Error> = V0
        .call(V0.key(&"k").unwrap())
        .store(store.clone())
        .run(async { Ok(vec![]) })
        .await;
    let err = changed.unwrap_err();
    assert!(matches!(
        err,
        Error::Decode {
            operation: "engine.decode",
            ..
        }
    ));
    assert!(
        err.to_string().contains("bump the operation's `version`"),
        "{err}"
    );
    let bumped: Vec<String> = V1
        .call(V1.key(&"k").unwrap())
        .store(store)
        .run(async { Ok::<_, Error>(vec!["new".into()]) })
        .await
        .unwrap();
    assert_eq!(bumped, vec!["new".to_owned()]);
}

#[tokio::test]
async fn an_oversized_value_is_refused_and_the_claim_released() {
    static OP: Operation = Operation::new("engine.too_large");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::builder().max_value_bytes(64).build());
    let key = OP.key(&"big").unwrap();
    let out: Result<String, Error> = OP
        .call(key)
        .store(store.clone())
        .run(async { Ok("x".repeat(100)) })
        .await;
    let err = out.unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { limit: 64, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("a retry runs the body again") && message.contains("max_value_bytes"),
        "{message}"
    );
    assert!(store.get(&key).await.unwrap().is_none());
    let small: Result<String, Error> = OP
        .call(key)
        .store(store)
        .run(async { Ok("ok".into()) })
        .await;
    assert_eq!(small.unwrap(), "ok");
}

#[tokio::test]
async fn with_store_scopes_the_store_to_a_task() {
    static OP: Operation = Operation::new("engine.with_store");
    let (a, b) = (store(), store());
    let key = OP.key(&"scoped").unwrap();
    let in_a: u8 =
        idem_runtime::with_store(a.clone(), OP.call(key).run(async { Ok::<_, Error>(1) }))
            .await
            .unwrap();
    let in_b: u8 =
        idem_runtime::with_store(b.clone(), OP.call(key).run(async { Ok::<_, Error>(2) }))
            .await
            .unwrap();
    assert_eq!((in_a, in_b), (1, 2), "two stores, two records");
    assert!(a.get(&key).await.unwrap().is_some() && b.get(&key).await.unwrap().is_some());
    assert!(
        idem_runtime::with_store(a.clone(), OP.forget(&key))
            .await
            .unwrap()
    );
    assert!(a.get(&key).await.unwrap().is_none());
}

/// `Duration::MAX` as TTL, lease or wait timeout means "practically never": no overflow panic.
#[tokio::test]
async fn duration_max_settings_keep_records_and_wait_without_overflow() {
    static OP: Operation = Operation::new("engine.duration_max")
        .with_ttl(Duration::MAX)
        .with_lease(Duration::MAX)
        .with_wait_timeout(Duration::MAX);
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let owner = tokio::spawn({
        let store = store.clone();
        async move {
            let out: Result<u8, Error> = OP
                .call(key)
                .store(store)
                .run(async move {
                    started_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok(7)
                })
                .await;
            out
        }
    });
    started_rx.await.unwrap();
    let Some(Record::InProgress { remaining, .. }) = store.get(&key).await.unwrap() else {
        panic!("in progress")
    };
    assert!(
        remaining > Duration::from_secs(10 * 365 * 24 * 3600),
        "{remaining:?}"
    );
    let waiter = tokio::spawn({
        let store = store.clone();
        async move {
            let out: Result<u8, Error> = OP.call(key).store(store).run(async { Ok(8) }).await;
            out
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    release_tx.send(()).unwrap();
    assert_eq!(owner.await.unwrap().unwrap(), 7);
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        7,
        "the waiter got the owner's value"
    );
    let again: Result<u8, Error> = OP.call(key).store(store).run(async { Ok(9) }).await;
    assert_eq!(again.unwrap(), 7, "kept with a TTL of Duration::MAX");
}

/// An operation built by hand with a lease under a millisecond is refused before any claim.
#[tokio::test]
async fn a_zero_lease_is_a_config_error() {
    static OP: Operation = Operation::new("engine.zero_lease").with_lease(Duration::ZERO);
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let ran = counter();
    let out: Result<u8, Error> = OP
        .call(key)
        .store(store.clone())
        .run({
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            }
        })
        .await;
    let err = out.unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("lease") && m.contains("engine.zero_lease")),
        "{err}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(store.get(&key).await.unwrap().is_none());
}

/// The body failed and the engine is releasing the claim on a remote-style store; the caller's
/// future is dropped during that release. The claim must still be released (from the guard's
/// `Drop`), not left in progress for a whole lease.
#[tokio::test]
async fn a_call_dropped_while_its_release_is_in_flight_still_releases() {
    static OP: Operation =
        Operation::new("engine.cancel_release").with_on_conflict(OnConflict::Reject);
    let slow = Arc::new(idem_tests::slow_store::SlowStore::releasing_in(
        Duration::from_millis(200),
    ));
    let store: Arc<dyn Store> = slow.clone();
    let key = OP.key(&1u8).unwrap();
    let call = OP
        .call(key)
        .store(store.clone())
        .run(async { Err::<u8, Error>(Error::Config("the body failed".into())) });
    // Dropped 20 ms in: the body has failed, its release is in flight.
    let dropped = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(dropped.is_err(), "still releasing when dropped");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(slow.inner.get(&key).await.unwrap(), None, "released");
    let retry: Result<u8, Error> = OP.call(key).store(store).run(async { Ok(2) }).await;
    assert_eq!(retry.unwrap(), 2);
}

/// A call of `op` on `store` whose body counts its runs in `runs` and returns `value`.
fn counted_call(
    op: &'static Operation,
    key: idem_runtime::Key,
    store: &Arc<dyn Store>,
    runs: &Arc<AtomicUsize>,
    value: u8,
) -> impl Future<Output = Result<u8, Error>> + use<> {
    let runs = runs.clone();
    op.call(key).store(store.clone()).run(async move {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<u8, Error>(value)
    })
}

/// The body returned `Ok` and its result is on its way to a remote-style store when the
/// caller's future is dropped (a timeout, a client gone). The result must still be recorded:
/// releasing the claim instead would run the finished body a second time on the next call.
#[tokio::test]
async fn a_call_dropped_while_its_result_is_recorded_keeps_the_result() {
    static OP: Operation =
        Operation::new("engine.cancel_complete").with_on_conflict(OnConflict::Reject);
    let slow = Arc::new(idem_tests::slow_store::SlowStore::completing_in(
        Duration::from_millis(200),
    ));
    let store: Arc<dyn Store> = slow.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let key = OP.key(&1u8).unwrap();
    let call = |value: u8| counted_call(&OP, key, &store, &runs, value);
    // Dropped 20 ms in: the body is done, its `complete` is in flight.
    let dropped = tokio::time::timeout(Duration::from_millis(20), call(1)).await;
    assert!(dropped.is_err(), "still recording when dropped");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        matches!(
            slow.inner.get(&key).await.unwrap(),
            Some(Record::Completed { .. })
        ),
        "recorded"
    );
    assert_eq!(call(2).await.unwrap(), 1, "replayed");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// As above, but the store fails to record the result (the connection drops mid-write): the
/// call seen through for its dropped caller then releases the claim, so the next call runs the
/// body again at once instead of finding the key in progress for a whole lease (from this
/// process, it waits for that release rather than answering `InFlight`).
#[tokio::test]
async fn a_dropped_call_whose_result_fails_to_record_releases_its_claim() {
    static OP: Operation = Operation::new("engine.cancel_complete_fails")
        .with_lease(Duration::from_secs(60))
        .with_on_conflict(OnConflict::Reject);
    let slow = Arc::new(idem_tests::slow_store::SlowStore::failing_completes_in(
        Duration::from_millis(100),
    ));
    let store: Arc<dyn Store> = slow.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let key = OP.key(&1u8).unwrap();
    let call = |value: u8| counted_call(&OP, key, &store, &runs, value);
    // Dropped 20 ms in: the body is done, its `complete` is in flight (and will fail).
    let dropped = tokio::time::timeout(Duration::from_millis(20), call(1)).await;
    assert!(dropped.is_err(), "still recording when dropped");
    // The next call of this process waits for that complete and the release after it (not
    // `InFlight`), then runs; completes keep failing, so its own claim is released again.
    assert!(
        matches!(call(2).await, Err(Error::Store { .. })),
        "ran once the dropped call's claim was released"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "ran again after the release"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(slow.inner.get(&key).await.unwrap(), None, "released");
    assert!(matches!(call(3).await, Err(Error::Store { .. })));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

/// A store whose completes fail (the connection drops mid-write) and whose releases take
/// `release`, and the first call of `op` on it: how long that call took to fail.
async fn fail_to_record(
    op: &'static Operation,
    release: Duration,
) -> (
    Arc<idem_tests::slow_store::SlowStore>,
    Arc<AtomicUsize>,
    Duration,
) {
    let slow = Arc::new(
        idem_tests::slow_store::SlowStore::failing_completes_in(Duration::from_millis(1))
            .and_releasing_in(release),
    );
    let store: Arc<dyn Store> = slow.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let out = counted_call(op, op.key(&1u8).unwrap(), &store, &runs, 1).await;
    assert!(matches!(out, Err(Error::Store { .. })), "{out:?}");
    (slow, runs, started.elapsed())
}

/// A result the store fails to record: the error returns at once, without waiting for the
/// release (the store just failed), which goes on in the background; a retry from this
/// process waits for it and runs, rather than finding the key in progress (`InFlight`).
#[tokio::test]
async fn a_result_that_fails_to_record_returns_at_once_and_a_retry_runs() {
    static OP: Operation = Operation::new("engine.complete_fails_release")
        .with_lease(Duration::from_secs(60))
        .with_on_conflict(OnConflict::Reject);
    let (slow, runs, waited) = fail_to_record(&OP, Duration::from_millis(100)).await;
    assert!(
        waited < Duration::from_millis(90),
        "returned after {waited:?}, before the release's 100 ms"
    );
    let key = OP.key(&1u8).unwrap();
    assert!(
        slow.inner.get(&key).await.unwrap().is_some(),
        "still in progress: its release is under way"
    );
    let store: Arc<dyn Store> = slow.clone();
    assert!(matches!(
        counted_call(&OP, key, &store, &runs, 2).await,
        Err(Error::Store { .. })
    ));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the retry ran, not InFlight"
    );
}

/// The same with a store that leaves the release unanswered for long (a partition): the
/// release goes on in the background and frees the key once answered.
#[tokio::test(start_paused = true)]
async fn a_result_that_fails_to_record_is_released_in_the_background() {
    static OP: Operation = Operation::new("engine.complete_fails_slow_release")
        .with_lease(Duration::from_secs(60))
        .with_on_conflict(OnConflict::Reject);
    let (slow, _, waited) = fail_to_record(&OP, Duration::from_secs(30)).await;
    let key = OP.key(&1u8).unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "returned after {waited:?} (before: after the release's 30 s)"
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        slow.inner.get(&key).await.unwrap(),
        None,
        "released in the background"
    );
}

/// A call cancelled mid-body (a consumer's timeout) and called again at once from the same
/// task gets the claim and runs, even though the store answers the cancelled call's release
/// only later: the new claim waits for that release. Before, it found the cancelled call
/// still in progress, waited for it, saw it vanish and failed with `OwnerFailed`. The same for
/// a body that panicked.
#[tokio::test(start_paused = true)]
async fn a_call_right_after_a_cancelled_or_panicked_one_runs() {
    static OP: Operation =
        Operation::new("engine.after_cancel").with_lease(Duration::from_secs(60));
    let store: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::releasing_in(
        Duration::from_millis(200),
    ));
    let runs = Arc::new(AtomicUsize::new(0));
    let run = |n: u32, hang: bool| {
        let (store, runs) = (store.clone(), runs.clone());
        async move {
            OP.call(OP.key(&7u8).unwrap())
                .store(store)
                .run(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Error>(n)
                })
                .await
        }
    };
    let cancelled = tokio::time::timeout(Duration::from_millis(50), run(1, true)).await;
    assert!(cancelled.is_err(), "cancelled mid-body");
    assert_eq!(run(2, false).await.unwrap(), 2, "ran, not OwnerFailed");
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    let store_for_panic = store.clone();
    let panicked = tokio::spawn(async move {
        OP.call(OP.key(&8u8).unwrap())
            .store(store_for_panic)
            .run(async { panic!("the body panics") as Result<u32, Error> })
            .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let again = OP
        .call(OP.key(&8u8).unwrap())
        .store(store.clone())
        .run(async { Ok::<_, Error>(3u32) })
        .await;
    assert_eq!(again.unwrap(), 3, "ran, not OwnerFailed");
}

/// An owner that crashed (its claim never renewed, completed or released) holds the key
/// until its lease lapses; then one of the callers waiting for it takes the key over and runs
/// the body, and the others get its value. Before, every waiter failed with `OwnerFailed` and
/// the body ran only at the next call. A released claim still answers `OwnerFailed` (see
/// `waiters_on_a_failed_owner_get_a_retryable_error`).
#[tokio::test(start_paused = true)]
async fn waiters_take_a_crashed_owners_key_over_when_its_lease_lapses() {
    static OP: Operation = Operation::new("engine.crashed_owner")
        .with_lease(Duration::from_secs(2))
        .with_wait_timeout(Duration::from_secs(10));
    let memory = Arc::new(MemoryStore::new());
    let store: Arc<dyn Store> = memory.clone();
    let key = OP.key(&1u8).unwrap();
    // The crashed owner: a claim that nobody will renew or release.
    let claimed = memory
        .claim(
            &key,
            &Fingerprint::NONE,
            Token::generate(),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    assert!(matches!(claimed, Claim::Acquired));
    let runs = Arc::new(AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let (store, runs) = (store.clone(), runs.clone());
            tokio::spawn(async move {
                OP.call(key)
                    .store(store)
                    .run(async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, Error>(42u32)
                    })
                    .await
            })
        })
        .collect();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), 42);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one waiter took over");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the crashed owner's lease lapsed"
    );
}

/// The same with the shortest leases, where the waiter's look a margin before the lease's
/// end comes after the lapse (the timer's millisecond granularity): the record is gone at
/// that look, and it is still a lapse, not a failure (it was answered `OwnerFailed`).
#[tokio::test(start_paused = true)]
async fn waiters_take_a_crashed_owners_key_over_with_a_lease_of_a_few_milliseconds() {
    for lease_ms in 3..=10 {
        let op = Operation::new("engine.crashed_owner_short_lease")
            .with_lease(Duration::from_millis(lease_ms))
            .with_wait_timeout(Duration::from_secs(10));
        let memory = Arc::new(MemoryStore::new());
        let store: Arc<dyn Store> = memory.clone();
        let key = op.key(&1u8).unwrap();
        let claimed = memory
            .claim(&key, &Fingerprint::NONE, Token::generate(), op.lease())
            .await
            .unwrap();
        assert!(matches!(claimed, Claim::Acquired));
        let out: Result<u32, Error> = op.call(key).store(store).run(async { Ok(42) }).await;
        assert_eq!(out.unwrap(), 42, "lease of {lease_ms} ms");
    }
}

/// A call whose body has started and is then left unpolled for longer than its lease (a slow
/// consumer of `buffer_unordered`, a future kept across other work) keeps its claim: the
/// renewal task runs from the body's first pending poll, not from a timer only the call's own
/// polls would see. A duplicate meanwhile waits for it instead of running the body again.
#[tokio::test(start_paused = true)]
async fn a_started_call_left_unpolled_keeps_its_claim() {
    static OP: Operation = Operation::new("engine.unpolled").with_lease(Duration::from_secs(3));
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let runs = counter();
    let call = |runs: Arc<AtomicUsize>| {
        OP.call(key).store(store.clone()).run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<u32, Error>(1)
        })
    };
    let mut first = Box::pin(call(runs.clone()));
    assert!(
        futures::poll!(first.as_mut()).is_pending(),
        "claimed, body started"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::InProgress { .. })
    ));
    let (second, first) = tokio::join!(call(runs.clone()), first);
    assert_eq!((first.unwrap(), second.unwrap()), (1, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

/// A claim whose answer is read late is confirmed by a renewal; if that renewal's answer is
/// read late too (the call left unpolled again), it is confirmed again: the body never starts
/// on a lease that may have lapsed (it ran twice). Through the engine and the explicit API.
#[tokio::test(start_paused = true)]
async fn a_late_confirmation_of_a_late_claim_is_confirmed_again() {
    static OP: Operation =
        Operation::new("engine.late_confirmation").with_lease(Duration::from_millis(300));
    let store: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::answering_in(
        Duration::from_millis(1),
    ));
    let key = OP.key(&1u8).unwrap();
    let runs = counter();
    let call = |runs: Arc<AtomicUsize>| {
        OP.call(key).store(store.clone()).run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u32, Error>(1)
        })
    };
    let mut first = Box::pin(call(runs.clone()));
    assert!(futures::poll!(first.as_mut()).is_pending(), "claim applied");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        futures::poll!(first.as_mut()).is_pending(),
        "renewal applied"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = call(runs.clone()).await;
    let first = first.await;
    assert_eq!((first.unwrap(), second.unwrap()), (1, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");

    let explicit = idem_runtime::Idempotency::<u32>::new(
        Operation::new("engine.late_confirmation_start").with_lease(Duration::from_millis(300)),
        store.clone(),
    );
    let key = explicit.key(&2u8).unwrap();
    let mut late = Box::pin(explicit.start(key));
    assert!(futures::poll!(late.as_mut()).is_pending(), "claim applied");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        futures::poll!(late.as_mut()).is_pending(),
        "renewal applied"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Ok(idem_runtime::Start::New(other)) = explicit.start(key).await else {
        panic!("the lapsed key is claimed again");
    };
    assert!(
        matches!(late.await, Err(Error::InFlight { .. })),
        "the late claim must not start work"
    );
    other.complete(&7).await.unwrap();
}

/// A store whose every answer takes more than a third of the lease: the claim's confirmation
/// is answered in time to hold the lease, and the body runs (it confirmed forever). A store
/// whose answers take nearly the whole lease cannot hold one: the call fails with a store
/// error once its wait timeout is over, nothing having run, instead of hanging.
#[tokio::test(start_paused = true)]
async fn a_steadily_slow_store_confirms_a_claim_once_or_fails_in_time() {
    static OP: Operation = Operation::new("engine.steady_slow")
        .with_lease(Duration::from_millis(300))
        .with_wait_timeout(Duration::from_secs(5));
    let runs = counter();
    let call = |store: Arc<dyn Store>, runs: Arc<AtomicUsize>| {
        OP.call(OP.key(&1u8).unwrap()).store(store).run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<u32, Error>(7)
        })
    };
    let slow: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::answering_in(
        Duration::from_millis(120),
    ));
    let out = tokio::time::timeout(Duration::from_secs(60), call(slow, runs.clone())).await;
    assert_eq!(out.expect("the call ended").unwrap(), 7);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let too_slow: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::answering_in(
        Duration::from_millis(250),
    ));
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), call(too_slow, runs.clone())).await;
    let err = out.expect("the call ended").unwrap_err();
    assert!(
        matches!(&err, Error::Store { .. }) && err.to_string().contains("longer lease"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "at its wait timeout"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "nothing ran on the too slow store"
    );
}

/// A crashed owner's waiter on a store whose reads are slow (a fifth of the lease): its look
/// before the lease's end reaches the store after the lapse unless it allows for the reads'
/// latency; it takes the key over (it answered `OwnerFailed`).
#[tokio::test(start_paused = true)]
async fn waiters_take_a_crashed_owners_key_over_on_a_store_with_slow_reads() {
    static OP: Operation = Operation::new("engine.crashed_owner_slow_reads")
        .with_lease(Duration::from_millis(300))
        .with_wait_timeout(Duration::from_secs(10));
    let slow = Arc::new(idem_tests::slow_store::SlowStore::reading_in(
        Duration::from_millis(60),
    ));
    let key = OP.key(&1u8).unwrap();
    let claimed = slow
        .inner
        .claim(&key, &Fingerprint::NONE, Token::generate(), OP.lease())
        .await
        .unwrap();
    assert!(matches!(claimed, Claim::Acquired));
    let store: Arc<dyn Store> = slow;
    let out: Result<u32, Error> = OP.call(key).store(store).run(async { Ok(42) }).await;
    assert_eq!(out.unwrap(), 42);
}

/// A waiter left unpolled past the end of the owner's lease as it last saw it, while the
/// owner fails and releases the key: the vanished record is a failure, not a lapse (the look
/// came far later than planned, so nothing tells the two apart), and the failing body is not
/// run again by the waiter.
#[tokio::test(start_paused = true)]
async fn a_waiter_left_unpolled_does_not_take_a_failed_owners_key_over() {
    static OP: Operation = Operation::new("engine.unpolled_waiter")
        .with_lease(Duration::from_millis(300))
        .with_wait_timeout(Duration::from_secs(10));
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let runs = counter();
    let call = |runs: Arc<AtomicUsize>, fail: bool| {
        OP.call(key).store(store.clone()).run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            if fail {
                Err(Error::Config("the body fails".into()))
            } else {
                Ok::<u32, Error>(1)
            }
        })
    };
    let owner = tokio::spawn(call(runs.clone(), true));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut waiter = Box::pin(call(runs.clone(), false));
    assert!(futures::poll!(waiter.as_mut()).is_pending(), "waiting");
    assert!(owner.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let waited = waiter.await;
    assert!(
        matches!(waited, Err(Error::OwnerFailed { .. })),
        "{waited:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the failing body ran once");
}

/// A live owner whose body fails just before the end of its lease *as the waiter first saw
/// it* (its renewals had long extended it) is a failure, not a crash: the waiter gets
/// `OwnerFailed` and does not run the failing body itself.
#[tokio::test(start_paused = true)]
async fn a_waiter_does_not_take_a_failing_owners_key_over_near_its_first_seen_lease_end() {
    static OP: Operation = Operation::new("engine.failing_near_lease_end")
        .with_lease(Duration::from_secs(3))
        .with_wait_timeout(Duration::from_secs(20));
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let runs = counter();
    let owner = {
        let (store, runs) = (store.clone(), runs.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Renewed at 1 s and 2 s: the lease really ends at 5 s.
                    tokio::time::sleep(Duration::from_millis(2_980)).await;
                    Err::<u32, _>(Error::Config("the body fails".into()))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Sees 2.5 s left: the first-seen end of the lease is at 3 s.
    let waiter = OP
        .call(key)
        .store(store.clone())
        .run({
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, Error>(2)
            }
        })
        .await;
    assert!(owner.await.unwrap().is_err());
    assert!(
        matches!(waiter, Err(Error::OwnerFailed { .. })),
        "{waiter:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the failing body ran once");
}

/// Renewals that keep failing (the store unreachable) flag the lease as lost once none has
/// been confirmed for a whole lease: another caller may have taken the key over by then, and
/// the body can see it. Not before: a single failed renewal is retried.
#[tokio::test(start_paused = true)]
async fn renewals_failing_for_a_whole_lease_flag_the_lease_as_lost() {
    static OP: Operation = Operation::new("engine.renewals_fail")
        .with_lease(Duration::from_millis(300))
        .with_on_conflict(OnConflict::Reject);
    let store: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::failing_renewals());
    let key = OP.key(&1u8).unwrap();
    let seen: Result<(bool, bool), Error> = OP
        .call(key)
        .store(store.clone())
        .run(async {
            let call = idem_runtime::current().expect("inside the call");
            tokio::time::sleep(Duration::from_millis(250)).await;
            let early = call.lease_lost();
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok((early, call.lease_lost()))
        })
        .await;
    // The lease lapsed unrenewed, so the result could not be recorded either.
    let err = seen.unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
    let flags: Result<(bool, bool), Error> = OP
        .call(OP.key(&2u8).unwrap())
        .store(store)
        .run(async {
            let call = idem_runtime::current().expect("inside the call");
            tokio::time::sleep(Duration::from_millis(250)).await;
            let early = call.lease_lost();
            tokio::time::sleep(Duration::from_millis(500)).await;
            Err(Error::Config(format!("{early} {}", call.lease_lost())))
        })
        .await;
    match flags {
        Err(Error::Config(seen)) => assert_eq!(seen, "false true", "(before, after a lease)"),
        other => panic!("{other:?}"),
    }
}

/// A renewal that never answers (a partitioned connection: no reply, no error) flags the
/// lease as lost when the lease it was meant to extend ends, as a failing one does: the body
/// must not go on believing it holds the key while another caller may run it too.
#[tokio::test(start_paused = true)]
async fn a_renewal_that_never_answers_flags_the_lease_as_lost_when_it_ends() {
    const LEASE: Duration = Duration::from_millis(300);
    static OP: Operation = Operation::new("engine.renewals_hang").with_lease(LEASE);
    let store: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::hanging_renewals());
    let claimed = tokio::time::Instant::now();
    let flagged_at: Result<Option<Duration>, Error> = OP
        .call(OP.key(&1u8).unwrap())
        .store(store.clone())
        .run(async move {
            let call = idem_runtime::current().expect("inside the call");
            while claimed.elapsed() < 3 * LEASE {
                if call.lease_lost() {
                    return Err(Error::Config(format!("{:?}", claimed.elapsed())));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(None)
        })
        .await;
    match flagged_at {
        Err(Error::Config(at)) => assert_eq!(at, "310ms", "the first check after the lease"),
        other => panic!("the lease was never flagged as lost: {other:?}"),
    }

    // The explicit API's claims are renewed by the same task.
    let handle: Idempotency<u8> = Idempotency::new(
        Operation::new("engine.renewals_hang.explicit").with_lease(LEASE),
        store,
    );
    let Start::New(claimed) = handle.start(OP.key(&2u8).unwrap()).await.unwrap() else {
        panic!("a new key")
    };
    tokio::time::sleep(LEASE - Duration::from_millis(10)).await;
    assert!(!claimed.lease_lost(), "not before the lease ends");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        claimed.lease_lost(),
        "flagged once the lease ended unrenewed"
    );
}

/// A claim that took longer than the lease (it waited for a connection) is in doubt when its
/// body starts, and held again as soon as a renewal confirms it: the body does not stop for a
/// lease it still has.
#[tokio::test(start_paused = true)]
async fn a_slow_claim_is_held_again_once_a_renewal_confirms_it() {
    const LEASE: Duration = Duration::from_millis(300);
    static OP: Operation = Operation::new("engine.slow_claim").with_lease(LEASE);
    let store: Arc<dyn Store> = Arc::new(idem_tests::slow_store::SlowStore::claiming_in(
        LEASE + LEASE / 6,
    ));
    let out: Result<bool, Error> = OP
        .call(OP.key(&1u8).unwrap())
        .store(store)
        .run(async {
            let call = idem_runtime::current().expect("inside the call");
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(call.lease_lost())
        })
        .await;
    assert!(!out.unwrap(), "the first renewal confirmed the claim");
}

/// One renewal that never answers (a pooled connection a partition left open) does not stop
/// the next ones, sent on other connections: the claim stays held for a body that outlives
/// its lease many times, and a duplicate finds it in progress throughout.
#[tokio::test(start_paused = true)]
async fn a_hung_renewal_does_not_stop_the_next_ones() {
    const LEASE: Duration = Duration::from_millis(300);
    static OP: Operation = Operation::new("engine.one_hung_renewal")
        .with_lease(LEASE)
        .with_on_conflict(OnConflict::Reject);
    let slow = Arc::new(idem_tests::slow_store::SlowStore::hanging_renewal(2));
    let store: Arc<dyn Store> = slow.clone();
    let key = OP.key(&1u8).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let owner = {
        let (store, runs) = (store.clone(), runs.clone());
        tokio::spawn(async move {
            OP.call(key)
                .store(store)
                .run(async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let call = idem_runtime::current().expect("inside the call");
                    let mut doubted = false;
                    for _ in 0..200 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        doubted |= call.lease_lost();
                    }
                    Ok::<_, Error>(doubted)
                })
                .await
        })
    };
    for _ in 0..6 {
        tokio::time::sleep(LEASE).await;
        let duplicate: Result<bool, Error> = OP
            .call(key)
            .store(store.clone())
            .run(async { Ok(true) })
            .await;
        assert!(
            matches!(duplicate, Err(Error::InFlight { .. })),
            "{duplicate:?}"
        );
    }
    assert!(!owner.await.unwrap().unwrap(), "never in doubt");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// The shortest lease accepted is renewed in time: a body that outlives it many times over
/// keeps its claim. A shorter one is refused (its first renewal would come too late).
#[tokio::test(start_paused = true)]
async fn the_shortest_lease_accepted_is_renewed_in_time() {
    let op = Operation::new("engine.min_lease").with_lease(Duration::from_millis(3));
    let out: Result<u8, Error> = op
        .call(op.key(&1u8).unwrap())
        .store(store())
        .run(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(1)
        })
        .await;
    assert_eq!(out.unwrap(), 1);
    let op = Operation::new("engine.min_lease").with_lease(Duration::from_millis(2));
    let out: Result<u8, Error> = op
        .call(op.key(&1u8).unwrap())
        .store(store())
        .run(async { Ok(1) })
        .await;
    let err = out.unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("at least 3 ms")),
        "{err}"
    );
}

/// JSON writes `None`, `Some(None)`, `Some(())` and non-finite floats all as `null`: such a value
/// would replay as something else (`None`) or not at all. It is refused when recorded, with the
/// way out, instead of replaying a different value; values that do read back as themselves,
/// `null`s included, are recorded.
#[tokio::test]
async fn values_that_would_not_replay_as_themselves_are_refused() {
    static OP: Operation = Operation::new("engine.faithful").with_on_conflict(OnConflict::Reject);
    async fn twice<T>(n: u8, value: T) -> (Result<T, Error>, Result<T, Error>, usize)
    where
        T: Serialize + serde::de::DeserializeOwned + Clone + Send + 'static,
    {
        let store = store();
        let runs = counter();
        let key = OP.key(&n).unwrap();
        let mut out = Vec::new();
        for _ in 0..2 {
            let (runs, value) = (runs.clone(), value.clone());
            let call = OP.call(key).store(store.clone()).run(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<T, Error>(value)
            });
            out.push(call.await);
        }
        let second = out.pop().unwrap();
        (out.pop().unwrap(), second, runs.load(Ordering::SeqCst))
    }
    fn refused<T: std::fmt::Debug>(out: Result<T, Error>) {
        match out {
            Err(error @ Error::Encode { .. }) => {
                let message = error.to_string();
                assert!(message.contains("would not replay as itself"), "{message}");
                assert!(message.contains("`null`"), "{message}");
                assert!(
                    message.contains("the body ran but nothing was recorded"),
                    "{message}"
                );
            }
            other => panic!("expected Error::Encode, got {other:?}"),
        }
    }
    let (first, second, runs) = twice(1, Some(None::<u8>)).await;
    refused(first);
    refused(second);
    assert_eq!(runs, 2, "not recorded: the claim was released");
    refused(twice(2, Some(())).await.0);
    refused(twice(3, Some(f64::NAN)).await.0);
    refused(twice(4, f64::INFINITY).await.0);
    refused(twice(5, vec![Some(Some(1u8)), Some(None)]).await.0);

    // Read back as themselves: recorded and replayed.
    let (first, second, runs) = twice(6, Some(Some(9u8))).await;
    assert_eq!(
        (first.unwrap(), second.unwrap(), runs),
        (Some(Some(9)), Some(Some(9)), 1)
    );
    let (first, second, runs) = twice(7, (None::<u8>, "null".to_owned())).await;
    assert_eq!(first.unwrap(), second.unwrap());
    assert_eq!(runs, 1);

    // A type whose own `Deserialize` tells `Some(None)` from `None` (serde_with's
    // `double_option`: an absent field is `None`, a `null` is `Some(None)`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Patch {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "double_option"
        )]
        note: Option<Option<String>>,
    }
    fn double_option<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
    let clear = Patch { note: Some(None) };
    let (first, second, runs) = twice(8, clear.clone()).await;
    assert_eq!(
        (first.unwrap(), second.unwrap(), runs),
        (clear.clone(), clear, 1)
    );

    // A plain `None` reads back as itself, whatever else the value holds that would not compare
    // equal once read back: a `HashSet` (another iteration order), a field skipped when read
    // back. Such values were refused by a first version of the check.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        tags: std::collections::HashSet<String>,
        note: Option<String>,
        #[serde(skip_deserializing)]
        computed: usize,
        amount: f64,
    }
    let order = Order {
        tags: (0..16).map(|i| format!("tag-{i}")).collect(),
        note: None,
        computed: 7,
        amount: 1.0715660391465826e-75,
    };
    let (first, second, runs) = twice(9, order.clone()).await;
    assert_eq!(first.unwrap(), order);
    let replayed = second.unwrap();
    assert_eq!(runs, 1);
    assert_eq!((replayed.computed, replayed.note), (0, None));
    assert_eq!(replayed.tags, order.tags);
    assert_eq!(
        replayed.amount.to_bits(),
        order.amount.to_bits(),
        "bit for bit"
    );
}

/// On a runtime built without timers, a body that waits (and so needs its lease renewed)
/// fails loudly in the call, with tokio's own advice, instead of running with no renewal.
#[test]
fn a_runtime_without_timers_is_reported_in_the_call() {
    static OP: Operation = Operation::new("engine.no_timers");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = store();
    let key = OP.key(&1u8).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(OP.call(key).store(store.clone()).run(async {
            tokio::task::yield_now().await;
            Ok::<u32, Error>(1)
        }))
    }))
    .unwrap_err();
    let message = panicked
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panicked.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("enable_time"), "{message}");
    assert!(
        runtime.block_on(store.get(&key)).unwrap().is_none(),
        "the claim was released"
    );
}
