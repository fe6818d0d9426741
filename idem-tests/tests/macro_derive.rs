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

/// Serde's `skip` must be matched by an explicit choice (`exclude` or `include`); serde's other
/// options (`skip_serializing_if`, `skip_deserializing`, `default`) leave the field in the key.
#[derive(IdempotencyKey, Serialize)]
struct SerdeSkips {
    amount_cents: u64,
    #[serde(skip)]
    #[idem(exclude)]
    request_id: String,
    #[serde(default, skip_serializing)]
    #[idem(include)]
    shard: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    memo: Option<String>,
    #[serde(skip_deserializing)]
    region: String,
}

#[test]
fn serde_skipped_fields_follow_the_explicit_choice() {
    let base = SerdeSkips {
        amount_cents: 100,
        request_id: "req_1".into(),
        shard: 1,
        memo: None,
        region: "eu".into(),
    };
    let with = |change: fn(&mut SerdeSkips)| {
        let mut s = SerdeSkips {
            request_id: base.request_id.clone(),
            memo: base.memo.clone(),
            region: base.region.clone(),
            ..base
        };
        change(&mut s);
        key(&s)
    };
    assert_eq!(key(&base), with(|s| s.request_id = "req_2".into()));
    assert_ne!(key(&base), with(|s| s.shard = 2));
    assert_ne!(key(&base), with(|s| s.memo = Some("m".into())));
    assert_ne!(key(&base), with(|s| s.region = "us".into()));
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

/// A writer may take what the field derefs to, and may return something (ignored).
fn trimmed(value: &str, out: &mut KeyHasher) -> usize {
    out.write_str(value.trim());
    value.len()
}

#[derive(IdempotencyKey)]
struct Trimmed {
    #[idem(with = trimmed)]
    name: String,
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
    let name = |n: &str| key(&Trimmed { name: n.into() });
    assert_eq!(name(" ada "), name("ada"));
    assert_ne!(name("ada"), name("bob"));
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

// ---- std containers are walked: each element type is dispatched on its own ------------------

/// Derived, with an excluded field: hashed by its own impl, `note` left out.
#[derive(IdempotencyKey, Serialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Inner {
    id: u64,
    #[idem(exclude)]
    note: String,
}

/// A second derived type.
#[derive(IdempotencyKey, Serialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Other {
    code: String,
}

/// `Serialize` only, like `uuid::Uuid` or `rust_decimal::Decimal`.
#[derive(Serialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Foreign {
    x: u8,
}

/// A second serde-only type.
#[derive(Serialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Foreign2(String, bool);

fn inner(note: &str) -> Inner {
    Inner {
        id: 7,
        note: note.into(),
    }
}

fn other() -> Other {
    Other { code: "o".into() }
}

fn foreign() -> Foreign {
    Foreign { x: 3 }
}

fn foreign2() -> Foreign2 {
    Foreign2("f".into(), true)
}

/// The key of a one-field struct `{ f: $ty }` holding `$value`, and the key of
/// `begin_fixed_struct(1)` followed by what `$expected` writes for `$value` (`|h, v| …`).
/// The type reaches the derive as a `$ty` fragment, as it would from a user's `macro_rules!`.
macro_rules! one_field {
    ($ty:ty, $value:expr, |$h:ident, $v:ident| $expected:expr) => {{
        #[derive(IdempotencyKey)]
        struct One {
            f: $ty,
        }
        let value: $ty = $value;
        let mut h = KeyHasher::for_key("tests.derive", 1);
        h.unscoped();
        h.begin_fixed_struct(1);
        {
            let $h = &mut h;
            let $v = &value;
            $expected;
        }
        let expected = h.finish_key().unwrap();
        (key(&One { f: value }), expected)
    }};
}

/// `one_field!` keys must be equal.
macro_rules! same {
    ($ty:ty, $value:expr, |$h:ident, $v:ident| $expected:expr) => {{
        let (got, expected) = one_field!($ty, $value, |$h, $v| $expected);
        assert_eq!(got, expected, "{}", stringify!($ty));
    }};
}

