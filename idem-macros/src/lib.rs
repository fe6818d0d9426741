//! Procedural macros for [`idem-runtime`](https://docs.rs/idem-runtime).
//!
//! Depend on `idem-runtime`, which re-exports these macros and documents them
//! (`idem_runtime::idempotent`, `idem_runtime::IdempotencyKey`); this crate is an
//! implementation detail. Each macro is split into parse (syntax), validate (meaning, every
//! error collected) and expand (code generation).

mod attr;
mod ctxt;
mod derive;
mod duration;
mod idempotent;
mod timestamp;
mod walk;

use proc_macro::TokenStream;

// Documented on the re-export, `idem_runtime::idempotent`.
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    idempotent::idempotent(args.into(), item.into()).into()
}

// Documented on the re-export, `idem_runtime::IdempotencyKey`.
#[proc_macro_derive(IdempotencyKey, attributes(idem))]
pub fn derive_idempotency_key(item: TokenStream) -> TokenStream {
    derive::derive(item.into()).into()
}

#[cfg(test)]
mod tests;
