//! Key-material fixtures shared by the key tests.

use idem_runtime::key::{IdempotencyKey, KeyHasher};
use serde::Serialize;

/// A 4-field request with a hand-written key impl: what `#[derive(IdempotencyKey)]` writes for
/// it (the struct form, fields sorted by name). Declared in name order so that the serde bridge
/// (declaration order) agrees with the native impl.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Charge {
    /// Amount in cents.
    pub amount: u64,
    /// ISO currency code.
    pub currency: String,
    /// Customer id.
    pub customer: String,
    /// Optional note.
    pub memo: Option<String>,
}

impl IdempotencyKey for Charge {
    fn write_key(&self, out: &mut KeyHasher) {
        out.begin_struct();
        out.field("amount");
        out.write(&self.amount);
        out.field("currency");
        out.write(&self.currency);
        out.field("customer");
        out.write(&self.customer);
        out.field("memo");
        out.write(&self.memo);
        out.end_struct(4);
    }
}

/// The fixed `Charge` used by the golden vectors and allocation tests.
pub fn charge() -> Charge {
    Charge {
        amount: 1999,
        currency: "EUR".into(),
        customer: "cus_42".into(),
        memo: Some("first order".into()),
    }
}
