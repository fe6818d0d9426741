use idem_runtime::idempotent;

// A replay happens after this call's borrows have ended: the value must be owned.
#[idempotent]
async fn label(prefix: &str) -> Result<Vec<&str>, idem_runtime::Error> {
    Ok(vec![prefix])
}

fn main() {}
