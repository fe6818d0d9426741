//! The structural walk of key material through std containers, by type syntax.
//!
//! `dispatch(&value).write(out)` picks one impl for the whole value: its `IdempotencyKey` impl
//! if the whole type has one, else its `Serialize` impl. A container mixing a derived type with
//! a serde-only one (`Vec<(Inner, Uuid)>`, `HashMap<Uuid, Inner>`) has no key-trait impl, so
//! the derived `Inner` would go through serde too and lose its `#[idem(exclude)]`s. So when a
//! type's syntax shows a recognised std container holding two or more different non-scalar
//! types, the generated code walks the container (runtime helpers in
//! `idem_runtime::__private::walk`, imported as `__idem::walk`) and dispatches each of those element types on its own. The
//! helpers write exactly the bytes of the containers' key-trait impls, which are also the serde
//! bridge's (sets excepted: see the runtime module), so keys only change where a derived type
//! used to be hashed by serde.
//!
//! Recognised by name, like the timestamp lint: `Option`, `Result` (two arguments), `Vec`,
//! `VecDeque`, `Box`, `Rc`, `Arc`, `BTreeMap`, `HashMap`, `BTreeSet`, `HashSet`, written bare or
//! as a path starting with `std`, `core` or `alloc`; references, slices, arrays and tuples of 1
//! to 12 elements. A user type named like one of them (written bare) is taken for the std one,
//! and the generated code then fails to type-check on it; naming it by a longer path
//! (`self::Vec<T>`) makes it a leaf.
//!
//! A type with at most one distinct non-scalar element type needs no walk: its whole-value
//! impl is the key-trait one exactly when that element's is (each recognised container
//! implements the key trait when its elements do), so `dispatch` already picks the right impl
//! for the element. The exception is a `HashSet` of non-scalar elements, always walked: serde
//! would write it in iteration order, so two equal sets of a serde-only type would differ. Scalars (`u64`, `String`, `Duration`, …) are key-trait and `Serialize`
//! with the same bytes either way, so they do not count.

use proc_macro2::{Delimiter, Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{GenericArgument, Path, PathArguments, Type};

/// Code writing `value`, an expression of type `&ty`, into `out`, an expression of type
/// `&mut KeyHasher` that can be evaluated several times (a `&mut KeyHasher` variable, or
/// `&mut hasher`). `k` is the runtime's path.
///
/// A type that needs no walk is written with `dispatch(value).write(out)`, spanned so that a
/// "cannot be hashed" error points at the type (at its only non-scalar element type, if it has
/// one). A walked type dispatches each element type on its own, spanned on that type.
pub fn write(k: &TokenStream, ty: &Type, value: TokenStream, out: &TokenStream) -> TokenStream {
    let mut w = Walker { k, next: 0 };
    w.write(ty, value, out)
}

/// `write` (statements writing key material) marked as `#[idem(include)]`d: a time value the
/// serde bridge meets in it is hashed on purpose, without the run-time warning.
pub fn included(k: &TokenStream, write: TokenStream) -> TokenStream {
    let guard = proc_macro2::Ident::new("__idem_included", proc_macro2::Span::mixed_site());
    quote!({
        let #guard = #k::include_time();
        #write
    })
}

/// `dispatch(value).write(out);`, with the error of an unhashable type on `ty`: the call's
/// tokens take the span of `ty`'s name (of its only non-scalar element type, if it has one,
/// which is then the type that needs an impl), the value and the hasher are only located there
/// (their hygiene is kept). rustc reports an unmet bound of `write` at the `write` token.
fn dispatch(k: &TokenStream, ty: &Type, value: TokenStream, out: &TokenStream) -> TokenStream {
    let mut leaves = Vec::new();
    collect_leaves(ty, &mut leaves);
    let span = match leaves.as_slice() {
        [(_, leaf)] => name_span(leaf),
        _ => name_span(ty),
    };
    let path = respan(quote!(#k::dispatch), span);
    let value = relocate(value, span);
    let out = relocate(out.clone(), span);
    respan(quote!(#path(#value).write(#out);), span)
}

/// Where errors about `ty` point: the last segment of a path (`Gateway` in
/// `foreign::Gateway`, `Vec` in `Vec<Gateway>`), else the first token.
fn name_span(ty: &Type) -> Span {
    match peel(ty) {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| ty.span(), |s| s.ident.span()),
        other => other.span(),
    }
}

/// The top-level tokens and the delimiters of `tokens` respanned to `span` (name resolution
/// included); what is inside groups keeps its spans.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            tt.set_span(span);
            tt
        })
        .collect()
}

/// `tokens` located at `span` (for error messages), each keeping its own name resolution
/// (hygiene): `self`, generated locals and paths resolve as before.
pub fn relocate(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut out = proc_macro2::Group::new(g.delimiter(), relocate(g.stream(), span));
                out.set_span(g.span().located_at(span));
                TokenTree::Group(out)
            }
            mut other => {
                other.set_span(other.span().located_at(span));
                other
            }
        })
        .collect()
}

