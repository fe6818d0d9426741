use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64) -> std::io::Result<Recept> {
    Err(std::io::Error::other(format!("no receipt for {id}")))
}

fn main() {}
