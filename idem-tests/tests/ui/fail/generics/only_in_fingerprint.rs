use idem_runtime::idempotent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Order<T> {
    lines: Vec<T>,
}

// `T` is in `order`'s type, but `key = id` leaves `order` to the fingerprint: the key of
// `place::<A>(1, …)` equals the key of `place::<B>(1, …)`.
#[idempotent(name = "orders.place", key = id)]
async fn place<T: Serialize + for<'de> Deserialize<'de> + Default>(
    id: u64,
    order: Order<T>,
) -> Result<Order<T>, idem_runtime::Error> {
    let _ = id;
    Ok(order)
}

fn main() {}
