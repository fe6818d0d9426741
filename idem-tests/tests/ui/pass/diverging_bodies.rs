//! Bodies that diverge (a panic, an endless loop, an early `return`) compile cleanly, even under
//! `#![forbid(unreachable_code)]`: the expansion needs no `allow` of its own.
#![deny(warnings)]
#![forbid(unreachable_code)]

use idem_runtime::{Error, idempotent};

#[idempotent]
async fn panics(n: u32) -> Result<u32, Error> {
    panic!("no value for {n}")
}

#[idempotent]
async fn loops(n: u32) -> Result<u32, Error> {
    let _ = n;
    loop {
        tokio::task::yield_now().await;
    }
}

#[idempotent]
async fn returns_early(n: u32) -> Result<u32, Error> {
    if n > 3 {
        return Ok(n);
    }
    Err(Error::Config(format!("{n} is too small")))
}

#[idempotent]
async fn unit(n: u32) -> Result<(), Error> {
    let _ = n;
    Ok(())
}

fn main() {
    let _ = (panics(1), loops(2), returns_early(3), unit(4));
}
