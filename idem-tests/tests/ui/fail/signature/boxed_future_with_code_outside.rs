use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};

use idem_runtime::{Error, idempotent};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Service;

impl Service {
    #[idempotent(name = "service.boxed")]
    fn boxed(&self, n: u8) -> Pin<Box<dyn Future<Output = Result<u8, Error>> + Send + '_>> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(n) })
    }
}

fn main() {}
