use idem_runtime::idempotent;

#[idempotent(on_conflict = "reject", wait_timeout = "5s")]
async fn charge(id: u64) -> Result<u64, idem_runtime::Error> {
    Ok(id)
}

fn main() {}
