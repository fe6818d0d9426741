use idem_runtime::IdempotencyKey;

use chrono::{DateTime, Utc};

#[derive(IdempotencyKey)]
enum Event {
    Created { id: u64, at: Option<DateTime<Utc>> },
}

fn main() {}
