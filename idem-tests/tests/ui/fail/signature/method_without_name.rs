use idem_runtime::idempotent;

struct Orders;

impl Orders {
    #[idempotent(ttl = "1h")]
    async fn create(&self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {}
