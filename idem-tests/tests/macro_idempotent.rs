//! Behaviour of `#[idempotent]` at run time, one test per option or shape. Every test runs with
//! its own memory store (`with_store` or the `store = …` option), so tests share no records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use idem_runtime::{
    Error, IdempotencyKey, MemoryStore, Operation, Store, idempotent, key_of, with_store,
};
use serde::{Deserialize, Serialize};

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[derive(IdempotencyKey, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Charge {
    customer: String,
    amount_cents: u64,
    #[idem(exclude)]
    note: String,
}

fn charge_req(customer: &str, amount_cents: u64, note: &str) -> Charge {
    Charge {
        customer: customer.into(),
        amount_cents,
        note: note.into(),
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Receipt {
    run: u32,
}

struct Gateway;

// ---- replay, exclusions ------------------------------------------------------------------

static CHARGES: AtomicU32 = AtomicU32::new(0);

/// Charges a customer.
#[idempotent(ttl = "24h")]
async fn charge(req: &Charge, #[idem(exclude)] _gateway: &Gateway) -> Result<Receipt, Error> {
    Ok(Receipt {
        run: CHARGES.fetch_add(1, Ordering::SeqCst),
    })
}

#[tokio::test]
async fn replays_the_recorded_result_for_the_same_arguments() {
    with_store(store(), async {
        let first = charge(&charge_req("ada", 100, "a"), &Gateway)
            .await
            .unwrap();
        let again = charge(&charge_req("ada", 100, "b"), &Gateway)
            .await
            .unwrap();
        assert_eq!(
            first, again,
            "the excluded `note` field does not change the key"
        );
        let other = charge(&charge_req("ada", 200, "a"), &Gateway)
            .await
            .unwrap();
        assert_ne!(first, other);
        assert_eq!(CHARGES.load(Ordering::SeqCst), 2);
    })
    .await;
}

static SENDS: AtomicU32 = AtomicU32::new(0);

#[idempotent(exclude(attempt, trace))]
async fn send(
    to: &str,
    attempt: u32,
    trace: String,
    #[idem(exclude)] _log: &mut Vec<String>,
) -> Result<u32, Error> {
    let _ = (to, attempt, trace);
    Ok(SENDS.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn excluded_parameters_do_not_change_the_key() {
    with_store(store(), async {
        let mut log = Vec::new();
        let a = send("ada", 1, "t1".into(), &mut log).await.unwrap();
        let b = send("ada", 2, "t2".into(), &mut log).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(SENDS.load(Ordering::SeqCst), 1);
        let k1 = key_of(send("ada", 1, "x".into(), &mut log)).await.unwrap();
        let k2 = key_of(send("ada", 9, "y".into(), &mut Vec::new()))
            .await
            .unwrap();
        assert_eq!(k1, k2);
        assert_ne!(
            k1,
            key_of(send("bob", 1, "x".into(), &mut log)).await.unwrap()
        );
    })
    .await;
}

// ---- ttl ---------------------------------------------------------------------------------

static TICKS: AtomicU32 = AtomicU32::new(0);

#[idempotent(ttl = "1m30s", lease = "10s")]
async fn tick(id: u64) -> Result<u32, Error> {
    let _ = id;
    Ok(TICKS.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_record_expires_after_its_ttl() {
    with_store(store(), async {
        assert_eq!(tick(1).await.unwrap(), 0);
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(tick(1).await.unwrap(), 0, "still within 90 s: replayed");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(tick(1).await.unwrap(), 1, "after 90 s: runs again");
    })
    .await;
}

// ---- version, name -----------------------------------------------------------------------

#[idempotent(name = "tests.versioned", version = 2)]
async fn versioned(who: &str) -> Result<String, Error> {
    Ok(format!("v2 for {who}"))
}

#[tokio::test]
async fn a_version_bump_ignores_records_of_the_old_version() {
    with_store(store(), async {
        // What the previous deploy (version 1) recorded for the same call.
        static OLD: Operation = Operation::new("tests.versioned").with_version(1);
        let old: Result<String, Error> = OLD
            .call(OLD.key("ada").unwrap())
            .run(async { Ok("v1".into()) })
            .await;
        assert_eq!(old.unwrap(), "v1");

        assert_eq!(
            versioned("ada").await.unwrap(),
            "v2 for ada",
            "fresh execution"
        );

        // The same material under version 2 is the macro's key: replayed.
        static NEW: Operation = Operation::new("tests.versioned").with_version(2);
        let new: Result<String, Error> = NEW
            .call(NEW.key("ada").unwrap())
            .run(async { Ok("never".into()) })
            .await;
        assert_eq!(new.unwrap(), "v2 for ada");
    })
    .await;
}

mod billing {
    use super::*;

    #[idempotent(name = "tests.invoice")]
    pub async fn invoice(id: u64) -> Result<u64, Error> {
        Ok(id)
    }

    #[idempotent]
    pub async fn unnamed(id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

#[tokio::test]
async fn the_name_alone_identifies_the_operation() {
    // A pinned name: the key does not depend on where the fn lives.
    let key = key_of(billing::invoice(7)).await.unwrap();
    assert_eq!(key, Operation::new("tests.invoice").key(&7u64).unwrap());
    // The default name is `module_path::fn_name`: moving the fn changes its keys.
    let key = key_of(billing::unnamed(7)).await.unwrap();
    let default = concat!(module_path!(), "::billing::unnamed");
    assert_eq!(key, Operation::new(default).key(&7u64).unwrap());
    assert_eq!(idem_runtime::operation(default).unwrap().name(), default);
}

mod webhooks {
    use idem_runtime::{Error, idempotent};

    #[idempotent(name = "tests.webhook")]
    pub async fn handle(event: serde_json::Value) -> Result<u32, Error> {
        Ok(event["n"].as_u64().unwrap_or(0) as u32)
    }
}

/// A serde-only parameter is written through serde, the bytes `AsSerde` gives the explicit API.
#[tokio::test]
async fn as_serde_gives_the_explicit_api_the_key_of_a_serde_only_parameter() {
    use idem_runtime::key::AsSerde;
    let event = serde_json::json!({"id": "evt_1", "n": 3});
    let key = key_of(webhooks::handle(event.clone())).await.unwrap();
    let op = Operation::new("tests.webhook");
    assert_eq!(key, op.key(&AsSerde(&event)).unwrap());
    let other = serde_json::json!({"id": "evt_2", "n": 3});
    assert_ne!(key, op.key(&AsSerde(&other)).unwrap());
}

struct Warehouse {
    tenant: String,
}

impl Warehouse {
    #[idempotent(name = "tests.reserve", scope = self.tenant)]
    async fn reserve(
        &self,
        order: &str,
        lines: &[Charge],
        #[idem(exclude)] _trace: u64,
        meta: serde_json::Value,
    ) -> Result<u32, Error> {
        Ok(lines.len() as u32)
    }
}

/// Several key parameters: `key::Args` writes them back to back, as the attribute does (a
/// derived type in a slice keeps its exclusions, a serde-only one goes through `AsSerde`).
#[tokio::test]
async fn args_give_the_explicit_api_the_key_of_several_parameters() {
    use idem_runtime::key::{Args, AsSerde};
    let stock = Warehouse {
        tenant: "acme".into(),
    };
    let lines = [charge_req("ada", 1, "n1"), charge_req("bob", 2, "n2")];
    let meta = serde_json::json!({"channel": "web"});
    let key = key_of(stock.reserve("ord-1", &lines, 1, meta.clone()))
        .await
        .unwrap();
    let mut renoted = lines.clone();
    renoted[0].note = "other note".into();
    let again = key_of(stock.reserve("ord-1", &renoted, 2, meta.clone()))
        .await
        .unwrap();
    assert_eq!(key, again, "excluded parameter and field");
    let op = Operation::new("tests.reserve");
    let args = Args(("ord-1", &lines[..], AsSerde(&meta)));
    assert_eq!(key, op.scoped_key(&"acme", &args).unwrap());
    assert_ne!(
        key,
        op.scoped_key(&"acme", &args.0).unwrap(),
        "a tuple has a header"
    );
    assert_ne!(key, op.key(&args).unwrap(), "unscoped");
}

static REPORTS: AtomicU32 = AtomicU32::new(0);

/// A constant key with a scope: one record per tenant.
#[idempotent(key = "nightly-report", scope = tenant)]
async fn nightly_report(tenant: String) -> Result<u32, Error> {
    Ok(REPORTS.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn a_constant_key_with_a_scope_is_one_record_per_tenant() {
    with_store(store(), async {
        let first = nightly_report("acme".into()).await.unwrap();
        assert_eq!(nightly_report("acme".into()).await.unwrap(), first);
        assert_ne!(nightly_report("globex".into()).await.unwrap(), first);
    })
    .await;
}

/// Reading a hashed `_name` parameter is the macro's doing: clippy's pedantic
/// `used_underscore_binding` stays quiet (checked by CI's clippy run over the tests).
#[deny(clippy::used_underscore_binding)]
mod underscore_parameters {
    use idem_runtime::{Error, idempotent};

    #[idempotent(name = "tests.underscore", key = _request_id)]
    pub async fn handle(_request_id: String, n: u8) -> Result<u8, Error> {
        Ok(n)
    }

    #[idempotent(name = "tests.underscore_default")]
    pub async fn handle_default(_request_id: String, n: u8) -> Result<u8, Error> {
        Ok(n)
    }
}

#[tokio::test]
async fn underscore_parameters_are_hashed() {
    with_store(store(), async {
        let key = |id: &str| key_of(underscore_parameters::handle_default(id.into(), 1));
        assert_ne!(key("a").await.unwrap(), key("b").await.unwrap());
        assert_eq!(
            underscore_parameters::handle("a".into(), 1).await.unwrap(),
            1
        );
    })
    .await;
}

// ---- key = …, payload fingerprint --------------------------------------------------------

static ORDERS: AtomicU32 = AtomicU32::new(0);

#[derive(Serialize, Clone)]
struct Order {
    sku: String,
    qty: u32,
}

#[idempotent(key = idempotency_key)]
async fn create_order(idempotency_key: String, order: &Order) -> Result<u32, Error> {
    let _ = order;
    Ok(ORDERS.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn key_picks_the_key_and_the_other_arguments_must_match() {
    with_store(store(), async {
        let order = Order {
            sku: "x".into(),
            qty: 1,
        };
        let first = create_order("k-1".into(), &order).await.unwrap();
        assert_eq!(create_order("k-1".into(), &order).await.unwrap(), first);
        let other = Order {
            sku: "x".into(),
            qty: 2,
        };
        let err = create_order("k-1".into(), &other).await.unwrap_err();
        assert!(matches!(err, Error::PayloadMismatch { .. }), "{err}");
        assert_eq!(ORDERS.load(Ordering::SeqCst), 1);
        // The key is the `key` expression alone.
        let key = key_of(create_order("k-1".into(), &other)).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::create_order")).unwrap();
        assert_eq!(key, op.key("k-1").unwrap());
    })
    .await;
}

#[idempotent(key = (tenant, request.id))]
async fn tuple_key(tenant: String, request: Request) -> Result<String, Error> {
    Ok(format!("{tenant}/{}", request.id)) // `tenant` and `request` were borrowed, not moved
}

#[idempotent(key = (tenant,))]
async fn one_tuple_key(tenant: String) -> Result<String, Error> {
    Ok(tenant)
}

#[idempotent(key = ((tenant, region), id))]
async fn nested_tuple_key(tenant: String, region: String, id: u64) -> Result<String, Error> {
    Ok(format!("{tenant}/{region}/{id}"))
}

#[idempotent(key = &(tenant, region))]
async fn borrowed_tuple_key(tenant: String, region: String) -> Result<String, Error> {
    Ok(format!("{tenant}/{region}"))
}

/// Every tuple form borrows its parameters (they are used in the body after the key) and
/// hashes like the same tuple given to `Operation::key`.
#[tokio::test]
async fn tuple_keys_of_any_shape_borrow_their_parts() {
    with_store(store(), async {
        let op =
            |name: &str| idem_runtime::operation(&format!("{}::{name}", module_path!())).unwrap();
        assert_eq!(one_tuple_key("t".into()).await.unwrap(), "t");
        let key = key_of(one_tuple_key("t".into())).await.unwrap();
        assert_eq!(key, op("one_tuple_key").key(&("t",)).unwrap());

        assert_eq!(
            nested_tuple_key("t".into(), "eu".into(), 7).await.unwrap(),
            "t/eu/7"
        );
        let key = key_of(nested_tuple_key("t".into(), "eu".into(), 7))
            .await
            .unwrap();
        assert_eq!(
            key,
            op("nested_tuple_key").key(&(("t", "eu"), 7u64)).unwrap()
        );

        assert_eq!(
            borrowed_tuple_key("t".into(), "eu".into()).await.unwrap(),
            "t/eu"
        );
        let key = key_of(borrowed_tuple_key("t".into(), "eu".into()))
            .await
            .unwrap();
        assert_eq!(key, op("borrowed_tuple_key").key(&("t", "eu")).unwrap());
    })
    .await;
}

#[derive(Serialize)]
struct Request {
    id: u64,
    body: String,
}

#[tokio::test]
async fn a_tuple_key_borrows_its_parts() {
    with_store(store(), async {
        let req = || Request {
            id: 5,
            body: "b".into(),
        };
        assert_eq!(tuple_key("t".into(), req()).await.unwrap(), "t/5");
        let key = key_of(tuple_key("t".into(), req())).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::tuple_key")).unwrap();
        assert_eq!(key, op.key(&("t", 5u64)).unwrap());
        let mismatch = tuple_key(
            "t".into(),
            Request {
                id: 5,
                body: "other".into(),
            },
        )
        .await;
        assert!(matches!(mismatch, Err(Error::PayloadMismatch { .. })));
    })
    .await;
}

// ---- scope, self ---------------------------------------------------------------------------

static SCOPED: AtomicU32 = AtomicU32::new(0);

#[idempotent(scope = tenant)]
async fn scoped(tenant: &str, n: u32) -> Result<u32, Error> {
    let _ = (tenant, n);
    Ok(SCOPED.fetch_add(1, Ordering::SeqCst))
}

#[tokio::test]
async fn scope_separates_tenants() {
    with_store(store(), async {
        let a = scoped("acme", 1).await.unwrap();
        let b = scoped("globex", 1).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(scoped("acme", 1).await.unwrap(), a);
        let key = key_of(scoped("acme", 1)).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::scoped")).unwrap();
        assert_eq!(
            key,
            op.scoped_key("acme", &1u32).unwrap(),
            "scope, then the other arguments"
        );
    })
    .await;
}

struct Accounts {
    tenant: String,
    opened: AtomicU32,
    balance: u64,
}

impl Accounts {
    fn new(tenant: &str) -> Self {
        Accounts {
            tenant: tenant.into(),
            opened: AtomicU32::new(0),
            balance: 0,
        }
    }

    /// `self` is not part of the key.
    #[idempotent(name = "tests.accounts.open_unscoped")]
    async fn open_unscoped(&self, id: u64) -> Result<u64, Error> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    /// `scope = self.tenant` puts the tenant into the key.
    #[idempotent(name = "tests.accounts.open", scope = self.tenant)]
    async fn open(&self, id: u64) -> Result<u64, Error> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    /// `&mut self` works: the body runs inline in the caller's future. A replay does not run
    /// it, so the mutation happens once.
    #[idempotent(name = "tests.accounts.deposit", scope = self.tenant)]
    async fn deposit(&mut self, id: u64, amount: u64) -> Result<u64, Error> {
        let _ = id;
        self.balance += amount;
        Ok(self.balance)
    }
}

#[tokio::test]
async fn methods_key_on_their_arguments_and_scope_on_self_when_asked() {
    with_store(store(), async {
        let (acme, globex) = (Accounts::new("acme"), Accounts::new("globex"));
        acme.open_unscoped(1).await.unwrap();
        globex.open_unscoped(1).await.unwrap();
        assert_eq!(
            acme.opened.load(Ordering::SeqCst) + globex.opened.load(Ordering::SeqCst),
            1,
            "self is not in the key"
        );

        acme.open(2).await.unwrap();
        globex.open(2).await.unwrap();
        acme.open(2).await.unwrap();
        assert_eq!(acme.opened.load(Ordering::SeqCst), 2);
        assert_eq!(globex.opened.load(Ordering::SeqCst), 1);

        let mut acct = Accounts::new("initech");
        assert_eq!(acct.deposit(1, 50).await.unwrap(), 50);
        assert_eq!(acct.deposit(1, 50).await.unwrap(), 50, "replayed");
        assert_eq!(acct.balance, 50);
        assert_eq!(acct.deposit(2, 50).await.unwrap(), 100);
    })
    .await;
}

// ---- conflicts -----------------------------------------------------------------------------

static SLOW: AtomicU32 = AtomicU32::new(0);

#[idempotent(on_conflict = "reject")]
async fn slow_reject(id: u64, #[idem(exclude)] gate: &tokio::sync::Notify) -> Result<u32, Error> {
    let _ = id;
    gate.notified().await;
    Ok(SLOW.fetch_add(1, Ordering::SeqCst))
}

#[idempotent(wait_timeout = "5s")]
async fn slow_wait(id: u64, #[idem(exclude)] gate: &tokio::sync::Notify) -> Result<u32, Error> {
    let _ = id;
    gate.notified().await;
    Ok(SLOW.fetch_add(1, Ordering::SeqCst) + 100)
}

#[tokio::test(start_paused = true)]
async fn on_conflict_reject_and_wait() {
    with_store(store(), async {
        let gate = tokio::sync::Notify::new();
        let (first, second) = tokio::join!(slow_reject(1, &gate), async {
            let second = slow_reject(1, &gate).await;
            gate.notify_one();
            second
        });
        assert!(first.is_ok());
        assert!(matches!(second, Err(Error::InFlight { .. })), "{second:?}");

        let gate = tokio::sync::Notify::new();
        let (first, second) = tokio::join!(slow_wait(1, &gate), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            gate.notify_one();
            slow_wait(1, &gate).await
        });
        assert_eq!(
            first.unwrap(),
            second.unwrap(),
            "the duplicate waited and got the result"
        );
    })
    .await;
}

// ---- errors ----------------------------------------------------------------------------------

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
enum PayError {
    Declined,
    Idem(Error),
}

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        PayError::Idem(e)
    }
}

#[idempotent]
async fn flaky(id: u64) -> Result<u32, PayError> {
    let _ = id;
    let run = FLAKY.fetch_add(1, Ordering::SeqCst);
    if run == 0 {
        Err(PayError::Declined)
    } else {
        Ok(run)
    }
}

#[tokio::test]
async fn an_error_releases_the_claim() {
    with_store(store(), async {
        assert!(matches!(flaky(1).await, Err(PayError::Declined)));
        assert_eq!(flaky(1).await.unwrap(), 1, "runs again after an error");
        assert_eq!(flaky(1).await.unwrap(), 1, "then replays");
        let PayError::Idem(inner) = PayError::from(Error::Config("x".into())) else {
            panic!()
        };
        assert!(matches!(inner, Error::Config(_)));
    })
    .await;
}

// ---- return types ----------------------------------------------------------------------------

#[idempotent(key = id)]
async fn io_op(id: u64, payload: String) -> std::io::Result<String> {
    let n: u64 = payload.parse().map_err(std::io::Error::other)?; // `?` with io errors
    Ok(format!("{id}:{n}"))
}

type AppResult<T> = Result<T, PayError>;

#[idempotent]
async fn aliased(id: u64) -> AppResult<u64> {
    Ok(id)
}

#[idempotent]
async fn with_anyhow(id: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(id > 0, "id must be positive");
    Ok(id)
}

#[tokio::test]
async fn io_result_and_aliases_are_results() {
    with_store(store(), async {
        assert_eq!(io_op(1, "7".into()).await.unwrap(), "1:7");
        let err = io_op(1, "8".into()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Other);
        let inner = err.into_inner().unwrap().downcast::<Error>().unwrap();
        assert!(matches!(*inner, Error::PayloadMismatch { .. }));
        assert!(
            io_op(2, "x".into()).await.is_err(),
            "the body's own io error"
        );

        assert_eq!(aliased(3).await.unwrap(), 3);
        assert_eq!(with_anyhow(3).await.unwrap(), 3);
        assert!(with_anyhow(0).await.is_err());
    })
    .await;
}

// ---- generics, patterns, trait impls ---------------------------------------------------------

#[idempotent(name = "tests.generic_echo")]
async fn generic_echo<T>(value: T) -> Result<T, Error>
where
    T: Serialize + serde::de::DeserializeOwned + Clone,
{
    Ok(value)
}

/// An `impl Trait` parameter is hashed when its bound says how (`Serialize` or
/// `IdempotencyKey`); the fn keeps its default name (the type cannot change the output).
#[idempotent]
async fn impl_param(
    label: impl Serialize + Send,
    #[idem(exclude)] log: impl std::fmt::Debug,
) -> Result<String, Error> {
    Ok(format!(
        "{log:?}:{}",
        serde_json::to_string(&label).unwrap()
    ))
}

#[idempotent]
async fn pattern((a, b): (u32, u32), Wrapper(c): Wrapper) -> Result<u32, Error> {
    Ok(a + b + c)
}

#[derive(IdempotencyKey)]
struct Wrapper(u32);

trait Mailer {
    async fn send(&self, to: String) -> Result<u32, Error>;
}

struct Smtp(AtomicU32);

impl Mailer for Smtp {
    #[idempotent(name = "tests.smtp.send")]
    async fn send(&self, to: String) -> Result<u32, Error> {
        let _ = to;
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[async_trait::async_trait]
trait Notifier {
    async fn notify(&self, user: u64, #[allow(unused)] channel: &str) -> Result<u32, Error>;
}

struct Push(AtomicU32);

#[async_trait::async_trait]
impl Notifier for Push {
    #[idempotent(name = "tests.push.notify", scope = user)]
    async fn notify(&self, user: u64, #[idem(exclude)] channel: &str) -> Result<u32, Error> {
        let _ = (channel, user);
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[tokio::test]
async fn generics_patterns_trait_methods_and_async_trait() {
    with_store(store(), async {
        assert_eq!(generic_echo(5u8).await.unwrap(), 5);
        assert_eq!(generic_echo("s".to_owned()).await.unwrap(), "s");
        assert_eq!(pattern((1, 2), Wrapper(3)).await.unwrap(), 6);
        assert_eq!(impl_param("a", 1).await.unwrap(), "1:\"a\"");
        assert_eq!(
            impl_param("a", 2).await.unwrap(),
            "1:\"a\"",
            "replayed: `log` is excluded"
        );
        let key = key_of(pattern((1, 2), Wrapper(3))).await.unwrap();
        assert_eq!(key, {
            let mut h = idem_runtime::KeyHasher::for_key(concat!(module_path!(), "::pattern"), 0);
            h.unscoped();
            h.write(&(1u32, 2u32));
            h.write(&3u32);
            h.finish_key().unwrap()
        });

        let smtp = Smtp(AtomicU32::new(0));
        smtp.send("a".into()).await.unwrap();
        smtp.send("a".into()).await.unwrap();
        assert_eq!(smtp.0.load(Ordering::SeqCst), 1);

        let push: Box<dyn Notifier + Send + Sync> = Box::new(Push(AtomicU32::new(0)));
        assert_eq!(push.notify(1, "sms").await.unwrap(), 0);
        assert_eq!(
            push.notify(1, "email").await.unwrap(),
            0,
            "channel is excluded"
        );
        assert_eq!(push.notify(2, "sms").await.unwrap(), 1);
    })
    .await;
}

// ---- store option, current(), key_of / forget_call --------------------------------------------

struct Service {
    store: Arc<MemoryStore>,
    runs: AtomicU32,
}

impl Service {
    #[idempotent(name = "tests.service.work", store = &self.store)]
    async fn work(&self, job: u64) -> Result<(u32, String), Error> {
        let key = idem_runtime::current().expect("inside the body").key();
        Ok((self.runs.fetch_add(1, Ordering::SeqCst), key.to_string()))
    }
}

#[tokio::test]
async fn the_store_option_current_key_and_forget_call() {
    let service = Service {
        store: Arc::new(MemoryStore::new()),
        runs: AtomicU32::new(0),
    };
    // No `with_store`: the `store = …` option decides.
    let (run, seen_key) = service.work(1).await.unwrap();
    let key = key_of(service.work(1)).await.unwrap();
    assert_eq!(
        seen_key,
        key.to_string(),
        "the body sees the key that key_of computes"
    );
    assert!(
        service.store.get(&key).await.unwrap().is_some(),
        "recorded in the option's store"
    );

    assert_eq!(service.work(1).await.unwrap().0, run, "replayed");
    assert!(idem_runtime::forget_call(service.work(1)).await.unwrap());
    assert_eq!(
        service.work(1).await.unwrap().0,
        run + 1,
        "runs again after forget_call"
    );
    assert_eq!(
        service.runs.load(Ordering::SeqCst),
        2,
        "key_of and forget_call never ran the body"
    );
}

#[test]
fn generated_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let req = charge_req("a", 1, "n");
    assert_send(charge(&req, &Gateway));
    assert_send(create_order(
        "k".into(),
        &Order {
            sku: "x".into(),
            qty: 1,
        },
    ));
    let acct = Accounts::new("t");
    assert_send(acct.open(1));
}

#[tokio::test]
async fn the_registry_lists_annotated_functions() {
    let ops = idem_runtime::operations();
    let tick = ops
        .iter()
        .find(|op| op.name() == concat!(module_path!(), "::tick"))
        .expect("registered");
    assert_eq!(tick.ttl(), Duration::from_secs(90));
    assert_eq!(tick.lease(), Duration::from_secs(10));
    let at = tick.location().unwrap();
    assert_eq!(at.module, module_path!());
    assert!(at.file.ends_with("macro_idempotent.rs"), "{}", at.file);
    assert!(at.line > 1);
    let versioned = idem_runtime::operation("tests.versioned").unwrap();
    assert_eq!(versioned.version(), 2);
    assert!(idem_runtime::check_operations().is_ok());
}

// ---- the replay cache of `Clone` values ----------------------------------------------------

static CLONES: AtomicU32 = AtomicU32::new(0);

/// A value whose clones are counted; `NotClone` below has no `Clone` at all.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Counted {
    n: u32,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted { n: self.n }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct NotClone {
    n: u32,
}

#[idempotent(name = "tests.cache_clone")]
async fn counted(n: u32) -> Result<Counted, Error> {
    Ok(Counted { n })
}

#[idempotent(name = "tests.cache_not_clone")]
async fn not_clone(n: u32) -> Result<NotClone, Error> {
    Ok(NotClone { n })
}

#[tokio::test]
async fn replays_of_clone_values_clone_the_kept_decoded_copy() {
    with_store(store(), async {
        assert_eq!(counted(1).await.unwrap(), Counted { n: 1 });
        // The first replay decodes and keeps a copy (one clone to keep it).
        let before = CLONES.load(Ordering::SeqCst);
        assert_eq!(counted(1).await.unwrap(), Counted { n: 1 });
        assert_eq!(CLONES.load(Ordering::SeqCst) - before, 1);
        // Later replays clone the kept copy: one clone each, no decoding.
        let before = CLONES.load(Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(counted(1).await.unwrap(), Counted { n: 1 });
        }
        assert_eq!(CLONES.load(Ordering::SeqCst) - before, 3);
        // Values without `Clone` still work: every replay decodes.
        assert_eq!(not_clone(2).await.unwrap(), NotClone { n: 2 });
        assert_eq!(not_clone(2).await.unwrap(), NotClone { n: 2 });
    })
    .await;
}

/// Key material whose `Serialize` impl fails at run time.
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be serialized",
        ))
    }
}

static UNHASHABLE_RUNS: AtomicU32 = AtomicU32::new(0);

#[idempotent(name = "tests.unhashable_at_run_time")]
async fn unhashable_at_run_time(_value: Unserializable) -> Result<u32, Error> {
    UNHASHABLE_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[tokio::test]
async fn key_material_that_fails_to_hash_is_an_error_and_the_body_does_not_run() {
    with_store(store(), async {
        match unhashable_at_run_time(Unserializable).await {
            Err(Error::KeyMaterial { reason }) => {
                assert!(reason.contains("refuses to be serialized"), "{reason}");
            }
            other => panic!("expected Error::KeyMaterial, got {other:?}"),
        }
        assert_eq!(UNHASHABLE_RUNS.load(Ordering::SeqCst), 0);
    })
    .await;
}

// ---- hygiene: parameters named like the expansion's locals, `macro_rules!` ------------------

#[allow(non_snake_case)]
mod like_locals {
    use super::*;

    #[idempotent]
    pub async fn named_key(__idem_key: u64) -> Result<u64, Error> {
        Ok(__idem_key)
    }

    #[idempotent]
    pub async fn named_op(__IDEM_OP: u64) -> Result<u64, Error> {
        Ok(__IDEM_OP)
    }

    #[idempotent(key = __idem_key, scope = __idem_h)]
    pub async fn in_options(
        __idem_key: u64,
        __idem_h: u64,
        __idem_fingerprint: u64,
    ) -> Result<u64, Error> {
        Ok(__idem_key * 100 + __idem_h * 10 + __idem_fingerprint)
    }
}

#[tokio::test]
async fn parameters_named_like_generated_locals_are_the_callers_values() {
    with_store(store(), async {
        assert_eq!(like_locals::named_key(5).await.unwrap(), 5);
        assert_eq!(like_locals::named_op(6).await.unwrap(), 6);
        assert_eq!(like_locals::in_options(1, 2, 3).await.unwrap(), 123);
        let name = |f: &str| format!("{}::like_locals::{f}", module_path!());
        let key = key_of(like_locals::named_key(5)).await.unwrap();
        assert_eq!(
            key,
            idem_runtime::operation(&name("named_key"))
                .unwrap()
                .key(&5u64)
                .unwrap()
        );
        let key = key_of(like_locals::named_op(6)).await.unwrap();
        assert_eq!(
            key,
            idem_runtime::operation(&name("named_op"))
                .unwrap()
                .key(&6u64)
                .unwrap()
        );
        let key = key_of(like_locals::in_options(1, 2, 3)).await.unwrap();
        let op = idem_runtime::operation(&name("in_options")).unwrap();
        assert_eq!(key, op.scoped_key(&2u64, &1u64).unwrap());
        // `__idem_fingerprint` is the payload: another value is a mismatch.
        let err = like_locals::in_options(1, 2, 4).await.unwrap_err();
        assert!(matches!(err, Error::PayloadMismatch { .. }), "{err}");
    })
    .await;
}

macro_rules! block_op {
    ($name:ident($($arg:ident : $t:ty),*) $body:block) => {
        #[idempotent]
        async fn $name($($arg: $t),*) -> Result<u32, Error> $body
    };
}

block_op!(from_macro(a: u32, b: u32) { Ok(a * 10 + b) });

#[tokio::test]
async fn a_fn_from_macro_rules_with_a_block_fragment() {
    with_store(store(), async {
        assert_eq!(from_macro(1, 2).await.unwrap(), 12);
        let key = key_of(from_macro(1, 2)).await.unwrap();
        let op = Operation::new(concat!(module_path!(), "::from_macro"));
        let mut h = idem_runtime::KeyHasher::for_key(op.name(), 0);
        h.unscoped();
        h.write(&1u32);
        h.write(&2u32);
        assert_eq!(key, h.finish_key().unwrap());
    })
    .await;
}

// ---- scope = (a, b) -------------------------------------------------------------------------

#[idempotent(scope = (tenant, region))]
async fn scoped_pair(tenant: String, region: String, n: u32) -> Result<String, Error> {
    Ok(format!("{tenant}/{region}/{n}")) // `tenant` and `region` were borrowed, not moved
}

#[tokio::test]
async fn a_tuple_scope_borrows_its_parts_and_hashes_as_a_tuple() {
    with_store(store(), async {
        let call = |t: &str, r: &str| scoped_pair(t.into(), r.into(), 1);
        assert_eq!(call("acme", "eu").await.unwrap(), "acme/eu/1");
        let key = key_of(call("acme", "eu")).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::scoped_pair")).unwrap();
        assert_eq!(key, op.scoped_key(&("acme", "eu"), &1u32).unwrap());
        assert_ne!(key, key_of(call("acme", "us")).await.unwrap());
        assert_ne!(key, key_of(call("eu", "acme")).await.unwrap());
    })
    .await;
}

// ---- store = &self.store with an `Arc<dyn Store>`, every receiver ---------------------------

struct DynService {
    store: Arc<dyn Store>,
    runs: u64,
}

impl DynService {
    #[idempotent(name = "tests.dyn_service.exclusive", store = &self.store)]
    async fn exclusive(&mut self, id: u64) -> Result<u64, Error> {
        self.runs += 1;
        Ok(id * 100 + self.runs)
    }

    #[idempotent(name = "tests.dyn_service.by_value", store = &self.store)]
    async fn by_value(self, id: u64) -> Result<u64, Error> {
        let me = self; // the body moves `self` while the call holds the store
        Ok(id * 100 + me.runs)
    }

    #[idempotent(name = "tests.dyn_service.arc", store = &self.store)]
    async fn arc(self: Arc<Self>, id: u64) -> Result<u64, Error> {
        let me = self;
        Ok(id * 100 + me.runs)
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// `store = self.store` (no `&`) on a field: borrowed, as `&self.store` would be.
struct FieldStore {
    store: Arc<MemoryStore>,
}

impl FieldStore {
    #[idempotent(name = "tests.field_store", store = self.store)]
    async fn run(&self, id: u64) -> Result<u64, Error> {
        Ok(id * 10 + RUNS.fetch_add(1, Ordering::SeqCst) as u64)
    }
}

/// `store = store`: the parameter is the call's store, never key material.
#[idempotent(name = "tests.param_store", store = store)]
async fn with_param_store(store: Arc<dyn Store>, id: u64) -> Result<u64, Error> {
    drop(store); // still the body's to use
    Ok(id * 10 + u64::from(RUNS.fetch_add(1, Ordering::SeqCst)))
}

#[tokio::test]
async fn a_store_parameter_is_borrowed_and_not_hashed() {
    let (one, two): (Arc<dyn Store>, Arc<dyn Store>) = (store(), store());
    let first = with_param_store(one.clone(), 5).await.unwrap();
    assert_eq!(
        with_param_store(one.clone(), 5).await.unwrap(),
        first,
        "replayed"
    );
    // Not part of the key: the same key in another store, where nothing is recorded yet.
    let key = key_of(with_param_store(one.clone(), 5)).await.unwrap();
    assert_eq!(key, key_of(with_param_store(two.clone(), 5)).await.unwrap());
    assert!(one.get(&key).await.unwrap().is_some());
    assert!(two.get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn a_store_field_without_a_borrow_is_borrowed() {
    let service = FieldStore {
        store: Arc::new(MemoryStore::new()),
    };
    let first = service.run(5).await.unwrap();
    // Recorded in the field's store (no `with_store` around the call).
    assert_eq!(service.store.len(), 1);
    assert_eq!(service.run(5).await.unwrap(), first, "replayed");
}

#[tokio::test]
async fn the_store_option_with_a_dyn_store_and_any_receiver() {
    let store = store();
    let service = |runs| DynService {
        store: store.clone(),
        runs,
    };
    // No `with_store`: each call records in the option's store.
    let mut svc = service(0);
    assert_eq!(svc.exclusive(1).await.unwrap(), 101);
    assert_eq!(svc.exclusive(1).await.unwrap(), 101, "replayed");
    assert_eq!(svc.runs, 1);
    let key = key_of(svc.exclusive(1)).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_some());

    assert_eq!(service(7).by_value(2).await.unwrap(), 207);
    assert_eq!(service(8).by_value(2).await.unwrap(), 207, "replayed");
    let key = key_of(service(0).by_value(2)).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_some());

    assert_eq!(Arc::new(service(7)).arc(3).await.unwrap(), 307);
    assert_eq!(Arc::new(service(8)).arc(3).await.unwrap(), 307, "replayed");
    let key = key_of(Arc::new(service(0)).arc(3)).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_some());
    assert!(
        idem_runtime::forget_call(Arc::new(service(0)).arc(3))
            .await
            .unwrap()
    );
    assert_eq!(
        Arc::new(service(9)).arc(3).await.unwrap(),
        309,
        "runs again"
    );
}

// ---- #[cfg] parameters, `ref mut` patterns ---------------------------------------------------

#[idempotent]
async fn cfg_param(a: u32, #[cfg(not(test))] b: u32, #[cfg(test)] c: u32) -> Result<u32, Error> {
    Ok(a + c)
}

#[idempotent]
async fn ref_mut_param(
    ref mut v: Vec<u32>,
    (ref mut w, n): (Vec<u32>, u32),
) -> Result<usize, Error> {
    v.push(n);
    w.push(n);
    Ok(v.len() * 10 + w.len())
}

#[tokio::test]
async fn cfg_parameters_and_ref_mut_patterns() {
    with_store(store(), async {
        assert_eq!(cfg_param(1, 2).await.unwrap(), 3);
        let key = key_of(cfg_param(1, 2)).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::cfg_param")).unwrap();
        let mut h = idem_runtime::KeyHasher::for_key(op.name(), 0);
        h.unscoped();
        h.write(&1u32);
        h.write(&2u32);
        assert_eq!(
            key,
            h.finish_key().unwrap(),
            "the compiled-out `b` is not hashed"
        );

        assert_eq!(ref_mut_param(vec![1], (vec![], 5)).await.unwrap(), 21);
        let key = key_of(ref_mut_param(vec![1], (vec![], 5))).await.unwrap();
        let op = idem_runtime::operation(concat!(module_path!(), "::ref_mut_param")).unwrap();
        let mut h = idem_runtime::KeyHasher::for_key(op.name(), 0);
        h.unscoped();
        h.write(&vec![1u32]);
        h.write(&(Vec::<u32>::new(), 5u32));
        assert_eq!(
            key,
            h.finish_key().unwrap(),
            "hashed before the body mutates them"
        );
    })
    .await;
}

// ---- raw identifiers --------------------------------------------------------------------------

#[idempotent]
async fn r#match(id: u64) -> Result<u64, Error> {
    Ok(id)
}

#[tokio::test]
async fn the_default_name_of_a_raw_identifier_has_no_r_hash() {
    with_store(store(), async {
        assert_eq!(r#match(4).await.unwrap(), 4);
        let name = concat!(module_path!(), "::match");
        let op = idem_runtime::operation(name).expect("registered without `r#`");
        assert_eq!(key_of(r#match(4)).await.unwrap(), op.key(&4u64).unwrap());
    })
    .await;
}

// ---- containers mixing derived and serde-only types ----------------------------------------

/// Only `Serialize`: a parameter holding it and a derived type in one tuple is walked, so the
/// derived type keeps its exclusions (through serde alone, `note` would be hashed).
#[derive(Serialize)]
struct Currency(&'static str);

#[idempotent(name = "macro.mixed_tuple_param")]
async fn charge_with_currency(req: (Charge, Currency)) -> Result<String, Error> {
    Ok(format!("{} {}", req.0.customer, (req.1).0))
}

#[tokio::test]
async fn a_tuple_parameter_mixing_derived_and_serde_types_keeps_exclusions() {
    with_store(store(), async {
        let a = key_of(charge_with_currency((
            charge_req("ada", 5, "first"),
            Currency("EUR"),
        )))
        .await
        .unwrap();
        let b = key_of(charge_with_currency((
            charge_req("ada", 5, "second"),
            Currency("EUR"),
        )))
        .await
        .unwrap();
        let c = key_of(charge_with_currency((
            charge_req("ada", 5, "first"),
            Currency("USD"),
        )))
        .await
        .unwrap();
        assert_eq!(a, b, "the excluded note is left out");
        assert_ne!(a, c, "the serde-only element is hashed");
        // Pinned: a change of these bytes is a change of users' keys (records written before
        // it would not be found), so it must be deliberate.
        assert_eq!(
            a.to_string(),
            "7758ca9c175643a69e129dbca751a8da48f89a11e0cc79efb68a640ee542cea7"
        );
    })
    .await;
}

// ---- key = / scope = a parameter: written by its type, like the default key ------------------

/// Only `Serialize` (and `Hash` for the set): serde would write a `HashSet` of it as a sequence
/// in iteration order.
#[derive(Serialize, Hash, PartialEq, Eq, Clone)]
struct SerdeOnly(u32);

fn serde_only_set(n: u32) -> std::collections::HashSet<SerdeOnly> {
    // A fresh `RandomState` per set: equal sets iterate in different orders.
    (0..n).map(SerdeOnly).collect()
}

#[idempotent(name = "macro.set_key", key = ids)]
async fn set_key(ids: std::collections::HashSet<SerdeOnly>, n: u32) -> Result<usize, Error> {
    Ok(ids.len() + n as usize)
}

#[idempotent(name = "macro.set_scope", scope = ids)]
async fn set_scope(ids: &std::collections::HashSet<SerdeOnly>, n: u32) -> Result<u32, Error> {
    let _ = ids;
    Ok(n)
}

#[idempotent(name = "macro.set_tuple_key", key = (&ids, n))]
async fn set_tuple_key(ids: std::collections::HashSet<SerdeOnly>, n: u32) -> Result<u32, Error> {
    let _ = ids;
    Ok(n)
}

#[tokio::test]
async fn a_key_or_scope_naming_a_hash_set_parameter_is_independent_of_iteration_order() {
    with_store(store(), async {
        let mut keys = std::collections::HashSet::new();
        let mut scoped = std::collections::HashSet::new();
        let mut tupled = std::collections::HashSet::new();
        for _ in 0..20 {
            keys.insert(key_of(set_key(serde_only_set(50), 1)).await.unwrap());
            scoped.insert(key_of(set_scope(&serde_only_set(50), 1)).await.unwrap());
            tupled.insert(key_of(set_tuple_key(serde_only_set(50), 1)).await.unwrap());
        }
        assert_eq!(keys.len(), 1, "key = ids");
        assert_eq!(scoped.len(), 1, "scope = ids");
        assert_eq!(tupled.len(), 1, "key = (&ids, n)");
        // The set is still hashed: another set, another key.
        let other = key_of(set_key(serde_only_set(49), 1)).await.unwrap();
        assert!(!keys.contains(&other));
        let other = key_of(set_scope(&serde_only_set(49), 1)).await.unwrap();
        assert!(!scoped.contains(&other));
    })
    .await;
}

#[idempotent(name = "macro.mixed_key_param", key = lines)]
async fn mixed_key_param(lines: Vec<(Charge, SerdeOnly)>, n: u32) -> Result<u32, Error> {
    let _ = lines;
    Ok(n)
}

#[tokio::test]
async fn a_key_naming_a_parameter_keeps_the_exclusions_of_derived_types_inside_it() {
    with_store(store(), async {
        let lines = |note: &str, tag: u32| vec![(charge_req("ada", 5, note), SerdeOnly(tag))];
        let a = key_of(mixed_key_param(lines("first", 1), 1)).await.unwrap();
        let b = key_of(mixed_key_param(lines("second", 1), 1))
            .await
            .unwrap();
        let c = key_of(mixed_key_param(lines("first", 2), 1)).await.unwrap();
        assert_eq!(a, b, "the excluded note is left out");
        assert_ne!(a, c, "the serde-only element is hashed");
        // Pinned: a change of these bytes is a change of users' keys (records written before
        // it would not be found), so it must be deliberate.
        assert_eq!(
            a.to_string(),
            "b63670bc83ad2e7564aadd32c3b9908fbaed385ea951745a48f5f5260ea6412b"
        );
    })
    .await;
}

// ---- a cancelled body is dropped inside its call, before its claim is released -------------

/// Records, when dropped, whether it was dropped inside its call and whether the claim was
/// still held then.
struct DropWitness {
    key: idem_runtime::Key,
    store: Arc<dyn Store>,
    seen: Arc<std::sync::Mutex<Option<(bool, bool)>>>,
}

impl Drop for DropWitness {
    fn drop(&mut self) {
        let in_call = idem_runtime::current().is_some_and(|c| c.key() == self.key);
        let record = futures::executor::block_on(self.store.get(&self.key)).unwrap();
        *self.seen.lock().unwrap() = Some((in_call, record.is_some()));
    }
}

#[idempotent(name = "macro.cancelled_drop", store = store.clone())]
async fn cancellable(
    n: u32,
    #[idem(exclude)] store: Arc<dyn Store>,
    #[idem(exclude)] seen: Arc<std::sync::Mutex<Option<(bool, bool)>>>,
) -> Result<u32, Error> {
    let key = idem_runtime::current().expect("inside the call").key();
    let _witness = DropWitness { key, store, seen };
    std::future::pending::<()>().await;
    Ok(n)
}

/// The body's destructors (rollbacks, compensations) run inside the call (`current()`
/// answers) and while the key is still claimed, so no duplicate can run the body alongside
/// them: as with `Call::run`, although the fn only lends its body to the engine.
#[tokio::test]
async fn a_cancelled_body_is_dropped_inside_its_call_before_the_release() {
    let store: Arc<dyn Store> = Arc::new(idem_runtime::MemoryStore::new());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let call = cancellable(1, store.clone(), seen.clone());
    assert!(
        tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err()
    );
    assert_eq!(
        *seen.lock().unwrap(),
        Some((true, true)),
        "(inside the call, still claimed)"
    );
    let key = key_of(cancellable(1, store.clone(), seen.clone()))
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None, "released after");
}

// ---- the body the fn lends to the engine is dropped exactly once, on every path -------------

/// Counts its drops.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[idempotent(name = "macro.body_dropped_once", store = store.clone())]
async fn holds_a_witness(
    n: u32,
    #[idem(exclude)] store: Arc<dyn Store>,
    #[idem(exclude)] witness: Dropped,
) -> Result<u32, Error> {
    let _witness = witness;
    if n == 0 {
        return Err(Error::Config("zero".into()));
    }
    Ok(n)
}

/// First call, replay (the body never polled), failing body, a `key_of` probe (the body never
/// run) and a cancelled call: each drops the body, and with it the witness it owns, once.
#[tokio::test]
async fn the_lent_body_is_dropped_exactly_once_on_every_path() {
    let store: Arc<dyn Store> = Arc::new(idem_runtime::MemoryStore::new());
    let drops = Arc::new(AtomicUsize::new(0));
    let witness = || Dropped(drops.clone());
    let count = || drops.load(Ordering::SeqCst);

    assert_eq!(
        holds_a_witness(1, store.clone(), witness()).await.unwrap(),
        1
    );
    assert_eq!(count(), 1, "first call");
    assert_eq!(
        holds_a_witness(1, store.clone(), witness()).await.unwrap(),
        1
    );
    assert_eq!(count(), 2, "replay");
    assert!(holds_a_witness(0, store.clone(), witness()).await.is_err());
    assert_eq!(count(), 3, "failing body");
    key_of(holds_a_witness(2, store.clone(), witness()))
        .await
        .unwrap();
    assert_eq!(count(), 4, "key_of probe");
    drop(holds_a_witness(3, store.clone(), witness()));
    assert_eq!(count(), 5, "never polled");
    let mut cancelled = Box::pin(holds_a_witness(4, store.clone(), witness()));
    assert!(
        futures::poll!(cancelled.as_mut()).is_ready(),
        "runs in one poll"
    );
    drop(cancelled);
    assert_eq!(count(), 6, "completed, then dropped");
}

#[idempotent(name = "macro.future_size")]
async fn with_a_large_body(index: u8) -> Result<u8, Error> {
    let payload = std::hint::black_box([7u8; 4096]);
    tokio::task::yield_now().await;
    Ok(payload[usize::from(index)])
}

/// An annotated fn's future holds its body once, next to a small state of the call's own: a
/// replay is answered before any engine future is made, and a first call's is boxed.
#[test]
fn an_annotated_fns_future_holds_its_body_once() {
    let body_alone = async {
        let payload = std::hint::black_box([7u8; 4096]);
        tokio::task::yield_now().await;
        Ok::<u8, Error>(payload[1])
    };
    let body = std::mem::size_of_val(&body_alone);
    let call = std::mem::size_of_val(&with_a_large_body(1));
    assert!(body >= 4096);
    // 72 bytes over the body on x86_64 (it was 288 with the engine's future inline).
    assert!(call <= body + 128, "{call} bytes for a {body}-byte body");
}
