//! Strict mode refuses the implicit memory default (its own process).

use std::sync::Arc;

use idem_runtime::{Error, MemoryStore, Operation};

#[tokio::test]
async fn strict_mode_refuses_the_implicit_default() {
    static OP: Operation = Operation::new("global.strict");
    idem_runtime::set_strict(true);
    let key = OP.key(&1u8).unwrap();
    let refused: Result<u8, Error> = OP.call(key).run(async { Ok(1) }).await;
    let err = refused.unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("strict mode")),
        "{err}"
    );
    let no_store = idem_runtime::store_name().unwrap_err();
    assert!(
        matches!(&no_store, Error::Config(m) if m.contains("strict mode")),
        "{no_store}"
    );
    // A task-scoped store is explicit, so it is allowed.
    let name = idem_runtime::with_store(Arc::new(MemoryStore::new()), async {
        idem_runtime::store_name()
    })
    .await;
    assert_eq!(name.unwrap(), MemoryStore::NAME);
    let scoped: Result<u8, Error> = idem_runtime::with_store(
        Arc::new(MemoryStore::new()),
        OP.call(key).run(async { Ok(2) }),
    )
    .await;
    assert_eq!(scoped.unwrap(), 2);
    idem_runtime::install(MemoryStore::new()).unwrap();
    let installed: Result<u8, Error> = OP.call(key).run(async { Ok(3) }).await;
    assert_eq!(installed.unwrap(), 3);
}