/// Whether `path` names `PhantomData` (name-based: any path whose last segment is
/// `PhantomData`, so `marker::PhantomData` too). `PhantomData<T>` hashes the same for every `T`:
/// a `T` that appears only inside it is no key material.
pub fn is_phantom(path: &Path) -> bool {
    path.segments
        .last()
        .is_some_and(|s| s.ident == "PhantomData")
}

/// The name and arguments of the last segment of `path`, if `path` may name a std type: a
/// single segment (`Option<T>`), or a path starting with `std`, `core` or `alloc`
/// (`std::option::Option<T>`) without arguments before the last segment.
fn std_path(path: &Path) -> Option<(String, &PathArguments)> {
    let segments = &path.segments;
    let last = segments.last()?;
    let n = segments.len();
    let bare = n == 1 && path.leading_colon.is_none();
    let qualified = n > 1
        && ["std", "core", "alloc"]
            .iter()
            .any(|root| segments[0].ident == root)
        && segments
            .iter()
            .take(n - 1)
            .all(|s| matches!(s.arguments, PathArguments::None));
    (bare || qualified).then(|| (last.ident.to_string(), &last.arguments))
}

/// `Name<A, B, …>` with only type arguments (lifetimes skipped when `lifetimes` says so).
fn type_args(args: &PathArguments, lifetimes: bool) -> Option<Vec<&Type>> {
    match args {
        PathArguments::None => Some(Vec::new()),
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter(|arg| !(lifetimes && matches!(arg, GenericArgument::Lifetime(_))))
            .map(|arg| match arg {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        PathArguments::Parenthesized(_) => None,
    }
}

/// What a type is to the walk.
enum Node<'a> {
    /// Key-trait and `Serialize` with the same bytes: never needs a walk.
    Scalar,
    /// Anything else: dispatched whole.
    Leaf,
    Option(&'a Type),
    Result(&'a Type, &'a Type),
    Seq(SeqKind, &'a Type),
    Array(&'a Type),
    Tuple(Vec<&'a Type>),
    /// `Box`, `Rc`, `Arc`, `&`, `&mut`: written as the target.
    Deref(&'a Type),
    Map(MapKind, &'a Type, &'a Type),
    Set(MapKind, &'a Type),
}

#[derive(Clone, Copy)]
enum SeqKind {
    Vec,
    VecDeque,
    Slice,
}

#[derive(Clone, Copy)]
enum MapKind {
    BTree,
    Hash,
}

const SCALARS: &[&str] = &[
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64", "String", "Duration",
];

fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => peel(&g.elem),
        Type::Paren(p) => peel(&p.elem),
        other => other,
    }
}

fn node(ty: &Type) -> Node<'_> {
    match peel(ty) {
        Type::Slice(s) => Node::Seq(SeqKind::Slice, &s.elem),
        Type::Array(a) => Node::Array(&a.elem),
        Type::Tuple(t) if t.elems.is_empty() => Node::Scalar,
        Type::Tuple(t) if t.elems.len() <= 12 => Node::Tuple(t.elems.iter().collect()),
        Type::Reference(r) => Node::Deref(&r.elem),
        Type::Path(p) if p.qself.is_none() => path_node(&p.path).unwrap_or(Node::Leaf),
        _ => Node::Leaf,
    }
}

fn path_node(path: &Path) -> Option<Node<'_>> {
    let (name, args) = std_path(path)?;
    let name = name.as_str();
    if name == "PhantomData"
        || name == "NonZero"
        || name.starts_with("NonZeroU")
        || name.starts_with("NonZeroI")
    {
        return Some(Node::Scalar);
    }
    if name == "Cow" {
        // `Cow<'_, str>` and the like: scalar if what it holds is.
        let args = type_args(args, true)?;
        return (args.len() == 1 && all_scalar(args[0])).then_some(Node::Scalar);
    }
    let args = type_args(args, false)?;
    Some(match (name, args.as_slice()) {
        (scalar, []) if SCALARS.contains(&scalar) => Node::Scalar,
        ("Option", [t]) => Node::Option(t),
        ("Result", [t, e]) => Node::Result(t, e),
        ("Vec", [t]) => Node::Seq(SeqKind::Vec, t),
        ("VecDeque", [t]) => Node::Seq(SeqKind::VecDeque, t),
        ("Box" | "Rc" | "Arc", [t]) => Node::Deref(t),
        ("BTreeMap", [k, v]) => Node::Map(MapKind::BTree, k, v),
        ("HashMap", [k, v] | [k, v, _]) => Node::Map(MapKind::Hash, k, v),
        ("BTreeSet", [t]) => Node::Set(MapKind::BTree, t),
        ("HashSet", [t] | [t, _]) => Node::Set(MapKind::Hash, t),
        _ => return None,
    })
}

/// The element types of a container node (empty for scalars and leaves).
fn children<'a>(n: &Node<'a>) -> Vec<&'a Type> {
    match n {
        Node::Scalar | Node::Leaf => Vec::new(),
        Node::Option(t) | Node::Seq(_, t) | Node::Array(t) | Node::Deref(t) | Node::Set(_, t) => {
            vec![t]
        }
        Node::Result(a, b) | Node::Map(_, a, b) => vec![a, b],
        Node::Tuple(ts) => ts.clone(),
    }
}

fn all_scalar(ty: &Type) -> bool {
    let mut leaves = Vec::new();
    collect_leaves(ty, &mut leaves);
    leaves.is_empty()
}

/// The distinct non-scalar leaf types of `ty` (compared as token text).
fn collect_leaves<'a>(ty: &'a Type, out: &mut Vec<(String, &'a Type)>) {
    let n = node(ty);
    match n {
        Node::Scalar => {}
        Node::Leaf => {
            let text = quote!(#ty).to_string();
            if !out.iter().any(|(t, _)| *t == text) {
                out.push((text, ty));
            }
        }
        _ => children(&n)
            .into_iter()
            .for_each(|c| collect_leaves(c, out)),
    }
}

fn needs_walk(ty: &Type) -> bool {
    if matches!(node(ty), Node::Scalar | Node::Leaf) {
        return false;
    }
    let mut leaves = Vec::new();
    collect_leaves(ty, &mut leaves);
    leaves.len() >= 2 || has_hash_set(ty)
}

/// Whether `ty` holds a `HashSet` of non-scalar elements: if those are serde-only, `dispatch`
/// would write the set through serde, as a sequence in iteration order, which differs between
/// two equal sets; the walk writes it in the set form.
fn has_hash_set(ty: &Type) -> bool {
    let n = node(ty);
    match n {
        Node::Set(MapKind::Hash, elem) => !all_scalar(elem),
        _ => children(&n).into_iter().any(has_hash_set),
    }
}

struct Walker<'k> {
    k: &'k TokenStream,
    /// Suffix of the next generated local.
    next: usize,
}

impl Walker<'_> {
    /// A generated local, `Span::mixed_site()` so it can clash with nothing of the user's.
    fn local(&mut self, prefix: &str) -> Ident {
        self.next += 1;
        format_ident!("__idem_{}{}", prefix, self.next, span = Span::mixed_site())
    }

    /// [`write`](Self::write) as a closure body (a block).
    fn body(&mut self, ty: &Type, value: TokenStream, out: &TokenStream) -> TokenStream {
        body(self.write(ty, value, out))
    }

    fn write(&mut self, ty: &Type, value: TokenStream, out: &TokenStream) -> TokenStream {
        let k = self.k;
        if !needs_walk(ty) {
            return dispatch(k, ty, value, out);
        }
        // The helper calls are spanned on the container's name and the value located there: a
        // type error (a user type named like a std container) points at it.
        let span = name_span(ty);
        let walk = quote!(#k::walk);
        let value = relocate(value, span);
        let code = match node(ty) {
            Node::Option(t) => {
                let (v, w) = (self.local("v"), self.local("w"));
                let some = self.body(t, quote!(#v), &quote!(#w));
                let g = turbofish(&[t], 0);
                call(
                    span,
                    quote!(#walk::option #g),
                    quote!(#value, #out, |#v, #w| #some),
                )
            }
            Node::Result(t, e) => {
                let (v, w) = (self.local("v"), self.local("w"));
                let ok = self.body(t, quote!(#v), &quote!(#w));
                let err = self.body(e, quote!(#v), &quote!(#w));
                let g = turbofish(&[t, e], 0);
                call(
                    span,
                    quote!(#walk::result #g),
                    quote!(#value, #out, |#v, #w| #ok, |#v, #w| #err),
                )
            }
            Node::Seq(kind, t) => {
                let helper = match kind {
                    SeqKind::Vec => quote!(vec),
                    SeqKind::VecDeque => quote!(vec_deque),
                    SeqKind::Slice => quote!(slice),
                };
                let (v, w) = (self.local("v"), self.local("w"));
                let each = self.body(t, quote!(#v), &quote!(#w));
                let g = match kind {
                    SeqKind::Slice => TokenStream::new(),
                    _ => turbofish(&[t], 0),
                };
                call(
                    span,
                    quote!(#walk::#helper #g),
                    quote!(#value, #out, |#v, #w| #each),
                )
            }
            Node::Array(t) => {
                let (v, w) = (self.local("v"), self.local("w"));
                let each = self.body(t, quote!(#v), &quote!(#w));
                call(
                    span,
                    quote!(#walk::array),
                    quote!(#value, #out, |#v, #w| #each),
                )
            }
            Node::Tuple(elems) => {
                // A local for the tuple, unless the value already is one (a closure parameter).
                let mut tokens = value.clone().into_iter();
                let (t, bind) = match (tokens.next(), tokens.next()) {
                    (Some(TokenTree::Ident(i)), None) => (i, TokenStream::new()),
                    _ => {
                        let t = self.local("t");
                        let bind = quote!(let #t = #value;);
                        (t, bind)
                    }
                };
                let arity = proc_macro2::Literal::u64_unsuffixed(elems.len() as u64);
                let writes: Vec<TokenStream> = elems
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let index = syn::Index::from(i);
                        self.write(e, quote!(&#t.#index), out)
                    })
                    .collect();
                quote!({
                    #bind
                    #walk::begin_tuple(#out, #arity);
                    #(#writes)*
                })
            }
            Node::Deref(t) => {
                let target = call(span, quote!(#walk::deref), value);
                self.write(t, target, out)
            }
            Node::Map(kind, key_ty, val_ty) => {
                let helper = match kind {
                    MapKind::BTree => quote!(btree_map),
                    MapKind::Hash => quote!(hash_map),
                };
                let (kv, vv, w) = (self.local("k"), self.local("v"), self.local("w"));
                let key = self.write(key_ty, quote!(#kv), &quote!(#w));
                let val = self.write(val_ty, quote!(#vv), &quote!(#w));
                let entry = body(quote!(#key #val));
                let g = match kind {
                    MapKind::BTree => turbofish(&[key_ty, val_ty], 0),
                    MapKind::Hash => turbofish(&[key_ty, val_ty], 1),
                };
                call(
                    span,
                    quote!(#walk::#helper #g),
                    quote!(#value, #out, |#kv, #vv, #w| #entry),
                )
            }
            Node::Set(kind, elem) => {
                let helper = match kind {
                    MapKind::BTree => quote!(btree_set),
                    MapKind::Hash => quote!(hash_set),
                };
                let (v, w) = (self.local("v"), self.local("w"));
                let each = self.body(elem, quote!(#v), &quote!(#w));
                let g = match kind {
                    MapKind::BTree => turbofish(&[elem], 0),
                    MapKind::Hash => turbofish(&[elem], 1),
                };
                let set = call(span, quote!(#walk::#helper #g), value);
                let write = call(span, quote!(.write), quote!(#out, |#v, #w| #each));
                quote!(#set #write)
            }
            Node::Scalar | Node::Leaf => {
                unreachable!("needs_walk is false for scalars and leaves")
            }
        };
        statement(code)
    }
}

/// `code` as a statement: a block or something that ends with `;` as it is, else with a `;`.
fn statement(code: TokenStream) -> TokenStream {
    match code.clone().into_iter().last() {
        Some(TokenTree::Punct(p)) if p.as_char() == ';' => code,
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => code,
        _ => quote!(#code;),
    }
}

/// `path(args)` with the path and the parentheses spanned on `span` (what is inside keeps its
/// spans). Without a trailing `;`: [`Walker::write`] adds it where a statement is wanted.
fn call(span: Span, path: TokenStream, args: TokenStream) -> TokenStream {
    let mut args = proc_macro2::Group::new(Delimiter::Parenthesis, args);
    args.set_span(span);
    let mut out = respan(path, span);
    out.extend([TokenTree::Group(args)]);
    out
}

/// `code` as a block: as it is if it is one, else in braces.
fn body(code: TokenStream) -> TokenStream {
    let mut iter = code.clone().into_iter();
    match (iter.next(), iter.next()) {
        (Some(TokenTree::Group(g)), None) if g.delimiter() == proc_macro2::Delimiter::Brace => code,
        _ => quote!({ #code }),
    }
}

/// `::<A, B, _>`: the element types of a container named by path, plus `inferred` `_`s (a
/// `HashMap`'s hasher), so that a user type named like the std container is reported as a type
/// mismatch on the value rather than as an uninferable closure parameter. Empty when a type
/// cannot be named there (`impl Trait`, `_`).
fn turbofish(types: &[&Type], inferred: usize) -> TokenStream {
    fn nameable(tokens: TokenStream) -> bool {
        tokens.into_iter().all(|tt| match tt {
            TokenTree::Ident(i) => i != "impl" && i != "_",
            TokenTree::Group(g) => nameable(g.stream()),
            _ => true,
        })
    }
    if !types.iter().all(|t| nameable(quote!(#t))) {
        return TokenStream::new();
    }
    let args = types
        .iter()
        .map(|t| quote!(#t))
        .chain((0..inferred).map(|_| quote!(_)));
    quote!(::<#(#args),*>)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(src: &str) -> bool {
        needs_walk(&syn::parse_str::<Type>(src).unwrap())
    }

    fn expand(src: &str) -> String {
        let ty = syn::parse_str::<Type>(src).unwrap();
        let code = write(
            &crate::attr::private_alias(),
            &ty,
            quote!(&self.f),
            &quote!(out),
        );
        println!("// ---- {src}\n{code}\n");
        code.to_string()
    }

    #[test]
    fn walks_std_containers_of_several_element_types() {
        for ty in [
            "Vec<(Inner, Foreign)>",
            "(Inner, Foreign)",
            "Option<(Inner, Foreign)>",
            "Result<Inner, Foreign>",
            "HashMap<Foreign, Inner>",
            "HashMap<String, (Inner, Foreign), S>",
            "BTreeMap<Foreign, Vec<Inner>>",
            "BTreeSet<(Inner, Foreign)>",
            "HashSet<(Inner, Foreign), S>",
            "VecDeque<(Inner, Foreign)>",
            "[(Inner, Foreign); 3]",
            "Box<[(Inner, Foreign)]>",
            "&'a (Inner, Foreign)",
            "&'a mut (Inner, Foreign)",
            "Rc<(Inner, Foreign)>",
            "Arc<(Inner, Foreign)>",
            "std::vec::Vec<(Inner, Foreign)>",
            "::core::option::Option<(Inner, Foreign)>",
            "alloc::collections::BTreeMap<Foreign, Inner>",
            "Vec<(T, Foreign)>",
            "Option<Vec<Result<(Inner, Box<Foreign>), String>>>",
        ] {
            assert!(walked(ty), "{ty}");
        }
    }

    #[test]
    fn leaves_and_containers_of_one_element_type_are_dispatched_whole() {
        for ty in [
            "Inner",
            "T",
            "Vec<Inner>",
            "Vec<(Inner, Inner)>",
            "Option<Box<Inner>>",
            "HashMap<String, Inner>",
            "Result<Inner, String>",
            "(u8, String, Duration, PhantomData<T>)",
            "Vec<(Inner, PhantomData<Foreign>)>",
            "Option<String>",
            "Vec<(u8, Cow<'a, str>)>",
            // Not std containers: an alias, a path that does not start at std/core/alloc, a
            // crate named like a container, `io::Result<T>` (one argument), a qualified path.
            "Items",
            "my::Vec<(Inner, Foreign)>",
            "::Vec<(Inner, Foreign)>",
            "std::io::Result<(Inner, Foreign)>",
            "<T as Tr>::Assoc",
            "Foreign<(Inner, Other)>",
            // More than 12 elements: no key-trait impl for the tuple, so not walked either.
            "(A, B, C, D, E, F, G, H, I, J, K, L, M)",
        ] {
            assert!(!walked(ty), "{ty}");
        }
    }

    #[test]
    fn expansion_dispatches_each_element() {
        let text = expand("Vec<(Inner, Foreign)>");
        assert!(
            text.contains("walk :: vec :: < (Inner , Foreign) >"),
            "{text}"
        );
        assert!(text.contains("begin_tuple"), "{text}");
        assert_eq!(text.matches("__idem :: dispatch").count(), 2, "{text}");
        let text = expand("HashMap<Foreign, Inner>");
        assert!(
            text.contains("walk :: hash_map :: < Foreign , Inner , _ >"),
            "{text}"
        );
        let text = expand("BTreeSet<(Inner, Foreign)>");
        assert!(
            text.contains("walk :: btree_set :: < (Inner , Foreign) > (& self . f) . write (out"),
            "{text}"
        );
        let text = expand("Box<[(Inner, Foreign); 2]>");
        assert!(
            text.contains("walk :: array (__idem :: walk :: deref (& self . f)"),
            "{text}"
        );
        let text = expand("Vec<Inner>");
        assert_eq!(text, "__idem :: dispatch (& self . f) . write (out) ;");
    }

    #[test]
    fn impl_trait_elements_are_not_named_in_a_turbofish() {
        let text = expand("Vec<(impl Serialize, Inner)>");
        assert!(text.contains("walk :: vec (& self . f"), "{text}");
    }
}
