use idem_runtime::IdempotencyKey;

// The union is rejected, but an impl is still emitted: using the type as key material adds no
// second error.
#[derive(IdempotencyKey)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {
    let _ = idem_runtime::Operation::new("x").key(&Bits { a: 1 });
}
