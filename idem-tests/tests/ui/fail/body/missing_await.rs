use idem_runtime::{Error, idempotent};

async fn fetch(id: u64) -> u64 {
    id
}

#[idempotent]
async fn lookup(id: u64) -> Result<u64, Error> {
    Ok(fetch(id))
}

fn main() {}
