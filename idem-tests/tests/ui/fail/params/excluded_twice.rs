use idem_runtime::idempotent;

struct Gateway;

#[idempotent(exclude(gateway))]
async fn charge(id: u64, #[idem(exclude)] gateway: &Gateway) -> Result<u64, idem_runtime::Error> {
    let _ = gateway;
    Ok(id)
}

fn main() {}
