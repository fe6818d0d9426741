use idem_runtime::{Error, idempotent};

#[idempotent(ttl = "30s")]
async fn charge(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {}
