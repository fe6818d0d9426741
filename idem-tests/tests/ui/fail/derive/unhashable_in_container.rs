use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey, serde::Serialize)]
struct Line {
    sku: String,
}

struct Gateway;

// A container holding several types is walked: the error points at the element type that
// cannot be hashed.
#[derive(IdempotencyKey)]
struct Charge {
    lines: Vec<(Line, Gateway)>,
}

fn main() {}
