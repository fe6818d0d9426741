use idem_runtime::idempotent;

use std::time::SystemTime;

#[idempotent]
async fn charge(id: u64, requested_at: SystemTime) -> Result<u64, idem_runtime::Error> {
    let _ = requested_at;
    Ok(id)
}

fn main() {}
