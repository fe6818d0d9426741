use idem_runtime::http::IdempotencyLayer;

fn main() {
    let _layer = IdempotencyLayer::builder("payments").build();
}
