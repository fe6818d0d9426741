use idem_runtime::idempotent;

#[idempotent(ttl = "1h", name = "a", ttl = "2h")]
async fn charge(id: u64) -> Result<u64, idem_runtime::Error> {
    Ok(id)
}

fn main() {}
