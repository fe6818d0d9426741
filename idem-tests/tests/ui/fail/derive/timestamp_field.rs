use idem_runtime::IdempotencyKey;

use std::time::SystemTime;

#[derive(IdempotencyKey)]
struct Charge {
    customer: String,
    requested_at: SystemTime,
}

fn main() {}
