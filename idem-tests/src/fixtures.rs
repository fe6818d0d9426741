//! Key-material fixtures shared by the key tests.

use idem_runtime::key::{IdempotencyKey, KeyHasher};
use serde::Serialize;

/// A 4-field request with a hand-written key impl: what `#[derive(IdempotencyKey)]` writes for
/// it (the fixed-struct form: the values in the order of the field names, without the names).
/// Through the serde bridge it is written in the named struct form instead.
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
        out.begin_fixed_struct(4);
        out.write(&self.amount);
        out.write(&self.currency);
        out.write(&self.customer);
        out.write(&self.memo);
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
