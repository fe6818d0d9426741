//! `#[idempotent]`: parse the options and the function, validate them together, expand.

mod expand;
pub(crate) mod parse;
mod validate;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::ctxt::Ctxt;

pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: parse::Func = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let e = parse::misplaced(item.clone()).unwrap_or(e);
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    let original = func.clone();
    let mut cx = Ctxt::new();
    if let Some(again) = func.attrs.iter().find(|a| is_idempotent(a)) {
        cx.error_spanned_by(
            again,
            "`#[idempotent]` is applied twice to this fn: each would claim and record the call \
             (two records per call, or two operations with one name); keep one",
        );
    }
    let args = parse::args(&mut cx, args);
    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => crate::attr::default_crate(proc_macro2::Span::call_site()),
    };
    match validate::plan(&mut cx, args, &mut func) {
        Some(plan) if !cx.has_errors() => expand::expand(&krate, &func, &plan),
        _ => {
            // The user's function, unchanged but for the stripped `#[idem]` attributes, next to
            // the errors: one mistake gives one message, not a cascade about a missing fn.
            let parse::Func {
                mut attrs,
                vis,
                mut sig,
                body,
            } = original;
            // A second `#[idempotent]` (reported) is not expanded again: one error, not two.
            attrs.retain(|a| !is_idempotent(a));
            for arg in &mut sig.inputs {
                let attrs = match arg {
                    syn::FnArg::Receiver(r) => &mut r.attrs,
                    syn::FnArg::Typed(t) => &mut t.attrs,
                };
                attrs.retain(|a| !parse::is_idem_attr(a));
            }
            let mut out = cx.into_compile_errors();
            out.extend(quote::quote!(#(#attrs)* #vis #sig #body));
            out
        }
    }
}

/// `#[idempotent]` or `#[some::path::idempotent]`.
fn is_idempotent(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "idempotent")
}
