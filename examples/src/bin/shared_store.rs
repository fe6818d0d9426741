//! Two worker processes, one shared store: every operation runs once in total.
//!
//! ```text
//! cargo run -p idem-examples --bin shared_store -- --redis redis://127.0.0.1:6379
//! cargo run -p idem-examples --bin shared_store -- --database-url postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! The program starts itself twice more with `--worker 1` / `--worker 2`. Both workers install
//! the same store (Redis, or PostgreSQL after `migrate()`) and process the same ten orders at
//! the same time. For each order, exactly one process runs the body; the other waits for it and
//! gets the recorded result. The parent prints who ran what and what each worker got, then
//! removes the example's records (the PostgreSQL table `idem_records` stays).

use std::collections::BTreeMap;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use idem_runtime::store::{PostgresStore, RedisStore};
use idem_runtime::{Error, Operation, Store};

static SHIP: Operation = Operation::new("examples.shared_store.ship_order");
const ORDERS: u32 = 10;

#[derive(Clone)]
enum Target {
    Redis(String),
    Postgres(String),
}

struct Args {
    target: Target,
    worker: Option<u32>,
    run_id: String,
}

fn usage() -> ExitCode {
    eprintln!("usage: shared_store (--redis URL | --database-url URL)");
    ExitCode::from(64)
}

fn parse() -> Option<Args> {
    let mut target = None;
    let mut worker = None;
    let mut run_id = format!("{}", std::process::id());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next()?;
        match flag.as_str() {
            "--redis" => target = Some(Target::Redis(value)),
            "--database-url" => target = Some(Target::Postgres(value)),
            "--worker" => worker = Some(value.parse().ok()?),
            "--run-id" => run_id = value,
            _ => return None,
        }
    }
    Some(Args {
        target: target?,
        worker,
        run_id,
    })
}

async fn connect(target: &Target) -> Result<Box<dyn StoreHandle>, Error> {
    Ok(match target {
        Target::Redis(url) => Box::new(RedisStore::connect(url).await?),
        Target::Postgres(url) => {
            let store = PostgresStore::connect(url).await?;
            store.migrate().await?; // idempotent, safe when both workers run it at once
            Box::new(store)
        }
    })
}

/// A store that can be installed process-wide (the trait object is `Clone` via this helper).
trait StoreHandle: Store {
    fn install(&self) -> Result<(), Error>;
}

impl<S: Store + Clone> StoreHandle for S {
    fn install(&self) -> Result<(), Error> {
        idem_runtime::install(self.clone())
    }
}

fn order_key(run_id: &str, order: u32) -> Result<idem_runtime::Key, Error> {
    SHIP.key(&(run_id, order))
}

/// One worker: ships every order once, concurrently with the other worker.
async fn worker(args: &Args, me: u32) -> Result<(), Error> {
    connect(&args.target).await?.install()?;
    let mut tasks = Vec::new();
    for order in 1..=ORDERS {
        let key = order_key(&args.run_id, order)?;
        // Worker 1 walks the orders upwards, worker 2 downwards: both race for every order.
        let position = if me == 1 { order } else { ORDERS + 1 - order };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30) * position).await;
            let shipped: Result<String, Error> = SHIP
                .call(key)
                .run(async move {
                    // The side effect: in real code, a call to the shipping provider.
                    println!("RAN order-{order} worker-{me}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(format!("parcel for order-{order}, shipped by worker {me}"))
                })
                .await;
            (order, shipped)
        }));
    }
    for task in tasks {
        let (order, shipped) = task.await.expect("task");
        println!("GOT order-{order} {}", shipped?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(args) = parse() else { return usage() };
    if let Some(me) = args.worker {
        return match worker(&args, me).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("worker {me}: {error}");
                ExitCode::FAILURE
            }
        };
    }

    // The parent: start two workers of this same binary and compare what they report.
    let (flag, url) = match &args.target {
        Target::Redis(url) => ("--redis", url.clone()),
        Target::Postgres(url) => ("--database-url", url.clone()),
    };
    let exe = std::env::current_exe().expect("own path");
    // Both are started before either is waited for: they run at the same time.
    let children: Vec<_> = (1..=2)
        .map(|me| {
            Command::new(&exe)
                .args([
                    flag,
                    &url,
                    "--worker",
                    &me.to_string(),
                    "--run-id",
                    &args.run_id,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let children: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait for a worker"))
        .collect();
    let mut ran: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut got: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (i, output) in children.iter().enumerate() {
        if !output.status.success() {
            eprintln!(
                "worker {} failed: {}",
                i + 1,
                String::from_utf8_lossy(&output.stderr)
            );
            return ExitCode::FAILURE;
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut parts = line.splitn(3, ' ');
            let (kind, order) = (parts.next(), parts.next());
            let order: u32 = order
                .and_then(|o| o.strip_prefix("order-"))
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            let rest = parts.next().unwrap_or_default().to_owned();
            match kind {
                Some("RAN") => ran.entry(order).or_default().push(rest),
                Some("GOT") => got.entry(order).or_default().push(rest),
                _ => {}
            }
        }
    }

    let mut all_once = true;
    for order in 1..=ORDERS {
        let runs = ran.get(&order).cloned().unwrap_or_default();
        let results = got.get(&order).cloned().unwrap_or_default();
        let agree = results.len() == 2 && results[0] == results[1];
        all_once &= runs.len() == 1 && agree;
        println!(
            "order-{order:<2} ran {} time(s) (in {}); both workers got the same result: {} ({})",
            runs.len(),
            runs.join(", "),
            if agree { "yes" } else { "NO" },
            results.first().map(String::as_str).unwrap_or("-")
        );
    }

    // Clean up the example's records.
    if let Ok(store) = connect(&args.target).await {
        for order in 1..=ORDERS {
            if let Ok(key) = order_key(&args.run_id, order) {
                let _ = store.remove(&key).await;
            }
        }
    }

    if all_once {
        println!("each of the {ORDERS} operations ran exactly once across 2 processes");
        ExitCode::SUCCESS
    } else {
        println!("some operation did not run exactly once");
        ExitCode::FAILURE
    }
}
