//! The quickstart: the same charge twice runs once; 100 concurrent duplicates run once; a failed
//! call is retried and runs again. Runs on the in-memory default store, no setup needed.
//!
//! ```text
//! cargo run -p idem-examples --bin quickstart
//! cargo expand -p idem-examples --bin quickstart   # what #[idempotent] generates
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use idem_runtime::{IdempotencyKey, idempotent};
use serde::{Deserialize, Serialize};

static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);
static RECEIPTS: AtomicU32 = AtomicU32::new(0);

/// The request: its content is the idempotency key, except the per-call timestamp.
#[derive(IdempotencyKey, Serialize, Deserialize, Clone)]
struct Charge {
    customer: String,
    amount_cents: u64,
    order: u32,
    #[idem(exclude)]
    requested_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
    amount_cents: u64,
}

/// A stand-in for a payment provider's client.
struct Gateway {
    decline: bool,
}

#[derive(Debug)]
enum PayError {
    Declined,
    Idem(idem_runtime::Error),
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

impl From<idem_runtime::Error> for PayError {
    fn from(error: idem_runtime::Error) -> Self {
        PayError::Idem(error)
    }
}

/// Charges once per request content, however often it is called.
#[idempotent(ttl = "24h", name = "quickstart.charge")]
async fn charge(req: Charge, #[idem(exclude)] gateway: &Gateway) -> Result<Receipt, PayError> {
    GATEWAY_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await; // the payment provider
    if gateway.decline {
        return Err(PayError::Declined);
    }
    Ok(Receipt {
        id: format!("rcpt_{}", RECEIPTS.fetch_add(1, Ordering::SeqCst) + 1),
        amount_cents: req.amount_cents,
    })
}

fn request(customer: &str, amount_cents: u64, order: u32) -> Charge {
    Charge {
        customer: customer.into(),
        amount_cents,
        order,
        requested_at: SystemTime::now(),
    }
}

fn runs() -> u32 {
    GATEWAY_CALLS.swap(0, Ordering::SeqCst)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ok = Gateway { decline: false };

    // 1. The same content twice (only the excluded timestamp differs): the body runs once.
    let first = charge(request("cus_42", 1999, 1), &ok).await?;
    let second = charge(request("cus_42", 1999, 1), &ok).await?;
    assert_eq!(first, second);
    println!(
        "same input twice:        body ran {} time(s); both calls got {}",
        runs(),
        first.id
    );

    // 2. 100 concurrent duplicates: one runs, 99 wait for it and get its result.
    let calls = (0..100).map(|_| {
        tokio::spawn(async {
            let gateway = Gateway { decline: false };
            charge(request("cus_7", 500, 2), &gateway).await
        })
    });
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
    let failed = charge(request("cus_9", 250, 3), &Gateway { decline: true }).await;
    let retried = charge(request("cus_9", 250, 3), &ok).await?;
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
