use idem_runtime::idempotent;

struct Receipt;

#[idempotent]
async fn charge(id: u64) -> Result<Receipt, idem_runtime::Error> {
    let _ = id;
    Ok(Receipt)
}

fn main() {}
