use idem_runtime::IdempotencyKey;

// All attribute errors of a type in one pass; the impl is still emitted, so using the type as
// key material adds no error of its own.
#[derive(IdempotencyKey)]
struct Charge {
    #[idem(skip)]
    customer: String,
    #[idem(exclude)]
    #[idem(exclude)]
    note: String,
    created: std::time::Instant,
}

fn main() {
    let _ = idem_runtime::Operation::new("x").key(&Charge {
        customer: String::new(),
        note: String::new(),
        created: std::time::Instant::now(),
    });
}
