use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Charge {
    #[idem(exclude = true)]
    note: String,
}

fn main() {}
