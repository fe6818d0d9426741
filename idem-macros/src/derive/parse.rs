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
    /// `#[repr(packed)]` (or `packed(N)`, alone or with `C`): fields cannot be borrowed, so
    /// they are copied out (`&{ self.field }`, as serde does), which needs `Copy` fields.
    pub packed: bool,
}

pub enum Data {
    Struct(Shape),
    Enum(Vec<Variant>),
    /// Rejected with an error; an impl is still emitted so that uses of the type add none.
    Union,
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
    /// The `skip` or `skip_serializing` of a `#[serde(..)]` on this field: serde leaves the
    /// field out, while the key would hash it unless told (`validate` asks which).
    pub serde_skip: Option<proc_macro2::Ident>,
    /// An `#[idem]` option of this field had an error (reported): the intent is unknown, so
    /// the field gets no timestamp lint and is left out of the emitted impl (one mistake, one
    /// error).
    pub failed: bool,
}

impl Field {
    /// Whether the field is written into the key (not excluded, and its options parsed).
    pub fn written(&self) -> bool {
        self.exclude.is_none() && !self.failed
    }

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
            Data::Union
        }
    };
    let packed = input.attrs.iter().any(is_packed);
    Some(Container {
        ident: input.ident,
        generics: input.generics,
        krate,
        data,
        packed,
    })
}

/// Whether `attr` is a `#[repr(..)]` that names `packed`.
fn is_packed(attr: &Attribute) -> bool {
    if !attr.path().is_ident("repr") {
        return false;
    }
    let mut packed = false;
    // `repr(packed(2))`, `repr(align(8))`: a name, maybe with parenthesized arguments.
    let _ = attr.parse_nested_meta(|meta| {
        packed |= meta.path.is_ident("packed");
        if meta.input.peek(syn::token::Paren) {
            let _content;
            syn::parenthesized!(_content in meta.input);
        }
        Ok(())
    });
    packed
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
        serde_skip: f.attrs.iter().find_map(serde_skip),
        failed: false,
    };
    let mut seen = Seen::default();
    let mut failed = false;
    let attr_failed = each_idem(cx, &f.attrs, |cx, meta| {
        let Some(name) = attr::option_name(cx, &mut seen, meta, "field `#[idem]`", FIELD_OPTIONS)?
        else {
            // Unknown or duplicate (reported): the field's intent is unknown.
            failed = true;
            return Ok(());
        };
        let span = attr::name_span(meta);
        let parsed = match name.as_str() {
            "exclude" => attr::flag(meta, &name).map(|()| out.exclude = Some(span)),
            "include" => attr::flag(meta, &name).map(|()| out.include = Some(span)),
            "rename" => attr::string(meta, &name).map(|lit| out.rename = Some(lit)),
            "with" => with_path(meta).map(|path| out.with = Some(path)),
            _ => unreachable!("listed in FIELD_OPTIONS"),
        };
        if let Err(e) = parsed {
            // Reported, and the next options of the list are still read: `rename = 5, exclude`
            // gives one error, not a second one about the field that `exclude` was for.
            cx.syn_error(e);
            failed = true;
            skip_to_next_option(meta)?;
        }
        Ok(())
    });
    out.failed = failed || attr_failed;
    out
}

/// The `skip` or `skip_serializing` flag of a `#[serde(..)]` attribute. Read token by token,
/// without parsing serde's grammar: whatever else the attribute says is serde's to check.
fn serde_skip(attr: &Attribute) -> Option<proc_macro2::Ident> {
    use proc_macro2::TokenTree;
    let syn::Meta::List(list) = &attr.meta else {
        return None;
    };
    if !list.path.is_ident("serde") {
        return None;
    }
    let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
    tokens
        .split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
        .find_map(|option| match option {
            [TokenTree::Ident(flag)] if flag == "skip" || flag == "skip_serializing" => {
                Some(flag.clone())
            }
            _ => None,
        })
}

/// `with = path` or `with = "path"`.
fn with_path(meta: &syn::meta::ParseNestedMeta) -> syn::Result<Path> {
    let value = meta.value()?;
    let parsed = if value.peek(LitStr) {
        value.parse::<LitStr>()?.parse::<Path>()
    } else {
        value.parse::<Path>()
    };
    parsed.map_err(|e| {
        syn::Error::new(
            e.span(),
            "`with` expects the path of a `fn(&FieldType, &mut KeyHasher)`, e.g. `with = my_writer`",
        )
    })
}

/// Skips what is left of an option whose value failed to parse, up to the next `,`.
fn skip_to_next_option(meta: &syn::meta::ParseNestedMeta) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}

/// Calls `f` for each option of each `#[idem(..)]` attribute; a parse error that `f` does not
/// recover from ends that attribute (and is recorded), not the derive. Returns whether such an
/// error (or an `#[idem]` without options) was recorded.
fn each_idem(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    mut f: impl FnMut(&mut Ctxt, &syn::meta::ParseNestedMeta) -> syn::Result<()>,
) -> bool {
    let mut failed = false;
    for a in attrs.iter().filter(|a| a.path().is_ident("idem")) {
        if let syn::Meta::Path(path) = &a.meta {
            cx.error_spanned_by(
                path,
                "expected options: `#[idem(exclude)]`, `#[idem(rename = \"…\")]`, …",
            );
            failed = true;
            continue;
        }
        let result = a.parse_nested_meta(|meta| f(cx, &meta));
        if let Err(e) = result {
            cx.syn_error(e);
            failed = true;
        }
    }
    failed
}
