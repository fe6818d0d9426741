//! The timestamp lint: a per-call time value in key material makes every key unique.
//!
//! Name-based: a type is flagged when any path segment's last identifier in it (including
//! generic arguments, tuples, references, arrays and slices) is one of [`TIME_TYPES`]. A type
//! alias hides the name from the lint; an unrelated type of the same name is flagged (mark the
//! field `#[idem(include)]`).

use syn::{GenericArgument, PathArguments, Type};

/// Per-call time types of std, chrono, time, jiff and prost. Dates (`NaiveDate`, `Date`) are
/// not on the list: a date is often a real part of a request's identity. The serde bridge's
/// run-time check has the same list (`idem-runtime/src/key/time_guard.rs`; keep them in step).
pub const TIME_TYPES: &[&str] = &[
    "SystemTime",
    "Instant",
    "DateTime",
    "NaiveDateTime",
    "OffsetDateTime",
    "PrimitiveDateTime",
    "UtcDateTime",
    "Timestamp",
    "Zoned",
];

/// The first time-type segment found in `ty`, if any (its identifier, for the span and the
/// message).
pub fn find(ty: &Type) -> Option<&syn::Ident> {
    match ty {
        Type::Path(p) => {
            if let Some(q) = &p.qself
                && let Some(found) = find(&q.ty)
            {
                return Some(found);
            }
            for seg in &p.path.segments {
                if TIME_TYPES.iter().any(|t| seg.ident == t) {
                    return Some(&seg.ident);
                }
                if let PathArguments::AngleBracketed(args) = &seg.arguments {
                    for arg in &args.args {
                        if let GenericArgument::Type(inner) = arg
                            && let Some(found) = find(inner)
                        {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        Type::Reference(r) => find(&r.elem),
        Type::Tuple(t) => t.elems.iter().find_map(find),
        Type::Array(a) => find(&a.elem),
        Type::Slice(s) => find(&s.elem),
        Type::Paren(p) => find(&p.elem),
        Type::Group(g) => find(&g.elem),
        Type::Ptr(p) => find(&p.elem),
        _ => None,
    }
}

/// The lint's message for a field or parameter `what` whose type contains `time`.
pub fn message(what: &str, time: &syn::Ident) -> String {
    format!(
        "{what} contains the per-call time type `{time}`: hashing it into the idempotency key makes every \
         call's key unique and silently disables idempotency; mark it `#[idem(exclude)]` (usual: \
         the time of a request is not part of what it asks for), or `#[idem(include)]` if this \
         time really identifies the request (e.g. a scheduled slot) \
         [idem recognizes time types by name: {}]",
        TIME_TYPES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(src: &str) -> bool {
        find(&syn::parse_str::<Type>(src).unwrap()).is_some()
    }

    #[test]
    fn finds_time_types_anywhere() {
        for ty in [
            "SystemTime",
            "std::time::Instant",
            "DateTime<Utc>",
            "chrono::NaiveDateTime",
            "Option<OffsetDateTime>",
            "Vec<Option<jiff::Timestamp>>",
            "(u32, SystemTime)",
            "&'a [Zoned]",
            "Box<DateTime<FixedOffset>>",
            "Arc<[SystemTime; 2]>",
        ] {
            assert!(flagged(ty), "{ty}");
        }
        for ty in [
            "u64",
            "String",
            "NaiveDate",
            "Option<Duration>",
            "Vec<(u8, String)>",
            "Date",
        ] {
            assert!(!flagged(ty), "{ty}");
        }
    }
}
