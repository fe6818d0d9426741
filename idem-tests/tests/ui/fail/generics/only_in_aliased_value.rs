use idem_runtime::idempotent;
use serde::{Serialize, de::DeserializeOwned};

type AppResult<T> = Result<T, idem_runtime::Error>;

// The alias hides `Result`, not the value: `fetch::<A>(7)` and `fetch::<B>(7)` would share one
// record.
#[idempotent(name = "cache.fetch")]
async fn fetch<T: Serialize + DeserializeOwned + Default>(id: u64) -> AppResult<T> {
    let _ = id;
    Ok(T::default())
}

fn main() {}
