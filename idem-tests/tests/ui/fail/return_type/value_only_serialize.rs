use idem_runtime::idempotent;

// Recorded, but a replay could not read it back: `Deserialize` is missing.
#[derive(serde::Serialize)]
struct Receipt {
    id: u64,
}

#[idempotent]
async fn charge(id: u64) -> Result<Receipt, idem_runtime::Error> {
    Ok(Receipt { id })
}

fn main() {}
