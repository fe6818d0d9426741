//! Parsing the input of `#[derive(IdempotencyKey)]` and its `#[idem(..)]` attributes.

use proc_macro2::Span;
use syn::{Attribute, DeriveInput, Fields, Ident, LitStr, Member, Path, Type};

use crate::attr::{self, Seen};
use crate::ctxt::Ctxt;

pub const CONTAINER_OPTIONS: &[&str] = &["crate"];
pub const FIELD_OPTIONS: &[&str] = &["exclude", "include", "rename", "with"];
pub const VARIANT_OPTIONS: &[&str] = &["rename"];

pub struct Container {
    pub ident: Ident,
    pub generics: syn::Generics,
    pub krate: Option<Path>,
    pub data: Data,
}

pub enum Data {
    Struct(Shape),
    Enum(Vec<Variant>),
}

/// The fields of a struct or variant.
pub enum Shape {
    Named(Vec<Field>),
    /// Tuple fields; one field is a newtype (transparent).
    Tuple(Vec<Field>),
    Unit,
}

pub struct Variant {
    pub ident: Ident,
    pub rename: Option<LitStr>,
    pub shape: Shape,
}

pub struct Field {
    pub member: Member,
    pub ty: Type,
    pub exclude: Option<Span>,
    pub include: Option<Span>,
    pub rename: Option<LitStr>,
    pub with: Option<Path>,
}

impl Field {
    /// The name written into the key: `rename`, else the field's own name.
    pub fn key_name(&self) -> String {
        match (&self.rename, &self.member) {
            (Some(lit), _) => lit.value(),
            (None, Member::Named(ident)) => ident_name(ident),
            (None, Member::Unnamed(index)) => index.index.to_string(),
        }
    }
}

/// An identifier's name without a raw prefix (`r#type` is written as `type`, as serde does).
pub fn ident_name(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map_or(s.clone(), str::to_owned)
}

pub fn container(cx: &mut Ctxt, input: DeriveInput) -> Option<Container> {
    let mut krate = None;
    let mut seen = Seen::default();
    each_idem(cx, &input.attrs, |cx, meta| {
        let Some(name) = attr::option_name(
            cx,
            &mut seen,
            meta,
            "container `#[idem]`",
            CONTAINER_OPTIONS,
        )?
        else {
            return Ok(());
        };
        debug_assert_eq!(name, "crate");
        krate = Some(attr::crate_path(meta)?);
        Ok(())
    });
    let data = match input.data {
        syn::Data::Struct(s) => Data::Struct(shape(cx, s.fields)),
        syn::Data::Enum(e) => Data::Enum(
            e.variants
                .into_iter()
                .map(|v| {
                    let mut rename = None;
                    let mut seen = Seen::default();
                    each_idem(cx, &v.attrs, |cx, meta| {
                        if attr::option_name(
                            cx,
                            &mut seen,
                            meta,
                            "variant `#[idem]`",
                            VARIANT_OPTIONS,
                        )?
                        .is_some()
                        {
                            rename = Some(attr::string(meta, "rename")?);
                        }
                        Ok(())
                    });
                    Variant {
                        ident: v.ident,
                        rename,
                        shape: shape(cx, v.fields),
                    }
                })
                .collect(),
        ),
        syn::Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "`IdempotencyKey` cannot be derived for a union (which field is live is unknown); implement it by hand",
            );
            return None;
        }
    };
    Some(Container {
        ident: input.ident,
        generics: input.generics,
        krate,
        data,
    })
}

fn shape(cx: &mut Ctxt, fields: Fields) -> Shape {
    match fields {
        Fields::Named(named) => Shape::Named(
            named
                .named
                .into_iter()
                .enumerate()
                .map(|(i, f)| field(cx, i, f))
                .collect(),
        ),
        Fields::Unnamed(unnamed) => Shape::Tuple(
            unnamed
                .unnamed
                .into_iter()
                .enumerate()
                .map(|(i, f)| field(cx, i, f))
                .collect(),
        ),
        Fields::Unit => Shape::Unit,
    }
}

fn field(cx: &mut Ctxt, index: usize, f: syn::Field) -> Field {
    let member = match f.ident {
        Some(ident) => Member::Named(ident),
        None => Member::Unnamed(syn::Index {
            index: index as u32,
            span: Span::call_site(),
        }),
    };
    let mut out = Field {
        member,
        ty: f.ty,
        exclude: None,
        include: None,
        rename: None,
        with: None,
    };
    let mut seen = Seen::default();
    each_idem(cx, &f.attrs, |cx, meta| {
        let Some(name) = attr::option_name(cx, &mut seen, meta, "field `#[idem]`", FIELD_OPTIONS)?
        else {
            return Ok(());
        };
        let span = attr::name_span(meta);
        match name.as_str() {
            "exclude" => {
                attr::flag(meta, &name)?;
                out.exclude = Some(span);
            }
            "include" => {
                attr::flag(meta, &name)?;
                out.include = Some(span);
            }
            "rename" => out.rename = Some(attr::string(meta, &name)?),
            "with" => {
                let value = meta.value()?;
                out.with = Some(if value.peek(LitStr) {
                    value.parse::<LitStr>()?.parse::<Path>()?
                } else {
                    value.parse::<Path>()?
                });
            }
            _ => unreachable!("listed in FIELD_OPTIONS"),
        }
        Ok(())
    });
    out
}

/// Calls `f` for each option of each `#[idem(..)]` attribute; a parse error ends that
/// attribute (and is recorded), not the derive.
fn each_idem(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    mut f: impl FnMut(&mut Ctxt, &syn::meta::ParseNestedMeta) -> syn::Result<()>,
) {
    for a in attrs.iter().filter(|a| a.path().is_ident("idem")) {
        if let syn::Meta::Path(path) = &a.meta {
            cx.error_spanned_by(
                path,
                "expected options: `#[idem(exclude)]`, `#[idem(rename = \"…\")]`, …",
            );
            continue;
        }
        let result = a.parse_nested_meta(|meta| f(cx, &meta));
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
}
