use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
struct Pair(#[idem(rename = "a")] u64, u64);

fn main() {}
