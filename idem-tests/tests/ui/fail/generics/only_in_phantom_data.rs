use std::marker::PhantomData;

use idem_runtime::idempotent;
use serde::{Serialize, de::DeserializeOwned};

// `PhantomData<T>` hashes the same for every `T`: `fetch(7, PhantomData::<Merchant>)` would
// replay the record of `fetch(7, PhantomData::<Customer>)`.
#[idempotent(name = "cache.fetch")]
async fn fetch<T: Serialize + DeserializeOwned + Default>(
    id: u64,
    kind: PhantomData<T>,
) -> Result<T, idem_runtime::Error> {
    let _ = (id, kind);
    Ok(T::default())
}

fn main() {}