/// Two values of `$ty` that differ only in an excluded field of a nested derived type have the
/// same key (`$make` builds a value from `inner(note)`).
macro_rules! keeps_exclusions {
    ($ty:ty, |$inner:ident| $make:expr) => {{
        #[derive(IdempotencyKey)]
        struct One {
            f: $ty,
        }
        let make = |$inner: Inner| -> $ty { $make };
        let a = key(&One {
            f: make(inner("a")),
        });
        let b = key(&One {
            f: make(inner("b")),
        });
        assert_eq!(
            a,
            b,
            "{}: an excluded field changed the key",
            stringify!($ty)
        );
    }};
}

#[test]
#[allow(clippy::type_complexity)] // nested containers on purpose
fn nested_exclusions_survive_containers_that_mix_derived_and_serde_types() {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
    use std::rc::Rc;
    use std::sync::Arc;
    keeps_exclusions!(Inner, |i| i);
    keeps_exclusions!(Vec<(Inner, Foreign)>, |i| vec![
        (i.clone(), foreign()),
        (i, foreign())
    ]);
    keeps_exclusions!(Result<Inner, String>, |i| Ok(i));
    keeps_exclusions!(Result<Inner, Foreign>, |i| Ok(i));
    keeps_exclusions!(HashMap<String, (Inner, Foreign)>, |i| HashMap::from([("k".to_string(), (i, foreign()))]));
    keeps_exclusions!(HashMap<Foreign, Inner>, |i| HashMap::from([(foreign(), i)]));
    keeps_exclusions!(BTreeMap<Foreign, Vec<Inner>>, |i| BTreeMap::from([(foreign(), vec![i])]));
    keeps_exclusions!(Option<(Inner, Foreign)>, |i| Some((i, foreign())));
    keeps_exclusions!([(Inner, Foreign); 2], |i| [
        (i.clone(), foreign()),
        (i, foreign())
    ]);
    keeps_exclusions!(Box<(Inner, Foreign)>, |i| Box::new((i, foreign())));
    keeps_exclusions!(Rc<[(Foreign, Inner)]>, |i| Rc::from(vec![(foreign(), i)]));
    keeps_exclusions!(Arc<(Inner, Foreign)>, |i| Arc::new((i, foreign())));
    keeps_exclusions!(VecDeque<(Inner, Foreign)>, |i| VecDeque::from([(
        i,
        foreign()
    )]));
    keeps_exclusions!(BTreeSet<(Inner, Foreign)>, |i| BTreeSet::from([(
        i,
        foreign()
    )]));
    keeps_exclusions!(HashSet<(Inner, Foreign)>, |i| HashSet::from([(
        i,
        foreign()
    )]));
    keeps_exclusions!((Inner, Foreign, u8), |i| (i, foreign(), 1));
    keeps_exclusions!(Option<Vec<Result<(Inner, Box<Foreign>), Foreign2>>>, |i| {
        Some(vec![Ok((i, Box::new(foreign())))])
    });
    keeps_exclusions!(std::vec::Vec<(Inner, Foreign)>, |i| vec![(i, foreign())]);
    keeps_exclusions!(::core::option::Option<(Inner, Foreign)>, |i| Some((
        i,
        foreign()
    )));
    keeps_exclusions!(&'static (Inner, Foreign), |i| Box::leak(Box::new((
        i,
        foreign()
    ))));
}

#[test]
fn walked_containers_write_the_derived_elements_natively_and_the_others_by_serde() {
    use std::collections::{BTreeSet, HashMap};
    same!(
        Vec<(Inner, Foreign)>,
        vec![(inner("a"), foreign())],
        |h, v| {
            h.begin_seq();
            h.begin_tuple(2);
            h.write(&v[0].0);
            h.write_serde(&v[0].1);
            h.end_seq(1);
        }
    );
    same!(Result<Inner, Foreign>, Err(foreign()), |h, v| h.write_serde(v));
    same!(Result<Inner, Foreign>, Ok(inner("a")), |h, v| {
        h.variant("Ok");
        h.write(v.as_ref().unwrap());
    });
    same!(HashMap<Foreign, Inner>, HashMap::from([(foreign(), inner("a"))]), |h, v| {
        // One entry: its digest is blake3(enc(key) ‖ enc(value)), as a one-entry map of
        // natively written parts would give.
        let (k, i) = v.iter().next().unwrap();
        h.write(&std::collections::BTreeMap::from([(AsSerde(k), i)]));
    });
    // A set whose element type is not key material keeps serde's form: a sequence.
    same!(
        BTreeSet<(Inner, Foreign)>,
        BTreeSet::from([(inner("a"), foreign())]),
        |h, v| {
            h.begin_seq();
            for (i, f) in v {
                h.begin_tuple(2);
                h.write(i);
                h.write_serde(f);
            }
            h.end_seq(v.len() as u64);
        }
    );
}

