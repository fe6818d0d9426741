//! Checking `#[idempotent]`'s options against the function, and deciding what is hashed.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, GenericParam, Ident, Pat, PathArguments, ReturnType,
    Type, TypeParamBound,
};

use super::parse::{Args, Conflict, Func};
use crate::ctxt::Ctxt;
use crate::duration::{Dur, format_millis};
use crate::timestamp;

/// Default TTL and lease of the runtime, for the `ttl >= lease` check.
const DEFAULT_TTL_MS: u64 = 24 * 3_600_000;
const DEFAULT_LEASE_MS: u64 = 60_000;
/// The runtime's shortest lease (`engine::MIN_LEASE`): renewals come every third of the lease
/// and no sooner than every millisecond.
const MIN_LEASE_MS: u64 = 3;

/// How the function produces its future.
pub enum Shape {
    /// `async fn … -> R`.
    Async,
    /// A method rewritten by `#[async_trait]`: `fn … -> Pin<Box<dyn Future<Output = R> + …>>`.
    AsyncTrait,
}

/// A parameter that is hashed (into the key or the fingerprint).
pub struct Hashed {
    /// The name generated code uses (the parameter's own, or `__idem_argN` for a pattern).
    pub ident: Ident,
    /// Its type: errors about its value point there, and std containers in it are walked
    /// (`crate::walk`).
    pub ty: syn::Type,
    /// The parameter's `#[cfg(..)]` attributes, repeated on the statements that hash it.
    pub cfgs: Vec<Attribute>,
    /// `#[idem(include)]`: a time value in it is hashed on purpose (no run-time warning).
    pub included: bool,
}

/// A pattern parameter, renamed to `ident` in the signature and destructured at the start of
/// the body: `#cfgs let #pat = #ident;`.
pub struct Destructure {
    pub pat: Pat,
    pub ident: Ident,
    pub cfgs: Vec<Attribute>,
}

/// What is hashed into the key.
pub enum KeySource {
    /// The listed parameters, in order, back to back.
    Params(Vec<Hashed>),
    /// `key = <expr>`.
    Expr(Expr),
}

/// Everything the expansion needs.
pub struct Plan {
    pub shape: Shape,
    /// `R` of the future's `Output = R`.
    pub output: Type,
    pub name: Option<syn::LitStr>,
    pub version: Option<u32>,
    pub ttl: Option<Dur>,
    pub lease: Option<Dur>,
    pub wait_timeout: Option<Dur>,
    pub reject: bool,
    pub key: KeySource,
    pub scope: Option<Expr>,
    /// Parameters hashed into the payload fingerprint (only with `key = …`).
    pub fingerprint: Vec<Hashed>,
    pub store: Option<Expr>,
    /// The store expression may borrow from something the body moves (`self` that is not
    /// `&self`, an owned parameter): the call gets an owned `Arc` (see `__private::store_owned`).
    pub store_owned: bool,
    /// Pattern parameters renamed to `__idem_argN`, destructured at the start of the body.
    pub destructure: Vec<Destructure>,
    /// The plain `name: Type` parameters, excluded ones too: a `key`/`scope` expression (or a
    /// tuple element of one) that is one of them is written by its type, like the default key.
    pub param_types: Vec<(Ident, Type)>,
}

struct Param {
    /// The identifier bound by a plain `name: Type` parameter.
    name: Option<Ident>,
    /// Its type is a shared reference (`&T`): a borrow of it outlives a move into the body.
    shared_ref: bool,
    ty: Type,
    hashed: Option<Hashed>,
}

