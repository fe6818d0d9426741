use idem_runtime::idempotent;

struct Service;

impl Service {
    // One error: a missing `name` is not reported on top of an unknown option.
    #[idempotent(nmae = "service.charge")]
    async fn charge(&self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {
    let _ = Service.charge(1);
}
