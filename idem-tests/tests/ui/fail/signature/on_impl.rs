use idem_runtime::idempotent;

pub struct Service;

#[idempotent(name = "service.charge")]
impl Service {
    pub async fn charge(&self, id: u64) -> Result<u64, idem_runtime::Error> {
        Ok(id)
    }
}

fn main() {}
