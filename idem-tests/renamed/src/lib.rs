//! `#[idempotent]` and `#[derive(IdempotencyKey)]` through a renamed dependency: the runtime is
//! this crate's `idem` (`idem = { package = "idem-runtime", … }` in Cargo.toml), so generated
//! code that named `::idem_runtime` would not compile. Warnings (and needless qualified paths in
//! the generated code) are errors.

#![deny(warnings, unused_qualifications)]

use std::sync::atomic::{AtomicU32, Ordering};

use idem::{IdempotencyKey, idempotent};
use serde::{Deserialize, Serialize};

/// A request whose key is derived through the renamed crate.
#[derive(IdempotencyKey, Serialize, Deserialize, Debug, Clone)]
#[idem(crate = "idem")]
pub struct Transfer {
    /// Source account.
    pub from: String,
    /// Destination account.
    pub to: String,
    /// Amount in cents.
    pub amount_cents: u64,
    /// Free text, not part of the key.
    #[idem(exclude)]
    pub memo: String,
}

/// What a transfer returns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Confirmation {
    /// Transfer id.
    pub id: String,
    /// Which run of the body produced it.
    pub run: u32,
}

/// How many times the body of [`transfer`] ran.
pub static TRANSFER_RUNS: AtomicU32 = AtomicU32::new(0);

/// Moves money once per distinct request.
#[idempotent(crate = "idem", name = "renamed.transfer", ttl = "1h")]
pub async fn transfer(req: &Transfer, attempt: u32) -> Result<Confirmation, idem::Error> {
    let _ = attempt;
    let run = TRANSFER_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Confirmation {
        id: format!("{}->{}:{}", req.from, req.to, req.amount_cents),
        run,
    })
}
