//! The operation registry: two `#[idempotent]` fns with one name are refused at their first
//! call, with both locations named; others are unaffected. (A test binary of its own, because
//! the duplicate is process-wide.)

use std::sync::Arc;

use idem_runtime::{Error, MemoryStore, idempotent, with_store};

mod first {
    use super::*;

    #[idempotent(name = "registry.duplicate")]
    pub async fn a(id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

mod second {
    use super::*;

    #[idempotent(name = "registry.duplicate")]
    pub async fn b(id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

#[idempotent(name = "registry.unique", ttl = "2h", lease = "30s", version = 4)]
async fn unique(id: u64) -> Result<u64, Error> {
    Ok(id)
}

#[tokio::test]
async fn duplicate_names_are_refused_with_both_locations() {
    with_store(Arc::new(MemoryStore::new()), async {
        for result in [first::a(1).await, second::b(1).await] {
            let message = duplicate_refusal(result);
            assert!(
                message.contains("macro_registry::first")
                    && message.contains("macro_registry::second"),
                "{message}"
            );
        }
        assert_eq!(unique(1).await.unwrap(), 1, "unique names still run");
    })
    .await;
    let err = idem_runtime::check_operations().unwrap_err();
    assert!(err.to_string().contains("registry.duplicate"), "{err}");
    assert!(
        idem_runtime::operation("registry.duplicate").is_none(),
        "ambiguous"
    );
}

#[test]
fn operations_lists_every_annotated_fn_with_its_settings() {
    let ops = idem_runtime::operations();
    assert_eq!(
        ops.iter()
            .filter(|op| op.name() == "registry.duplicate")
            .count(),
        2
    );
    let op = idem_runtime::operation("registry.unique").unwrap();
    assert_eq!(
        (op.version(), op.ttl().as_secs(), op.lease().as_secs()),
        (4, 7200, 30)
    );
    let at = op.location().unwrap();
    assert_eq!(at.module, "macro_registry");
    assert!(at.file.ends_with("macro_registry.rs"));
    assert_eq!(
        at.line,
        line_of("#[idempotent(name = \"registry.unique\""),
        "the attribute's line"
    );
}

fn line_of(needle: &str) -> u32 {
    let src = include_str!("macro_registry.rs");
    src.lines().position(|l| l.starts_with(needle)).unwrap() as u32 + 1
}

#[tokio::test]
async fn key_of_and_forget_call_report_the_duplicate_name() {
    for result in [
        idem_runtime::key_of(first::a(1)).await.map(|_| ()),
        idem_runtime::forget_call(second::b(1)).await.map(|_| ()),
    ] {
        duplicate_refusal(result);
    }
    assert!(idem_runtime::key_of(unique(1)).await.is_ok());
}

/// The message of the `Error::Config` refusing the duplicate name, which names it and both
/// locations.
fn duplicate_refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    let Err(Error::Config(message)) = result else {
        panic!("expected a refusal, got {result:?}");
    };
    assert!(message.contains("`registry.duplicate`"), "{message}");
    assert_eq!(
        message.matches("macro_registry.rs:").count(),
        2,
        "{message}"
    );
    message
}

// Two fns nested in the bodies of two fns of one module, with one name: `module_path!()` stops
// at the module, so both get the default name `macro_registry::step`.
async fn parent_a(n: u64) -> Result<u64, Error> {
    #[idempotent]
    async fn step(n: u64) -> Result<u64, Error> {
        Ok(n + 1)
    }
    step(n).await
}

async fn parent_b(n: u64) -> Result<u64, Error> {
    #[idempotent]
    async fn step(n: u64) -> Result<u64, Error> {
        Ok(n + 2)
    }
    step(n).await
}

#[tokio::test]
async fn nested_fns_of_one_name_are_refused_with_the_fix() {
    with_store(Arc::new(MemoryStore::new()), async {
        for result in [parent_a(1).await, parent_b(1).await] {
            let Err(Error::Config(message)) = result else {
                panic!("expected a refusal, got {result:?}");
            };
            assert!(message.contains("`macro_registry::step`"), "{message}");
            assert!(
                message.contains("a fn nested inside another fn's body")
                    && message.contains("give them a `name = \"…\"`"),
                "{message}"
            );
        }
    })
    .await;
}

/// `key_of` and `forget_call` see a call built by hand (`Operation::call(..).run(..)`) as they
/// see an `#[idempotent]` fn's: its key is computed, its body does not run, nothing is
/// recorded.
#[tokio::test]
async fn key_of_and_forget_call_do_not_run_a_call_built_by_hand() {
    static HAND: idem_runtime::Operation = idem_runtime::Operation::new("registry.by_hand");
    let store: std::sync::Arc<dyn idem_runtime::Store> =
        std::sync::Arc::new(idem_runtime::MemoryStore::new());
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let call = || {
        let (store, runs) = (store.clone(), runs.clone());
        async move {
            HAND.call(HAND.key(&1u8)?)
                .store(store)
                .run(async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<u8, idem_runtime::Error>(1)
                })
                .await
        }
    };
    let key = idem_runtime::key_of(call()).await.unwrap();
    assert_eq!(key, HAND.key(&1u8).unwrap());
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0, "not run");
    assert_eq!(store.get(&key).await.unwrap(), None, "nothing recorded");
    call().await.unwrap();
    assert!(idem_runtime::forget_call(call()).await.unwrap());
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(store.get(&key).await.unwrap(), None, "forgotten");
}

/// Inside a probed future every idempotent call is refused (the first one's key is answered),
/// and `forget_call` forgets in the store the call would use, also when the future scopes one
/// with `with_store`.
#[tokio::test]
async fn probes_refuse_every_call_and_follow_a_scoped_store() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RUNS: AtomicU32 = AtomicU32::new(0);
    static PROBED: idem_runtime::Operation = idem_runtime::Operation::new("registry.probed");
    let call = |n: u8| async move {
        PROBED
            .call(PROBED.key(&n)?)
            .run(async move {
                RUNS.fetch_add(1, Ordering::SeqCst);
                Ok::<u8, idem_runtime::Error>(n)
            })
            .await
    };
    let scoped: std::sync::Arc<dyn idem_runtime::Store> =
        std::sync::Arc::new(idem_runtime::MemoryStore::new());
    let key = idem_runtime::key_of(async {
        let _ = call(1).await;
        call(2).await
    })
    .await
    .unwrap();
    assert_eq!(key, PROBED.key(&1u8).unwrap(), "the first call's key");
    assert_eq!(RUNS.load(Ordering::SeqCst), 0, "no call ran");

    idem_runtime::with_store(scoped.clone(), call(3))
        .await
        .unwrap();
    let forgotten = idem_runtime::forget_call(idem_runtime::with_store(scoped.clone(), call(3)));
    assert!(forgotten.await.unwrap(), "forgotten in the scoped store");
    idem_runtime::with_store(scoped, call(3)).await.unwrap();
    assert_eq!(
        RUNS.load(Ordering::SeqCst),
        2,
        "ran again after forget_call"
    );
}
