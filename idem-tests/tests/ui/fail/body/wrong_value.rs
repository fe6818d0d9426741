use idem_runtime::{Error, idempotent};

#[idempotent]
async fn charge(amount: u64) -> Result<u64, Error> {
    if amount == 0 {
        return Ok("nothing");
    }
    Ok(amount)
}

fn main() {}
