use idem_runtime::idempotent;

#[idempotent]
pub struct Charge {
    pub id: u64,
}

fn main() {}
