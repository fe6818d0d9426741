use idem_runtime::idempotent;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
    lines: Vec<String>,
}

#[idempotent(key = id)]
async fn place(Order { id, lines }: Order) -> Result<usize, idem_runtime::Error> {
    Ok(id as usize + lines.len())
}

fn main() {}
