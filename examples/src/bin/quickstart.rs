//! The quickstart: the same charge twice runs once; 100 concurrent duplicates run once; a failed
//! call is retried and runs again. Runs on the in-memory default store, no setup needed.
//!
//! ```text
//! cargo run -p idem-examples --bin quickstart
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use idem_runtime::{Error, Operation};
use serde::{Deserialize, Serialize};

static CHARGE: Operation =
    Operation::new("quickstart.charge").with_ttl(Duration::from_secs(24 * 3600));
static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);
static RECEIPTS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
    amount_cents: u64,
}

#[derive(Debug)]
enum PayError {
    Declined,
    Idem(Error),
}

impl std::fmt::Display for PayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayError::Declined => f.write_str("card declined"),
            PayError::Idem(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for PayError {}

impl From<Error> for PayError {
    fn from(error: Error) -> Self {
        PayError::Idem(error)
    }
}

/// Charges `customer` once per (customer, amount, order) — however often it is called.
async fn charge(
    customer: &str,
    amount_cents: u64,
    order: u32,
    decline: bool,
) -> Result<Receipt, PayError> {
    let key = CHARGE.key(&(customer, amount_cents, order))?;
    CHARGE
        .call(key)
        .run(async {
            GATEWAY_CALLS.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await; // the payment gateway
            if decline {
                return Err(PayError::Declined);
            }
            Ok(Receipt {
                id: format!("rcpt_{}", RECEIPTS.fetch_add(1, Ordering::SeqCst) + 1),
                amount_cents,
            })
        })
        .await
}

fn runs() -> u32 {
    GATEWAY_CALLS.swap(0, Ordering::SeqCst)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The same input twice: the body runs once, the second call replays.
    let first = charge("cus_42", 1999, 1, false).await?;
    let second = charge("cus_42", 1999, 1, false).await?;
    assert_eq!(first, second);
    println!(
        "same input twice:        body ran {} time(s); both calls got {}",
        runs(),
        first.id
    );

    // 2. 100 concurrent duplicates: one runs, 99 wait for it and get its result.
    let calls = (0..100).map(|_| tokio::spawn(charge("cus_7", 500, 2, false)));
    let mut ids = std::collections::BTreeSet::new();
    for call in calls {
        ids.insert(call.await??.id);
    }
    println!(
        "100 concurrent calls:    body ran {} time(s); {} distinct receipt(s)",
        runs(),
        ids.len()
    );

    // 3. A failure is not recorded: the retry runs the body again.
    let failed = charge("cus_9", 250, 3, true).await;
    let retried = charge("cus_9", 250, 3, false).await?;
    println!(
        "failed, then retried:    body ran {} time(s); first {}, retry got {}",
        runs(),
        match &failed {
            Err(error) => error.to_string(),
            Ok(receipt) => receipt.id.clone(),
        },
        retried.id
    );
    println!("store: {}", idem_runtime::store_name()?);
    Ok(())
}
