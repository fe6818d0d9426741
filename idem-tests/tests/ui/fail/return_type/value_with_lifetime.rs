use std::borrow::Cow;

use idem_runtime::idempotent;

// A replay happens after this call's borrows have ended: the value may not hold a lifetime.
#[idempotent]
async fn label<'a>(prefix: &'a str) -> Result<Cow<'a, str>, idem_runtime::Error> {
    Ok(Cow::Borrowed(prefix))
}

fn main() {}