/// Validates `args` against `func`, strips the `#[idem]` parameter attributes from `func`, and
/// renames pattern parameters that are hashed. Errors go to `cx`.
pub fn plan(cx: &mut Ctxt, args: Args, func: &mut Func) -> Option<Plan> {
    let fn_name = func.sig.ident.unraw().to_string();

    // ---- shape and output ---------------------------------------------------------------
    let shape_output = if func.sig.asyncness.is_some() {
        match &func.sig.output {
            ReturnType::Type(_, ty) => Some((Shape::Async, (**ty).clone())),
            ReturnType::Default => {
                cx.error_spanned_by(
                    &func.sig.ident,
                    format!(
                        "`#[idempotent]` fn `{fn_name}` returns `()`; it must return `Result<T, E>` with \
                         `E: From<idem_runtime::Error>` (or `Result<T, idem_runtime::Error>`): idempotency \
                         failures are returned as errors, and `T` is the recorded value"
                    ),
                );
                None
            }
        }
    } else if let Some(output) = async_trait_output(&func.sig.output) {
        if !is_boxed_async_block(&func.body) {
            // Code before `Box::pin` would run on every call, replays included: only the
            // async block is the operation.
            cx.error_at(
                func.body.span_open(),
                format!(
                    "`#[idempotent]` takes a fn returning a boxed future (`{fn_name}`) only as \
                     `#[async_trait]` writes it, its whole body one `Box::pin(async move {{ … }})`: \
                     code outside the async block would run on every call, replays included; \
                     move it into the async block, or write an `async fn`"
                ),
            );
        }
        Some((Shape::AsyncTrait, output))
    } else {
        let hint = if returns_impl_future(&func.sig.output) {
            "; write it as `async fn` instead of returning `impl Future`"
        } else {
            ""
        };
        cx.error_spanned_by(
            func.sig.fn_token,
            format!("`#[idempotent]` needs an `async fn`, and `{fn_name}` is not async{hint}"),
        );
        None
    };
    // A borrowed value can never be `DeserializeOwned`; the compiler would say so in three
    // errors about higher-ranked lifetimes, none of them at the `&`.
    // A lifetime other than `'static` (`Cow<'a, str>`, `Holder<'_>`) likewise.
    if let Some((_, output)) = &shape_output
        && let Some(value) = result_value(output)
    {
        match find_borrow(value.to_token_stream()) {
            Some(Borrow::Reference(borrow)) => cx.error_at(
                borrow,
                format!(
                    "the value returned by `#[idempotent]` fn `{fn_name}` borrows: it is recorded \
                     and replayed to later calls, after this call's borrows have ended, so it must \
                     be owned data (`String` for `&str`, `Vec<u8>` for `&[u8]`, `T` for `&T`)"
                ),
            ),
            Some(Borrow::Lifetime(lifetime)) => cx.error_spanned_by(
                &lifetime,
                format!(
                    "the value returned by `#[idempotent]` fn `{fn_name}` has the lifetime \
                     `{lifetime}`: it is recorded and replayed to later calls, after this call's \
                     borrows have ended, so it must be owned data, with no lifetime but \
                     `'static` (`String` or `Cow<'static, str>` for `Cow<'a, str>`; a type of \
                     yours that borrows needs an owned version)"
                ),
            ),
            None => {}
        }
    }
    // `Result<impl Serialize, E>` is a valid signature, but the expansion names the return
    // type where `impl Trait` is not allowed, and no opaque type can be decoded anyway.
    if let Some((Shape::Async, output)) = &shape_output
        && let Some(at) = find_impl_trait(output.to_token_stream())
    {
        cx.error_at(
            at,
            format!(
                "the return type of `#[idempotent]` fn `{fn_name}` uses `impl Trait`: a replay \
                 decodes the recorded value into the declared type, so the value and error types \
                 must be named (e.g. `Result<Receipt, PayError>`, the value implementing \
                 `Serialize` and `Deserialize`)"
            ),
        );
    }
    if let Some(c) = &func.sig.constness {
        cx.error_spanned_by(c, "`#[idempotent]` cannot be used on a `const fn`");
    }
    if let Some(v) = &func.sig.variadic {
        cx.error_spanned_by(v, "`#[idempotent]` cannot be used on a variadic function");
    }

    // ---- parameters ---------------------------------------------------------------------
    let mut receiver: Option<Span> = None;
    // `&self` (or `self: &Self`): the store expression may borrow from it for the call.
    let mut receiver_shared = false;
    let mut params: Vec<Param> = Vec::new();
    let mut destructure = Vec::new();
    let mut excluded_by_list = vec![false; args.exclude.len()];
    for (index, arg) in func.sig.inputs.iter_mut().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                receiver = Some(r.self_token.span);
                receiver_shared = match &r.kind {
                    syn::ReceiverKind::Reference(_, _, mutability) => mutability.is_none(),
                    syn::ReceiverKind::Typed(_, ty) => is_shared_ref(ty),
                    _ => false,
                };
                let before = r.attrs.len();
                r.attrs.retain(|a| !super::parse::is_idem_attr(a));
                if r.attrs.len() != before {
                    cx.error_spanned_by(
                        r.self_token,
                        "`self` is never part of the key, so `#[idem(..)]` has nothing to do here; \
                         to put (part of) `self` into the key, name it in `key = …` or `scope = …` \
                         (e.g. `scope = self.tenant`)",
                    );
                }
            }
            FnArg::Typed(pt) => {
                let opts = super::parse::param_opts(cx, &mut pt.attrs);
                let cfgs: Vec<Attribute> = pt
                    .attrs
                    .iter()
                    .filter(|a| a.path().is_ident("cfg"))
                    .cloned()
                    .collect();
                let simple = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                        Some(pi.ident.clone())
                    }
                    _ => None,
                };
                let mut excluded = opts.exclude.is_some();
                if let Some(name) = &simple {
                    for (i, listed) in args.exclude.iter().enumerate() {
                        if listed == name {
                            if opts.exclude.is_some() {
                                cx.error_spanned_by(
                                    listed,
                                    format!(
                                        "`{name}` is excluded twice: by `exclude({name})` and by \
                                         `#[idem(exclude)]` on the parameter; keep one"
                                    ),
                                );
                            }
                            excluded = true;
                            excluded_by_list[i] = true;
                        }
                    }
                }
                if let (Some(_), Some(include)) = (opts.exclude, opts.include) {
                    cx.error_at(
                        include,
                        "a parameter cannot be both `exclude`d and `include`d",
                    );
                }
                let hashed = if excluded {
                    None
                } else {
                    if opts.include.is_none()
                        && let Some(time) = timestamp::find(&pt.ty)
                    {
                        let what = match &simple {
                            Some(n) => format!("parameter `{n}`"),
                            None => "this parameter".to_owned(),
                        };
                        cx.error_spanned_by(time, timestamp::message(&what, time));
                    }
                    let ident = match &simple {
                        Some(n) => n.clone(),
                        None => {
                            // A hygienic name: the body cannot see or shadow it.
                            let renamed =
                                Ident::new(&format!("__idem_arg{index}"), Span::mixed_site());
                            // `ref mut` bindings borrow the argument mutably.
                            let mutability = binds_ref_mut(&pt.pat).then(Default::default);
                            let pat = std::mem::replace(
                                &mut *pt.pat,
                                Pat::Ident(syn::PatIdent {
                                    attrs: Vec::new(),
                                    by_ref: None,
                                    mutability,
                                    ident: renamed.clone(),
                                    subpat: None,
                                }),
                            );
                            destructure.push(Destructure {
                                pat,
                                ident: renamed.clone(),
                                cfgs: cfgs.clone(),
                            });
                            renamed
                        }
                    };
                    Some(Hashed {
                        ident,
                        ty: (*pt.ty).clone(),
                        cfgs,
                        included: opts.include.is_some(),
                    })
                };
                params.push(Param {
                    name: simple,
                    shared_ref: is_shared_ref(&pt.ty),
                    ty: (*pt.ty).clone(),
                    hashed,
                });
            }
        }
    }
    for (listed, found) in args.exclude.iter().zip(&excluded_by_list) {
        if *found {
            continue;
        }
        if listed == "self" {
            cx.error_spanned_by(
                listed,
                "`self` is never part of the key; no need to exclude it",
            );
        } else {
            let names = param_names(&params);
            cx.error_spanned_by(
                listed,
                format!(
                    "cannot exclude `{listed}`: `{fn_name}` has no parameter of that name{names}"
                ),
            );
        }
    }

    // ---- name ---------------------------------------------------------------------------
    // Not reported after an unknown option or a broken `name`: it may be the name, misspelled.
    if args.name.is_none() && !args.name_unknown {
        if let Some(span) = receiver {
            cx.error_at(
                span,
                format!(
                    "`#[idempotent]` on a method needs a stable operation name: add \
                     `name = \"…\"` (e.g. `#[idempotent(name = \"orders.{fn_name}\")]`); the macro \
                     cannot see the impl's type, so a default name could collide with another \
                     type's `{fn_name}`"
                ),
            );
        } else if let Some(generic) = func
            .sig
            .generics
            .params
            .iter()
            .find(|p| !matches!(p, GenericParam::Lifetime(_)))
        {
            cx.error_spanned_by(
                generic,
                format!(
                    "generic `#[idempotent]` fn `{fn_name}` needs a stable operation name: add \
                     `name = \"…\"` (e.g. `#[idempotent(name = \"jobs.{fn_name}\")]`); every \
                     instantiation shares one operation, so make the key tell them apart if their \
                     results differ"
                ),
            );
        }
    }

    // ---- expressions ----------------------------------------------------------------------
    let known: Vec<String> = params
        .iter()
        .filter_map(|p| p.name.as_ref().map(Ident::to_string))
        .collect();
    // Names bound inside pattern parameters (`Order { id, .. }: Order`): not usable in the
    // options, which see whole parameters; the error says so.
    let mut in_patterns = Vec::new();
    for d in &destructure {
        pattern_bindings(&d.pat, &mut in_patterns);
    }
    for arg in &func.sig.inputs {
        if let FnArg::Typed(pt) = arg
            && !matches!(&*pt.pat, Pat::Ident(pi) if pi.subpat.is_none())
        {
            pattern_bindings(&pt.pat, &mut in_patterns);
        }
    }
    // With a scope, a constant key is one record per scope (a nightly report per tenant).
    if let Some(key) = args.key.as_ref().filter(|_| args.scope.is_none()) {
        check_not_constant(cx, key, &known, &params);
    }
    for (option, expr) in [
        ("key", &args.key),
        ("scope", &args.scope),
        ("store", &args.store),
    ] {
        if let Some(expr) = expr {
            check_idents(
                cx,
                expr,
                option,
                Names {
                    params: &known,
                    in_patterns: &in_patterns,
                },
                receiver.is_some(),
                &fn_name,
                &params,
            );
        }
    }
    if let Some((_, output)) = &shape_output {
        // `Result<T, E>`, `io::Result<T>`, `AppResult<T>`: the value is the first argument;
        // errors are never recorded. Under any other name, the whole type may be the value.
        let value = result_value(output).unwrap_or(output);
        check_generic_value(
            cx,
            &func.sig.generics,
            value,
            &params,
            args.key.as_ref(),
            args.scope.as_ref(),
            &fn_name,
        );
    }
    let store_owned = args
        .store
        .as_ref()
        .is_some_and(|expr| !borrows_only_shared(expr, receiver_shared, &params));
    let mut whole: Vec<String> = Vec::new();
    if let Some(k) = &args.key {
        whole_params(k, &mut whole);
    }
    if let Some(s) = &args.scope {
        whole_params(s, &mut whole);
    }
    // The store's parameter (`store = store`) is never key material.
    if let Some(s) = &args.store {
        whole_params(s, &mut whole);
    }
    let param_types: Vec<(Ident, Type)> = params
        .iter()
        .filter_map(|p| Some((p.name.clone()?, p.ty.clone())))
        .collect();
    let rest: Vec<Hashed> = params
        .into_iter()
        .filter(|p| {
            !p.name
                .as_ref()
                .is_some_and(|n| whole.contains(&n.to_string()))
        })
        .filter_map(|p| p.hashed)
        .collect();
    let (key, fingerprint) = match args.key {
        Some(expr) => (KeySource::Expr(expr), rest),
        None => (KeySource::Params(rest), Vec::new()),
    };

    // ---- timings --------------------------------------------------------------------------
    let ttl_ms = args.ttl.as_ref().map_or(DEFAULT_TTL_MS, |d| d.millis);
    let lease_ms = args.lease.as_ref().map_or(DEFAULT_LEASE_MS, |d| d.millis);
    if ttl_ms < lease_ms {
        let (ttl_text, lease_text) = (format_millis(ttl_ms), format_millis(lease_ms));
        let message = match (&args.ttl, &args.lease) {
            (Some(_), None) => format!(
                "`ttl` ({ttl_text}) is shorter than the default lease ({lease_text}): a completed \
                 record must outlive the claim that produced it; add a lease no longer than the \
                 ttl and longer than the body's slowest run (e.g. `lease = \"{ttl_text}\"`), or \
                 lengthen the ttl"
            ),
            (None, _) => format!(
                "`lease` ({lease_text}) is longer than the default ttl ({ttl_text}): a completed \
                 record must outlive the claim that produced it; shorten the lease, or add a \
                 longer `ttl`"
            ),
            (Some(_), Some(_)) => format!(
                "`ttl` ({ttl_text}) must be at least `lease` ({lease_text}): a completed record \
                 must outlive the claim that produced it; shorten the lease or lengthen the ttl"
            ),
        };
        match (&args.ttl, &args.lease) {
            (Some(ttl), _) => cx.error_spanned_by(&ttl.lit, message),
            (None, Some(lease)) => cx.error_spanned_by(&lease.lit, message),
            (None, None) => {}
        }
    }
    if let Some(lease) = args.lease.as_ref().filter(|d| d.millis < MIN_LEASE_MS) {
        cx.error_spanned_by(
            &lease.lit,
            format!(
                "`lease` must be at least {MIN_LEASE_MS}ms: it is renewed every third of itself, \
                 and no sooner than every millisecond, so a shorter lease lapses before its first \
                 renewal; make it longer than the body's slowest run (the default is 60s)"
            ),
        );
    }
    let reject = matches!(args.on_conflict, Some((Conflict::Reject, _)));
    if reject && let Some(wait) = &args.wait_timeout {
        cx.error_spanned_by(
            &wait.lit,
            "`wait_timeout` has no effect with `on_conflict = \"reject\"`: a rejected duplicate does not wait",
        );
    }

    let (shape, output) = shape_output?;
    if cx.has_errors() {
        return None;
    }
    Some(Plan {
        shape,
        output,
        name: args.name,
        version: args.version.map(|(v, _)| v),
        ttl: args.ttl,
        lease: args.lease,
        wait_timeout: args.wait_timeout,
        reject,
        key,
        scope: args.scope,
        fingerprint,
        store: args.store,
        store_owned,
        destructure,
        param_types,
    })
}

