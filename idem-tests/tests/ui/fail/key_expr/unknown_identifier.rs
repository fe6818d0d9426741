use idem_runtime::idempotent;

struct Request {
    id: String,
}

#[idempotent(key = reqest.id)]
async fn charge(request: &Request) -> Result<u64, idem_runtime::Error> {
    Ok(request.id.len() as u64)
}

fn main() {}
