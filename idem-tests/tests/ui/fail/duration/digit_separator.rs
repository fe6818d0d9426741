use idem_runtime::idempotent;

#[idempotent(ttl = "1_000s")]
async fn charge(id: u64) -> Result<u64, idem_runtime::Error> {
    Ok(id)
}

fn main() {}
