use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Charge {
    #[idem(skip)]
    note: String,
}

fn main() {}