/// Key material through its `Serialize` impl (what `dispatch` does for a serde-only type).
struct AsSerde<'a, T>(&'a T);

impl<T: Serialize> IdempotencyKey for AsSerde<'_, T> {
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_serde(self.0);
    }
}

impl<T: PartialEq> PartialEq for AsSerde<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T: Eq> Eq for AsSerde<'_, T> {}

impl<T: PartialOrd> PartialOrd for AsSerde<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other.0)
    }
}

impl<T: Ord> Ord for AsSerde<'_, T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

/// Walking changes no key whose elements are all key-trait types (the bytes of the whole
/// container's impl) nor any whose elements are all serde-only (the serde bridge's bytes).
#[test]
#[allow(clippy::type_complexity)] // nested containers on purpose
fn walking_keeps_the_keys_of_containers_of_one_kind() {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
    use std::rc::Rc;
    use std::sync::Arc;
    macro_rules! unchanged {
        ($($ty:ty => $value:expr;)*) => {$(
            same!($ty, $value, |h, v| h.write(v));
        )*};
    }
    macro_rules! as_serde {
        ($($ty:ty => $value:expr;)*) => {$(
            same!($ty, $value, |h, v| h.write_serde(v));
        )*};
    }
    let i = || inner("a");
    unchanged! {
        Vec<(Inner, Other)> => vec![(i(), other()), (i(), other())];
        Vec<(Inner, Other)> => Vec::new();
        Option<(Inner, Other)> => Some((i(), other()));
        Option<(Inner, Other)> => None;
        VecDeque<(Other, Inner)> => VecDeque::from([(other(), i())]);
        Box<[(Inner, Other)]> => vec![(i(), other())].into_boxed_slice();
        [(Inner, Other); 2] => [(i(), other()), (i(), other())];
        [(Inner, Other); 0] => [];
        (Inner, Other, u8) => (i(), other(), 9);
        (Inner, Option<Other>) => (i(), None);
        Box<(Inner, Other)> => Box::new((i(), other()));
        Rc<(Inner, Other)> => Rc::new((i(), other()));
        Arc<(Inner, Other)> => Arc::new((i(), other()));
        &'static (Inner, Other) => Box::leak(Box::new((i(), other())));
        Result<Inner, Other> => Ok(i());
        Result<Inner, Other> => Err(other());
        BTreeMap<Other, Inner> => BTreeMap::from([(other(), i())]);
        HashMap<Other, Inner> => (0..20).map(|n| (Other { code: n.to_string() }, i())).collect();
        BTreeSet<(Inner, Other)> => BTreeSet::from([(i(), other())]);
        HashSet<(Other, Inner)> => (0..20).map(|n| (Other { code: n.to_string() }, i())).collect();
        Option<Vec<Result<(Inner, Box<Other>), String>>> => Some(vec![Ok((i(), Box::new(other()))), Err("e".into())]);
        std::collections::HashMap<String, (Inner, Other)> => HashMap::from([("k".to_string(), (i(), other()))]);
    }
    as_serde! {
        Vec<(Foreign, Foreign2)> => vec![(foreign(), foreign2()), (foreign(), foreign2())];
        Option<(Foreign, Foreign2)> => Some((foreign(), foreign2()));
        Option<(Foreign, Foreign2)> => None;
        VecDeque<(Foreign, Foreign2)> => VecDeque::from([(foreign(), foreign2())]);
        Box<[(Foreign, Foreign2)]> => vec![(foreign(), foreign2())].into_boxed_slice();
        [(Foreign, Foreign2); 2] => [(foreign(), foreign2()), (foreign(), foreign2())];
        (Foreign, Foreign2, u8) => (foreign(), foreign2(), 9);
        Box<(Foreign, Foreign2)> => Box::new((foreign(), foreign2()));
        &'static (Foreign, Foreign2) => Box::leak(Box::new((foreign(), foreign2())));
        Result<Foreign, Foreign2> => Ok(foreign());
        Result<Foreign, Foreign2> => Err(foreign2());
        BTreeMap<Foreign, Foreign2> => BTreeMap::from([(foreign(), foreign2())]);
        HashMap<Foreign2, Foreign> => (0..20).map(|n| (Foreign2(n.to_string(), false), foreign())).collect();
        // Serde writes sets as sequences; a walked `BTreeSet` of serde-only elements does too
        // (a `HashSet` does not: `a_hash_set_of_serde_only_elements_has_one_key`).
        BTreeSet<(Foreign, Foreign2)> => BTreeSet::from([(foreign(), foreign2())]);
        Option<Vec<Result<(Foreign, Box<Foreign2>), String>>> => Some(vec![Ok((foreign(), Box::new(foreign2()))), Err("e".into())]);
    }
    // Transparent, as serde writes them with its `rc` feature (not enabled here).
    same!(
        Rc<(Foreign, Foreign2)>,
        Rc::new((foreign(), foreign2())),
        |h, v| h.write_serde(&**v)
    );
    same!(
        Arc<(Foreign, Foreign2)>,
        Arc::new((foreign(), foreign2())),
        |h, v| h.write_serde(&**v)
    );
}

