use idem_runtime::IdempotencyKey;

#[derive(IdempotencyKey)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
