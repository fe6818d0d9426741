use idem_runtime::idempotent;

#[idempotent]
async fn fetch<T: serde::Serialize>(id: T) -> Result<u64, idem_runtime::Error> {
    let _ = id;
    Ok(1)
}

fn main() {}
