use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64, label: impl std::fmt::Display) -> Result<u64, idem_runtime::Error> {
    let _ = label.to_string();
    Ok(id)
}

fn main() {}
