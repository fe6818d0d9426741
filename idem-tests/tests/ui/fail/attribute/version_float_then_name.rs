use idem_runtime::idempotent;

struct Service;

impl Service {
    // One error: the `name` after the broken `version` is still read.
    #[idempotent(version = 1.5, name = "service.charge")]
    async fn charge(&self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {
    let _ = Service.charge(1);
}
