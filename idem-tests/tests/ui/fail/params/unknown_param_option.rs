use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64, #[idem(skip)] gateway: &str) -> Result<u64, idem_runtime::Error> {
    let _ = gateway;
    Ok(id)
}

fn main() {}
