use idem_runtime::idempotent;

#[idempotent(key = "idempotency_key")]
async fn charge(idempotency_key: String, amount_cents: u64) -> Result<u64, idem_runtime::Error> {
    Ok(amount_cents + idempotency_key.len() as u64)
}

fn main() {}
