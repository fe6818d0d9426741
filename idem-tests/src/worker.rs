//! The cross-process worker shared by `src/bin/idem_worker.rs` and the tests that spawn it
//! (`tests/cross_process.rs`, `tests/faults.rs`).
//!
//! ```text
//! idem_worker run  --backend redis|postgres --url URL --namespace NS --worker N
//!                  [--first-key I] [--keys COUNT] [--start-at-ms UNIX_MS] [--lease-ms MS]
//! idem_worker hold --backend redis|postgres --url URL --namespace NS --first-key I [--lease-ms MS]
//! ```
//!
//! `run` calls the operation [`OP`] for keys `I..I+COUNT` concurrently; each body increments a
//! counter held in the same server (`INCR <NS>counter` / `UPDATE "<NS>".counter SET n = n + 1`)
//! and returns a string naming the worker and the counter value. It prints one JSON line per
//! key, `{"key": i, "result": "..."}` (or `"error"`), and exits non-zero if any call failed.
//! Retryable errors (a crashed owner, a server hiccup) are retried a few times, as a real client
//! would.
//!
//! `hold` claims one key and prints `{"token": "<hex>"}` from inside the body, then hangs (its
//! lease kept alive by the engine's renewal) until the process is killed.
//!
//! `NS` is the Redis key prefix or the PostgreSQL schema of the test run.

use std::sync::Arc;
use std::time::Duration;

use idem_runtime::store::{PostgresStore, RedisStore};
use idem_runtime::{Error, Key, Operation, Store};
use sqlx::postgres::PgPoolOptions;

/// The operation every worker runs.
pub static OP: Operation = Operation::new("idem_tests.cross_process");

/// The key of item `i`.
pub fn key(i: u64) -> Key {
    OP.key(&i).expect("plain key material")
}

/// Which server a worker talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Redis (`--url redis://…`, namespace = key prefix).
    Redis,
    /// PostgreSQL (`--url postgres://…`, namespace = schema).
    Postgres,
}

impl Backend {
    /// The `--backend` argument.
    pub fn as_arg(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
        }
    }
}

/// `<exe> <mode> --backend … --url … --namespace …`: the start of every worker command line
/// (the tests pass `env!("CARGO_BIN_EXE_idem_worker")`, which only they can see).
pub fn command(
    exe: &str,
    mode: &str,
    backend: Backend,
    url: &str,
    namespace: &str,
) -> std::process::Command {
    let mut command = std::process::Command::new(exe);
    command.args([
        mode,
        "--backend",
        backend.as_arg(),
        "--url",
        url,
        "--namespace",
        namespace,
    ]);
    command
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// `run` or `hold`.
    pub mode: String,
    /// The server.
    pub backend: Backend,
    /// Its URL.
    pub url: String,
    /// Key prefix (Redis) or schema (PostgreSQL).
    pub namespace: String,
    /// Worker number, printed in results.
    pub worker: u32,
    /// First key index.
    pub first_key: u64,
    /// Number of keys.
    pub keys: u64,
    /// Start all calls at this UNIX time (ms), so that processes overlap.
    pub start_at_ms: Option<u64>,
    /// Lease of the operation.
    pub lease: Duration,
}

impl Args {
    /// Parses `std::env::args()`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut args = args.into_iter().skip(1);
        let mode = args.next().ok_or("missing mode: run | hold")?;
        let mut parsed = Args {
            mode,
            backend: Backend::Redis,
            url: String::new(),
            namespace: String::new(),
            worker: 0,
            first_key: 0,
            keys: 200,
            start_at_ms: None,
            lease: Duration::from_secs(5),
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--backend" => {
                    parsed.backend = match value.as_str() {
                        "redis" => Backend::Redis,
                        "postgres" => Backend::Postgres,
                        other => return Err(format!("unknown backend {other}")),
                    }
                }
                "--url" => parsed.url = value,
                "--namespace" => parsed.namespace = value,
                "--worker" => parsed.worker = number()? as u32,
                "--first-key" => parsed.first_key = number()?,
                "--keys" => parsed.keys = number()?,
                "--start-at-ms" => parsed.start_at_ms = Some(number()?),
                "--lease-ms" => parsed.lease = Duration::from_millis(number()?),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(parsed)
    }
}

