//! The expansion of `#[idempotent]`: the user's function with its body wrapped.
//!
//! ```text
//! #attrs #vis #sig {
//!     use ::idem_runtime::__private as __idem; // or the `crate = "…"` path; every name below is `__idem::…`
//!     let __idem_op: &'static Operation = {
//!         static __IDEM_OP: Operation = operation_at(name, module_path!(), file!(), line!()).with_…(..);
//!         inventory::submit! { Registration::new(&__IDEM_OP) }
//!         &__IDEM_OP
//!     };
//!     let __idem_cache = CacheProbe::<R>::new().replay_cache();
//!     let __idem_key = key_of(__idem_op, &|mut __idem_h| { writes of scope + key material });
//!     // `run_with(__idem_op, __idem_key, fingerprint, store, __idem_cache, …)` with `key =`/`store =`
//!     run(__idem_op, __idem_key, __idem_cache,
//!         body::<R, _>(pin!(ManuallyDrop::new(async move { body }))), slot_kept!()).await
//! }
//! ```
//!
//! Hygiene: the generated locals (`__idem_op`, `__idem_key`, `__idem_h`, …) are spanned with
//! `Span::mixed_site()`, so a parameter of the same name neither shadows them nor is shadowed
//! by them; the static sits in a block of its own for the same reason. User tokens (parameters,
//! option expressions, the body) keep their spans; only paths and method names whose trait
//! errors must be reported on a user token are respanned there.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{AttrStyle, Attribute, Expr, Type};

use super::parse::Func;
use super::validate::{Hashed, KeySource, Plan, Shape};

