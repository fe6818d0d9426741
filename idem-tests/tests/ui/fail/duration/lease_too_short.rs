use idem_runtime::idempotent;

#[idempotent(lease = "2ms")]
async fn charge(id: u64) -> Result<u64, idem_runtime::Error> {
    Ok(id)
}

fn main() {}
