//! `#[derive(IdempotencyKey)]`: parse the input and its `#[idem]` attributes, validate, expand.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::ctxt::Ctxt;

pub fn derive(input: TokenStream) -> TokenStream {
    let input: syn::DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut cx = Ctxt::new();
    let Some(mut container) = parse::container(&mut cx, input) else {
        return cx.into_compile_errors();
    };
    validate::check(&mut cx, &mut container);
    let krate = match &container.krate {
        Some(path) => path.to_token_stream(),
        None => crate::attr::default_crate(proc_macro2::Span::call_site()),
    };
    // The impl is emitted even with errors, so that uses of the type do not add a second
    // error (a missing `IdempotencyKey` impl) to the one mistake.
    let mut out = cx.into_compile_errors();
    out.extend(expand::expand(&krate, &container));
    out
}
