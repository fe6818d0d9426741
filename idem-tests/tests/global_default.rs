//! The implicit memory default and installing too late (its own process).

use idem_runtime::{Error, MemoryStore, Operation};
use idem_tests::logs::capture;

/// The first call takes the memory default and says so in the log, once.
#[tokio::test]
async fn first_use_takes_the_default_and_a_late_install_is_refused() {
    static OP: Operation = Operation::new("global.default");
    let (log, _guard) = capture();
    for n in 1..=2u8 {
        let out: Result<u8, Error> = OP.call(OP.key(&n).unwrap()).run(async { Ok(n) }).await;
        assert_eq!(out.unwrap(), n);
    }
    let lines = log.take();
    let defaulted: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("no store installed; using the in-process memory store"))
        .collect();
    assert_eq!(defaulted.len(), 1, "logged once: {lines:#?}");
    assert!(defaulted[0].contains(" INFO idem: "), "{}", defaulted[0]);
    let late = idem_runtime::install(MemoryStore::new()).unwrap_err();
    assert!(
        late.to_string().contains("before any idempotent call"),
        "{late}"
    );
}
