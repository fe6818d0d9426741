use idem_runtime::{IdempotencyKey, idempotent};

#[derive(IdempotencyKey)]
struct Line {
    sku: String,
}

#[idempotent]
async fn order(lines: Vec<(Lien, u8)>) -> Result<u32, idem_runtime::Error> {
    Ok(lines.len() as u32)
}

#[derive(IdempotencyKey)]
struct Cart {
    lines: Vec<(Lien, u8)>,
}

fn main() {}
