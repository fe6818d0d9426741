use idem_runtime::IdempotencyKey;
use serde::Serialize;

#[derive(IdempotencyKey, Serialize)]
struct Charge {
    customer: String,
    #[serde(default, skip)]
    request_id: String,
    #[serde(rename = "shard_no", skip_serializing)]
    shard: u32,
}

fn main() {}