/// Generic parameters inside walked containers are dispatched by their bounds.
#[derive(IdempotencyKey)]
struct Tagged<T> {
    items: Vec<(T, Foreign)>,
}

/// In a tuple struct and an enum variant (fields bound by pattern), too.
#[derive(IdempotencyKey)]
struct Pairs(Option<(Inner, Foreign)>, u8);

#[derive(IdempotencyKey)]
enum Batch {
    Items(Vec<(Inner, Foreign)>),
    Keyed {
        by: std::collections::BTreeMap<Foreign, Inner>,
    },
}

#[test]
fn walked_generic_tuple_and_variant_fields_keep_exclusions() {
    let t = |note| Tagged {
        items: vec![(inner(note), foreign())],
    };
    assert_eq!(key(&t("a")), key(&t("b")));
    let p = |note| Pairs(Some((inner(note), foreign())), 1);
    assert_eq!(key(&p("a")), key(&p("b")));
    let b = |note| Batch::Items(vec![(inner(note), foreign())]);
    assert_eq!(key(&b("a")), key(&b("b")));
    let k = |note| Batch::Keyed {
        by: [(foreign(), inner(note))].into(),
    };
    assert_eq!(key(&k("a")), key(&k("b")));
}

// ---- PhantomData ----------------------------------------------------------------------------

/// A typed id: `T` only appears in `PhantomData`, so the derive adds no bound on it.
#[derive(IdempotencyKey)]
struct Id<T> {
    raw: u64,
    _kind: std::marker::PhantomData<T>,
}

/// A plain marker type: neither key material nor `Serialize`.
struct User;

#[test]
fn phantom_type_parameters_need_no_bound() {
    let id = Id::<User> {
        raw: 5,
        _kind: std::marker::PhantomData,
    };
    let mut h = KeyHasher::for_key("tests.derive", 1);
    h.unscoped();
    h.begin_fixed_struct(2);
    h.write_unit();
    h.write_u64(5);
    assert_eq!(key(&id), h.finish_key().unwrap());
}

/// Serde writes a `HashSet` as a sequence in its iteration order, which differs between two
/// equal sets: through serde, every retry of the same request would get a new key. A `HashSet`
/// of non-scalar elements is therefore always walked, and written in the set form.
#[derive(IdempotencyKey)]
struct Tags {
    ids: std::collections::HashSet<Foreign2>,
    pairs: Vec<std::collections::HashSet<(Foreign2, u8)>>,
}

