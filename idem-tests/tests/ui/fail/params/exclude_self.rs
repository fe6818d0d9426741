use idem_runtime::idempotent;

struct Orders;

impl Orders {
    #[idempotent(name = "orders.create")]
    async fn create(#[idem(exclude)] &self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {}
