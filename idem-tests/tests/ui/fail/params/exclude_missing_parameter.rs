use idem_runtime::idempotent;

#[idempotent(exclude(gatewy))]
async fn charge(id: u64, gateway: &str) -> Result<u64, idem_runtime::Error> {
    let _ = gateway;
    Ok(id)
}

fn main() {}
