//! Strict mode turned on after calls already fell back to the memory default (its own process):
//! later calls are refused all the same.

use idem_runtime::{Error, Operation};

#[tokio::test]
async fn strict_mode_refuses_a_memory_default_already_in_use() {
    static OP: Operation = Operation::new("global.strict_late");
    let first: Result<u8, Error> = OP.call(OP.key(&1u8).unwrap()).run(async { Ok(1) }).await;
    assert_eq!(
        first.unwrap(),
        1,
        "not strict yet: the memory default serves"
    );
    idem_runtime::set_strict(true);
    let refused: Result<u8, Error> = OP.call(OP.key(&2u8).unwrap()).run(async { Ok(2) }).await;
    let err = refused.unwrap_err();
    // It says why `install` cannot help now (the default was taken before strict mode).
    assert!(
        matches!(&err, Error::Config(m) if m.contains("strict mode") && m.contains("can no longer be replaced")),
        "{err}"
    );
    assert!(idem_runtime::store_name().is_err());
    idem_runtime::set_strict(false);
    let again: Result<u8, Error> = OP.call(OP.key(&2u8).unwrap()).run(async { Ok(3) }).await;
    assert_eq!(again.unwrap(), 3);
}
