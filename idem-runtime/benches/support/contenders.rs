//! The contenders of the engine benchmarks (`engine.rs`, `engine_paired.rs`): the workload, the
//! naive tutorial handler, moka, and idem by hand and through `#[idempotent]`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use idem_runtime::{IdempotencyKey, KeyHasher, MemoryStore, Operation, Store, idempotent};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::RwLock;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Charge {
    pub(crate) customer: String,
    pub(crate) amount_cents: u64,
    pub(crate) currency: String,
    pub(crate) memo: Option<String>,
}

/// What `#[derive(IdempotencyKey)]` writes: the fixed-struct form, the values in the order of
/// the field names.
impl IdempotencyKey for Charge {
    fn write_key(&self, out: &mut KeyHasher) {
        out.begin_fixed_struct(4);
        self.amount_cents.write_key(out);
        self.currency.write_key(out);
        self.customer.write_key(out);
        self.memo.write_key(out);
    }
}

/// The same fields as [`Charge`], with the derived key (the bytes of the hand-written impl).
#[derive(Debug, Clone, idem_runtime::IdempotencyKey)]
pub(crate) struct DerivedCharge {
    pub(crate) customer: String,
    pub(crate) amount_cents: u64,
    pub(crate) currency: String,
    pub(crate) memo: Option<String>,
}

impl From<Charge> for DerivedCharge {
    fn from(c: Charge) -> Self {
        DerivedCharge {
            customer: c.customer,
            amount_cents: c.amount_cents,
            currency: c.currency,
            memo: c.memo,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Receipt {
    pub(crate) id: String,
    pub(crate) amount_cents: u64,
    pub(crate) status: String,
}

pub(crate) static OP: Operation = Operation::new("bench.charge");

/// First-call iterations between two fresh stores.
pub(crate) const CHUNK: u64 = 10_000;

pub(crate) fn charge(amount_cents: u64) -> Charge {
    Charge {
        customer: "cus_4242424242".to_owned(),
        amount_cents,
        currency: "eur".to_owned(),
        memo: Some("order #1234".to_owned()),
    }
}

/// The body every contender runs.
pub(crate) fn receipt(charge: &Charge) -> Receipt {
    receipt_for(charge.amount_cents)
}

pub(crate) fn receipt_for(amount_cents: u64) -> Receipt {
    Receipt {
        id: "rcpt_0123456789abcdef".to_owned(),
        amount_cents,
        status: "succeeded".to_owned(),
    }
}

/// The `#[idempotent]` contender: the key is the macro's hash of `req`, the store a parameter.
#[idempotent(name = "bench.charge_macro", store = store)]
pub(crate) async fn charge_macro(
    req: &DerivedCharge,
    #[idem(exclude)] store: &Arc<dyn Store>,
) -> Result<Receipt, idem_runtime::Error> {
    Ok(receipt_for(req.amount_cents))
}

pub(crate) fn string_key(c: &Charge) -> String {
    format!(
        "charge:{}:{}:{}:{}",
        c.customer,
        c.amount_cents,
        c.currency,
        c.memo.as_deref().unwrap_or("")
    )
}

// ---- the naive tutorial handler -----------------------------------------------------------

#[derive(Clone)]
pub(crate) enum NaiveRecord<T> {
    InProgress {
        #[allow(dead_code)]
        started_at: chrono::DateTime<chrono::Utc>,
    },
    Completed {
        value: T,
        #[allow(dead_code)]
        completed_at: chrono::DateTime<chrono::Utc>,
    },
}

pub(crate) enum Check<T> {
    New,
    Duplicate(T),
    InFlight,
}

pub(crate) struct Naive<T> {
    pub(crate) records: RwLock<HashMap<String, NaiveRecord<T>>>,
}

impl<T: Clone> Naive<T> {
    pub(crate) fn new() -> Self {
        Naive {
            records: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) async fn check(&self, key: &str) -> Check<T> {
        match self.records.read().await.get(key) {
            None => Check::New,
            Some(NaiveRecord::Completed { value, .. }) => Check::Duplicate(value.clone()),
            Some(NaiveRecord::InProgress { .. }) => Check::InFlight,
        }
    }

    pub(crate) async fn start(&self, key: &str) -> bool {
        let mut records = self.records.write().await;
        if records.contains_key(key) {
            return false;
        }
        let started_at = chrono::Utc::now();
        records.insert(key.to_owned(), NaiveRecord::InProgress { started_at });
        true
    }

    pub(crate) async fn complete(&self, key: &str, value: T) {
        let completed_at = chrono::Utc::now();
        self.records.write().await.insert(
            key.to_owned(),
            NaiveRecord::Completed {
                value,
                completed_at,
            },
        );
    }

    /// The tutorial's handler: check, start, run, complete.
    pub(crate) async fn handle<F: Future<Output = T>>(&self, key: &str, body: F) -> Option<T> {
        match self.check(key).await {
            Check::Duplicate(value) => return Some(value),
            Check::InFlight => return None,
            Check::New => {}
        }
        if !self.start(key).await {
            return None;
        }
        let value = body.await;
        self.complete(key, value.clone()).await;
        Some(value)
    }
}

// ---- the contenders -----------------------------------------------------------------------

pub(crate) struct Contenders {
    pub(crate) floor: HashMap<String, Receipt>,
    pub(crate) naive: Naive<Receipt>,
    pub(crate) moka: moka::future::Cache<String, Receipt>,
    pub(crate) store: Arc<dyn Store>,
}

impl Contenders {
    pub(crate) fn new() -> Self {
        Contenders {
            floor: HashMap::new(),
            naive: Naive::new(),
            moka: moka::future::Cache::new(1_000_000),
            store: Arc::new(MemoryStore::new()),
        }
    }

    pub(crate) fn floor(&mut self, c: &Charge) -> Receipt {
        let key = string_key(c);
        if let Some(r) = self.floor.get(&key) {
            return r.clone();
        }
        let r = receipt(c);
        self.floor.insert(key, r.clone());
        r
    }

    pub(crate) async fn naive(&self, c: &Charge) -> Receipt {
        let key = string_key(c);
        self.naive.handle(&key, async { receipt(c) }).await.unwrap()
    }

    pub(crate) async fn moka(&self, c: &Charge) -> Receipt {
        self.moka
            .get_with(string_key(c), async { receipt(c) })
            .await
    }

    pub(crate) async fn idem(&self, c: &Charge) -> Receipt {
        let key = OP.key(c).unwrap();
        let out: Result<Receipt, idem_runtime::Error> = OP
            .call(key)
            .store(&self.store)
            .run(async { Ok(receipt(c)) })
            .await;
        out.unwrap()
    }

    /// The same, through `run_cached`: replays on the memory store clone the value the first
    /// replay decoded (`Receipt: Clone`) instead of decoding it each time.
    pub(crate) async fn idem_cached(&self, c: &Charge) -> Receipt {
        let key = OP.key(c).unwrap();
        let out: Result<Receipt, idem_runtime::Error> = OP
            .call(key)
            .store(&self.store)
            .run_cached(async { Ok(receipt(c)) })
            .await;
        out.unwrap()
    }

    pub(crate) async fn idem_macro(&self, c: &DerivedCharge) -> Receipt {
        charge_macro(c, &self.store).await.unwrap()
    }
}

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
