use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64, #[idem(exclude, include)] at: std::time::Instant) -> Result<u64, idem_runtime::Error> {
    let _ = at;
    Ok(id)
}

fn main() {}
