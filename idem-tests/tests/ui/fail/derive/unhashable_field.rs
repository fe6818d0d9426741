use idem_runtime::IdempotencyKey;

struct Gateway;

#[derive(IdempotencyKey)]
struct Charge {
    customer: String,
    gateway: Gateway,
}

fn main() {}