#[test]
fn a_hash_set_of_serde_only_elements_has_one_key() {
    use std::collections::HashSet;
    let tags = |order: &mut dyn Iterator<Item = u32>| {
        let numbers: Vec<u32> = order.collect();
        Tags {
            ids: numbers
                .iter()
                .map(|n| Foreign2(n.to_string(), n % 2 == 0))
                .collect(),
            pairs: vec![
                numbers
                    .iter()
                    .map(|n| (Foreign2(n.to_string(), true), *n as u8))
                    .collect(),
            ],
        }
    };
    let first = key(&tags(&mut (0..50)));
    for _ in 0..10 {
        // Equal sets, built anew (each `HashSet` has its own random hasher) and in another order.
        assert_eq!(key(&tags(&mut (0..50).rev())), first);
    }
    let fewer = Tags {
        ids: (0..49)
            .map(|n| Foreign2(n.to_string(), n % 2 == 0))
            .collect(),
        pairs: vec![HashSet::new()],
    };
    assert_ne!(key(&fewer), first);
}

/// A field of an associated type (`E::Id`) needs no bound on `E` itself: `Account` is only a
/// marker, and the id goes through its own impls (serde here, as the trait requires).
trait Entity {
    type Id: Serialize;
}

struct Account;

impl Entity for Account {
    type Id = u64;
}

#[derive(IdempotencyKey)]
struct Ref<E: Entity> {
    id: E::Id,
}

#[derive(IdempotencyKey)]
struct QualifiedRef<E: Entity> {
    id: <E as Entity>::Id,
}

#[test]
fn associated_type_fields_need_no_bound_on_their_parameter() {
    #[derive(IdempotencyKey)]
    struct Plain {
        id: u64,
    }
    let plain = key(&Plain { id: 7 });
    assert_eq!(key(&Ref::<Account> { id: 7 }), plain);
    assert_eq!(key(&QualifiedRef::<Account> { id: 7 }), plain);
    assert_ne!(key(&Ref::<Account> { id: 8 }), plain);
}

// ---- #[repr(packed)] --------------------------------------------------------------------------

/// Only `Serialize`, `Copy`: a packed struct's fields are copied out, so they must be `Copy`.
#[derive(Serialize, Clone, Copy)]
struct Code(u16);

/// Derived, with an exclusion: inside `(Point, Code)` the tuple is walked and it keeps it.
#[derive(IdempotencyKey, Clone, Copy)]
struct Point {
    x: u8,
    #[idem(exclude)]
    _y: u8,
}

#[derive(IdempotencyKey)]
struct Unpacked {
    a: u8,
    b: u32,
    c: (Point, Code),
    #[idem(exclude)]
    d: u16,
}

#[derive(IdempotencyKey)]
#[repr(C, packed)]
struct PackedC {
    a: u8,
    b: u32,
    c: (Point, Code),
    #[idem(exclude)]
    d: u16,
}

#[derive(IdempotencyKey)]
#[repr(Rust, packed(2))]
struct PackedTuple(u8, u32, (Point, Code));

#[derive(IdempotencyKey)]
struct UnpackedTuple(u8, u32, (Point, Code));

/// A field of a packed struct cannot be borrowed (E0793): the derive copies it out, and the
/// key is the one of the same struct unpacked.
#[test]
fn a_packed_struct_hashes_like_the_same_struct_unpacked() {
    let c = (Point { x: 7, _y: 0 }, Code(3));
    let unpacked = Unpacked {
        a: 1,
        b: 2,
        c,
        d: 4,
    };
    let packed = PackedC {
        a: 1,
        b: 2,
        c,
        d: 5,
    };
    assert_eq!(key(&packed), key(&unpacked));
    assert_ne!(unpacked.d, { packed.d }, "`d` is excluded");
    let other_y = (Point { x: 7, _y: 1 }, Code(3));
    assert_eq!(key(&PackedTuple(1, 2, c)), key(&PackedTuple(1, 2, other_y)));
    assert_eq!(key(&PackedTuple(1, 2, c)), key(&UnpackedTuple(1, 2, c)));
    assert_ne!(key(&PackedTuple(1, 2, c)), key(&PackedTuple(1, 3, c)));
}
