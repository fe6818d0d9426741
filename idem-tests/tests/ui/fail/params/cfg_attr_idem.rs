use idem_runtime::idempotent;

struct Gateway;

#[idempotent]
async fn charge(id: u64, #[cfg_attr(all(), idem(exclude))] gateway: &Gateway) -> Result<u64, idem_runtime::Error> {
    let _ = gateway;
    Ok(id)
}

fn main() {
    let _ = charge(1, &Gateway);
}
