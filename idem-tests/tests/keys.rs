//! The canonical key encoding (spec: `idem_runtime::key` module docs): injectivity, order
//! independence, float canonicalisation, serde-vs-native agreement, error reporting, and golden
//! vectors that freeze every byte of encoding version 1.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::marker::PhantomData;
use std::num::NonZero;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use idem_runtime::Error;
use idem_runtime::key::{AsBytes, Fingerprint, IdempotencyKey, Key, KeyHasher};
use serde::{Serialize, Serializer};

const OP: &str = "tests.op";

/// Key of one material value, unscoped, through the native impl.
fn key<T: IdempotencyKey + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key(OP, 1);
    h.unscoped();
    h.write(value);
    h.finish_key().unwrap()
}

/// Key of one material value, unscoped, through the serde bridge.
fn serde_key<T: Serialize + ?Sized>(value: &T) -> Key {
    let mut h = KeyHasher::for_key(OP, 1);
    h.unscoped();
    h.write_serde(value);
    h.finish_key().unwrap()
}

/// Key with a custom header and writer.
fn key_with(op: &str, version: u32, scope: Option<&str>, f: impl FnOnce(&mut KeyHasher)) -> Key {
    let mut h = KeyHasher::for_key(op, version);
    match scope {
        None => h.unscoped(),
        Some(s) => {
            h.scoped();
            h.write_str(s);
        }
    }
    f(&mut h);
    h.finish_key().unwrap()
}

fn fingerprint(op: &str, version: u32, f: impl FnOnce(&mut KeyHasher)) -> Fingerprint {
    let mut h = KeyHasher::for_fingerprint(op, version);
    f(&mut h);
    h.finish_fingerprint().unwrap()
}

// ---- test types ---------------------------------------------------------------------------

use idem_tests::fixtures::charge;

#[derive(Serialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: u8 },
}

#[derive(Serialize)]
struct Request {
    id: u64,
    tags: Vec<String>,
    extra: serde_json::Value,
    shape: Shape,
    parent: Option<Box<Request>>,
}

#[derive(Serialize)]
struct UserId(u64);

#[derive(Serialize)]
struct Marker;

/// A `Serialize` impl that fails.
struct Broken;

impl Serialize for Broken {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("broken on purpose"))
    }
}

/// A key-trait type that goes through the serde bridge (as the derive does for serde fields).
struct ViaSerde<T>(T);

impl<T: Serialize> IdempotencyKey for ViaSerde<T> {
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_serde(&self.0);
    }
}

/// Displays differently on every call.
struct Flaky(std::cell::Cell<u32>);

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.set(self.0.get() * 10 + 1);
        write!(f, "{}", self.0.get())
    }
}

impl Serialize for Flaky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

struct Shown(&'static str);

impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("<{}>", self.0))
    }
}

// ---- injectivity ----------------------------------------------------------------------------

#[test]
fn prefix_free_and_type_tagged() {
    assert_ne!(key(&("ab", "c")), key(&("a", "bc")));
    assert_ne!(key(&None::<()>), key(&Some(())));
    assert_ne!(key(&vec![1u8]), key(&vec![1u16]));
    assert_ne!(key(&[1u8]), key(&[1u16]));
    assert_ne!(key(&vec![vec![1u8], vec![]]), key(&vec![vec![], vec![1u8]]));
    assert_ne!(key(&0u32), key(&0u64));
    assert_ne!(key(&0i32), key(&0u32));
    assert_ne!(key(""), key(&None::<String>));
    assert_ne!(key(&()), key(&None::<()>));
    assert_ne!(
        key(&vec![1u8, 2]),
        key(&[1u8, 2]),
        "sequence form vs tuple form"
    );
    assert_ne!(
        key(&vec![1u8, 2]),
        key(&AsBytes([1u8, 2])),
        "sequence form vs bytes form"
    );
    assert_ne!(key("ab"), key(&AsBytes("ab")), "string form vs bytes form");
    assert_ne!(key(&'a'), key(&97u32));
    assert_ne!(key(&true), key(&1u8));
    assert_ne!(key(&(1u8,)), key(&1u8));
    assert_ne!(key(&Some(Some(()))), key(&Some(())));
    // Two material values back to back differ from the tuple of both and from each other order.
    let two = key_with(OP, 1, None, |h| {
        h.write("a");
        h.write("b");
    });
    assert_ne!(two, key(&("a", "b")));
    assert_ne!(two, key_with(OP, 1, None, |h| h.write("ab")));
    assert_ne!(
        two,
        key_with(OP, 1, None, |h| {
            h.write("b");
            h.write("a");
        })
    );
}

