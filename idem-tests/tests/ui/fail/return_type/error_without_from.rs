use idem_runtime::idempotent;

#[derive(Debug)]
struct PayError;

#[idempotent]
async fn charge(id: u64) -> Result<u64, PayError> {
    Ok(id)
}

fn main() {}
