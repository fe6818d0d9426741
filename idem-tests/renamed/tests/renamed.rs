//! The fn generated through the renamed dependency runs once per key.

use std::sync::atomic::Ordering;

use idem_tests_renamed::{TRANSFER_RUNS, Transfer, transfer};

#[tokio::test(flavor = "current_thread")]
async fn called_twice_the_body_runs_once() {
    let store: std::sync::Arc<dyn idem::Store> = std::sync::Arc::new(idem::MemoryStore::new());
    idem::with_store(store, async {
        let req = Transfer {
            from: "acc_1".into(),
            to: "acc_2".into(),
            amount_cents: 1999,
            memo: "rent".into(),
        };
        let first = transfer(&req, 1).await.unwrap();
        let again = transfer(
            &Transfer {
                memo: "rent, again".into(),
                ..req.clone()
            },
            1,
        )
        .await
        .unwrap();
        assert_eq!(first, again, "replayed: the memo is excluded from the key");
        assert_eq!(TRANSFER_RUNS.load(Ordering::SeqCst), 1, "the body ran once");

        let op = idem::operation("renamed.transfer").expect("registered through `idem`");
        assert_eq!(op.ttl(), std::time::Duration::from_secs(3600));
        let key = idem::key_of(transfer(&req, 2)).await.unwrap();
        assert_ne!(
            key,
            idem::key_of(transfer(&req, 1)).await.unwrap(),
            "the scalar is part of the key"
        );
        assert_eq!(
            TRANSFER_RUNS.load(Ordering::SeqCst),
            1,
            "key_of ran no body"
        );
    })
    .await;
}