#[test]
fn header_scope_and_purpose_separate_keys() {
    let base = key_with("op", 1, None, |h| h.write("b"));
    assert_ne!(
        base,
        key_with("op2", 1, None, |h| h.write("b")),
        "operation name"
    );
    assert_ne!(
        base,
        key_with("op", 2, None, |h| h.write("b")),
        "operation version"
    );
    assert_ne!(
        base,
        key_with("op", 1, Some(""), |h| h.write("b")),
        "scoped vs unscoped"
    );
    // scope "a" + material "b" is none of the unscoped materials made of the same strings.
    let scoped = key_with("op", 1, Some("a"), |h| h.write("b"));
    assert_ne!(scoped, base);
    assert_ne!(scoped, key_with("op", 1, None, |h| h.write("ab")));
    assert_ne!(
        scoped,
        key_with("op", 1, None, |h| {
            h.write("a");
            h.write("b");
        })
    );
    assert_ne!(scoped, key_with("op", 1, Some("b"), |h| h.write("a")));
    // The operation name cannot leak into the material.
    assert_ne!(
        key_with("ab", 1, None, |_| {}),
        key_with("a", 1, None, |h| h.write("b"))
    );
    // Key and fingerprint of the same header and material never coincide.
    let fp = fingerprint("op", 1, |h| h.write("b"));
    assert_ne!(base.as_bytes(), fp.as_bytes());
    assert_ne!(fp, fingerprint("op", 2, |h| h.write("b")));
    assert_ne!(fp, Fingerprint::NONE);
}

#[test]
fn many_small_values_have_distinct_keys() {
    let mut keys = vec![
        key(&()),
        key(&None::<u8>),
        key(&Some(0u8)),
        key(""),
        key(&AsBytes(b"")),
        key(&Vec::<u8>::new()),
        key(&[0u8; 0]),
        key(&BTreeMap::<u8, u8>::new()),
        key(&BTreeSet::<u8>::new()),
        key(&vec![()]),
        key(&vec![(), ()]),
        key(&((), ())),
        key(&vec![BTreeSet::<u8>::new()]),
        key(&BTreeMap::from([(0u8, 0u8)])),
        key(&BTreeSet::from([0u8])),
        key(&BTreeSet::from([(0u8, 0u8)])),
        key(&f32::NAN),
        key(&f64::NAN),
        key(&0.0f32),
        key(&0.0f64),
        key(&1.0f64),
        key(&f64::INFINITY),
        key(&f64::NEG_INFINITY),
        key(&Duration::ZERO),
        serde_key(&Shape::Empty),
        serde_key(&Shape::Circle(0.0)),
        serde_key(&Shape::Rect(0, 0)),
        serde_key(&Shape::Named {
            name: String::new(),
            sides: 0,
        }),
    ];
    for v in 0u8..4 {
        keys.extend([
            key(&v),
            key(&u16::from(v)),
            key(&u32::from(v)),
            key(&u64::from(v)),
            key(&u128::from(v)),
            key(&(v as i8)),
            key(&i16::from(v)),
            key(&i32::from(v)),
            key(&i64::from(v)),
            key(&i128::from(v)),
            key(&char::from(b'0' + v)),
            key(&(v % 2 == 0 && v < 2)),
        ]);
    }
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        n - 2,
        "only bool true/false repeat (4 values, 2 bools)"
    );
}

// ---- canonical floats and transparency ------------------------------------------------------

#[test]
fn floats_are_canonical() {
    assert_eq!(key(&-0.0f32), key(&0.0f32));
    assert_eq!(key(&-0.0f64), key(&0.0f64));
    let f32_nans = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc0_1234),
    ];
    for nan in f32_nans {
        assert!(nan.is_nan());
        assert_eq!(key(&nan), key(&f32::NAN));
    }
    let f64_nans = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::from_bits(0xfff8_0000_dead_beef),
    ];
    for nan in f64_nans {
        assert!(nan.is_nan());
        assert_eq!(key(&nan), key(&f64::NAN));
    }
    assert_ne!(key(&f64::NAN), key(&f64::INFINITY));
    assert_ne!(key(&1.0f64), key(&-1.0f64));
    assert_eq!(serde_key(&-0.0f64), key(&0.0f64));
    assert_eq!(serde_key(&-f32::NAN), key(&f32::NAN));
}

