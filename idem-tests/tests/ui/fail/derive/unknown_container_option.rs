use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
#[idem(exclude)]
struct Charge {
    note: String,
}

fn main() {}
