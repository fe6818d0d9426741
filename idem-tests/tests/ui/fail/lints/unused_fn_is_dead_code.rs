//! The annotated fn is the user's item: an unused one is reported like any other.
#![deny(dead_code)]

use idem_runtime::{Error, idempotent};

#[idempotent]
async fn never_called(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {}
