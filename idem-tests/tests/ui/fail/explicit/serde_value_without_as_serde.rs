use idem_runtime::Operation;

static WEBHOOKS: Operation = Operation::new("webhooks.stripe");

fn main() {
    let event = serde_json::json!({"id": "evt_1"});
    let _key = WEBHOOKS.key(&event);
}
