//! Compile-time checks of the HTTP layer's builder: `build()` needs an explicit scope decision.

#[test]
fn ui_http() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui-http/*.rs");
}
