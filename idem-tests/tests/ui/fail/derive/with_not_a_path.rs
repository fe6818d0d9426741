use idem_runtime::IdempotencyKey;

// The bad `with` value is reported with what `with` expects; the rest of the list is still read
// and the field gets no second error.
#[derive(IdempotencyKey)]
struct Charge {
    amount: u32,
    #[idem(with = 5, exclude)]
    at: std::time::SystemTime,
}

fn main() {}
