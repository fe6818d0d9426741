use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
