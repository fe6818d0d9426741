use idem_runtime::idempotent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Padded<const N: usize> {
    bytes: Vec<u8>,
}

#[idempotent(name = "pad")]
async fn pad<const N: usize>(input: Vec<u8>) -> Result<Padded<N>, idem_runtime::Error> {
    Ok(Padded { bytes: input })
}

fn main() {}
