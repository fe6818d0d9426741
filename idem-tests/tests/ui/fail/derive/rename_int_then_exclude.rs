use idem_runtime::IdempotencyKey;

// One mistake, one error: the bad `rename` value is reported, and the `exclude` after it still
// applies (no timestamp error for `at`).
#[derive(IdempotencyKey)]
struct Charge {
    amount: u32,
    #[idem(rename = 5, exclude)]
    at: std::time::SystemTime,
}

fn main() {}
