use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Charge {
    #[idem(rename = "a")]
    #[idem(rename = "b")]
    note: String,
}

fn main() {}
