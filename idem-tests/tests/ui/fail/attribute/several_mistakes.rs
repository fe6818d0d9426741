use idem_runtime::idempotent;

// Every mistake is reported in one pass, and `charge` is still defined (no error at the call).
#[idempotent(ttl = "1x", lease = "0s", on_conflict = "later", retries = 3)]
async fn charge(id: u64) -> Result<u64, idem_runtime::Error> {
    Ok(id)
}

fn main() {
    let _ = charge(1);
}
