use idem_runtime::idempotent;
use serde::{Serialize, de::DeserializeOwned};

// `fetch::<Customer>(7)` and `fetch::<Merchant>(7)` would share one record.
#[idempotent(name = "cache.fetch")]
async fn fetch<T: Serialize + DeserializeOwned + Default>(id: u64) -> Result<Vec<T>, idem_runtime::Error> {
    let _ = id;
    Ok(vec![T::default()])
}

fn main() {}
