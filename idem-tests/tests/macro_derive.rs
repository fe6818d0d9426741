//! `#[derive(IdempotencyKey)]`: the bytes it writes follow the canonical encoding, agree with
//! the serde bridge for the same data except for structs with named fields (the derive writes
//! the fixed form without names, serde the named form), and honour `exclude`, `include`,
//! `rename` and `with`.

use std::time::SystemTime;

use idem_runtime::{IdempotencyKey, Key, KeyHasher};
use serde::Serialize;

fn key<T: IdempotencyKey + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.write(value);
    h.finish_key().unwrap()
}

fn serde_key<T: Serialize + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.write_serde(value);
    h.finish_key().unwrap()
}

// ---- derived vs serde ------------------------------------------------------------------------

/// Named fields: the derive writes the fixed form, serde the named form.
#[derive(IdempotencyKey, Serialize)]
struct Sorted {
    amount: u64,
    customer: String,
    tags: Vec<String>,
    tip: Option<u32>,
}

#[derive(IdempotencyKey, Serialize)]
struct Tuple(u8, String, bool);

#[derive(IdempotencyKey, Serialize)]
struct Newtype(u64);

#[derive(IdempotencyKey, Serialize)]
struct Unit;

#[derive(IdempotencyKey, Serialize)]
enum Event {
    Ping,
    Id(u64),
    Pair(u8, u8),
    Moved { from: String, to: String },
}

#[test]
fn derived_and_serde_bridged_types_agree_except_named_structs() {
    let s = Sorted {
        amount: 5,
        customer: "ada".into(),
        tags: vec!["a".into(), "b".into()],
        tip: Some(1),
    };
    assert_ne!(key(&s), serde_key(&s), "fixed form vs named form");
    let t = Tuple(1, "x".into(), true);
    assert_eq!(key(&t), serde_key(&t));
    assert_eq!(key(&Newtype(7)), serde_key(&Newtype(7)));
    assert_eq!(key(&Newtype(7)), key(&7u64), "a newtype is transparent");
    assert_eq!(key(&Unit), serde_key(&Unit));
    assert_eq!(key(&Unit), key(&()), "a unit struct is unit");
    for e in [Event::Ping, Event::Id(3), Event::Pair(1, 2)] {
        assert_eq!(key(&e), serde_key(&e));
    }
    let moved = Event::Moved {
        from: "a".into(),
        to: "b".into(),
    };
    assert_ne!(key(&moved), serde_key(&moved), "a struct variant's fields");
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.variant("Moved");
    h.begin_fixed_struct(2);
    h.write_str("a");
    h.write_str("b");
    assert_eq!(key(&moved), h.finish_key().unwrap());
}

#[test]
fn the_struct_form_is_written_byte_for_byte() {
    #[derive(IdempotencyKey)]
    struct Two {
        b: u8,
        a: bool,
    }
    // 1B count | true (field "a") | u8 (field "b"): the values in name order, no names
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.begin_fixed_struct(2);
    h.write_bool(true);
    h.write_u8(9);
    assert_eq!(key(&Two { b: 9, a: true }), h.finish_key().unwrap());
}

// ---- declaration order, exclusions, rename ----------------------------------------------------

#[derive(IdempotencyKey)]
struct OrderA {
    customer: String,
    amount: u64,
}

#[derive(IdempotencyKey)]
struct OrderB {
    amount: u64,
    customer: String,
}

#[test]
fn field_declaration_order_does_not_matter() {
    let a = OrderA {
        customer: "ada".into(),
        amount: 1,
    };
    let b = OrderB {
        amount: 1,
        customer: "ada".into(),
    };
    assert_eq!(key(&a), key(&b));
}

#[derive(IdempotencyKey, Clone)]
struct Charge {
    customer: String,
    amount_cents: u64,
    #[idem(exclude)]
    requested_at: SystemTime,
    #[idem(exclude)]
    note: String,
}

#[test]
fn excluded_fields_are_neither_written_nor_counted() {
    let c = Charge {
        customer: "ada".into(),
        amount_cents: 100,
        requested_at: SystemTime::now(),
        note: "first".into(),
    };
    let mut later = c.clone();
    later.requested_at = SystemTime::UNIX_EPOCH;
    later.note = "retry".into();
    assert_eq!(key(&c), key(&later));
    #[derive(IdempotencyKey)]
    struct Plain {
        customer: String,
        amount_cents: u64,
    }
    assert_eq!(
        key(&c),
        key(&Plain {
            customer: "ada".into(),
            amount_cents: 100
        })
    );
}

#[derive(IdempotencyKey)]
struct Renamed {
    #[idem(rename = "amount_cents")]
    cents: u64,
    customer: String,
}

#[derive(IdempotencyKey)]
enum Versioned {
    #[idem(rename = "Created")]
    Opened { id: u64 },
}

#[derive(IdempotencyKey)]
enum Original {
    Created { id: u64 },
}

