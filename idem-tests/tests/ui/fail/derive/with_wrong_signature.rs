use idem_runtime::{IdempotencyKey, KeyHasher};

fn lowercase(value: String, out: &mut KeyHasher) {
    out.write_str(&value.to_lowercase());
}

fn normalized(value: &str) -> String {
    value.to_lowercase()
}

#[derive(IdempotencyKey)]
struct Signup {
    #[idem(with = lowercase)]
    email: String,
    #[idem(with = normalized)]
    name: String,
}

fn main() {}
