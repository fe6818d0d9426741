//! Expansion smoke tests: the generated code for small inputs, printed with `--nocapture`
//! (`cargo test -p idem-macros -- --nocapture expansion`) and checked for its key parts.

use quote::quote;

fn show(title: &str, tokens: &proc_macro2::TokenStream) -> String {
    let text = tokens.to_string();
    println!("// ---- {title}\n{text}\n");
    text
}

#[test]
fn expansion_of_idempotent() {
    let out = crate::idempotent::idempotent(
        quote!(ttl = "24h", key = req.id, scope = tenant),
        quote! {
            /// Charges.
            pub async fn charge(tenant: &str, req: &Charge, #[idem(exclude)] gateway: &Gateway) -> Result<Receipt, PayError> {
                gateway.charge(req).await
            }
        },
    );
    let text = show("idempotent", &out);
    assert!(
        text.starts_with(
            "# [doc = r\" Charges.\"] pub async fn charge (tenant : & str , req : & Charge , gateway : & Gateway) -> Result < Receipt , PayError > { use :: idem_runtime :: __private as __idem ;"
        ),
        "the runtime's hidden module is imported once, at the start of the body:\n{text}"
    );
    assert_eq!(
        text.matches("idem_runtime").count(),
        1,
        "every other path goes through the import:\n{text}"
    );
    assert!(text.contains("static __IDEM_OP"));
    assert!(text.contains("inventory :: submit !"));
    assert!(
        text.contains("__idem :: body :: < Result < Receipt , PayError > , _ > (__idem :: pin ! (__idem :: ManuallyDrop :: new (async move"),
        "the body is pinned in the fn's future, in a slot the engine drops it from, and lent to `run` by reference:\n{text}"
    );
    assert!(
        text.contains(
            "async move { if false { return __idem :: typed :: < Result < Receipt , PayError > > () ; } gateway . charge (req) . await }"
        ),
        "the body's type is fixed before the body, so errors in it land on its tokens:\n{text}"
    );
    assert!(
        text.contains("gateway . charge (req) . await })) , __idem :: slot_kept ! ())) . await }"),
        "the body is lent with the promise of the runtime's `slot_kept!`:\n{text}"
    );
    assert!(
        !text.contains("unsafe"),
        "no `unsafe` in the expansion itself"
    );
    assert!(
        !text.contains("idem (exclude)"),
        "parameter attributes are stripped"
    );
}

#[test]
fn expansion_of_derive() {
    let out = crate::derive::derive(quote! {
        struct Charge<T> { zeta: u64, alpha: T, #[idem(exclude)] at: SystemTime, #[idem(rename = "beta")] b: String }
    });
    let text = show("derive", &out);
    // The fixed-struct form: the values in name order ("alpha", "beta" for `b`, "zeta").
    assert!(
        text.contains("begin_fixed_struct (3)"),
        "three fields written"
    );
    let alpha = text.find("self . alpha").unwrap();
    let beta = text.find("self . b)").unwrap();
    let zeta = text.find("self . zeta").unwrap();
    assert!(alpha < beta && beta < zeta, "fields are sorted by name");
    assert!(
        !text.contains("self . at"),
        "excluded fields are not written"
    );
    assert!(
        text.starts_with("const _ : () = { use :: idem_runtime :: __private as __idem ;"),
        "the impl sits in an anonymous const that imports the runtime once:\n{text}"
    );
    assert!(text.contains("T : __idem :: IdempotencyKey"));
}

#[test]
fn a_crate_path_replaces_every_runtime_path() {
    let out = crate::idempotent::idempotent(
        quote!(
            crate = "renamed::idem",
            key = (a, b),
            scope = self.t,
            store = &self.s,
            name = "x"
        ),
        quote! { async fn f(&self, a: u8, b: u8, c: u8) -> Result<u8, E> { Ok(a) } },
    );
    let text = show("crate path", &out);
    assert!(text.contains("use renamed :: idem :: __private as __idem ;"));
    assert!(text.contains("__idem :: run"));
    assert!(!text.contains("idem_runtime"), "{text}");
    let out = crate::derive::derive(quote! {
        #[idem(crate = "renamed::idem")]
        enum E<T> { A, B(T), C { x: u8, #[idem(with = w)] y: u8 } }
    });
    let text = show("derive crate path", &out);
    assert!(text.contains("use renamed :: idem :: __private as __idem ;"));
    assert!(!text.contains("idem_runtime"), "{text}");
}

#[test]
fn errors_keep_the_function() {
    let out = crate::idempotent::idempotent(
        quote!(ttl = "1x", bogus = 1),
        quote! { pub async fn f(#[idem(exclude)] a: u8, (b, c): (u8, u8)) -> Result<u8, E> { Ok(a + b + c) } },
    );
    let text = show("errors", &out);
    assert_eq!(text.matches("compile_error").count(), 2);
    assert!(
        text.contains("pub async fn f (a : u8 , (b , c) : (u8 , u8))"),
        "unchanged, attributes stripped"
    );
    assert!(!text.contains("__IDEM_OP"));
}

#[test]
fn misspelled_options_suggest_the_nearest() {
    let valid = crate::idempotent::parse::OPTIONS;
    for (typo, expected) in [
        ("tll", Some("ttl")),
        ("nmae", Some("name")),
        ("nam", Some("name")),
        ("scoep", Some("scope")),
        ("verison", Some("version")),
        ("onconflict", Some("on_conflict")),
        ("retries", None),
        ("x", None),
        ("keys", Some("key")),
    ] {
        assert_eq!(crate::attr::closest(typo, valid), expected, "{typo}");
    }
    for (alias, expected) in [("skip", Some("exclude")), ("ignore", Some("exclude"))] {
        assert_eq!(
            crate::attr::closest(alias, &["exclude", "include"]),
            expected
        );
        assert_eq!(
            crate::attr::closest(alias, &["ttl"]),
            None,
            "only a valid option"
        );
    }
    assert_eq!(crate::attr::closest("", valid), None);
}

#[test]
fn a_value_with_a_lifetime_other_than_static_is_refused() {
    let refused = |output: proc_macro2::TokenStream| {
        let out = crate::idempotent::idempotent(
            quote!(),
            quote!(async fn f(x: &str) -> #output { Ok(x.into()) }),
        );
        out.to_string().contains("has the lifetime")
    };
    assert!(refused(quote!(Result<Holder<'_>, Error>)));
    assert!(refused(quote!(Result<(u8, Cow<'a, str>), Error>)));
    assert!(!refused(quote!(Result<Cow<'static, str>, Error>)));
    assert!(
        !refused(quote!(Result<String, Error<'a>>)),
        "errors are not recorded"
    );
}