#[test]
fn wrappers_are_transparent() {
    let s = String::from("abc");
    let k = key("abc");
    assert_eq!(key(&s), k);
    assert_eq!(key(&&s), k);
    assert_eq!(key(&Box::new(s.clone())), k);
    assert_eq!(key(&Arc::new(s.clone())), k);
    assert_eq!(key(&Rc::<str>::from("abc")), k);
    assert_eq!(key(&Cow::Borrowed("abc")), k);
    assert_eq!(key(&Cow::<str>::Owned(s.clone())), k);
    let mut m = s.clone();
    assert_eq!(key(&&mut m), k);
    assert_eq!(key(&NonZero::new(5u32).unwrap()), key(&5u32));
    assert_eq!(key(&PhantomData::<String>), key(&()));
    assert_eq!(key(&5usize), key(&5u64));
    assert_eq!(key(&-5isize), key(&-5i64));
    assert_eq!(key(&VecDeque::from([1u8, 2])), key(&vec![1u8, 2]));
    assert_eq!(key(&vec![1u8, 2]), key(&[1u8, 2][..]));
    assert_eq!(
        serde_key(&UserId(7)),
        key(&7u64),
        "newtype structs are transparent"
    );
    assert_eq!(serde_key(&Marker), key(&()), "unit structs are unit");
    assert_eq!(key(&AsBytes(vec![1u8, 2])), key(&AsBytes(&[1u8, 2][..])));
}

// ---- order independence ---------------------------------------------------------------------

#[test]
fn maps_and_sets_ignore_iteration_order() {
    let mut forward = HashMap::new();
    for i in 0..1000u32 {
        forward.insert(format!("k{i}"), i);
    }
    let mut backward = HashMap::with_capacity(10);
    for i in (0..1000u32).rev() {
        backward.insert(format!("k{i}"), i);
    }
    let btree: BTreeMap<String, u32> = forward.clone().into_iter().collect();
    let fixed: HashMap<String, u32, BuildHasherDefault<std::hash::DefaultHasher>> =
        backward.clone().into_iter().collect();
    let k = key(&forward);
    assert_eq!(key(&backward), k);
    assert_eq!(key(&btree), k);
    assert_eq!(key(&fixed), k);
    assert_eq!(serde_key(&forward), k);
    assert_eq!(serde_key(&backward), k);
    assert_eq!(serde_key(&btree), k);
    let mut changed = btree.clone();
    changed.insert("k7".into(), 8);
    assert_ne!(key(&changed), k);
    changed.insert("k7".into(), 7);
    assert_eq!(key(&changed), k);
    changed.remove("k999");
    assert_ne!(key(&changed), k);

    let set_a: HashSet<u64> = (0..1000).collect();
    let set_b: HashSet<u64> = (0..1000).rev().collect();
    let set_c: BTreeSet<u64> = (0..1000).collect();
    assert_eq!(key(&set_a), key(&set_b));
    assert_eq!(key(&set_a), key(&set_c));
    assert_ne!(key(&set_a), key(&(0..999).collect::<BTreeSet<u64>>()));
    // A set is not a map to unit, nor a sequence.
    let small: BTreeSet<u8> = [1, 2].into();
    assert_ne!(key(&small), key(&BTreeMap::from([(1u8, ()), (2, ())])));
    assert_ne!(key(&small), key(&vec![1u8, 2]));

    // Nested and small (inline) maps, entries swapped between key and value.
    let nested_a: HashMap<u8, BTreeMap<u8, u8>> = (0..20)
        .map(|i| (i, (0..i).map(|j| (j, i)).collect()))
        .collect();
    let nested_b: BTreeMap<u8, HashMap<u8, u8>> = (0..20)
        .rev()
        .map(|i| (i, (0..i).rev().map(|j| (j, i)).collect()))
        .collect();
    assert_eq!(key(&nested_a), key(&nested_b));
    assert_ne!(
        key(&BTreeMap::from([(1u8, 2u8)])),
        key(&BTreeMap::from([(2u8, 1u8)]))
    );
}

// ---- serde bridge ---------------------------------------------------------------------------

macro_rules! agree {
    ($($value:expr),* $(,)?) => {$(
        let value = $value;
        assert_eq!(serde_key(&value), key(&value), "serde and native differ for {}", stringify!($value));
    )*};
}

#[test]
fn serde_bridge_agrees_with_native() {
    agree!(
        String::from("hello"),
        String::new(),
        "x".repeat(1000),
        'λ',
        true,
        (),
        1u8,
        2u16,
        3u32,
        4u64,
        u128::MAX,
        5usize,
        -1i8,
        -2i16,
        -3i32,
        -4i64,
        i128::MIN,
        -5isize,
        1.5f32,
        -2.25f64,
        f64::NAN,
        None::<String>,
        Some(String::from("x")),
        Some(Some(1u8)),
        vec![1u32, 2, 3],
        Vec::<u32>::new(),
        vec![vec![1u8], vec![]],
        vec![String::from("a"), String::from("b")],
        VecDeque::from([1i64, -1]),
        (1u8,),
        (1u8, "two", 3.0f64),
        (
            1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8
        ),
        [1u16, 2, 3],
        [0u8; 0],
        [[1u8; 2]; 3],
        [Some(1u8), None],
        BTreeMap::from([("a", 1u32), ("b", 2)]),
        HashMap::from([(1u8, vec!["x"]), (2, vec![])]),
        BTreeMap::<u8, u8>::new(),
        Box::new(7u32),
        Cow::Borrowed("cow"),
        Duration::new(5, 250),
        PhantomData::<u8>,
        NonZero::new(9u64).unwrap(),
        Ok::<u8, String>(1),
        Err::<u8, String>("no".into()),
        Ok::<Option<Vec<u8>>, (u8, bool)>(Some(vec![1])),
        Err::<Option<Vec<u8>>, (u8, bool)>((2, false)),
        vec![Ok::<(), u8>(()), Err(3)],
    );
    // Structs are the exception: a derived (fixed) struct leaves the field names out, serde's
    // named form keeps them, because serde may skip fields at run time.
    assert_ne!(serde_key(&charge()), key(&charge()));
}