fn is_shared_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_none())
}

/// Whether the pattern has a `ref mut` binding.
fn binds_ref_mut(pat: &Pat) -> bool {
    match pat {
        Pat::Ident(p) => {
            (p.by_ref.is_some() && p.mutability.is_some())
                || p.subpat.as_ref().is_some_and(|(_, sub)| binds_ref_mut(sub))
        }
        Pat::Tuple(t) => t.elems.iter().any(binds_ref_mut),
        Pat::TupleStruct(t) => t.elems.iter().any(binds_ref_mut),
        Pat::Struct(s) => s.fields.iter().any(|f| binds_ref_mut(&f.pat)),
        Pat::Slice(s) => s.elems.iter().any(binds_ref_mut),
        Pat::Or(o) => o.cases.iter().any(binds_ref_mut),
        Pat::Paren(p) => binds_ref_mut(&p.pat),
        Pat::Reference(r) => binds_ref_mut(&r.pat),
        Pat::Type(t) => binds_ref_mut(&t.pat),
        _ => false,
    }
}

/// Whether a borrow made by the `store` expression can live for the whole call although the
/// body moves the parameters: true when every parameter it names is a shared reference (and
/// `self` is `&self`). Any expression shape not listed is assumed to need an owned store.
fn borrows_only_shared(expr: &Expr, receiver_shared: bool, params: &[Param]) -> bool {
    match expr {
        Expr::Path(p) if p.qself.is_none() => {
            let Some(ident) = p.path.get_ident() else {
                return true; // a path to an item (`crate::STORE`)
            };
            if ident == "self" {
                return receiver_shared;
            }
            match params
                .iter()
                .find(|param| param.name.as_ref() == Some(ident))
            {
                Some(param) => param.shared_ref,
                // Not a parameter: a static or const (other names are reported already).
                None => true,
            }
        }
        Expr::Lit(_) => true,
        Expr::Field(f) => borrows_only_shared(&f.base, receiver_shared, params),
        Expr::Reference(r) => borrows_only_shared(&r.expr, receiver_shared, params),
        Expr::Paren(p) => borrows_only_shared(&p.expr, receiver_shared, params),
        Expr::Group(g) => borrows_only_shared(&g.expr, receiver_shared, params),
        Expr::MethodCall(m) => {
            borrows_only_shared(&m.receiver, receiver_shared, params)
                && m.args
                    .iter()
                    .all(|a| borrows_only_shared(a, receiver_shared, params))
        }
        Expr::Call(c) => {
            borrows_only_shared(&c.func, receiver_shared, params)
                && c.args
                    .iter()
                    .all(|a| borrows_only_shared(a, receiver_shared, params))
        }
        Expr::Index(i) => {
            borrows_only_shared(&i.expr, receiver_shared, params)
                && borrows_only_shared(&i.index, receiver_shared, params)
        }
        _ => false,
    }
}

