use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Charge {
    customer: String,
    #[idem(rename = "customer")]
    client: String,
}

fn main() {}
