//! Parsing `#[idempotent(..)]`: the option list and the annotated function.

use proc_macro2::{Group, Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Expr, Ident, LitInt, LitStr, Path, Signature, Visibility};

use crate::attr::{self, Seen};
use crate::ctxt::Ctxt;
use crate::duration::{self, Dur};

pub const OPTIONS: &[&str] = &[
    "ttl",
    "key",
    "scope",
    "name",
    "version",
    "lease",
    "on_conflict",
    "wait_timeout",
    "store",
    "crate",
    "exclude",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Wait,
    Reject,
}

/// The options of one `#[idempotent(..)]`, as written.
#[derive(Default)]
pub struct Args {
    pub ttl: Option<Dur>,
    pub lease: Option<Dur>,
    pub wait_timeout: Option<Dur>,
    pub key: Option<Expr>,
    pub scope: Option<Expr>,
    pub store: Option<Expr>,
    pub name: Option<LitStr>,
    pub version: Option<(u32, LitInt)>,
    pub on_conflict: Option<(Conflict, LitStr)>,
    pub krate: Option<Path>,
    /// `exclude(a, b)`: parameters left out of the key.
    pub exclude: Vec<Ident>,
}

/// Parses the attribute's arguments; every problem is recorded in `cx`.
pub fn args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let mut seen = Seen::default();
    let parser = syn::meta::parser(|meta| {
        let Some(name) = attr::option_name(cx, &mut seen, &meta, "`#[idempotent]`", OPTIONS)?
        else {
            return Ok(());
        };
        match name.as_str() {
            "ttl" | "lease" | "wait_timeout" => {
                let lit = attr::string(&meta, &name)?;
                match duration::parse(&name, &lit) {
                    Ok(dur) => match name.as_str() {
                        "ttl" => args.ttl = Some(dur),
                        "lease" => args.lease = Some(dur),
                        _ => args.wait_timeout = Some(dur),
                    },
                    Err(e) => cx.syn_error(e),
                }
            }
            "key" => args.key = Some(meta.value()?.parse()?),
            "scope" => args.scope = Some(meta.value()?.parse()?),
            "store" => args.store = Some(meta.value()?.parse()?),
            "name" => {
                let lit = attr::string(&meta, &name)?;
                if lit.value().trim().is_empty() {
                    cx.error_spanned_by(
                        &lit,
                        "`name` must not be empty: it identifies the operation in every key",
                    );
                }
                args.name = Some(lit);
            }
            "version" => {
                let value = meta.value()?;
                let lit: LitInt = value.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`version` expects an integer literal, e.g. `version = 2`",
                    )
                })?;
                match lit.base10_parse::<u32>() {
                    Ok(v) => args.version = Some((v, lit)),
                    Err(_) => cx.error_spanned_by(&lit, "`version` must fit in a u32"),
                }
            }
            "on_conflict" => {
                let lit = attr::string(&meta, &name)?;
                match lit.value().as_str() {
                    "wait" => args.on_conflict = Some((Conflict::Wait, lit)),
                    "reject" => args.on_conflict = Some((Conflict::Reject, lit)),
                    other => cx.error_spanned_by(
                        &lit,
                        format!("unknown `on_conflict` policy {other:?}; expected \"wait\" (the default) or \"reject\""),
                    ),
                }
            }
            "crate" => args.krate = Some(attr::crate_path(&meta)?),
            "exclude" => {
                if !meta.input.peek(syn::token::Paren) {
                    return Err(meta.error(
                        "`exclude` lists parameters: `exclude(gateway, db)`, or mark a parameter `#[idem(exclude)]`",
                    ));
                }
                meta.parse_nested_meta(|inner| {
                    match inner.path.get_ident() {
                        Some(ident) => args.exclude.push(ident.clone()),
                        None => {
                            cx.error_spanned_by(&inner.path, "`exclude(..)` lists parameter names")
                        }
                    }
                    Ok(())
                })?;
            }
            _ => unreachable!("listed in OPTIONS"),
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(tokens) {
        cx.syn_error(e);
    }
    args
}

/// The annotated function. The body is kept as tokens: it is emitted unchanged.
#[derive(Clone)]
pub struct Func {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub body: Group,
}

impl Parse for Func {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        if input.peek(syn::Token![;]) {
            return Err(syn::Error::new(
                input.span(),
                "`#[idempotent]` needs a function with a body; put it on the impl's method, not on the trait's declaration",
            ));
        }
        let body: Group = input.parse()?;
        if body.delimiter() != proc_macro2::Delimiter::Brace {
            return Err(syn::Error::new(body.span(), "expected the function's body"));
        }
        if !input.is_empty() {
            return Err(syn::Error::new(
                input.span(),
                "unexpected tokens after the function",
            ));
        }
        Ok(Func {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// Options of one parameter's `#[idem(..)]`.
#[derive(Default)]
pub struct ParamOpts {
    pub exclude: Option<Span>,
    pub include: Option<Span>,
}

pub const PARAM_OPTIONS: &[&str] = &["exclude", "include"];

/// Parses and strips the `#[idem(..)]` attributes of a parameter.
pub fn param_opts(cx: &mut Ctxt, attrs: &mut Vec<Attribute>) -> ParamOpts {
    let mut opts = ParamOpts::default();
    let mut seen = Seen::default();
    attrs.retain(|a| {
        if !a.path().is_ident("idem") {
            return true;
        }
        let result = a.parse_nested_meta(|meta| {
            let Some(name) =
                attr::option_name(cx, &mut seen, &meta, "parameter `#[idem]`", PARAM_OPTIONS)?
            else {
                return Ok(());
            };
            let span = attr::name_span(&meta);
            attr::flag(&meta, &name)?;
            match name.as_str() {
                "exclude" => opts.exclude = Some(span),
                _ => opts.include = Some(span),
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
        false
    });
    opts
}
