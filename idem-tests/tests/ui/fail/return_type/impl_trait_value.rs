use idem_runtime::{Error, idempotent};

#[idempotent]
async fn receipt(id: u64) -> Result<impl serde::Serialize, Error> {
    Ok(id)
}

fn main() {}
