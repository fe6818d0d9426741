// The body's type is erased inside the runtime; the generated future must still be `Send`
// exactly when the body is: here the body holds an `Rc` across an `.await`.
use std::rc::Rc;

use idem_runtime::idempotent;

#[idempotent]
async fn local(id: u64) -> Result<u64, idem_runtime::Error> {
    let shared = Rc::new(id);
    std::future::ready(()).await;
    Ok(*shared)
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(local(1));
}
