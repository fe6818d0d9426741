use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Charge {
    #[idem(exclude, rename = "n")]
    note: String,
}

fn main() {}
