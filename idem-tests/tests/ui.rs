//! Compile-fail and compile-pass cases of `#[idempotent]` and `#[derive(IdempotencyKey)]`.
//!
//! One misuse per file under `ui/fail/<topic>/`, with its expected `.stderr` checked in;
//! regenerate with `TRYBUILD=overwrite cargo test -p idem-tests --test ui` and review every
//! diff by eye (each error must point at the offending token).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*/*.rs");
}
