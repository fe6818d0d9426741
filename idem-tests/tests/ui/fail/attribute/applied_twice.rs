use idem_runtime::{Error, idempotent};

#[idempotent(name = "orders.create")]
#[idempotent(name = "orders.create_v2")]
async fn create(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {}
