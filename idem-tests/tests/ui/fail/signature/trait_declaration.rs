use idem_runtime::idempotent;

trait Orders {
    #[idempotent(name = "orders.create")]
    async fn create(&self, id: u64) -> Result<u64, idem_runtime::Error>;
}

fn main() {}
