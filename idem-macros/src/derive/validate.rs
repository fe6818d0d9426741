//! Checks of a derive input: option conflicts, the timestamp lint, name collisions.

use syn::Member;

use super::parse::{Container, Data, Field, Shape};
use crate::ctxt::Ctxt;
use crate::timestamp;

pub fn check(cx: &mut Ctxt, container: &mut Container) {
    match &mut container.data {
        Data::Struct(shape) => check_shape(cx, shape, None),
        Data::Union => {}
        Data::Enum(variants) => {
            let mut names: Vec<(String, proc_macro2::Span)> = Vec::new();
            for v in variants.iter_mut() {
                let name = v
                    .rename
                    .as_ref()
                    .map_or_else(|| super::parse::ident_name(&v.ident), |l| l.value());
                if names.iter().any(|(n, _)| *n == name) {
                    let message = format!(
                        "two variants are written as `{name}`: their keys would collide; pick another `rename`"
                    );
                    match &v.rename {
                        Some(lit) => cx.error_spanned_by(lit, message),
                        None => cx.error_spanned_by(&v.ident, message),
                    }
                }
                names.push((name, v.ident.span()));
                check_shape(cx, &mut v.shape, Some(&v.ident));
            }
        }
    }
}

fn check_shape(cx: &mut Ctxt, shape: &mut Shape, variant: Option<&syn::Ident>) {
    match shape {
        Shape::Named(fields) => {
            let mut names: Vec<String> = Vec::new();
            for f in fields.iter_mut() {
                check_field(cx, f, variant, true);
                if !f.written() {
                    continue;
                }
                let name = f.key_name();
                if names.contains(&name) {
                    let message = format!(
                        "two fields are sorted as `{name}`: the key orders fields by name, so their order would depend on declaration order; pick another `rename`"
                    );
                    match &f.rename {
                        Some(lit) => cx.error_spanned_by(lit, message),
                        None => cx.error_spanned_by(&f.member, message),
                    }
                }
                names.push(name);
            }
        }
        Shape::Tuple(fields) => {
            for f in fields.iter_mut() {
                if let Some(lit) = &f.rename {
                    cx.error_spanned_by(
                        lit,
                        "`rename` applies to named fields; tuple fields are written by position",
                    );
                }
                // Not `named`: a `rename` here was just reported, and is not reported again as
                // a conflict with `exclude`.
                check_field(cx, f, variant, false);
            }
        }
        Shape::Unit => {}
    }
}

/// Option conflicts and the timestamp lint of one field; `rename` conflicts only where
/// `rename` applies (`named`).
fn check_field(cx: &mut Ctxt, f: &mut Field, variant: Option<&syn::Ident>, named: bool) {
    if f.failed {
        // An option did not parse (reported): what the field was meant to be is unknown, so
        // nothing more is said about it.
        return;
    }
    if f.exclude.is_some() {
        let conflicts = [
            ("include", f.include.map(|s| syn::Error::new(s, ""))),
            (
                "rename",
                f.rename
                    .as_ref()
                    .filter(|_| named)
                    .map(|l| syn::Error::new(l.span(), "")),
            ),
            (
                "with",
                f.with.as_ref().map(|p| syn::Error::new_spanned(p, "")),
            ),
        ];
        for (option, at) in conflicts {
            if let Some(at) = at {
                cx.error_at(
                    at.span(),
                    format!("`{option}` has no effect on an excluded field; remove one of them"),
                );
            }
        }
        return;
    }
    if f.include.is_some() || f.with.is_some() {
        return;
    }
    let what = match (&f.member, variant) {
        (Member::Named(n), None) => format!("field `{n}`"),
        (Member::Named(n), Some(v)) => format!("field `{n}` of variant `{v}`"),
        (Member::Unnamed(i), None) => format!("field {}", i.index),
        (Member::Unnamed(i), Some(v)) => format!("field {} of variant `{v}`", i.index),
    };
    if let Some(skip) = &f.serde_skip {
        cx.error_spanned_by(
            skip,
            format!(
                "{what} is `#[serde({skip})]` but would be hashed into the idempotency key: `IdempotencyKey` does not follow serde's attributes; mark it `#[idem(exclude)]` to leave it out of the key as well (usual: what serde skips is not part of the request), or `#[idem(include)]` to hash it on purpose"
            ),
        );
        // Left out of the emitted impl: one mistake, one error (a skipped field is often not
        // hashable either).
        f.exclude = Some(skip.span());
        return;
    }
    if let Some(time) = timestamp::find(&f.ty) {
        cx.error_spanned_by(time, timestamp::message(&what, time));
        // Left out of the emitted impl: one mistake, one error (a time type is often not
        // hashable either).
        f.exclude = Some(time.span());
    }
}
