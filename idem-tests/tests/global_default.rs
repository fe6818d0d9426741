//! The implicit memory default and installing too late (its own process).

use idem_runtime::{Error, MemoryStore, Operation};

#[tokio::test]
async fn first_use_takes_the_default_and_a_late_install_is_refused() {
    static OP: Operation = Operation::new("global.default");
    let out: Result<u8, Error> = OP.call(OP.key(&1u8).unwrap()).run(async { Ok(1) }).await;
    assert_eq!(out.unwrap(), 1);
    let late = idem_runtime::install(MemoryStore::new()).unwrap_err();
    assert!(
        late.to_string().contains("before any idempotent call"),
        "{late}"
    );
}
