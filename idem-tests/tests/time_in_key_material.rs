//! A time value that reaches key material through a `Serialize`-only type makes every key unique.
//! The macros cannot see it (their lint reads type names); the serde bridge warns once per type
//! and field instead, and stays quiet about what is `#[idem(include)]`d.
//!
//! The warnings are deduplicated per process, so every test uses types of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, Utc};
use idem_runtime::key::AsSerde;
use idem_runtime::{Error, IdempotencyKey, MemoryStore, Operation, Store, idempotent, with_store};
use idem_tests::logs::capture;
use serde::Serialize;

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("holds a time value"))
        .collect()
}

#[derive(Serialize)]
struct Order {
    sku: String,
    placed_at: SystemTime,
}

static PLACED: AtomicU32 = AtomicU32::new(0);

#[idempotent]
async fn place(order: &Order) -> Result<u32, Error> {
    Ok(PLACED.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn a_system_time_in_a_serde_parameter_is_reported_once_with_its_type_and_field() {
    let (logs, _guard) = capture();
    with_store(store(), async {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..3 {
            let order = Order {
                sku: "book".into(),
                placed_at: at + Duration::from_millis(i),
            };
            place(&order).await.unwrap();
        }
    })
    .await;
    // What the warning is about: the same order, three keys.
    assert_eq!(PLACED.load(Ordering::SeqCst), 3);
    let lines = logs.take();
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "{lines:#?}");
    let line = warned[0];
    for part in [
        "`time_in_key_material::Order`",
        "a `std::time::SystemTime`, field `placed_at` of `Order`",
        "every call's key unique",
        "#[idem(exclude)]",
        "#[idem(include)]",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
}

#[derive(Serialize)]
struct Envelope {
    source: String,
    sent: DateTime<Utc>,
}

#[derive(IdempotencyKey)]
struct Delivery {
    id: String,
    envelope: Envelope,
}

#[test]
fn a_chrono_date_time_inside_a_derived_types_serde_field_is_reported() {
    let (logs, _guard) = capture();
    let op = Operation::new("time_in_key_material::deliver");
    let delivery = Delivery {
        id: "d-1".into(),
        envelope: Envelope {
            source: "billing".into(),
            sent: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        },
    };
    op.key(&delivery).unwrap();
    let lines = logs.take();
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "{lines:#?}");
    assert!(warned[0].contains("`time_in_key_material::Envelope`"));
    assert!(
        warned[0].contains("(a `DateTime`, field `sent` of `Envelope`)"),
        "{}",
        warned[0]
    );
    assert!(warned[0].contains("field `sent` of `Envelope`"));
}

#[derive(Serialize)]
struct Schedule {
    runs: BTreeMap<String, SystemTime>,
}

#[test]
fn a_time_value_inside_a_map_and_a_bare_one_are_reported() {
    let (logs, _guard) = capture();
    let op = Operation::new("time_in_key_material::schedule");
    let schedule = Schedule {
        runs: BTreeMap::from([("nightly".to_owned(), SystemTime::now())]),
    };
    op.key(&AsSerde(&schedule)).unwrap();
    op.key(&AsSerde(&SystemTime::now())).unwrap();
    let lines = logs.take();
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 2, "{lines:#?}");
    assert!(warned[0].contains("field `runs` of `Schedule`"));
    assert!(warned[1].contains("`std::time::SystemTime`"));
    assert!(
        warned[1].contains("`std::time::SystemTime`)"),
        "no field: {}",
        warned[1]
    );
}

#[derive(Serialize)]
struct Booking {
    room: u32,
    day: NaiveDate,
    due: SystemTime,
}

#[derive(IdempotencyKey)]
struct Reminder {
    text: String,
    #[idem(include)]
    at: SystemTime,
    #[idem(include)]
    at_utc: DateTime<Utc>,
    #[idem(include)]
    booking: Booking,
}

#[idempotent]
async fn remind(reminder: &Reminder, #[idem(include)] due: SystemTime) -> Result<u32, Error> {
    Ok(reminder.text.len() as u32 + u32::from(due > SystemTime::UNIX_EPOCH))
}

#[tokio::test]
async fn included_time_values_and_dates_are_not_reported() {
    let (logs, _guard) = capture();
    let booking = || Booking {
        room: 7,
        day: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        due: SystemTime::now(),
    };
    let reminder = Reminder {
        text: "call".into(),
        at: SystemTime::now(),
        at_utc: Utc::now(),
        booking: booking(),
    };
    with_store(store(), remind(&reminder, SystemTime::now()))
        .await
        .unwrap();
    // The guard ends with the included value: the next time value is reported again.
    let op = Operation::new("time_in_key_material::book");
    op.key(&AsSerde(&booking())).unwrap();
    let lines = logs.take();
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "{lines:#?}");
    assert!(
        warned[0].contains("field `due` of `Booking`"),
        "{}",
        warned[0]
    );
}

/// PATCH-style: an absent note, a note cleared (`Some(None)`, written as `null` and read back
/// as such by `double_option`), or a note set.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Stamped {
    at: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    note: Option<Option<String>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Some)
}

#[idempotent]
async fn stamp(id: u32) -> Result<Stamped, Error> {
    Ok(Stamped {
        at: DateTime::from_timestamp(1_700_000_000 + i64::from(id), 0).unwrap(),
        note: Some(None),
    })
}

/// A returned value with an ambiguous `null` is checked to read back as itself through the
/// serde bridge: a value, not key material, so its time value is not reported.
#[tokio::test]
async fn a_time_value_in_a_returned_value_is_not_reported() {
    let (logs, _guard) = capture();
    let first = with_store(store(), stamp(1)).await.unwrap();
    assert_eq!(first.note, Some(None));
    let lines = logs.take();
    assert!(warnings(&lines).is_empty(), "{lines:#?}");
}

struct Exploding;

impl Serialize for Exploding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Exploding", 2)?;
        st.serialize_field("at", &SystemTime::UNIX_EPOCH)?;
        panic!("a Serialize impl that panics");
    }
}

#[derive(Serialize)]
struct Calm {
    id: u32,
}

#[derive(Serialize)]
struct Item {
    sku: String,
}

#[test]
fn a_panicking_serialize_impl_leaves_nothing_behind_and_fields_are_named_right() {
    let (logs, _guard) = capture();
    let op = Operation::new("time_in_key_material::after_panic");
    let panicked = std::panic::catch_unwind(|| op.key(&AsSerde(Exploding)));
    assert!(panicked.is_err());
    op.key(&AsSerde(Calm { id: 7 })).unwrap();
    let lines = logs.take();
    assert!(warnings(&lines).is_empty(), "{lines:#?}");

    // A time value in a tuple, before a struct: not in the struct's field.
    op.key(&AsSerde(&(
        SystemTime::UNIX_EPOCH,
        Item { sku: "b".into() },
    )))
    .unwrap();
    let lines = logs.take();
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "{lines:#?}");
    assert!(
        warned[0].contains("(a `std::time::SystemTime`)"),
        "no field: {}",
        warned[0]
    );
}
