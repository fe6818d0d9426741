use idem_runtime::IdempotencyKey;

// One error for the `rename`, not a second one about `exclude` on the same token.
#[derive(IdempotencyKey)]
struct Pair(u32, #[idem(exclude, rename = "x")] u32);

fn main() {}
