use idem_runtime::IdempotencyKey;

// Serialize only, like `uuid::Uuid`.
#[derive(serde::Serialize)]
struct Uuid(u128);

#[derive(IdempotencyKey)]
struct Wrap<T> {
    inner: T,
}

#[derive(IdempotencyKey)]
struct Order {
    id: Wrap<Uuid>,
}

fn main() {}