/// `key = "order_id"` (written like `name = "…"`) or any other literal, without a scope: every
/// call would get the same key, so every call after the first would replay its result or fail
/// with `PayloadMismatch`.
fn check_not_constant(cx: &mut Ctxt, key: &Expr, known: &[String], params: &[Param]) {
    let mut expr = key;
    while let Expr::Paren(syn::ExprParen { expr: inner, .. })
    | Expr::Group(syn::ExprGroup { expr: inner, .. })
    | Expr::Reference(syn::ExprReference { expr: inner, .. }) = expr
    {
        expr = inner;
    }
    let Expr::Lit(lit) = expr else {
        return;
    };
    let message = match &lit.lit {
        syn::Lit::Str(s) if known.contains(&s.value()) => format!(
            "`key` takes an expression, not a string: write `key = {}` (without quotes)",
            s.value()
        ),
        _ => format!(
            "`key = <literal>` gives every call the same key: each call after the first would \
             replay the first one's result (or fail with `PayloadMismatch`); write an expression \
             over the parameters, e.g. `key = order_id`{}",
            param_names(params)
        ),
    };
    cx.error_spanned_by(lit, message);
}

fn param_names(params: &[Param]) -> String {
    let names: Vec<String> = params
        .iter()
        .filter_map(|p| p.name.as_ref().map(|n| format!("`{n}`")))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (its parameters: {})", names.join(", "))
    }
}

