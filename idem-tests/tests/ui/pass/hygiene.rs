//! Generated code compiles under `#![forbid(unsafe_code)]` and `#![deny(warnings,
//! unused_qualifications, single_use_lifetimes)]`, next to a module named `core` and with the
//! runtime under another name (`crate = "…"`).
#![deny(warnings, unused_qualifications, single_use_lifetimes)]
#![forbid(unsafe_code)]

// The runtime under another name, as a renamed dependency would put it in the extern prelude
// (`idem_runtime` stays reachable here; the workspace member `idem-tests/renamed` is a real
// `package = "idem-runtime"` rename, where it is not).
extern crate idem_runtime as idem;

#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod std {}
#[allow(dead_code)]
mod serde {}
#[allow(dead_code)]
mod inventory {}

use ::std::sync::Arc;

#[derive(idem::IdempotencyKey, ::serde::Serialize)]
#[idem(crate = "idem")]
struct Order {
    id: u64,
    #[idem(rename = "lines")]
    items: Vec<String>,
    #[idem(exclude)]
    note: String,
}

#[derive(idem::IdempotencyKey)]
#[idem(crate = "idem")]
enum Kind<T> {
    A,
    B(T),
    C(u8, #[idem(exclude)] u8),
    D { x: T, #[idem(exclude)] y: String },
}

// A lifetime used once in the type: the derived `impl<'a> … for Borrowed<'a>` must not be
// reported by `single_use_lifetimes` (it is `#[automatically_derived]`).
#[derive(idem::IdempotencyKey)]
#[idem(crate = "idem")]
struct Borrowed<'a> {
    sku: &'a str,
}

#[derive(idem::IdempotencyKey)]
#[idem(crate = "idem")]
enum BorrowedKind<'a, T> {
    Sku(&'a T),
    None,
}

#[idem::idempotent(crate = "idem", name = "hygiene.borrowed")]
async fn borrowed(item: &Borrowed<'_>, kind: BorrowedKind<'_, u8>) -> Result<usize, idem::Error> {
    let _ = kind;
    Ok(item.sku.len())
}

struct Service {
    store: Arc<idem::MemoryStore>,
    tenant: String,
}

impl Service {
    #[idem::idempotent(crate = "idem", name = "hygiene.place", scope = self.tenant, store = &self.store)]
    async fn place(&self, order: &Order, #[idem(exclude)] trace: &str) -> Result<u64, idem::Error> {
        let _ = (trace, &order.note);
        Ok(order.id)
    }

    #[idem::idempotent(crate = "idem", name = "hygiene.bump", key = id, ttl = "1h30m", lease = "10s")]
    async fn bump(&mut self, id: u64, amount: u32) -> Result<u32, idem::Error> {
        self.tenant.push('!');
        Ok(amount)
    }
}

#[idem::idempotent(crate = "idem", name = "hygiene.generic", version = 3, on_conflict = "reject")]
async fn generic<T: ::serde::Serialize + Sync>(value: &T, kind: Kind<u8>) -> Result<(), idem::Error> {
    let _ = (value, kind);
    Ok(())
}

#[::async_trait::async_trait]
trait Notify {
    async fn notify(&self, user: u64, channel: &str) -> Result<u32, idem::Error>;
}

#[::async_trait::async_trait]
impl Notify for Service {
    #[idem::idempotent(crate = "idem", name = "hygiene.notify", scope = self.tenant)]
    async fn notify(&self, user: u64, #[idem(exclude)] channel: &str) -> Result<u32, idem::Error> {
        let _ = (user, channel);
        Ok(1)
    }
}

trait Native {
    async fn native(&self, n: (u8, u8)) -> ::std::io::Result<u8>;
}

impl Native for Service {
    #[idem::idempotent(crate = "idem", name = "hygiene.native")]
    async fn native(&self, (a, b): (u8, u8)) -> ::std::io::Result<u8> {
        Ok(a + b)
    }
}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    let service = Service { store: Arc::new(idem::MemoryStore::new()), tenant: ::std::string::String::new() };
    let order = Order { id: 1, items: ::std::vec::Vec::new(), note: ::std::string::String::new() };
    assert_send(&service.place(&order, "t"));
    let _ = service.notify(1, "sms");
    let _ = service.native((1, 2));
    let _ = Service::place;
    let _ = Service::bump;
    let _ = generic::<u8>;
    let _ = borrowed(&Borrowed { sku: "a" }, BorrowedKind::Sku(&1));
    let _ = borrowed(&Borrowed { sku: "a" }, BorrowedKind::None);
    let _ = Kind::<u8>::A;
    let _ = Kind::B(1u8);
    let _ = Kind::<u8>::C(1, 2);
    let _ = Kind::D { x: 1u8, y: String::new() };
}
