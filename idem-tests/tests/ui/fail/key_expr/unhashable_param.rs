use idem_runtime::idempotent;

struct Handle;

#[idempotent(key = handle)]
async fn charge(handle: Handle, amount: u64) -> Result<u64, idem_runtime::Error> {
    let _ = handle;
    Ok(amount)
}

fn main() {}
