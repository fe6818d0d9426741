//! The expansion of `#[idempotent]`: the user's function with its body wrapped.
//!
//! ```text
//! #attrs #vis #sig {
//!     static __IDEM_OP: Operation = Operation::new(name).with_…(..).with_location(..);
//!     inventory::submit! { Registration::new(&__IDEM_OP) }
//!     let __idem_key = { one KeyHasher pass over scope + key material };
//!     run::<R, _, _, _, _>(&__IDEM_OP, __idem_key, fingerprint, store, cache, pin!(async move { body })).await
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Expr;
use syn::spanned::Spanned;

use super::parse::Func;
use super::validate::{Hashed, KeySource, Plan, Shape};

pub fn expand(krate: &TokenStream, func: &Func, plan: &Plan) -> TokenStream {
    let Func {
        attrs,
        vis,
        sig,
        body,
    } = func;
    let k = krate;
    let ident = &sig.ident;

    // ---- the static operation ------------------------------------------------------------
    let name = match &plan.name {
        Some(lit) => quote!(#lit),
        None => {
            let fn_name = ident.to_string();
            quote!(#k::__private::concat!(#k::__private::module_path!(), "::", #fn_name))
        }
    };
    let mut settings = TokenStream::new();
    if let Some(v) = plan.version {
        let v = proc_macro2::Literal::u32_unsuffixed(v);
        settings.extend(quote!(.with_version(#v)));
    }
    if let Some(d) = &plan.ttl {
        let d = d.to_tokens(k);
        settings.extend(quote!(.with_ttl(#d)));
    }
    if let Some(d) = &plan.lease {
        let d = d.to_tokens(k);
        settings.extend(quote!(.with_lease(#d)));
    }
    if plan.reject {
        settings.extend(quote!(.with_on_conflict(#k::__private::OnConflict::Reject)));
    }
    if let Some(d) = &plan.wait_timeout {
        let d = d.to_tokens(k);
        settings.extend(quote!(.with_wait_timeout(#d)));
    }
    let location = quote! {
        #k::__private::Location {
            module: #k::__private::module_path!(),
            file: #k::__private::file!(),
            line: #k::__private::line!(),
        }
    };

    // ---- key, fingerprint, store ---------------------------------------------------------
    let h = quote!(__idem_h);
    let mut key_writes = TokenStream::new();
    match &plan.scope {
        Some(scope) => {
            key_writes.extend(quote!(#h.scoped();));
            key_writes.extend(write_expr(k, scope, false));
        }
        None => key_writes.extend(quote!(#h.unscoped();)),
    }
    match &plan.key {
        KeySource::Params(params) => key_writes.extend(params.iter().map(|p| write_param(k, p))),
        KeySource::Expr(expr) => key_writes.extend(write_expr(k, expr, true)),
    }
    let key = quote! {
        let __idem_key = {
            let mut #h = #k::__private::key_hasher(&__IDEM_OP);
            #key_writes
            #k::__private::finish_key(&mut #h)
        };
    };
    let (fingerprint_let, fingerprint) = if plan.fingerprint.is_empty() {
        (TokenStream::new(), quote!(#k::__private::None))
    } else {
        let writes = plan.fingerprint.iter().map(|p| write_param(k, p));
        (
            quote! {
                let __idem_fingerprint = {
                    let mut #h = #k::__private::fingerprint_hasher(&__IDEM_OP);
                    #(#writes)*
                    #k::__private::finish_fingerprint(&mut #h)
                };
            },
            quote!(#k::__private::Some(__idem_fingerprint)),
        )
    };
    // `Some`/`None` keep the call-site span: with a user span, `unused_qualifications` would
    // flag the prelude items.
    let store = match &plan.store {
        Some(expr) => {
            let store_fn = respan(quote!(#k::__private::store), expr.span());
            quote!(#store_fn(#expr))
        }
        None => quote!(#k::__private::None),
    };

    // ---- the call ------------------------------------------------------------------------
    let output = &plan.output;
    let out_span = output.span();
    // Spanned on the return type: the checks of `run`'s bounds are reported there.
    let run = respan(quote!(#k::__private::run::<#output, _, _, _, _>), out_span);
    let destructure = plan
        .destructure
        .iter()
        .map(|(pat, ident)| quote!(let #pat = #ident;));
    // The body is pinned in this fn's own future and handed to `run` by reference: `run` erases
    // its type at once, so the engine is compiled once per return type, not once per fn (see
    // `__private::run`).
    let pin = respan(quote!(#k::__private::pin!), out_span);
    // Replays of a `Clone` value clone a kept decoded copy (chosen on the concrete type).
    let cache = quote!(#k::__private::CacheProbe::<#output>::new().replay_cache());
    let call = match plan.shape {
        Shape::Async => {
            let async_move = quote_spanned!(out_span=> async move);
            let body = if plan.destructure.is_empty() {
                quote!(#async_move #body)
            } else {
                quote!(#async_move { #(#destructure)* #body })
            };
            let args = respan(quote!(&__IDEM_OP, __idem_key,), out_span);
            quote_spanned!(out_span=> #run(#args #fingerprint, #store, #cache, #pin(#body)).await)
        }
        Shape::AsyncTrait => {
            // `#[async_trait]` made the body `{ Box::pin(async move { … }) }`: a future already,
            // built here after the store expression (the parameters move into it) and pinned
            // inside the returned box, which owns it.
            let body = if plan.destructure.is_empty() {
                quote!(#body)
            } else {
                quote!({ #(#destructure)* #body })
            };
            let args = respan(
                quote!(
                    &__IDEM_OP,
                    __idem_key,
                    __idem_fingerprint,
                    __idem_store,
                    __idem_cache,
                ),
                out_span,
            );
            let boxed = respan(quote!(#k::__private::pin_box), out_span);
            let async_move = quote_spanned!(out_span=> async move);
            quote_spanned!(out_span=>
                let __idem_fingerprint = #fingerprint;
                let __idem_store = #store;
                let __idem_cache = #cache;
                let __idem_body = #body;
                #boxed(#async_move { #run(#args #pin(__idem_body)).await })
            )
        }
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            static __IDEM_OP: #k::__private::Operation = #k::__private::Operation::new(#name)
                #settings
                .with_location(#location);
            #k::__private::inventory::submit! { #k::__private::Registration::new(&__IDEM_OP) }
            #key
            #fingerprint_let
            #call
        }
    }
}

/// `dispatch(&param).write(&mut __idem_h);`, spanned on the parameter's type so that an
/// unhashable argument is reported there.
fn write_param(k: &TokenStream, p: &Hashed) -> TokenStream {
    let ident = &p.ident;
    respan(
        quote!(#k::__private::dispatch(&#ident).write(&mut __idem_h);),
        p.span,
    )
}

/// Writes an option's expression; a tuple expression (in `key`) is written as a tuple of its
/// elements, each borrowed, so `key = (tenant, id)` moves nothing.
fn write_expr(k: &TokenStream, expr: &Expr, split_tuple: bool) -> TokenStream {
    if split_tuple
        && let Expr::Tuple(t) = strip_parens(expr)
        && t.elems.len() > 1
    {
        let arity = proc_macro2::Literal::u64_unsuffixed(t.elems.len() as u64);
        let elems = t.elems.iter().map(|e| write_one(k, e));
        return quote!(__idem_h.begin_tuple(#arity); #(#elems)*);
    }
    write_one(k, expr)
}

fn write_one(k: &TokenStream, expr: &Expr) -> TokenStream {
    let span: Span = expr.span();
    let dispatch = respan(quote!(#k::__private::dispatch), span);
    quote_spanned!(span=> #dispatch(&(#expr)).write(&mut __idem_h);)
}

/// `tokens` with every span set to `span` (groups included), so that a type error anywhere in
/// them is reported at `span` rather than at the attribute.
pub fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            proc_macro2::TokenTree::Group(g) => {
                let mut out = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                out.set_span(span);
                proc_macro2::TokenTree::Group(out)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

fn strip_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => strip_parens(&p.expr),
        Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}
