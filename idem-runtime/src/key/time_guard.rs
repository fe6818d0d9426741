//! The run-time half of the timestamp lint: a per-call time value that reaches the serde bridge.
//!
//! `#[derive(IdempotencyKey)]` and `#[idempotent]` refuse a field or parameter whose type is
//! spelled like a time type, but they cannot see inside a type that is only `Serialize`: a
//! `requested_at: SystemTime` in such a request struct makes every key unique, and the
//! operation silently stops being idempotent. The bridge recognises the time values it can
//! tell apart (std's `SystemTime`, which serde writes as a struct of that name, and the types
//! that serialize through `collect_str` with a time type in their type name: chrono's
//! `DateTime` and `NaiveDateTime`, jiff's `Timestamp` and `Zoned`), and
//! [`KeyHasher::write_serde`](super::KeyHasher::write_serde) logs one warning per type and
//! field per process. A value written inside `#[idem(include)]` is hashed on purpose and not
//! reported.
//!
//! The state is per thread: the bridge is entered only through `write_serde`, which runs to its
//! end on one thread, and nested hashers (the entries of maps and sets) need nothing passed to
//! them. Costs outside a detection: two thread-local reads per `write_serde` and per field of
//! a serde struct, a length-and-bytes comparison per serde struct and a scan of the type name
//! per `collect_str`. The check that a recorded value reads back as itself also goes through
//! the bridge; it runs as if `include`d.

use std::cell::Cell;
use std::sync::Mutex;

/// A time value met by the bridge, for the warning.
#[derive(Clone, Copy)]
struct Seen {
    /// The time type (`std::time::SystemTime`; for `collect_str`, the time identifier in the
    /// type name).
    time: &'static str,
    /// The serde struct that holds it, and its field (empty until the field's write ends).
    within: &'static str,
    field: &'static str,
}

thread_local! {
    /// Set while `#[idem(include)]` material is written.
    static ALLOWED: Cell<bool> = const { Cell::new(false) };
    /// The first time value met since the outermost `write_serde` began.
    static SEEN: Cell<Option<Seen>> = const { Cell::new(None) };
    /// `SEEN` is set (one flag, for the checks on every write).
    static NOTED: Cell<bool> = const { Cell::new(false) };
    /// A time value whose field is not named yet.
    static UNNAMED: Cell<bool> = const { Cell::new(false) };
}

/// Identifiers that name per-call time types: the compile-time lint's list
/// (`idem-macros/src/timestamp.rs`, `TIME_TYPES`; keep the two in step) but `Instant`, which
/// does not implement `Serialize`.
const TIME_IDENTS: &[&str] = &[
    "SystemTime",
    "DateTime",
    "NaiveDateTime",
    "OffsetDateTime",
    "PrimitiveDateTime",
    "UtcDateTime",
    "Timestamp",
    "Zoned",
];

/// Notes a serde struct named `name`, once its fields are written: std's `SystemTime` is one.
#[inline]
pub(crate) fn struct_named(name: &'static str) {
    if name == "SystemTime" {
        saw("std::time::SystemTime");
    }
}

/// Notes a value written through `collect_str`, whose Display type is `T`: chrono and jiff
/// write their time types this way, through a type whose name holds the time type's.
#[inline]
pub(crate) fn collected<T: ?Sized>() {
    let name = std::any::type_name::<T>();
    if (name.contains("Time") || name.contains("Zoned"))
        && let Some(time) = time_type_in(name)
    {
        saw(time);
    }
}

/// The first identifier of `type_name` that is one of [`TIME_IDENTS`] (as that constant).
fn time_type_in(type_name: &str) -> Option<&'static str> {
    type_name
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find_map(|ident| TIME_IDENTS.iter().copied().find(|&time| time == ident))
}

#[cold]
fn saw(time: &'static str) {
    if ALLOWED.get() || NOTED.get() {
        return;
    }
    SEEN.set(Some(Seen {
        time,
        within: "",
        field: "",
    }));
    NOTED.set(true);
    UNNAMED.set(true);
}

