use idem_runtime::idempotent;

#[idempotent]
async fn charge(id: u64) {
    let _ = id;
}

fn main() {}
