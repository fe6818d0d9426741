use idem_runtime::idempotent;

struct Service;

impl Service {
    // One error: the `name` after the empty `key` is still read.
    #[idempotent(key = , name = "service.charge")]
    async fn charge(&self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {
    let _ = Service.charge(1);
}