/// The shared counter the bodies increment.
#[derive(Clone)]
pub enum Counter {
    /// `INCR <prefix>counter`.
    Redis(redis::aio::ConnectionManager, String),
    /// `UPDATE "<schema>".counter SET n = n + 1 WHERE id = 1 RETURNING n`.
    Postgres(sqlx::PgPool, String),
}

impl Counter {
    /// Increments and returns the new value.
    pub async fn increment(&self) -> Result<i64, Error> {
        match self {
            Counter::Redis(conn, key) => redis::cmd("INCR")
                .arg(key)
                .query_async(&mut conn.clone())
                .await
                .map_err(|e| Error::store("redis", e)),
            Counter::Postgres(pool, sql) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(pool)
                .await
                .map_err(|e| Error::store("postgres", e)),
        }
    }
}

/// Connects the store and the counter of `args`.
pub async fn connect(args: &Args) -> Result<(Arc<dyn Store>, Counter), Error> {
    match args.backend {
        Backend::Redis => {
            let store = RedisStore::builder()
                .key_prefix(&args.namespace)
                .connect(&args.url)
                .await?;
            let client =
                redis::Client::open(args.url.as_str()).map_err(|e| Error::store("redis", e))?;
            let conn = client
                .get_connection_manager()
                .await
                .map_err(|e| Error::store("redis", e))?;
            Ok((
                Arc::new(store),
                Counter::Redis(conn, format!("{}counter", args.namespace)),
            ))
        }
        Backend::Postgres => {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .connect(&args.url)
                .await
                .map_err(|e| Error::store("postgres", e))?;
            let store = PostgresStore::builder()
                .schema(&args.namespace)
                .build(pool.clone())?;
            let sql = format!(
                "UPDATE \"{}\".counter SET n = n + 1 WHERE id = 1 RETURNING n",
                args.namespace
            );
            Ok((Arc::new(store), Counter::Postgres(pool, sql)))
        }
    }
}

/// Runs the worker; returns the process exit code.
pub async fn main(args: Args) -> i32 {
    let (store, counter) = match connect(&args).await {
        Ok(connected) => connected,
        Err(error) => {
            eprintln!("idem_worker: {error}");
            return 2;
        }
    };
    let op = OP.clone().with_lease(args.lease);
    let op: &'static Operation = Box::leak(Box::new(op));
    if args.mode == "hold" {
        let out: Result<String, Error> = op
            .call(key(args.first_key))
            .store(store)
            .run(async {
                let token = idem_runtime::current()
                    .map(|c| c.token().to_string())
                    .unwrap_or_default();
                println!("{}", serde_json::json!({ "token": token }));
                std::future::pending::<()>().await;
                Ok(String::new())
            })
            .await;
        eprintln!("idem_worker: hold ended: {out:?}");
        return 3;
    }
    if let Some(at) = args.start_at_ms {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
    }
    // Each worker walks the keys from a different starting point, so that every key is first
    // reached by different processes at different times.
    let count = args.keys.max(1);
    let offset = u64::from(args.worker) * count / 4;
    let mut tasks = Vec::new();
    for n in 0..count {
        let i = args.first_key + (n + offset) % count;
        let (store, counter, worker) = (store.clone(), counter.clone(), args.worker);
        tasks.push(tokio::spawn(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let counter = counter.clone();
                let out: Result<String, Error> = op
                    .call(key(i))
                    .store(store.clone())
                    .run(async move {
                        let n = counter.increment().await?;
                        tokio::time::sleep(Duration::from_millis(n as u64 % 20)).await;
                        Ok(format!("key {i} ran in worker {worker} as increment {n}"))
                    })
                    .await;
                match out {
                    Err(error) if error.is_retryable() && attempt < 20 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    out => return (i, out),
                }
            }
        }));
    }
    let mut failed = false;
    for task in tasks {
        let (i, out) = task.await.expect("worker task panicked");
        let line = match out {
            Ok(result) => serde_json::json!({ "key": i, "result": result }),
            Err(error) => {
                failed = true;
                serde_json::json!({ "key": i, "error": error.to_string() })
            }
        };
        println!("{line}");
    }
    i32::from(failed)
}
