//! Procedural macros for [`idem-runtime`](https://docs.rs/idem-runtime).
//!
//! Depend on `idem-runtime`, which re-exports these macros; this crate is an implementation detail.

use proc_macro::TokenStream;

/// Makes an `async fn` idempotent. Documented on `idem_runtime::idempotent`.
#[proc_macro_attribute]
pub fn idempotent(_args: TokenStream, item: TokenStream) -> TokenStream {
    let _ = &_args;
    item
}

/// Derives `idem_runtime::IdempotencyKey`. Documented on `idem_runtime::IdempotencyKey`.
#[proc_macro_derive(IdempotencyKey, attributes(idem))]
pub fn derive_idempotency_key(item: TokenStream) -> TokenStream {
    let _ = item;
    TokenStream::new()
}
