use idem_runtime::idempotent;

// One error: the `name` after the broken `exclude` is still read.
#[idempotent(exclude = note, name = "jobs.run")]
async fn run<T: serde::Serialize>(id: u64, note: T) -> Result<u64, idem_runtime::Error> {
    let _ = note;
    Ok(id)
}

fn main() {
    let _ = run(1, 2u8);
}