/// Whether `body` is `{ Box::pin(async move { … }) }` (any path to `pin`), and nothing else.
fn is_boxed_async_block(body: &proc_macro2::Group) -> bool {
    let Ok(Expr::Call(call)) = syn::parse2::<Expr>(body.stream()) else {
        return false;
    };
    let pin = matches!(&*call.func, Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "pin"));
    pin && matches!(call.args.iter().collect::<Vec<_>>()[..], [Expr::Async(_)])
}

/// `Output` of `Pin<Box<dyn Future<Output = R> + …>>` (the shape `#[async_trait]` produces).
fn async_trait_output(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let pin = single_generic(ty, "Pin")?;
    let boxed = single_generic(pin, "Box")?;
    let Type::TraitObject(object) = boxed else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(t) = bound else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}

/// The first type argument of a type whose name ends in `Result`.
fn result_value(ty: &Type) -> Option<&Type> {
    first_type_arg(ty, |name| name.to_string().ends_with("Result"))
}

fn single_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    first_type_arg(ty, |ident| ident == name)
}

/// The first type argument of a path type whose last segment's name `named` accepts.
fn first_type_arg(ty: &Type, named: impl Fn(&Ident) -> bool) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if !named(&last.ident) {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn returns_impl_future(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    matches!(&**ty, Type::ImplTrait(_))
}

/// Parameters an expression names as a whole (`x`, `&x`, `(x, y)`): they are hashed through
/// the expression already and are left out of the default key and of the fingerprint.
fn whole_params(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Path(p) if p.qself.is_none() => {
            if let Some(ident) = p.path.get_ident() {
                out.push(ident.to_string());
            }
        }
        Expr::Reference(r) => whole_params(&r.expr, out),
        Expr::Paren(p) => whole_params(&p.expr, out),
        Expr::Group(g) => whole_params(&g.expr, out),
        Expr::Tuple(t) => t.elems.iter().for_each(|e| whole_params(e, out)),
        _ => {}
    }
}

