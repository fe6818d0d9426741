use idem_runtime::idempotent;

#[idempotent]
fn charge(id: u64) -> impl Future<Output = Result<u64, idem_runtime::Error>> {
    async move { Ok(id) }
}

fn main() {}