/// `Result` has a key-trait impl (so that a `Result` of derived types keeps their encoding)
/// that writes what serde writes: the newtype variant `"Ok"`/`"Err"` and the value.
#[test]
fn results_are_newtype_variants() {
    assert_eq!(
        key(&Ok::<u8, ()>(7)),
        key_with(OP, 1, None, |h| {
            h.variant("Ok");
            h.write_u8(7);
        })
    );
    assert_eq!(
        key(&Err::<(), String>("e".into())),
        key_with(OP, 1, None, |h| {
            h.variant("Err");
            h.write_str("e");
        })
    );
    assert_ne!(key(&Ok::<u8, u8>(1)), key(&Err::<u8, u8>(1)));
    assert_ne!(key(&Ok::<u8, u8>(1)), key(&Some(1u8)));
    // A derived type inside keeps its own (fixed-struct) encoding, not serde's named form.
    let ok: Result<_, String> = Ok(charge());
    assert_eq!(
        key(&ok),
        key_with(OP, 1, None, |h| {
            h.variant("Ok");
            h.write(&charge());
        })
    );
    assert_ne!(key(&ok), serde_key(&ok));
}

#[test]
fn serde_bridge_spec_forms() {
    // Enum variants: name + exactly one value of the matching form.
    assert_eq!(
        serde_key(&Shape::Empty),
        key_with(OP, 1, None, |h| {
            h.variant("Empty");
            h.write_unit();
        })
    );
    assert_eq!(
        serde_key(&Shape::Circle(2.0)),
        key_with(OP, 1, None, |h| {
            h.variant("Circle");
            h.write_f64(2.0);
        })
    );
    assert_eq!(
        serde_key(&Shape::Rect(3, 4)),
        key_with(OP, 1, None, |h| {
            h.variant("Rect");
            h.write(&(3u32, 4u32));
        })
    );
    assert_eq!(
        serde_key(&Shape::Named {
            name: "tri".into(),
            sides: 3
        }),
        key_with(OP, 1, None, |h| {
            h.variant("Named");
            h.begin_struct();
            h.field("name");
            h.write("tri");
            h.field("sides");
            h.write_u8(3);
            h.end_struct(2);
        })
    );
    // Bytes through serde (serialize_bytes) use the bytes form.
    struct RawBytes(&'static [u8]);
    impl Serialize for RawBytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    assert_eq!(
        serde_key(&RawBytes(b"\x00\x01")),
        key(&AsBytes(b"\x00\x01"))
    );
    // collect_str is a string.
    assert_eq!(serde_key(&Shown("id")), key("<id>"));
    // Struct field order follows serialization; a different order is a different key.
    #[derive(Serialize)]
    struct Swapped {
        memo: Option<String>,
        customer: String,
        currency: String,
        amount: u64,
    }
    let c = charge();
    let swapped = Swapped {
        memo: c.memo.clone(),
        customer: c.customer.clone(),
        currency: c.currency.clone(),
        amount: c.amount,
    };
    assert_ne!(serde_key(&swapped), key(&c));
    // skip_serializing_if: skipped fields are neither written nor counted.
    #[derive(Serialize)]
    struct Sparse {
        a: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u8>,
    }
    assert_eq!(
        serde_key(&Sparse { a: 1, b: None }),
        key_with(OP, 1, None, |h| {
            h.begin_struct();
            h.field("a");
            h.write_u8(1);
            h.end_struct(1);
        })
    );
}

#[test]
fn serde_bridge_hashes_rich_types() {
    let req = Request {
        id: 1,
        tags: vec!["a".into(), "b".into()],
        extra: serde_json::json!({"z": [1, 2.5, null, true], "a": {"nested": "x"}, "n": -3}),
        shape: Shape::Named {
            name: "sq".into(),
            sides: 4,
        },
        parent: Some(Box::new(Request {
            id: 0,
            tags: vec![],
            extra: serde_json::Value::Null,
            shape: Shape::Circle(1.0),
            parent: None,
        })),
    };
    let k = serde_key(&req);
    assert_eq!(k, serde_key(&req), "deterministic");
    // JSON objects are maps: key order of the text does not matter.
    let a: serde_json::Value = serde_json::from_str(r#"{"x": 1, "y": [true, "s"]}"#).unwrap();
    let b: serde_json::Value = serde_json::from_str(r#"{"y": [true, "s"], "x": 1}"#).unwrap();
    assert_eq!(serde_key(&a), serde_key(&b));
    let native = BTreeMap::from([
        ("x", ViaSerde(serde_json::json!(1))),
        ("y", ViaSerde(serde_json::json!([true, "s"]))),
    ]);
    assert_eq!(serde_key(&a), key(&native));
    // Chrono serializes through collect_str: hashed as the string it displays.
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap();
    let text: String = serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap();
    assert_eq!(serde_key(&t), key(&text));
}

#[test]
fn serde_errors_become_key_material_errors() {
    let fail = |f: &dyn Fn(&mut KeyHasher)| {
        let mut h = KeyHasher::for_key(OP, 1);
        h.unscoped();
        f(&mut h);
        match h.finish_key() {
            Err(Error::KeyMaterial { reason }) => reason,
            other => panic!("expected Error::KeyMaterial, got {other:?}"),
        }
    };
    assert!(fail(&|h| h.write_serde(&Broken)).contains("broken on purpose"));
    // Nested in a serde map, a serde seq, and a native map (error recorded by a sub-hasher).
    assert!(fail(&|h| h.write_serde(&BTreeMap::from([(1u8, Broken)]))).contains("broken"));
    assert!(fail(&|h| h.write_serde(&vec![Some(Broken)])).contains("broken"));
    assert!(fail(&|h| h.write(&BTreeMap::from([(1u8, ViaSerde(Broken))]))).contains("broken"));
    assert!(
        fail(&|h| h.write(&BTreeSet::from([ViaSerde(Broken)].map(|b| SortKey(0, b)))))
            .contains("broken")
    );
    // The first error wins; later material is still accepted without panicking.
    let reason = fail(&|h| {
        h.write_serde(&Broken);
        h.write_serde(&Flaky(0.into()));
        h.write("more");
    });
    assert!(reason.contains("broken on purpose"), "{reason}");
    // A Display that changes between the two passes of collect_str.
    assert!(fail(&|h| h.write_serde(&Flaky(1.into()))).contains("collect_str"));
    // Fingerprints report the same way.
    let mut h = KeyHasher::for_fingerprint(OP, 1);
    h.write_serde(&Broken);
    assert!(matches!(
        h.finish_fingerprint(),
        Err(Error::KeyMaterial { .. })
    ));
}

/// Lets a non-`Ord` value sit in a `BTreeSet` (ordered by the number only).
struct SortKey<T>(u8, T);
impl<T> PartialEq for SortKey<T> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl<T> Eq for SortKey<T> {}
impl<T> PartialOrd for SortKey<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for SortKey<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}
impl<T: IdempotencyKey> IdempotencyKey for SortKey<T> {
    fn write_key(&self, out: &mut KeyHasher) {
        out.write(&(self.0, &self.1));
    }
}

// ---- golden vectors -------------------------------------------------------------------------

/// Fixed inputs covering every form of the encoding. Their digests below are frozen: if this
/// test fails, the encoding changed and every stored key would be lost. Do not update the table
/// unless the encoding version is bumped on purpose.
fn golden_inputs() -> Vec<(&'static str, String)> {
    let k = |f: &dyn Fn(&mut KeyHasher)| key_with("payments.charge", 1, None, f).to_string();
    let mut map20 = HashMap::new();
    for i in 0..20u32 {
        map20.insert(i, format!("v{i}"));
    }
    vec![
        ("empty material", k(&|_| {})),
        ("u64 42", k(&|h| h.write(&42u64))),
        (
            "unsigned widths",
            k(&|h| h.write(&(1u8, 2u16, 3u32, 4u64, 5u128, 6usize))),
        ),
        (
            "signed widths",
            k(&|h| h.write(&(-1i8, -2i16, -3i32, -4i64, -5i128, -6isize))),
        ),
        (
            "integer extremes",
            k(&|h| h.write(&(u64::MAX, i64::MIN, u128::MAX, i128::MIN))),
        ),
        (
            "floats",
            k(&|h| h.write(&(1.5f32, -0.0f64, f64::NAN, f32::INFINITY, 0.1f64))),
        ),
        ("bool char unit", k(&|h| h.write(&(true, false, 'λ', ())))),
        ("str", k(&|h| h.write("hello"))),
        ("unicode str", k(&|h| h.write("héllo ✓ 🦀"))),
        ("long str", k(&|h| h.write(&"0123456789".repeat(100)))),
        (
            "options",
            k(&|h| h.write(&(None::<u8>, Some("x"), Some(None::<u8>)))),
        ),
        ("vec u32", k(&|h| h.write(&vec![1u32, 2, 3]))),
        (
            "nested vecs",
            k(&|h| h.write(&vec![vec![1u8], vec![], vec![2, 3]])),
        ),
        ("array", k(&|h| h.write(&[10u8, 20, 30, 40]))),
        ("bytes", k(&|h| h.write(&AsBytes(b"\x00\xffraw")))),
        (
            "btreemap",
            k(&|h| h.write(&BTreeMap::from([("a", 1u64), ("b", 2)]))),
        ),
        ("hashmap 20", k(&|h| h.write(&map20))),
        ("hashset", k(&|h| h.write(&HashSet::from([3u32, 1, 2])))),
        ("duration", k(&|h| h.write(&Duration::new(90, 5)))),
        ("charge struct", k(&|h| h.write(&charge()))),
        ("charge struct via serde", k(&|h| h.write_serde(&charge()))),
        (
            "enum variants via serde",
            k(&|h| {
                h.write_serde(&vec![
                    Shape::Empty,
                    Shape::Circle(1.0),
                    Shape::Rect(2, 3),
                    Shape::Named {
                        name: "n".into(),
                        sides: 5,
                    },
                ])
            }),
        ),
        (
            "json value via serde",
            k(&|h| h.write_serde(&serde_json::json!({"b": [1, -2, 3.5, null], "a": {"s": "t"}}))),
        ),
        (
            "two material values",
            k(&|h| {
                h.write("order-1");
                h.write(&7u32);
            }),
        ),
        (
            "scoped",
            key_with("payments.charge", 1, Some("tenant-7"), |h| {
                h.write("order-1")
            })
            .to_string(),
        ),
        (
            "version 2",
            key_with("payments.charge", 2, None, |h| h.write(&42u64)).to_string(),
        ),
        (
            "other operation",
            key_with("mail.send", 1, None, |h| h.write(&42u64)).to_string(),
        ),
        ("collect_str via serde", k(&|h| h.write_serde(&Shown("id")))),
        (
            "fingerprint",
            fingerprint("payments.charge", 1, |h| h.write(&("payload", 3u8))).to_string(),
        ),
    ]
}

const GOLDEN: &[(&str, &str)] = &[
    (
        "empty material",
        "13de151635fe76702eec4720c96267b9f20fecff510a3db65e527ff859b6ba8a",
    ),
    (
        "u64 42",
        "e3b6f3de4a10f4654fa735d1485912ab7058b6ef1475fd53a29786b9c67cc1cc",
    ),
    (
        "unsigned widths",
        "7f2e847c8b31301a8694664c822ffaf002793b3ef4b5e2db745861ce9328cadb",
    ),
    (
        "signed widths",
        "54ecbe6ffa4b6b68601cb49ad4889fa8585956fadf33f3d5c1f493784ff794b7",
    ),
    (
        "integer extremes",
        "58419cf8fa4dd37b9e24bc7f2e385c2fedd34df2bed66763afcfc80e09b5113d",
    ),
    (
        "floats",
        "75002fe415c57dbc019e138405a7db4037a9290bb2448106d79a9126b2b4ff2c",
    ),
    (
        "bool char unit",
        "7093dda980d426055a2428645f70fa94f2a4cdae56debd849681263aaf332784",
    ),
    (
        "str",
        "afc893e0137973c1fcd4761f4f9590da8c987f5ed45377e8bef1595a6cbb21c8",
    ),
    (
        "unicode str",
        "c47afda4088909cf49e36cac0e813ab9d0037e0ab9aac70916a095bd7ac0acf8",
    ),
    (
        "long str",
        "980e6ae7f62c918cc869226af6947a84523574361ee433a35ac788c336c5ab4a",
    ),
    (
        "options",
        "6b1067e2d769c1f19fbbad6701ab58deaca2c45aee800808d9c65ac2b8ded8e0",
    ),
    (
        "vec u32",
        "5cc4428207a1cbf601442153ce77d3ff28a7cab91f081ae612076b2ccc9b23c6",
    ),
    (
        "nested vecs",
        "1f303ba2eefd1de6cc8077ca89d5d06e3ac187db22eec1e1f9c2d75950e80800",
    ),
    (
        "array",
        "374556d2f1305e5b9a0a7a7cc6cb4a4c4cb10f3d3235c809b04b7fd25e51372c",
    ),
    (
        "bytes",
        "f35aee3f59a25259002cab8c0b7891f1b554891849a520dc5932a8a8264f2af7",
    ),
    (
        "btreemap",
        "2c63a611222b1fc9dcd71b997ea6c1625ed4c082032886d822ea27aa9542d27e",
    ),
    (
        "hashmap 20",
        "cd64d591796d741c98de3ba6a08ed05e72c3f4327e32b85fd9526ad2faa7b40b",
    ),
    (
        "hashset",
        "cecc0f9f154d64d502505797727d9fa06672892840d649afc01f4569435b586a",
    ),
    (
        "duration",
        "9f7f0f052fc08af06f25ddb987a5a27acf27b2eeae0c4d7ad3dd0b800e2a0f68",
    ),
    (
        "charge struct",
        "6cacf0ac9419d52b3095a727fd342403712c5970e4eb07a2eb6a04ea5fd5520c",
    ),
    (
        "charge struct via serde",
        "d541243f0cbdc956508fda34439dbf349ca75cadcf014d4fdce74a0b1c2f2f4e",
    ),
    (
        "enum variants via serde",
        "9664dc15764dc6e69f8d7b9b82d66528b49c4a80c6c7b6c19d8c51762902efcd",
    ),
    (
        "json value via serde",
        "735f96965b456eed33350097b6c2c8c65e0a38649cb47d467839073774eef1be",
    ),
    (
        "two material values",
        "bb242f31ddc59807a57472c3b5d895445a2eb00f7174577fea88d2a2b9096d30",
    ),
    (
        "scoped",
        "281ec8835b0cd39d2cff56d651430efd7ac630260e0f429a1773424f99b6e37e",
    ),
    (
        "version 2",
        "6c9dd1ceaff914a80c951e978fbc41050d0661dd65925b499f3949495a9804c0",
    ),
    (
        "other operation",
        "57d1f3702fe39c35ad480ed30e46e0aaeae4110bda60d85c40acd30e97bfa41b",
    ),
    (
        "collect_str via serde",
        "a2e14e15268a0835c464277b82c7108c260c0bab25279b2097ec9bf15a253d09",
    ),
    (
        "fingerprint",
        "bf8deab037f4d64041243894f0ce2382cbfa8ac5eb408648281f9ffd1c9dac96",
    ),
];

#[test]
fn golden_vectors() {
    let actual = golden_inputs();
    let table: Vec<String> = actual
        .iter()
        .map(|(name, hex)| format!("    ({name:?}, \"{hex}\"),"))
        .collect();
    let table = table.join("\n");
    assert!(
        GOLDEN.len() >= 20,
        "golden table too small; current values:\n{table}"
    );
    assert_eq!(
        GOLDEN.len(),
        actual.len(),
        "golden table and inputs differ in length; current values:\n{table}"
    );
    let mut changed = Vec::new();
    for ((name, hex), (golden_name, golden_hex)) in actual.iter().zip(GOLDEN) {
        assert_eq!(name, golden_name, "golden inputs were reordered");
        if hex != golden_hex {
            changed.push(*name);
        }
    }
    assert!(
        changed.is_empty(),
        "the key encoding changed for {changed:?}: this breaks every stored key.\ncurrent values:\n{table}"
    );
    let mut unique: Vec<&str> = GOLDEN.iter().map(|(_, h)| *h).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        GOLDEN.len(),
        "golden digests must be distinct"
    );
}

/// The spec, written out by hand: builds the byte stream of the module docs independently of
/// `KeyHasher` and hashes it with blake3 keyed by the operation's derived hash key.
mod by_hand {
    /// A length or count: unsigned LEB128, minimal form.
    pub fn len(out: &mut Vec<u8>, mut n: u64) {
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(low);
                return;
            }
            out.push(low | 0x80);
        }
    }

    pub fn str_(out: &mut Vec<u8>, s: &str) {
        out.push(0x10);
        len(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// An operation's hash key: `derive_key(context, str(op) ‖ u32(version))`.
    fn hash_key(context: &str, op: &str, version: u32) -> [u8; 32] {
        let mut material = Vec::new();
        str_(&mut material, op);
        material.push(0x03);
        material.extend_from_slice(&version.to_le_bytes());
        blake3::derive_key(context, &material)
    }

    /// A key of `payments.charge` version 1 whose stream (scope marker, material) is `bytes`.
    pub fn key_hex(bytes: &[u8]) -> String {
        let k = hash_key("idem key encoding v1", "payments.charge", 1);
        blake3::keyed_hash(&k, bytes).to_hex().to_string()
    }

    /// A fingerprint of `payments.charge` version 1 whose payload stream is `bytes`.
    pub fn fp_hex(bytes: &[u8]) -> String {
        let k = hash_key("idem fingerprint encoding v1", "payments.charge", 1);
        blake3::keyed_hash(&k, bytes).to_hex().to_string()
    }
}

fn serde_key_of_charge() -> String {
    key_with("payments.charge", 1, None, |h| h.write_serde(&charge())).to_string()
}

fn golden(name: &str) -> &'static str {
    GOLDEN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .expect("golden entry")
}