/// Reports lower-case single identifiers in `expr` that are not parameters of the function.
/// Only plain paths in value position are checked (not function names, closures, blocks or
/// macros, which may bind or refer to other things).
fn check_idents(
    cx: &mut Ctxt,
    expr: &Expr,
    option: &str,
    names: Names<'_>,
    has_self: bool,
    fn_name: &str,
    params: &[Param],
) {
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Path(p) if p.qself.is_none() => {
                let Some(ident) = p.path.get_ident() else {
                    continue;
                };
                let name = ident.to_string();
                if name == "self" {
                    if !has_self {
                        cx.error_spanned_by(
                            ident,
                            format!(
                                "`{option}` uses `self`, but `{fn_name}` has no `self` parameter"
                            ),
                        );
                    }
                    continue;
                }
                let lower = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_lowercase() || c == '_');
                if lower && !names.params.contains(&name) && names.in_patterns.contains(&name) {
                    cx.error_spanned_by(
                        ident,
                        format!(
                            "`{option}` uses `{name}`, which is bound inside a parameter's \
                             pattern; `{option} = …` is evaluated over whole parameters, before \
                             the body destructures them: name the parameter (e.g. \
                             `order: Order`) and write `{option} = order.{name}`"
                        ),
                    );
                } else if lower && !names.params.contains(&name) {
                    cx.error_spanned_by(
                        ident,
                        format!(
                            "`{option}` uses `{name}`, which is not a parameter of `{fn_name}`{}; \
                             `{option} = …` is evaluated before the body, over the parameters",
                            param_names(params)
                        ),
                    );
                }
            }
            Expr::Field(f) => stack.push(&f.base),
            Expr::MethodCall(m) => {
                stack.push(&m.receiver);
                stack.extend(m.args.iter());
            }
            Expr::Call(c) => stack.extend(c.args.iter()),
            Expr::Tuple(t) => stack.extend(t.elems.iter()),
            Expr::Array(a) => stack.extend(a.elems.iter()),
            Expr::Reference(r) => stack.push(&r.expr),
            Expr::Paren(p) => stack.push(&p.expr),
            Expr::Group(g) => stack.push(&g.expr),
            Expr::Index(i) => {
                stack.push(&i.expr);
                stack.push(&i.index);
            }
            Expr::Binary(b) => {
                stack.push(&b.left);
                stack.push(&b.right);
            }
            Expr::Unary(u) => stack.push(&u.expr),
            Expr::Cast(c) => stack.push(&c.expr),
            _ => {}
        }
    }
}