pub fn expand(krate: &TokenStream, func: &Func, plan: &Plan) -> TokenStream {
    let Func {
        attrs,
        vis,
        sig,
        body,
    } = func;
    let k = &crate::attr::private_alias();
    // One import of the runtime's hidden module: a wrong `crate = "…"` path is one error (at
    // the path), and `cargo expand` shows `__idem::run` rather than the full path every time.
    let import = quote!(use #krate::__private as #k;);
    let ident = &sig.ident;

    // ---- the static operation ------------------------------------------------------------
    let name = match &plan.name {
        Some(lit) => quote!(#lit),
        None => {
            let fn_name = syn::ext::IdentExt::unraw(ident).to_string();
            quote!(#k::concat!(#k::module_path!(), "::", #fn_name))
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
        settings.extend(quote!(.with_on_conflict(#k::OnConflict::Reject)));
    }
    if let Some(d) = &plan.wait_timeout {
        let d = d.to_tokens(k);
        settings.extend(quote!(.with_wait_timeout(#d)));
    }

    let op = local("__idem_op");
    // In a block of its own: a parameter named `__IDEM_OP` stays visible to the body.
    let operation = quote! {
        let #op: &'static #k::Operation = {
            static __IDEM_OP: #k::Operation =
                #k::operation_at(#name, #k::module_path!(), #k::file!(), #k::line!())
                #settings;
            #k::inventory::submit! { #k::Registration::new(&__IDEM_OP) }
            &__IDEM_OP
        };
    };

    // ---- key, fingerprint, store ---------------------------------------------------------
    let h = hasher();
    let mut key_writes = TokenStream::new();
    match &plan.scope {
        Some(scope) => {
            key_writes.extend(quote!(#h.scoped();));
            key_writes.extend(write_expr(k, scope, &plan.param_types));
        }
        None => key_writes.extend(quote!(#h.unscoped();)),
    }
    match &plan.key {
        KeySource::Params(params) => key_writes.extend(params.iter().map(|p| hash_param(k, p))),
        KeySource::Expr(expr) => key_writes.extend(write_expr(k, expr, &plan.param_types)),
    }
    let key_local = local("__idem_key");
    // A parameter named `_request_id` is still hashed unless excluded: reading it is the
    // macro's doing, not the user's (clippy's pedantic `used_underscore_binding`).
    let key = quote! {
        #[allow(clippy::used_underscore_binding)]
        let #key_local = #k::key_of(#op, &|mut #h: &mut #k::KeyHasher| {
            #key_writes
        });
    };
    let fingerprint_local = local("__idem_fingerprint");
    let (fingerprint_let, fingerprint) = if plan.fingerprint.is_empty() {
        (TokenStream::new(), quote!(#k::None))
    } else {
        let writes = plan.fingerprint.iter().map(|p| hash_param(k, p));
        (
            quote! {
                #[allow(clippy::used_underscore_binding)]
                let #fingerprint_local = #k::fingerprint_of(
                    #op,
                    &|mut #h: &mut #k::KeyHasher| { #(#writes)* },
                );
            },
            quote!(#k::Some(#fingerprint_local)),
        )
    };
    // `Some`/`None` keep the call-site span: with a user span, `unused_qualifications` would
    // flag the prelude items.
    let store = match &plan.store {
        Some(expr) => {
            // `store_owned` when the body may move what the expression borrows from (a
            // receiver other than `&self`, an owned parameter): the call then holds an `Arc`.
            let store_fn = if plan.store_owned {
                quote!(#k::store_owned)
            } else {
                quote!(#k::store)
            };
            let store_fn = respan(store_fn, expr.span());
            // A field (`store = self.store`) or a parameter (`store = store`) is borrowed, as
            // `&self.store` would be: moving an `Arc` out of a borrowed receiver is an error,
            // and a moved parameter could not be used by the body any more.
            if is_place(expr, &plan.param_types) {
                let borrow = quote_spanned!(expr.span()=> &);
                quote!(#store_fn(#borrow #expr))
            } else {
                quote!(#store_fn(#expr))
            }
        }
        None => quote!(#k::None),
    };

    // ---- the body ------------------------------------------------------------------------
    // Inner attributes (`#![allow(..)]`) cannot stay in an `async` block: they go on the fn.
    let (inner_attrs, stmts) = split_inner_attrs(body);
    let body = if plan.destructure.is_empty() && inner_attrs.is_empty() {
        body.clone()
    } else {
        // The destructuring `let`s, then the body's own statements: spliced into one block
        // (a nested block would be flagged by `unused_braces`).
        let mut block = TokenStream::new();
        for d in &plan.destructure {
            let (cfgs, pat, ident) = (&d.cfgs, &d.pat, &d.ident);
            block.extend(quote!(#(#cfgs)* let #pat = #ident;));
        }
        block.extend(stmts);
        let mut group = Group::new(Delimiter::Brace, block);
        group.set_span(body.span());
        group
    };

    // ---- the call ------------------------------------------------------------------------
    let output = &plan.output;
    let out_span = output.span();
    // Spanned on the return type: the checks of `run`'s bounds are reported there. `run` infers
    // the return type from the body, declared of that type by `__private::body`: a turbofish on
    // `run` would repeat the type's tokens respanned, and a typo in the type would be reported
    // a second time, at the wrong place (the type's own tokens, kept, report it once).
    // `run` for the common call, `run_with` when there is a fingerprint or a store to pass.
    let plain = plan.fingerprint.is_empty() && plan.store.is_none();
    let run = if plain {
        respan(quote!(#k::run), out_span)
    } else {
        respan(quote!(#k::run_with), out_span)
    };
    let slot = respan(quote!(#k::body), out_span);
    // The body is pinned in this fn's own future and lent to `run` by reference, its type erased
    // by `body`, so the engine is compiled once per return type, not once per fn; the engine
    // drops it (see `__private::body`).
    let pin = respan(quote!(#k::pin!), out_span);
    let manually_drop = respan(quote!(#k::ManuallyDrop::new), out_span);
    // Replays of a `Clone` value clone a kept decoded copy (chosen on the concrete type).
    let cache = quote!(#k::CacheProbe::<#output>::new().replay_cache());
    let async_move = quote_spanned!(out_span=> async move);
    let (op_arg, key_arg) = (
        local_at("__idem_op", out_span),
        local_at("__idem_key", out_span),
    );
    // Lending the body takes the promise to keep its slot in this fn's future (the future `run`
    // returns is `Send` whatever the body; this fn's is `Send` only if the body is). The
    // `unsafe` block is the runtime's, inside its `slot_kept!` (the lint `unsafe_code` does not
    // report another crate's macro): the expansion holds none, and none around user tokens.
    let promise = quote!(#k::slot_kept!());
    let mut cache_let = TokenStream::new();
    let call = match plan.shape {
        Shape::Async => {
            // Chosen before the key: its calls then have no key to drop on their unwinding
            // paths, and their temporaries do not live across the `.await`.
            let cache_local = local_at("__idem_cache", out_span);
            cache_let = quote!(let #cache_local = #cache;);
            let cache = &cache_local;
            let with = (!plain).then(|| quote!(#fingerprint, #store,));
            // The body's type is fixed before the body is checked (as `#[async_trait]` does):
            // a wrong value or `return` is then reported at the user's expression, as in a
            // plain `async fn`, not at the return type as a future of the wrong output.
            // The body's statements, spliced after it: a nested block would be flagged by
            // `unused_braces`, and a `let` of the body's value would make what follows a
            // diverging body unreachable.
            let stmts = body.stream();
            let body = quote!({
                if false {
                    return #k::typed::<#output>();
                }
                #stmts
            });
            quote_spanned!(out_span=>
                #run(#op_arg, #key_arg, #with #cache, #slot::<#output, _>(#pin(#manually_drop(#async_move #body)), #promise)).await
            )
        }
        Shape::AsyncTrait => {
            // `#[async_trait]` made the body `{ Box::pin(async move { … }) }`: a future already,
            // built here after the store expression (the parameters move into it) and pinned
            // inside the returned box, which owns it.
            let fingerprint_arg = local_at("__idem_fingerprint", out_span);
            let store_arg = local_at("__idem_store", out_span);
            let cache_arg = local_at("__idem_cache", out_span);
            let body_arg = local_at("__idem_body", out_span);
            let boxed = respan(quote!(#k::pin_box), out_span);
            let (with_lets, with) = if plain {
                (TokenStream::new(), TokenStream::new())
            } else {
                (
                    quote_spanned!(out_span=>
                        let #fingerprint_arg = #fingerprint;
                        let #store_arg = #store;
                    ),
                    quote!(#fingerprint_arg, #store_arg,),
                )
            };
            quote_spanned!(out_span=>
                #with_lets
                let #cache_arg = #cache;
                let #body_arg = #body;
                #boxed(#async_move {
                    #run(#op_arg, #key_arg, #with #cache_arg, #slot(#pin(#manually_drop(#body_arg)), #promise)).await
                })
            )
        }
    };

    // The fn's braces keep the body's span: the item spans the user's tokens, as without the
    // attribute (lints such as `dead_code` see it; a fix suggested for the body lands there).
    let mut fn_body = Group::new(
        Delimiter::Brace,
        quote! {
            #import
            #operation
            #cache_let
            #key
            #fingerprint_let
            #call
        },
    );
    fn_body.set_span(func.body.span());
    quote! {
        #(#attrs)*
        #(#inner_attrs)*
        #vis #sig #fn_body
    }
}

/// A generated local: hygienic (`Span::mixed_site()`), so that user code can neither see nor
/// shadow it.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// A generated local whose errors, if any, are reported at `at`.
fn local_at(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// The hasher local, `__idem_h`.
fn hasher() -> Ident {
    local("__idem_h")
}

/// Hashes one parameter; under its `#[cfg(..)]` attributes, if it has some.
fn hash_param(k: &TokenStream, p: &Hashed) -> TokenStream {
    let mut write = write_param(k, p);
    if p.included {
        write = crate::walk::included(k, write);
    }
    if p.cfgs.is_empty() {
        write
    } else {
        let cfgs = &p.cfgs;
        quote!(#(#cfgs)* { #write })
    }
}

/// `dispatch(&param).write(&mut __idem_h);`, spanned on the parameter's type so that an
/// unhashable argument is reported there; a std container holding several types (`Vec<(Inner,
/// Uuid)>`) is walked so that each is dispatched on its own and derived types keep their
/// exclusions (`crate::walk`). The parameter and the hygienic hasher keep their resolution.
fn write_param(k: &TokenStream, p: &Hashed) -> TokenStream {
    let ident = &p.ident;
    let h = hasher();
    crate::walk::write(k, &p.ty, quote!(&#ident), &quote!(&mut #h))
}

/// Writes a `key` or `scope` expression; a tuple expression is written as a tuple of its
/// elements, each borrowed (nested tuples and `&(…)` likewise), so `key = (tenant, id)` moves
/// nothing and hashes like `Operation::key(&(tenant, id))` (`scope` likewise, like
/// `Operation::scoped_key`).
///
/// An expression (or tuple element) that is a parameter, bare or borrowed (`ids`, `&ids`), is
/// written by the parameter's type exactly as the default key writes it (`crate::walk`): a
/// `HashSet` in the set form whatever its elements, a derived type inside a std container with
/// its exclusions. Any other expression (`req.ids`, `ids.clone()`) has no type the macro can see
/// and is dispatched whole ([`write_one`]).
fn write_expr(k: &TokenStream, expr: &Expr, params: &[(Ident, Type)]) -> TokenStream {
    match strip_parens(expr) {
        Expr::Tuple(t) if !t.elems.is_empty() => {
            let h = hasher();
            let arity = proc_macro2::Literal::u64_unsuffixed(t.elems.len() as u64);
            let elems = t.elems.iter().map(|e| write_expr(k, e, params));
            quote!(#h.begin_tuple(#arity); #(#elems)*)
        }
        // `&T` is written as `T`.
        Expr::Reference(r)
            if r.mutability.is_none()
                && (matches!(strip_parens(&r.expr), Expr::Tuple(_))
                    || param_of(&r.expr, params).is_some()) =>
        {
            write_expr(k, &r.expr, params)
        }
        other => match param_of(other, params) {
            Some((ident, ty)) => {
                let h = hasher();
                crate::walk::write(k, ty, quote!(&#ident), &quote!(&mut #h))
            }
            None => write_one(k, expr),
        },
    }
}

/// The parameter `expr` names, if it is a bare identifier naming one: the expression's own
/// identifier (its span and hygiene) and the parameter's type.
fn param_of<'a>(expr: &'a Expr, params: &'a [(Ident, Type)]) -> Option<(&'a Ident, &'a Type)> {
    let Expr::Path(p) = strip_parens(expr) else {
        return None;
    };
    if p.qself.is_some() || !p.attrs.is_empty() {
        return None;
    }
    let ident = p.path.get_ident()?;
    params
        .iter()
        .find(|(name, _)| name == ident)
        .map(|(_, ty)| (ident, ty))
}

fn write_one(k: &TokenStream, expr: &Expr) -> TokenStream {
    let span: Span = expr.span();
    let h = hasher();
    let dispatch = respan(quote!(#k::dispatch), span);
    let write = Ident::new("write", span);
    quote_spanned!(span=> #dispatch(&(#expr)).#write(&mut #h);)
}

/// The body's inner attributes (made outer, for the fn) and the rest of its tokens.
fn split_inner_attrs(body: &Group) -> (Vec<Attribute>, TokenStream) {
    let parser = |input: ParseStream| {
        let attrs = input.call(Attribute::parse_inner)?;
        let rest: TokenStream = input.parse()?;
        Ok((attrs, rest))
    };
    match parser.parse2(body.stream()) {
        Ok((mut attrs, rest)) => {
            for attr in &mut attrs {
                attr.style = AttrStyle::Outer;
            }
            (attrs, rest)
        }
        Err(_) => (Vec::new(), body.stream()),
    }
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

/// Whether `expr` is a field access (`self.store`, `(ctx.store)`) or names a parameter: a
/// place that can be borrowed.
fn is_place(expr: &syn::Expr, params: &[(Ident, Type)]) -> bool {
    match expr {
        syn::Expr::Field(_) => true,
        syn::Expr::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|ident| params.iter().any(|(name, _)| name == ident)),
        syn::Expr::Paren(p) => is_place(&p.expr, params),
        syn::Expr::Group(g) => is_place(&g.expr, params),
        _ => false,
    }
}