#[test]
fn golden_vectors_match_the_written_spec() {
    use by_hand::*;

    // "u64 42": header, unscoped, u64.
    let mut b = Vec::new();
    b.push(0x00);
    b.push(0x04);
    b.extend_from_slice(&42u64.to_le_bytes());
    assert_eq!(key_hex(&b), golden("u64 42"));

    // "scoped": header, scope marker 01 + scope string, material string.
    let mut b = Vec::new();
    b.push(0x01);
    str_(&mut b, "tenant-7");
    str_(&mut b, "order-1");
    assert_eq!(key_hex(&b), golden("scoped"));

    // "btreemap": map tag, count, sorted entry digests of str key ‖ u64 value.
    let mut entries: Vec<[u8; 32]> = [("a", 1u64), ("b", 2)]
        .iter()
        .map(|(k, v)| {
            let mut e = Vec::new();
            str_(&mut e, k);
            e.push(0x04);
            e.extend_from_slice(&v.to_le_bytes());
            *blake3::hash(&e).as_bytes()
        })
        .collect();
    entries.sort();
    let mut b = Vec::new();
    b.push(0x00);
    b.push(0x17);
    len(&mut b, 2);
    for e in &entries {
        b.extend_from_slice(e);
    }
    assert_eq!(key_hex(&b), golden("btreemap"));

    // "charge struct": the derive's fixed-struct form: tag, count, the values in field-name
    // order, no names.
    let mut b = Vec::new();
    b.push(0x00);
    b.push(0x1b);
    len(&mut b, 4);
    b.push(0x04);
    b.extend_from_slice(&1999u64.to_le_bytes());
    str_(&mut b, "EUR");
    str_(&mut b, "cus_42");
    b.push(0x13);
    str_(&mut b, "first order");
    assert_eq!(key_hex(&b), golden("charge struct"));

    // "charge struct via serde": the named struct form: tag, (name, value) per field in
    // serialization order, END + count.
    let mut b = Vec::new();
    b.push(0x00);
    b.push(0x19);
    str_(&mut b, "amount");
    b.push(0x04);
    b.extend_from_slice(&1999u64.to_le_bytes());
    str_(&mut b, "currency");
    str_(&mut b, "EUR");
    str_(&mut b, "customer");
    str_(&mut b, "cus_42");
    str_(&mut b, "memo");
    b.push(0x13);
    str_(&mut b, "first order");
    b.push(0x15);
    len(&mut b, 4);
    assert_eq!(key_hex(&b), golden("charge struct via serde"));
    assert_eq!(serde_key_of_charge(), golden("charge struct via serde"));

    // "nested vecs": seq of seqs, each closed by END + count.
    let mut b = Vec::new();
    b.push(0x00);
    b.push(0x14);
    for inner in [&[1u8][..], &[], &[2, 3]] {
        b.push(0x14);
        for x in inner {
            b.extend_from_slice(&[0x01, *x]);
        }
        b.push(0x15);
        len(&mut b, inner.len() as u64);
    }
    b.push(0x15);
    len(&mut b, 3);
    assert_eq!(key_hex(&b), golden("nested vecs"));

    // "long str": a 1000-byte string (two-byte length `e8 07`; the stream outgrows the
    // hasher's inline buffer).
    let mut b = Vec::new();
    b.push(0x00);
    b.extend_from_slice(&[0x10, 0xe8, 0x07]);
    b.extend_from_slice("0123456789".repeat(100).as_bytes());
    assert_eq!(key_hex(&b), golden("long str"));

    // "fingerprint": fingerprint header (no scope marker), tuple of (str, u8).
    let mut b = Vec::new();
    b.push(0x16);
    len(&mut b, 2);
    str_(&mut b, "payload");
    b.extend_from_slice(&[0x01, 3]);
    assert_eq!(fp_hex(&b), golden("fingerprint"));
}

/// Why the serde bridge keeps field names: serde may leave fields out at run time, and without
/// names `{a: Some(5)}` and `{b: Some(5)}` would be the same stream.
#[test]
fn serde_structs_with_skipped_fields_stay_distinct() {
    #[derive(serde::Serialize)]
    struct Filter {
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    }
    let min_only = Filter {
        min: Some(5),
        max: None,
    };
    let max_only = Filter {
        min: None,
        max: Some(5),
    };
    assert_ne!(serde_key(&min_only), serde_key(&max_only));
}
