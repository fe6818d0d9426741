use idem_runtime::idempotent;

#[idempotent(key = &42)]
async fn charge(order_id: u64, amount_cents: u64) -> Result<u64, idem_runtime::Error> {
    Ok(order_id + amount_cents)
}

fn main() {}