/// Called as `write_serde` begins: forgets what a `Serialize` impl that panicked midway left
/// behind, so that it is not blamed on the next value.
#[inline]
pub(crate) fn begin() {
    if NOTED.get() {
        forget();
    }
}

#[cold]
fn forget() {
    SEEN.set(None);
    NOTED.set(false);
    UNNAMED.set(false);
}

/// Whether a time value met so far waits for the field that holds it to be named: taken
/// before a field of a serde struct is written, for [`field_written`].
#[inline]
pub(crate) fn unnamed() -> bool {
    UNNAMED.get()
}

/// Called after each field of a serde struct, with what [`unnamed`] answered before it: names
/// the field if a time value was met inside it (not before it, in a tuple, say).
#[inline]
pub(crate) fn field_written(unnamed_before: bool, within: &'static str, field: &'static str) {
    if !unnamed_before && UNNAMED.get() {
        name_field(within, field);
    }
}

#[cold]
fn name_field(within: &'static str, field: &'static str) {
    UNNAMED.set(false);
    if let Some(seen) = SEEN.get() {
        SEEN.set(Some(Seen {
            within,
            field,
            ..seen
        }));
    }
}

/// Called after `write_serde` wrote a `T`: reports a time value met in it.
#[inline]
pub(crate) fn written<T: ?Sized>() {
    if NOTED.get() {
        report(std::any::type_name::<T>());
    }
}

#[cold]
fn report(outer: &'static str) {
    let seen = SEEN.take();
    forget();
    if let Some(seen) = seen {
        warn_once(outer, seen);
    }
}

/// Marks what is written while the returned guard lives as `#[idem(include)]`d.
pub(crate) fn allow() -> Allowed {
    Allowed(ALLOWED.replace(true))
}

/// Restores the previous state when dropped (also when a `Serialize` impl panics).
pub struct Allowed(bool);

impl Drop for Allowed {
    fn drop(&mut self) {
        ALLOWED.set(self.0);
    }
}

/// (outer type, struct, field) of the warnings already logged.
static WARNED: Mutex<Vec<(&str, &str, &str)>> = Mutex::new(Vec::new());

#[cold]
fn warn_once(outer: &'static str, seen: Seen) {
    let mut outer = outer;
    while let Some(rest) = outer.strip_prefix('&') {
        outer = rest.strip_prefix("mut ").unwrap_or(rest);
    }
    {
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        let this = (outer, seen.within, seen.field);
        if warned.contains(&this) {
            return;
        }
        warned.push(this);
    }
    let place = if seen.field.is_empty() {
        String::new()
    } else {
        format!(", field `{}` of `{}`", seen.field, seen.within)
    };
    let time = seen.time;
    tracing::warn!(
        target: "idem",
        material = outer,
        time,
        "key material of type `{outer}` holds a time value (a `{time}`{place}): hashed into a key, it \
         makes every call's key unique, so duplicates run again; in a payload fingerprint \
         (`key = …`), every retry fails with PayloadMismatch. Derive `IdempotencyKey` for the type \
         and mark the field `#[idem(exclude)]`, or `#[idem(include)]` if the time is part of the \
         request on purpose (a scheduled date, say)"
    );
}

#[cfg(test)]
mod tests {
    use super::time_type_in;

    #[test]
    fn time_types_are_recognised_by_a_whole_identifier() {
        assert_eq!(
            time_type_in(
                "chrono::datetime::serde::<impl serde_core::ser::Serialize for chrono::datetime::DateTime<_>>::serialize::FormatIso8601<'_, chrono::offset::utc::Utc>"
            ),
            Some("DateTime")
        );
        assert_eq!(
            time_type_in("&jiff::timestamp::Timestamp"),
            Some("Timestamp")
        );
        assert_eq!(time_type_in("&chrono::naive::date::NaiveDate"), None);
        assert_eq!(time_type_in("&chrono::naive::time::NaiveTime"), None);
        assert_eq!(time_type_in("app::DateTimeRange"), None);
        assert_eq!(time_type_in("uuid::Uuid"), None);
    }
}