#[test]
fn rename_keeps_keys_across_field_and_variant_renames() {
    #[derive(IdempotencyKey)]
    struct Before {
        amount_cents: u64,
        customer: String,
    }
    let before = Before {
        amount_cents: 1,
        customer: "c".into(),
    };
    let after = Renamed {
        cents: 1,
        customer: "c".into(),
    };
    assert_eq!(key(&before), key(&after));
    assert_eq!(
        key(&Versioned::Opened { id: 4 }),
        key(&Original::Created { id: 4 })
    );
}

// ---- nesting, generics, with, include ----------------------------------------------------------

#[derive(IdempotencyKey)]
struct Envelope {
    charge: Charge,
    attempt: u32,
}

#[test]
fn nested_derived_types_keep_their_exclusions() {
    let charge = |note: &str| Charge {
        customer: "ada".into(),
        amount_cents: 1,
        requested_at: SystemTime::now(),
        note: note.into(),
    };
    let a = Envelope {
        charge: charge("x"),
        attempt: 1,
    };
    let b = Envelope {
        charge: charge("y"),
        attempt: 1,
    };
    assert_eq!(key(&a), key(&b));
}

/// `T` has no declared bound: the derive adds `T: IdempotencyKey`.
#[derive(IdempotencyKey)]
struct ByKey<T> {
    value: T,
}

/// `T: Serialize` is declared: the field goes through the serde bridge (no bound added).
#[derive(IdempotencyKey)]
struct BySerde<T: Serialize> {
    value: T,
}

#[derive(Serialize)]
struct OnlySerde {
    x: u8,
}

/// Only excluded fields use `U`: no bound on it.
#[derive(IdempotencyKey)]
struct WithHandle<T, U> {
    id: T,
    #[idem(exclude)]
    handle: U,
}

#[test]
fn generic_fields_follow_their_bounds() {
    assert_eq!(key(&ByKey { value: 5u8 }), key(&ByKey { value: 5u8 }));
    assert_eq!(
        key(&BySerde {
            value: OnlySerde { x: 1 }
        }),
        {
            #[derive(IdempotencyKey)]
            struct Manual {
                value: u8,
            }
            let _ = Manual { value: 0 };
            let mut h = KeyHasher::for_key("tests.derive", 1);
            h.unscoped();
            h.begin_fixed_struct(1);
            h.write_serde(&OnlySerde { x: 1 });
            h.finish_key().unwrap()
        }
    );
    struct NotHashable;
    let a = WithHandle {
        id: 1u8,
        handle: NotHashable,
    };
    let _ = &a.handle;
    assert_eq!(
        key(&a),
        key(&WithHandle {
            id: 1u8,
            handle: ()
        })
    );
}

#[allow(clippy::ptr_arg)] // the signature `with` requires: fn(&FieldType, &mut KeyHasher)
fn lowercase(value: &String, out: &mut KeyHasher) {
    out.write_str(&value.to_lowercase());
}

#[derive(IdempotencyKey)]
struct Email {
    #[idem(with = lowercase)]
    address: String,
}

#[derive(IdempotencyKey)]
struct Slot {
    /// A scheduled slot is part of the request: included on purpose.
    #[idem(include)]
    starts_at: std::time::Duration,
    #[idem(include)]
    booked_for: Option<SystemTimeAsSecs>,
}

/// Named like a time type on purpose (the lint is name-based); `include` accepts it.
#[derive(IdempotencyKey)]
struct SystemTimeAsSecs(u64);

#[test]
fn with_writes_through_a_custom_function_and_include_keeps_a_time() {
    assert_eq!(
        key(&Email {
            address: "Ada@Example.com".into()
        }),
        key(&Email {
            address: "ada@example.com".into()
        })
    );
    let slot = |s| Slot {
        starts_at: std::time::Duration::from_secs(s),
        booked_for: None,
    };
    assert_ne!(key(&slot(1)), key(&slot(2)));
    let _ = SystemTimeAsSecs(0).0;
}

#[allow(dead_code)]
#[derive(IdempotencyKey)]
enum Empty {}

#[test]
fn raw_identifiers_and_empty_enums() {
    #[derive(IdempotencyKey, Serialize)]
    struct Raw {
        r#type: u8,
    }
    // Serde names the field `type`, without `r#`.
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.begin_struct();
    h.field("type");
    h.write_u8(1);
    h.end_struct(1);
    assert_eq!(serde_key(&Raw { r#type: 1 }), h.finish_key().unwrap());
    // The derive sorts it as `type` too: before `u`, after `a`.
    #[derive(IdempotencyKey)]
    struct Sorts {
        u: u8,
        r#type: u8,
        a: u8,
    }
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.begin_fixed_struct(3);
    h.write_u8(1);
    h.write_u8(2);
    h.write_u8(3);
    assert_eq!(
        key(&Sorts {
            a: 1,
            r#type: 2,
            u: 3
        }),
        h.finish_key().unwrap()
    );
    fn _uses(e: &Empty) -> Key {
        key(e)
    }
}