/// What makes a value type borrow.
enum Borrow {
    /// A reference type: the span of its `&`.
    Reference(Span),
    /// A lifetime other than `'static` (`'a`, `'_`).
    Lifetime(syn::Lifetime),
}

/// The first `&` (a reference type) or lifetime other than `'static` in `tokens`, however
/// deeply nested: `Vec<&str>`, `(u8, &[u8])`, `Cow<'a, str>`, `Holder<'_>`.
fn find_borrow(tokens: proc_macro2::TokenStream) -> Option<Borrow> {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(token) = tokens.next() {
        let found = match token {
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '&' => {
                Some(Borrow::Reference(punct.span()))
            }
            proc_macro2::TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                match tokens.peek() {
                    Some(proc_macro2::TokenTree::Ident(ident)) if ident != "static" => {
                        let mut lifetime = syn::Lifetime::new("'a", ident.span());
                        lifetime.apostrophe = punct.span();
                        lifetime.ident = ident.clone();
                        Some(Borrow::Lifetime(lifetime))
                    }
                    _ => None,
                }
            }
            proc_macro2::TokenTree::Group(group) => find_borrow(group.stream()),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The `impl` of the first `impl Trait` in `tokens`, however deeply nested.
fn find_impl_trait(tokens: proc_macro2::TokenStream) -> Option<Span> {
    tokens.into_iter().find_map(|token| match token {
        proc_macro2::TokenTree::Ident(ident) if ident == "impl" => Some(ident.span()),
        proc_macro2::TokenTree::Group(group) => find_impl_trait(group.stream()),
        _ => None,
    })
}

/// Refuses a type or const parameter that appears in the recorded value's type but nowhere in
/// the key: all instantiations share one operation, so `f::<A>(x)` would replay the value
/// recorded by `f::<B>(x)` (or fail to decode it). The key "mentions" a parameter when a hashed
/// parameter's type or the `key`/`scope` expression names it (`scope = T::KIND`); that proves
/// nothing about the hashed values, but it leaves the judgement to code that looked at `T`.
/// Parameters that only appear in the error type are fine: errors are never recorded.
fn check_generic_value(
    cx: &mut Ctxt,
    generics: &syn::Generics,
    value: &Type,
    params: &[Param],
    key_expr: Option<&Expr>,
    scope: Option<&Expr>,
    fn_name: &str,
) {
    let exprs: Vec<proc_macro2::TokenStream> = key_expr
        .into_iter()
        .chain(scope)
        .map(ToTokens::to_token_stream)
        .collect();
    let mut key = proc_macro2::TokenStream::new();
    for tokens in &exprs {
        key.extend(tokens.clone());
    }
    // The key's types before `PhantomData<…>` is emptied: to say why a mention there is not one.
    let mut with_phantom = key.clone();
    for param in params {
        let Some(hashed) = &param.hashed else {
            continue;
        };
        // With `key = …`, the parameters the expressions name carry the key; without it,
        // every hashed parameter does (the others form the fingerprint, which separates nothing).
        let named = exprs
            .iter()
            .any(|tokens| find_ident(tokens.clone(), &hashed.ident).is_some());
        if named || key_expr.is_none() {
            // `PhantomData<T>` hashes the same for every `T`: a mention there tells nothing apart.
            let mut ty = hashed.ty.clone();
            with_phantom.extend(ty.to_token_stream());
            strip_phantom(&mut ty);
            key.extend(ty.to_token_stream());
        }
    }
    for generic in &generics.params {
        let (ident, kind) = match generic {
            GenericParam::Type(t) => (&t.ident, "type"),
            GenericParam::Const(c) => (&c.ident, "const"),
            GenericParam::Lifetime(_) => continue,
        };
        if find_ident(key.clone(), ident).is_some() {
            continue;
        }
        let Some(at) = find_ident(value.to_token_stream(), ident) else {
            continue;
        };
        let suggestion = if kind == "type" {
            format!(
                "`scope = {ident}::KIND`, with an associated `const KIND: &'static str` on a trait \
                 that `{ident}` implements (a value that stays the same across builds, not \
                 `std::any::type_name`)"
            )
        } else {
            format!("`scope = {ident}`")
        };
        let phantom = if find_ident(with_phantom.clone(), ident).is_some() {
            format!(
                " (`PhantomData<{ident}>` does not count: it hashes the same for every `{ident}`)"
            )
        } else {
            String::new()
        };
        cx.error_at(
            at,
            format!(
                "{kind} parameter `{ident}` appears in the value that `{fn_name}` records but not \
                 in its key{phantom}: every instantiation shares the records, so a call with one \
                 `{ident}` would replay a value recorded for another; put what tells them apart \
                 into the key, e.g. {suggestion}"
            ),
        );
    }
}

/// Empties the arguments of every `PhantomData<…>` in `ty` (`crate::walk::is_phantom`), so
/// that the type parameters only mentioned there are not seen. Types whose parts are not
/// visited (`fn(T)`, `dyn Tr<T>`, `impl Tr<T>`) keep their mentions.
fn strip_phantom(ty: &mut Type) {
    match ty {
        Type::Path(p) => {
            if let Some(q) = &mut p.qself {
                strip_phantom(&mut q.ty);
            }
            if crate::walk::is_phantom(&p.path) {
                if let Some(last) = p.path.segments.last_mut() {
                    last.arguments = PathArguments::None;
                }
                return;
            }
            for segment in &mut p.path.segments {
                if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
                    for arg in &mut args.args {
                        if let GenericArgument::Type(t) = arg {
                            strip_phantom(t);
                        }
                    }
                }
            }
        }
        Type::Reference(r) => strip_phantom(&mut r.elem),
        Type::Slice(s) => strip_phantom(&mut s.elem),
        Type::Array(a) => strip_phantom(&mut a.elem),
        Type::Ptr(p) => strip_phantom(&mut p.elem),
        Type::Paren(p) => strip_phantom(&mut p.elem),
        Type::Group(g) => strip_phantom(&mut g.elem),
        Type::Tuple(t) => t.elems.iter_mut().for_each(strip_phantom),
        _ => {}
    }
}

/// The span of the first `ident` in `tokens`, however deeply nested, that starts a path: `T`,
/// `T::KIND` and `Vec<T>` name a generic parameter `T`, `other::T` and `<X as Tr>::T` do not.
fn find_ident(tokens: proc_macro2::TokenStream, ident: &Ident) -> Option<Span> {
    let mut after_path_sep = false;
    let mut colons = 0;
    for token in tokens {
        let found = match &token {
            proc_macro2::TokenTree::Ident(found) if found == ident && !after_path_sep => {
                Some(found.span())
            }
            proc_macro2::TokenTree::Group(group) => find_ident(group.stream(), ident),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        colons = match &token {
            proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' => colons + 1,
            _ => 0,
        };
        after_path_sep = colons == 2;
    }
    None
}

/// The names an option's expression may mean: the parameters, and (refused with a hint) the
/// bindings inside pattern parameters.
#[derive(Clone, Copy)]
struct Names<'a> {
    params: &'a [String],
    in_patterns: &'a [String],
}

/// The identifiers a pattern binds.
fn pattern_bindings(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.unraw().to_string());
            if let Some((_, sub)) = &p.subpat {
                pattern_bindings(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pattern_bindings(&f.pat, out)),
        Pat::Slice(s) => s.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Or(o) => o.cases.iter().for_each(|c| pattern_bindings(c, out)),
        Pat::Paren(p) => pattern_bindings(&p.pat, out),
        Pat::Reference(r) => pattern_bindings(&r.pat, out),
        Pat::Type(t) => pattern_bindings(&t.pat, out),
        _ => {}
    }
}
