//! The PostgreSQL store (feature `postgres`): durable records in one table, on a sqlx
//! `PgPool`. See [`PostgresStore`] for the schema, statements, round trips and durability.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, AssertSqlSafe, ConnectOptions, Row};

use super::{Claim, Record, Store, StoreFuture, deadline, jittered};
use crate::{Error, Fingerprint, Key, Token};

use super::local_cache::LocalCache;

const NAME: &str = "postgres";
/// How long a pooled connection may sit idle before it is checked with a round trip before its
/// next use (see [`PostgresStoreBuilder::connect`]).
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);
/// How often a claim statement is retried when a concurrent claim's row was invisible to its
/// snapshot (each retry has a newer snapshot; more than one is rare).
const CLAIM_ATTEMPTS: usize = 8;
/// How often a statement runs in all when the server aborts it with a serialization failure
/// (SQLSTATE 40001: a concurrent write to the row under `REPEATABLE READ` or `SERIALIZABLE`
/// default isolation) or a deadlock (40P01). Each run is a transaction of its own, with a new
/// snapshot, so the retry sees the concurrent write and decides as `READ COMMITTED` would.
const CONFLICT_ATTEMPTS: usize = 8;
/// The store's own table of schema versions, in the store's schema.
const VERSION_TABLE: &str = "idem_schema_version";
/// Rows deleted per statement by [`PostgresStore::purge_expired`].
const PURGE_BATCH: usize = 1000;
/// First argument of `pg_advisory_xact_lock(int, int)` for migrations: "idem" in ASCII.
const LOCK_CLASS: i32 = 0x6964_656d;

/// The schema migrations, in order; `migrate()` applies those not yet recorded.
/// `{t}` is the quoted, qualified table name, `{idx}` the quoted index name, `{claim}` the
/// quoted, qualified name of the claim function.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS {t} (
        key bytea PRIMARY KEY,
        fingerprint bytea NOT NULL,
        state text NOT NULL,
        token bytea,
        lease_until timestamptz,
        expires_at timestamptz NOT NULL,
        value bytea,
        codec smallint,
        created_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz
    )",
        "CREATE INDEX IF NOT EXISTS {idx} ON {t} (expires_at)",
    ],
    // Version 2: the write half of a claim as a function, so that the claim statement is a
    // plain read whenever the key holds a live record (see `Sql::claim`).
    &[CLAIM_FUNCTION],
];

/// Takes `p_key` for a new claim if it is absent, expired or lease-lapsed; answers whether it
/// did. `false` means a live record exists that the calling statement's snapshot did not see
/// (a concurrent claim committed in between). PL/pgSQL rather than SQL because PL/pgSQL keeps
/// the planned `INSERT` per connection; a SQL function would plan it again on every call.
const CLAIM_FUNCTION: &str = "CREATE OR REPLACE FUNCTION {claim}(
        p_key bytea, p_fingerprint bytea, p_token bytea, p_lease_ms bigint
    ) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $idem$
    BEGIN
        INSERT INTO {t} AS r (key, fingerprint, state, token, lease_until, expires_at,
                              value, codec, created_at, completed_at)
        SELECT p_key, p_fingerprint, 'in_progress', p_token, c.until, c.until,
               NULL, NULL, c.now, NULL
        FROM (SELECT clock_timestamp() AS now,
                     clock_timestamp() + p_lease_ms * interval '1 millisecond' AS until) c
        ON CONFLICT (key) DO UPDATE SET
            fingerprint = excluded.fingerprint, state = excluded.state,
            token = excluded.token, lease_until = excluded.lease_until,
            expires_at = excluded.expires_at, value = NULL, codec = NULL,
            created_at = excluded.created_at, completed_at = NULL
        WHERE r.expires_at <= clock_timestamp();
        RETURN FOUND;
    END
    $idem$";

/// A durable shared store on PostgreSQL.
///
/// ```no_run
/// # async fn demo() -> Result<(), idem_runtime::Error> {
/// use idem_runtime::store::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://app@db/app").await?;
/// store.migrate().await?; // idempotent; safe when several instances start at once
/// idem_runtime::install(store)?;
///
/// // Or on your own pool, with a schema and table of your choice:
/// # let pool = sqlx::PgPool::connect_lazy("postgres://app@db/app").map_err(|e| idem_runtime::Error::store("postgres", e))?;
/// let store = PostgresStore::builder().schema("billing").table("idem_records").build(pool)?;
/// # let _ = store; Ok(()) }
/// ```
///
/// Cloning is cheap and shares the [`PgPool`].
///
/// ## Schema
///
/// [`PostgresStore::migrate`] creates (idempotently) the table `idem_records` in schema `public`
/// by default; both names are configurable and always quoted:
///
/// ```sql
/// CREATE TABLE "public"."idem_records" (
///     key          bytea       PRIMARY KEY,  -- the 32-byte key digest
///     fingerprint  bytea       NOT NULL,     -- 32-byte payload fingerprint
///     state        text        NOT NULL,     -- 'in_progress' | 'completed' ('error' reserved)
///     token        bytea,                    -- 16-byte fencing token while in progress
///     lease_until  timestamptz,              -- end of the lease while in progress
///     expires_at   timestamptz NOT NULL,     -- the row counts as absent from then on
///     value        bytea,                    -- the record bytes (crate::record), once completed
///     codec        smallint,                 -- codec id copied from the record header
///     created_at   timestamptz NOT NULL DEFAULT now(),
///     completed_at timestamptz
/// );
/// CREATE INDEX "idem_records_expires_at_idx" ON "public"."idem_records" (expires_at);
///
/// -- Schema version 2: the write half of a claim (see Statements), named `<table>_claim`.
/// CREATE OR REPLACE FUNCTION "public"."idem_records_claim"(
///     p_key bytea, p_fingerprint bytea, p_token bytea, p_lease_ms bigint
/// ) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $idem$
/// BEGIN
///     INSERT INTO "public"."idem_records" AS r (key, fingerprint, state, token, lease_until,
///                                               expires_at, value, codec, created_at, completed_at)
///     SELECT p_key, p_fingerprint, 'in_progress', p_token, c.until, c.until,
///            NULL, NULL, c.now, NULL
///     FROM (SELECT clock_timestamp() AS now,
///                  clock_timestamp() + p_lease_ms * interval '1 millisecond' AS until) c
///     ON CONFLICT (key) DO UPDATE SET
///         fingerprint = excluded.fingerprint, state = excluded.state,
///         token = excluded.token, lease_until = excluded.lease_until,
///         expires_at = excluded.expires_at, value = NULL, codec = NULL,
///         created_at = excluded.created_at, completed_at = NULL
///     WHERE r.expires_at <= clock_timestamp();
///     RETURN FOUND;
/// END
/// $idem$;
/// ```
///
/// `expires_at` is the one column every decision reads: the lease end while in progress, the
/// completion time plus the TTL once completed. A row whose `expires_at` has passed behaves as
/// absent (a claim takes it over) until [`PostgresStore::purge_expired`] deletes it.
///
/// Migrations run under `pg_advisory_xact_lock`, so several instances can start at once, and
/// are tracked in the store's own table `idem_schema_version` (one row per records table) in the
/// same schema, never in sqlx's `_sqlx_migrations`, which belongs to your own migrator. You may
/// also copy the DDL above into your migrations and skip `migrate()`. A table without the
/// function (schema version 1: created by idem 0.1's first `migrate()` or from its DDL) keeps
/// working: the first claim that finds the function missing logs a warning and the store
/// claims with a single upsert statement instead (atomic as well, but it costs the server about
/// 1.7 times as much per replay). The store (and its clones) keeps that fallback until **this
/// process** calls [`PostgresStore::migrate`] on it: it does not re-detect the function, so
/// after another process or your own migrations added it, restart or call `migrate()` (a
/// no-op at the current version) to claim through the function again. The table name
/// `idem_schema_version` is refused by the builder for the records table.
///
/// A statement that finds the table (or the claim function's schema) missing fails with an
/// [`Error::Store`] that says to run `migrate()` first.
///
/// ## Statements
///
/// All SQL is built at run time from the validated, quoted identifiers (no `query!` macros, so
/// building needs no database) and sent as prepared statements that sqlx caches per connection.
/// The **database clock** decides expiry: every statement compares `expires_at` with
/// `clock_timestamp()` and computes new expiry times from it, never from the application's clock.
///
/// - **claim** is one statement, correct under `READ COMMITTED`:
///
///   ```sql
///   SELECT r.state, r.fingerprint, r.value, expires_at - clock_timestamp() AS remaining,
///          CASE WHEN r.key IS NULL THEN "public"."idem_records_claim"($1, $2, $3, $4) END
///   FROM (SELECT) AS one LEFT JOIN "public"."idem_records" AS r
///        ON r.key = $1 AND r.expires_at > clock_timestamp()
///   ```
///
///   It reads the live row, if any: a completed one is a replay (fingerprint and value), an
///   in-progress one a running duplicate (fingerprint and remaining lease). Only when there is
///   no live row does `CASE` call the claim function, whose `INSERT … ON CONFLICT (key) DO
///   UPDATE … WHERE <row expired>` inserts an absent key or takes over an expired or
///   lease-lapsed row, atomically. A replay is therefore a primary-key read: it neither writes
///   nor locks the row (no WAL, no waiting on other claims), and the server does not even set
///   up the `INSERT` for it. That matters: with the upsert in a CTE of the same statement (the
///   fallback for version-1 tables, see Schema), the server initialises the `INSERT` on every
///   execution, which makes a replay cost it about 1.7 times as much (callgrind of the backend:
///   135k vs 78k instructions per statement; a primary-key `SELECT` of the value is 46k).
///
///   A live row committed by a concurrent claim *after* the statement's snapshot is invisible
///   to the read, and the function's conflict check (which sees it) finds it live and answers
///   `false`; the store then runs the statement again, and the new snapshot sees the row.
///   Under a storm of first callers the losers therefore take 2 round trips.
///
///   Under a `REPEATABLE READ` or `SERIALIZABLE` default isolation
///   (`default_transaction_isolation`), PostgreSQL aborts such a loser with a serialization
///   failure (SQLSTATE 40001) instead; the store runs the statement again as well (also on a
///   deadlock, 40P01), up to 8 times in all, and only then reports [`Error::Store`]. A replay
///   is unaffected: it is still one read. `complete`, `release`, `renew`, `remove` and the
///   purge are retried the same way, so every isolation level gives the answers of
///   `READ COMMITTED`.
/// - **complete** and **renew** carry the token and liveness in `WHERE` (`token = $2 AND state =
///   'in_progress' AND expires_at > clock_timestamp()`): they change only a live claim of the
///   token. **release** matches `token = $2 AND state = 'in_progress'` only, so it also deletes
///   the token's claim after its lease lapsed (nobody else took it over yet, since a takeover
///   replaces the token), and reports `true` only if the row was still live
///   (`RETURNING expires_at > clock_timestamp()`). A row lock serialises all three with
///   claims.
///
/// ## Round trips
///
/// | path | round trips |
/// |---|---|
/// | replay (record completed) | 1 (the claim statement returns the value; a read: no write, no row lock) |
/// | replay with [`PostgresStoreBuilder::local_cache`], record seen before by this process | 0 |
/// | first call | 2 (claim: read + insert by the function, then `complete` update: two commits) |
/// | first call racing other first calls | +1 for each loser (see above) |
/// | first call whose body fails | 2 (claim, `release`) |
/// | duplicate while running | 1 claim, then polls (below), then 1 read |
///
/// (Each is one statement on an already-open pooled connection; sqlx pipelines
/// bind/execute/sync. A fresh connection adds its handshake and one prepare per statement.)
///
/// ## Waiting for a running call
///
/// A duplicate polls `SELECT state …` with a jittered exponential backoff: 5 ms, doubling up to
/// 200 ms, each sleep drawn from 50–100 % of the step, bounded by the caller's wait timeout and
/// the owner's remaining lease. So a waiter learns of a completion up to about 200 ms late
/// (and a lapsed lease, which nothing announces, is found the same way).
///
/// Not `LISTEN`/`NOTIFY`, although PostgreSQL has it: `LISTEN` needs a session of its own held
/// open by each process, which a pooler in transaction mode (PgBouncer's default, common in
/// front of web backends) does not provide, and a notification sent while that session
/// reconnects is lost, so waiters would have to poll anyway. Waiting is the rare path
/// (duplicates that arrive while the first call still runs); polling it costs one primary-key
/// read per step and works through any pooler.
///
/// ## Durability
///
/// `complete` returns after its transaction **committed**, so a result the caller received is
/// in the database with PostgreSQL's durability (`synchronous_commit`, replication settings).
/// Expired rows stay until purged: call [`PostgresStore::purge_expired`] from a job or start
/// [`PostgresStore::spawn_sweeper`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Sql>,
    max_value_bytes: usize,
    /// How long one statement may go unanswered ([`PostgresStoreBuilder::response_timeout`]).
    response_timeout: Duration,
    /// Set once a claim found the claim function missing (a table at schema version 1).
    no_claim_function: Arc<AtomicBool>,
    /// The last diagnosis of a pool timeout, and when it was made: one probe connection at a
    /// time, reused for a second, so that an exhausted pool does not open one more connection
    /// per failed statement.
    pool_diagnosis: Arc<tokio::sync::Mutex<Option<(std::time::Instant, String)>>>,
    /// Completed records seen by this process (opt-in, [`PostgresStoreBuilder::local_cache`]).
    cache: Option<Arc<LocalCache>>,
}

/// Configures a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    schema: String,
    table: String,
    max_value_bytes: usize,
    max_connections: u32,
    acquire_timeout: Duration,
    response_timeout: Duration,
    local_cache: (usize, Duration),
}

/// The statements, built once from the identifiers.
struct Sql {
    schema: String,
    table: String,
    qualified: String,
    /// The quoted, qualified name of the claim function (schema version 2).
    claim_function: String,
    claim: Arc<str>,
    /// The claim as one statement without the function, for tables at schema version 1.
    claim_without_function: Arc<str>,
    complete: Arc<str>,
    release: Arc<str>,
    renew: Arc<str>,
    get: Arc<str>,
    state: Arc<str>,
    remove: Arc<str>,
    purge: Arc<str>,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            schema: "public".to_owned(),
            table: "idem_records".to_owned(),
            max_value_bytes: PostgresStore::DEFAULT_MAX_VALUE_BYTES,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            response_timeout: PostgresStore::DEFAULT_RESPONSE_TIMEOUT,
            local_cache: (0, Duration::ZERO),
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default `public`). Created by [`PostgresStore::migrate`]
    /// if missing. ASCII letters, digits and `_`, not starting with a digit or `pg_` (reserved
    /// by PostgreSQL), at most 63 bytes.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (default `idem_records`). Same rules as the schema, at most 48 bytes (the
    /// index name adds a suffix), and not `idem_schema_version` (the store's own version table
    /// in the same schema): [`build`](Self::build) and [`connect`](Self::connect) refuse such a
    /// name with [`Error::Config`].
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Upper bound on one encoded value in bytes (default 1 MiB); larger values are refused with
    /// [`Error::ValueTooLarge`] before anything is written.
    pub fn max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// Pool size used by [`connect`](Self::connect) (default 10).
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }

    /// How long [`connect`](Self::connect)'s pool waits for a connection before a call fails
    /// with [`Error::Store`] (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long a statement may go unanswered once it has a connection (default 5 s): past it
    /// the call fails with a retryable [`Error::Store`] ("no answer from PostgreSQL within …")
    /// instead of waiting for as long as the network keeps the connection open, and the
    /// connection is closed rather than returned to the pool, where it would hang the next
    /// statement. A statement without an answer may still have been applied: a claim is then
    /// released by its token, a lease left to expire, a value recorded or not (a retry replays
    /// it if it was).
    ///
    /// Keep it above the slowest statement you expect under load, lock waits included (a claim
    /// waits for a concurrent claim of the same key to commit), and above the time one batch of
    /// [`purge_expired`](crate::Store::purge_expired) takes (at most 1,000 rows). `migrate()` is
    /// not bounded by it. Zero is refused by [`build`](Self::build) and
    /// [`connect`](Self::connect) with [`Error::Config`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Keeps up to `max_entries` completed records that this process has replayed in a local
    /// cache, and answers later claims of those keys from memory for up to `max_age` (and never
    /// beyond the record's own expiry), without a round trip. Off by default.
    ///
    /// **Staleness:** a record removed (`forget`) by *another* process is still replayed here
    /// until its entry's `max_age` has passed; a `remove` through this store (or a clone of it)
    /// takes effect at once. Keep `max_age` as short as that window may be. Only completed
    /// records of at most 64 KiB are cached (memory: at most `max_entries` × 64 KiB); running
    /// calls are always asked for.
    pub fn local_cache(mut self, max_entries: usize, max_age: Duration) -> Self {
        self.local_cache = (max_entries, max_age);
        self
    }

    /// A zero response timeout would fail every statement (and close its connection).
    fn check_timeouts(&self) -> Result<(), Error> {
        if self.response_timeout.is_zero() {
            return Err(Error::Config(
                "postgres store: response_timeout is zero, so no statement could ever be \
                 answered in time; give the longest a statement may take under load (default 5 s)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Builds the store on `pool` (no I/O). Fails with [`Error::Config`] on an invalid schema or
    /// table name (see [`table`](Self::table)).
    ///
    /// The pool's own settings apply: sqlx's default pool checks every connection with a round
    /// trip before each use, so each statement takes two; a pool made with
    /// `test_before_acquire(false)` saves that round trip (see [`connect`](Self::connect) for
    /// the check its pool keeps).
    pub fn build(self, pool: PgPool) -> Result<PostgresStore, Error> {
        let sql = Sql::new(&self.schema, &self.table)?;
        self.check_timeouts()?;
        Ok(PostgresStore {
            pool,
            sql: Arc::new(sql),
            max_value_bytes: self.max_value_bytes,
            response_timeout: self.response_timeout,
            no_claim_function: Arc::new(AtomicBool::new(false)),
            pool_diagnosis: Arc::default(),
            cache: LocalCache::new(self.local_cache.0, self.local_cache.1).map(Arc::new),
        })
    }

    /// Opens a pool on `url` (`postgres://user:password@host:port/database`) and builds the
    /// store. Fails with [`Error::Config`] on an invalid schema or table name, an invalid URL,
    /// or credentials or a database the server refuses (a retry will not help), and with
    /// [`Error::Store`] if the server cannot be reached: at once if the connection is refused
    /// (nothing listens there), else once the [`acquire_timeout`](Self::acquire_timeout) has
    /// passed; the message names the cause and shows the URL without its password.
    ///
    /// The pool checks a connection with a round trip before its use only when it has been
    /// idle for a second or more (the server or the network may have closed it meanwhile), not
    /// before every statement as sqlx's default does: a replay waits for one round trip, not
    /// two (sqlx still checks each connection as it returns to the pool, after its caller has
    /// the answer). A connection that breaks while in steady use meets its next statement: if
    /// the server ended it (a restart, SQLSTATE 57P01), the statement runs again on a new
    /// connection; any other loss fails the call with a retryable [`Error::Store`], and the
    /// pool replaces the connection.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, Error> {
        Sql::new(&self.schema, &self.table)?;
        self.check_timeouts()?;
        let cannot = |cause: &dyn fmt::Display| {
            Error::store(
                NAME,
                format!("cannot connect to PostgreSQL at {}: {cause}", redact(url)),
            )
        };
        let refused = |cause: &sqlx::Error| {
            Error::Config(format!(
                "cannot connect to PostgreSQL at {}: {}; check the URL (user, password, \
                 database), a retry will not help",
                redact(url),
                Described(cause)
            ))
        };
        let options: PgConnectOptions = url.parse().map_err(|e| refused(&e))?;
        // One connection first: a server that refuses it outright (nothing listens there, bad
        // credentials) is reported at once, where the pool would try again until its acquire
        // timeout. Anything slower or less clear is left to the pool, as before.
        match tokio::time::timeout(self.acquire_timeout, options.connect()).await {
            Ok(Ok(conn)) => drop(conn),
            Ok(Err(e)) if is_permanent(&e) => return Err(refused(&e)),
            Ok(Err(e @ sqlx::Error::Io(_))) => {
                return Err(cannot(&format_args!(
                    "{}; is the server running?",
                    Described(&e)
                )));
            }
            Ok(Err(_)) | Err(_) => {}
        }
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            // sqlx's default checks every connection with a round trip before each use, which
            // doubles the round trips of every statement (a replay: 2 instead of 1). Only a
            // connection idle for a while is checked: one the server or the network may have
            // closed meanwhile (a restart, an idle timeout, a failover). A connection that
            // breaks while in steady use meets its next statement (see `is_conflict`).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    // `false`: replaced without a warning (sqlx warns of a hook's error, and a
                    // server restart would log one per pooled connection).
                    Ok(meta.idle_for < CHECK_IDLE_AFTER
                        || sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .connect_with(options.clone())
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            // The pool only says that no connection came in time: ask the server why.
            Err(sqlx::Error::PoolTimedOut) => {
                let cause = Box::pin(probe(&options)).await;
                return Err(cannot(&format_args!(
                    "no connection within {:?}; {cause}",
                    self.acquire_timeout
                )));
            }
            Err(e) if is_permanent(&e) => return Err(refused(&e)),
            Err(e) => return Err(cannot(&Described(&e))),
        };
        self.build(pool)
    }
}

/// `url` without its password, for error messages: the password of the userinfo
/// (`postgres://user:password@host` shows as `postgres://user@host`) and every query parameter
/// whose name ends in `password` (`?password=…`, `?sslpassword=…`) are left out.
fn redact(url: &str) -> String {
    if !url.contains("://") {
        // Not a URL (a `key=value` connection string): drop its password settings.
        return url
            .split_whitespace()
            .filter(|setting| !is_password_setting(setting.split('=').next().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ");
    }
    super::redact::url_without_password(url, is_password_setting)
}

/// Whether a setting or query parameter named `name` is a password (`password`, `sslpassword`,
/// any case).
fn is_password_setting(name: &str) -> bool {
    name.len() >= 8
        && name
            .get(name.len() - 8..)
            .is_some_and(|end| end.eq_ignore_ascii_case("password"))
}

/// Why no connection could be opened with `options`: one connection attempt (at most 2 s),
/// described for an error message. The cause never contains the password.
async fn probe(options: &PgConnectOptions) -> String {
    match tokio::time::timeout(Duration::from_secs(2), options.connect()).await {
        Ok(Ok(conn)) => {
            drop(conn);
            "the server is reachable, so the pool is exhausted (raise its size)".to_owned()
        }
        Ok(Err(cause)) => format!("cannot reach the server: {}", Described(&cause)),
        Err(_) => "the server does not answer".to_owned(),
    }
}

/// Checks an identifier and returns it double-quoted.
fn quote_ident(kind: &str, name: &str, max_len: usize) -> Result<String, Error> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= max_len;
    if !valid {
        return Err(Error::Config(format!(
            "invalid PostgreSQL {kind} name {name:?} for the idem store: use 1 to {max_len} ASCII \
             letters, digits or `_`, not starting with a digit"
        )));
    }
    Ok(format!("\"{name}\""))
}

impl Sql {
    fn new(schema: &str, table: &str) -> Result<Sql, Error> {
        // Identifiers are quoted, so only the exact names clash: the version table and its
        // primary-key index.
        if table == VERSION_TABLE || table == format!("{VERSION_TABLE}_pkey") {
            return Err(Error::Config(format!(
                "the PostgreSQL table name {table:?} is reserved: `migrate()` keeps the idem \
                 store's schema versions in {VERSION_TABLE:?} (with its index \
                 \"{VERSION_TABLE}_pkey\") in the same schema; choose another name with \
                 PostgresStoreBuilder::table (the default is \"idem_records\")"
            )));
        }
        // PostgreSQL refuses to create such a schema ("unacceptable schema name"): said here,
        // as a configuration error, rather than by `migrate()` as a store error.
        if schema.starts_with("pg_") {
            return Err(Error::Config(format!(
                "the PostgreSQL schema name {schema:?} is reserved: names starting with `pg_` \
                 belong to the system; choose another with PostgresStoreBuilder::schema (the \
                 default is \"public\")"
            )));
        }
        let s = quote_ident("schema", schema, 63)?;
        let t = format!("{s}.{}", quote_ident("table", table, 48)?);
        // The table name is at most 48 bytes, so the suffix keeps the name within 63.
        let claim_function = format!(
            "{s}.{}",
            quote_ident("function", &format!("{table}_claim"), 63)?
        );
        let ms = "$::bigint * interval '1 millisecond'";
        let lease = ms.replace('$', "$4");
        // An interval, converted by the client (`remaining_at`): cheaper for the server than
        // turning it into milliseconds in SQL (`extract` computes in numeric).
        let remaining = "expires_at - clock_timestamp()";
        // Whitespace runs collapsed: sqlx hashes and compares the statement text on every
        // execution to find its prepared statement, so a shorter text is cheaper per call.
        // (No literal in these statements contains two spaces or a newline.)
        let arc = |sql: String| -> Arc<str> {
            Arc::from(sql.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        Ok(Sql {
            schema: schema.to_owned(),
            table: table.to_owned(),
            qualified: t.clone(),
            claim_function: claim_function.clone(),
            // The read is the statement; the write (the function) is evaluated only when the
            // read found no live row. A replay is therefore a plain primary-key read: it
            // neither locks nor writes the row, and the server does not even set up an
            // `INSERT` for it (a data-modifying CTE would be initialised on every execution,
            // which made this statement cost the server about three times a plain `SELECT`).
            // The outer join yields exactly one row: the live record, or NULLs plus the
            // function's answer. A live row committed by a concurrent claim after this
            // statement's snapshot makes the function answer `false` (see `claim_now`).
            claim: arc(format!(
                "SELECT r.state, r.fingerprint, r.value, {remaining} AS remaining,
                    CASE WHEN r.key IS NULL
                        THEN {claim_function}($1::bytea, $2::bytea, $3::bytea, $4::bigint) END
                FROM (SELECT) AS one LEFT JOIN {t} AS r
                    ON r.key = $1::bytea AND r.expires_at > clock_timestamp()"
            )),
            claim_without_function: arc(format!(
                "WITH live AS (
                    SELECT state, fingerprint, value, {remaining} AS remaining
                    FROM {t} WHERE key = $1::bytea AND expires_at > clock_timestamp()
                ), taken AS (
                    INSERT INTO {t} AS r (key, fingerprint, state, token, lease_until, expires_at,
                                          value, codec, created_at, completed_at)
                    SELECT $1::bytea, $2::bytea, 'in_progress', $3::bytea, c.until, c.until,
                           NULL, NULL, c.now, NULL
                    FROM (SELECT clock_timestamp() AS now, clock_timestamp() + {lease} AS until) c
                    WHERE NOT EXISTS (SELECT 1 FROM live)
                    ON CONFLICT (key) DO UPDATE SET
                        fingerprint = excluded.fingerprint, state = excluded.state,
                        token = excluded.token, lease_until = excluded.lease_until,
                        expires_at = excluded.expires_at, value = NULL, codec = NULL,
                        created_at = excluded.created_at, completed_at = NULL
                    WHERE r.expires_at <= clock_timestamp()
                    RETURNING 1
                )
                SELECT state, fingerprint, value, remaining, NULL::boolean FROM live
                UNION ALL
                SELECT NULL, NULL, NULL, NULL, true FROM taken"
            )),
            complete: arc(format!(
                "UPDATE {t} SET state = 'completed', value = $3::bytea, codec = $4::smallint,
                    token = NULL, lease_until = NULL, completed_at = c.now, expires_at = c.until
                FROM (SELECT clock_timestamp() AS now, clock_timestamp() + {ttl} AS until) c
                WHERE key = $1::bytea AND token = $2::bytea AND state = 'in_progress'
                  AND expires_at > clock_timestamp()",
                ttl = ms.replace('$', "$5"),
            )),
            release: arc(format!(
                "DELETE FROM {t} WHERE key = $1::bytea AND token = $2::bytea AND state = 'in_progress'
                RETURNING expires_at > clock_timestamp() AS live"
            )),
            renew: arc(format!(
                "UPDATE {t} SET lease_until = c.until, expires_at = c.until
                FROM (SELECT clock_timestamp() + {lease} AS until) c
                WHERE key = $1::bytea AND token = $2::bytea AND state = 'in_progress'
                  AND expires_at > clock_timestamp()",
                lease = ms.replace('$', "$3"),
            )),
            get: arc(format!(
                "SELECT state, fingerprint, value, {remaining} AS remaining
                FROM {t} WHERE key = $1::bytea AND expires_at > clock_timestamp()"
            )),
            state: arc(format!(
                "SELECT state FROM {t} WHERE key = $1::bytea AND expires_at > clock_timestamp()"
            )),
            remove: arc(format!(
                "DELETE FROM {t} WHERE key = $1::bytea RETURNING expires_at > clock_timestamp() AS live"
            )),
            purge: arc(format!(
                "DELETE FROM {t} WHERE key IN (
                    SELECT key FROM {t} WHERE expires_at <= clock_timestamp()
                    ORDER BY expires_at LIMIT $1::bigint FOR UPDATE SKIP LOCKED
                ) AND expires_at <= clock_timestamp()"
            )),
        })
    }

    fn migration(&self, statement: &str) -> String {
        let index = quote_ident("index", &format!("{}_expires_at_idx", self.table), 63)
            .unwrap_or_else(|_| "\"idem_records_expires_at_idx\"".to_owned());
        statement
            .replace("{t}", &self.qualified)
            .replace("{idx}", &index)
            .replace("{claim}", &self.claim_function)
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.sql.qualified)
            .field("max_value_bytes", &self.max_value_bytes)
            .field(
                "local_cache",
                &self.cache.as_ref().map(|c| (c.max_entries(), c.max_age())),
            )
            .finish()
    }
}

/// A row that is not an idem record, naming the table and the key (as `bytea` hex, ready for
/// `WHERE key = '\x…'`) so that an operator can inspect it.
fn malformed(table: &str, key: &Key, what: impl fmt::Display) -> Error {
    Error::store(
        NAME,
        format!("malformed idem record in PostgreSQL table {table}, key '\\x{key}': {what}"),
    )
}

/// A duration as whole milliseconds, at least 1.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX)
        .clamp(1, 1 << 50)
}

/// Reads the columns of one key's row; failures name the table and the key.
#[derive(Clone, Copy)]
struct Columns<'a> {
    row: &'a PgRow,
    table: &'a str,
    key: &'a Key,
}

impl<'a> Columns<'a> {
    fn malformed(self, what: impl fmt::Display) -> Error {
        malformed(self.table, self.key, what)
    }

    fn get<T>(self, column: usize) -> Result<T, Error>
    where
        T: sqlx::Decode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        self.row.try_get(column).map_err(|e| self.malformed(e))
    }

    fn fingerprint(self, column: usize) -> Result<Fingerprint, Error> {
        let bytes: &[u8] = self.get(column)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| self.malformed("fingerprint is not 32 bytes"))?;
        Ok(Fingerprint::from_bytes(bytes))
    }

    fn remaining(self, column: usize) -> Result<Duration, Error> {
        remaining(self.get(column)?)
    }

    fn value(self, column: usize) -> Result<Bytes, Error> {
        let value: Option<&[u8]> = self.get(column)?;
        value
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| self.malformed("completed record without a value"))
    }

    fn state(self, column: usize) -> Result<&'a str, Error> {
        self.get(column)
    }
}

/// A `timestamptz - timestamptz` interval as a duration (negative: zero).
fn remaining(interval: PgInterval) -> Result<Duration, Error> {
    // Subtracting timestamps gives days and microseconds; months are 0, counted as 30 days
    // (PostgreSQL's own convention) should a server ever report them.
    let days = i64::from(interval.months) * 30 + i64::from(interval.days);
    let micros = days
        .saturating_mul(86_400_000_000)
        .saturating_add(interval.microseconds);
    Ok(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    match e {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    }
}

/// Whether `e` is PostgreSQL's `undefined_function` (SQLSTATE 42883) about a function. The
/// same code reports a missing operator (`operator does not exist: text = bytea`), which
/// means a column of another type, not a missing function: told apart by the server routine
/// that raised it (`op_error`), which, unlike the message, is not translated.
fn is_undefined_function(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let routine = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.routine());
    db.code().as_deref() == Some("42883") && routine != Some("op_error")
}

/// A sqlx error as an operator reads it: a database error is its message, SQLSTATE, detail
/// and hint (sqlx adds " at line N", the line of the server's own C source, which reads like
/// a place in the user's SQL); anything else as sqlx says it.
struct Described<'a>(&'a sqlx::Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = match self.0 {
            sqlx::Error::Database(db) => db,
            // Ours, not sqlx's ("error communicating with database: …" would hide it).
            sqlx::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<NoAnswer>()) => {
                return fmt::Display::fmt(io, f);
            }
            other => return other.fmt(f),
        };
        f.write_str(db.message())?;
        if let Some(code) = db.code() {
            write!(f, " (SQLSTATE {code})")?;
        }
        if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // A constraint's detail quotes the row ("Failing row contains (…)"), values
            // included: left out, as from every other message.
            if let Some(detail) = pg.detail().filter(|_| !pg.code().starts_with("23")) {
                write!(f, "; {detail}")?;
            }
            if let Some(hint) = pg.hint() {
                write!(f, "; hint: {hint}")?;
            }
        }
        Ok(())
    }
}

/// A pooled connection running a statement. Closed if dropped before the answer came: sqlx
/// would otherwise check it on its way back to the pool, a check that first waits for the
/// lost answer, without a time limit (on a partition, until the operating system gives up
/// on the connection), and the pool would lack that connection meanwhile.
struct Pending {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    answered: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.conn.close_on_drop();
        }
    }
}

/// A statement's answer, borrowing its connection.
type StatementFuture<'c, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// A statement that got no answer within the response timeout (as the source of a sqlx I/O
/// error, so that it takes the same way as sqlx's own errors).
#[derive(Debug)]
struct NoAnswer(Duration);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no answer from PostgreSQL within {:?} (PostgresStoreBuilder::response_timeout); the \
             statement may have been applied; its connection was closed",
            self.0
        )
    }
}

impl std::error::Error for NoAnswer {}

/// The source of an [`Error::Store`] from sqlx: [`Described`], with the sqlx error as its own
/// source.
#[derive(Debug)]
struct DatabaseError(sqlx::Error);

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Described(&self.0).fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether `e` needs a change of the database or of the settings, not time: bad settings,
/// refused credentials (SQLSTATE class 28), a missing database (3D000) or schema (3F000), a
/// missing privilege (42501), table, column or function (42P01, 42703, 42883).
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Configuration(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("28")
                || matches!(
                    &*code,
                    "3D000" | "3F000" | "42501" | "42P01" | "42703" | "42883"
                )
        }),
        _ => false,
    }
}

/// The columns idem reads and writes, with their types as `format_type` names them.
const COLUMNS: [(&str, &str); 10] = [
    ("key", "bytea"),
    ("fingerprint", "bytea"),
    ("state", "text"),
    ("token", "bytea"),
    ("lease_until", "timestamp with time zone"),
    ("expires_at", "timestamp with time zone"),
    ("value", "bytea"),
    ("codec", "smallint"),
    ("created_at", "timestamp with time zone"),
    ("completed_at", "timestamp with time zone"),
];

/// What is wrong with the table's columns (`found`: name and type of each), if anything.
fn shape_problems(found: &[(String, String)]) -> Vec<String> {
    COLUMNS
        .iter()
        .filter_map(
            |&(name, expected)| match found.iter().find(|(n, _)| n == name) {
                None => Some(format!("no column `{name}` ({expected})")),
                Some((_, ty)) if ty != expected => {
                    Some(format!("column `{name}` is {ty}, not {expected}"))
                }
                Some(_) => None,
            },
        )
        .collect()
}

/// Whether `e` is a serialization failure (40001) or a deadlock (40P01): the statement's
/// transaction was rolled back, and running it again (a new transaction) is safe. Also when the
/// server ended the connection itself, before or while the statement ran (an administrator or
/// a server restart, 57P01; a crash of another backend, 57P02; an idle session timeout,
/// 57P05): its transaction, if it began, was rolled back too, and the statement runs again on
/// another connection. (A connection idle for less than a second is not checked before its
/// use, so after a server restart this is how a statement meets a closed one.)
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(
        sqlstate(e).as_deref(),
        Some("40001" | "40P01" | "57P01" | "57P02" | "57P05")
    )
}

/// Waits before the `attempt`-th rerun (from 1) of a statement that conflicted: not at all
/// before the first (the conflicting transaction has committed by then), then a jittered 1, 2,
/// 4 … ms, so that deadlocked statements do not meet again in lockstep.
async fn conflict_backoff(attempt: usize) {
    if attempt > 1 {
        let step = Duration::from_millis(1 << (attempt - 2).min(6));
        // Boxed: the timer would otherwise enlarge every statement's future.
        Box::pin(tokio::time::sleep(jittered(step))).await;
    }
}

/// Runs `statement` and runs it again (at most [`CONFLICT_ATTEMPTS`] in all) while the server
/// aborts it with a serialization failure or deadlock (see [`is_conflict`]).
async fn retry_conflicts<T, F, Fut>(mut statement: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 1;
    loop {
        match statement().await {
            Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {
                conflict_backoff(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl PostgresStore {
    /// Default bound on one encoded value: 1 MiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
    /// Default bound on the wait for one statement's answer
    /// ([`PostgresStoreBuilder::response_timeout`]): 5 s.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The schema version [`migrate`](Self::migrate) brings the table to.
    pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

    /// Connects with the default settings (schema `public`, table `idem_records`, a pool of 10).
    /// Call [`migrate`](Self::migrate) once before use unless your migrations create the table.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        PostgresStoreBuilder::default().connect(url).await
    }

    /// A store with the default names on an existing pool.
    pub fn new(pool: PgPool) -> Self {
        PostgresStoreBuilder::default()
            .build(pool)
            .expect("the default identifiers are valid")
    }

    /// Configures names, limits and the pool.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether claims use the claim function of schema version 2 (they fall back to a single
    /// upsert statement after finding it missing). For tests.
    #[doc(hidden)]
    pub fn claims_with_function(&self) -> bool {
        !self.no_claim_function.load(Ordering::Relaxed)
    }

    /// The quoted, schema-qualified name of the claim function, e.g.
    /// `"public"."idem_records_claim"`.
    pub fn claim_function(&self) -> &str {
        &self.sql.claim_function
    }

    /// The quoted, schema-qualified table name, e.g. `"public"."idem_records"`.
    pub fn qualified_table(&self) -> &str {
        &self.sql.qualified
    }

    /// Creates or upgrades the schema, table and index. Idempotent, and safe when several
    /// instances run it at once: it holds a transaction-scoped advisory lock and records the
    /// applied version in `idem_schema_version` (in the store's schema). At the current
    /// version it creates nothing and only reads, so an application role without the `CREATE`
    /// privilege can call it at every start once a migration role has run it.
    ///
    /// Fails with [`Error::Config`] if the table was migrated by a newer version of idem, or
    /// if a table of that name exists with other columns than idem's (or without `key` as
    /// its primary key): made by something else, it is left as it was.
    pub async fn migrate(&self) -> Result<(), Error> {
        let fail = |e: sqlx::Error| {
            let message = format!(
                "migration of {} failed: {}",
                self.sql.qualified,
                Described(&e)
            );
            if is_permanent(&e) {
                Error::Config(format!("postgres store: {message}"))
            } else {
                Error::store(NAME, message)
            }
        };
        let schema = quote_ident("schema", &self.sql.schema, 63)?;
        let versions = format!("{schema}.\"{VERSION_TABLE}\"");
        // Already current: nothing to create, so a role without the CREATE privilege (an
        // application role beside a migration role) can call it at every start.
        if self.applied_version(&versions).await.map_err(fail)? == Self::SCHEMA_VERSION {
            let mut conn = self.pool.acquire().await.map_err(fail)?;
            self.check_shape(&mut conn).await?;
            self.no_claim_function.store(false, Ordering::Relaxed);
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // Whatever the sessions' default: under REPEATABLE READ or SERIALIZABLE the snapshot
        // is taken by the lock's statement, before the lock is granted, so a migration that
        // waited for another one would not see its work, run every migration again and fail
        // with a serialization error. Under READ COMMITTED each statement after the lock sees
        // what the lock's previous holder committed.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(&self.sql.schema)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let schema_exists = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
            .bind(&self.sql.schema)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?
            .is_some();
        if !schema_exists {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {versions} (
                table_name text PRIMARY KEY,
                version integer NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now()
            )"
        )))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let current: i32 = sqlx::query(AssertSqlSafe(format!(
            "SELECT version FROM {versions} WHERE table_name = $1"
        )))
        .bind(&self.sql.table)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?
        .map(|row| row.try_get::<i32, _>(0))
        .transpose()
        .map_err(fail)?
        .unwrap_or(0);
        // A version recorded for a table dropped since: create it again.
        let table_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.sql.qualified)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        let current = if table_exists { current } else { 0 };
        if current > Self::SCHEMA_VERSION {
            return Err(Error::Config(format!(
                "the idem table {} is at schema version {current}, newer than this build of idem \
                 supports ({}); upgrade idem",
                self.sql.qualified,
                Self::SCHEMA_VERSION
            )));
        }
        for (index, statements) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            for statement in *statements {
                sqlx::query(AssertSqlSafe(self.sql.migration(statement)))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {versions} (table_name, version) VALUES ($1, $2)
                 ON CONFLICT (table_name) DO UPDATE SET version = excluded.version, updated_at = now()"
            )))
            .bind(&self.sql.table)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            tracing::info!(target: "idem", table = %self.sql.qualified, version, "postgres schema migrated");
        }
        // `CREATE TABLE IF NOT EXISTS` keeps a table of another shape: refuse it (the
        // transaction is rolled back) rather than fail every call later.
        self.check_shape(&mut tx).await?;
        tx.commit().await.map_err(fail)?;
        // The claim function exists now: stop using the fallback statement.
        self.no_claim_function.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The schema version recorded for this table in `versions`: 0 if none, if there is no
    /// version table, or if the records table itself is gone (dropped by hand: it is created
    /// again).
    async fn applied_version(&self, versions: &str) -> Result<i32, sqlx::Error> {
        let (versions_exist, table_exists): (bool, bool) =
            sqlx::query_as("SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL")
                .bind(versions)
                .bind(&self.sql.qualified)
                .fetch_one(&self.pool)
                .await?;
        if !versions_exist || !table_exists {
            return Ok(0);
        }
        let version: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM {versions} WHERE table_name = $1"
        )))
        .bind(&self.sql.table)
        .fetch_optional(&self.pool)
        .await?;
        Ok(version.unwrap_or(0))
    }

    /// Refuses a table whose columns are not the ones idem reads and writes, or whose `key`
    /// is not unique (a table of the same name made by something else).
    async fn check_shape(&self, conn: &mut sqlx::PgConnection) -> Result<(), Error> {
        let fail = |e: sqlx::Error| {
            Error::store(
                NAME,
                format!(
                    "reading the columns of {} failed: {}",
                    self.sql.qualified,
                    Described(&e)
                ),
            )
        };
        let found: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(&self.sql.qualified)
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?;
        let mut problems = shape_problems(&found);
        if problems.is_empty() {
            let unique_key: bool = sqlx::query_scalar(
                "SELECT EXISTS (
                     SELECT 1 FROM pg_index i
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                     WHERE i.indrelid = to_regclass($1) AND i.indisunique
                       AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'key')",
            )
            .bind(&self.sql.qualified)
            .fetch_one(&mut *conn)
            .await
            .map_err(fail)?;
            if !unique_key {
                problems.push("`key` is not its primary key".to_owned());
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "the table {} is not an idem table: {}; it was made by something else, so choose \
             another name (`PostgresStoreBuilder::table` / `schema`) or drop it",
            self.sql.qualified,
            problems.join(", ")
        )))
    }

    /// Spawns a task that deletes expired rows every `every` (at least every millisecond: a
    /// shorter period, `Duration::ZERO` included, is taken as 1 ms), in batches. Needs a tokio
    /// runtime; errors are logged and retried at the next tick.
    ///
    /// The task holds only a [`Weak`] reference to the allocation behind `self`: it ends at its
    /// first tick after every `Arc` of that allocation (`self` and its `Arc::clone`s) has been
    /// dropped. Store values cloned out of the `Arc` (`PostgresStore::clone`, which share the
    /// pool) do not keep it running; abort the returned handle to stop it earlier.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(self);
        // `tokio::time::interval` panics on a zero period.
        let every = every.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                match store.purge(usize::MAX).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(target: "idem", purged, "postgres store sweep"),
                    Err(error) => {
                        tracing::warn!(target: "idem", %error, "postgres store sweep failed")
                    }
                }
            }
        })
    }

    /// Runs one statement on a pooled connection and waits at most the response timeout for
    /// its answer. A connection whose statement went unanswered (timed out, or its caller
    /// dropped, as a renewal is when the body ends) is closed, not pooled again (see
    /// [`Pending`]).
    async fn timed<T>(
        &self,
        statement: impl for<'c> FnOnce(&'c mut sqlx::PgConnection) -> StatementFuture<'c, T>,
    ) -> Result<T, sqlx::Error> {
        let mut pending = Pending {
            conn: self.pool.acquire().await?,
            answered: false,
        };
        let answer =
            tokio::time::timeout(self.response_timeout, statement(&mut pending.conn)).await;
        let Ok(answer) = answer else {
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                NoAnswer(self.response_timeout),
            )));
        };
        pending.answered = true;
        answer
    }

    /// Maps a sqlx error: a pool timeout is probed once for its cause (e.g. connection
    /// refused), and a missing table or function (the schema was never migrated) says so.
    async fn fail(&self, e: sqlx::Error) -> Error {
        if sqlstate(&e).as_deref() == Some("42883") && !is_undefined_function(&e) {
            return Error::Config(format!(
                "postgres store: {}; a column of {} has another type than idem's (was the \
                 table made by something else? `PostgresStore::migrate()` checks it)",
                Described(&e),
                self.sql.qualified
            ));
        }
        if matches!(sqlstate(&e).as_deref(), Some("42P01" | "42883")) {
            return Error::Config(format!(
                "postgres store: {}; run PostgresStore::migrate() first (table {}, claim \
                 function {})",
                Described(&e),
                self.sql.qualified,
                self.sql.claim_function
            ));
        }
        if is_permanent(&e) {
            return Error::Config(format!(
                "postgres store: {}; this needs a change of the database or of the store's \
                 settings (privileges, credentials, database, schema), a retry will not help",
                Described(&e)
            ));
        }
        if !matches!(e, sqlx::Error::PoolTimedOut) {
            return Error::store(NAME, DatabaseError(e));
        }
        // Boxed: the probe's connection future is large, and every statement's future would
        // otherwise carry room for it (a claim's future was 2.5 KB, copied into its box on
        // every call).
        Box::pin(self.diagnose_pool_timeout()).await
    }

    async fn diagnose_pool_timeout(&self) -> Error {
        const REUSED_FOR: Duration = Duration::from_secs(1);
        let mut last = self.pool_diagnosis.lock().await;
        let cause = match &*last {
            Some((at, cause)) if at.elapsed() < REUSED_FOR => cause.clone(),
            _ => {
                let cause = probe(&self.pool.connect_options()).await;
                *last = Some((std::time::Instant::now(), cause.clone()));
                cause
            }
        };
        Error::store(
            NAME,
            format!("no pooled PostgreSQL connection in time; {cause}"),
        )
    }

    /// Reads the columns of `key`'s `row`.
    fn columns<'a>(&'a self, row: &'a PgRow, key: &'a Key) -> Columns<'a> {
        Columns {
            row,
            table: &self.sql.qualified,
            key,
        }
    }

    async fn purge(&self, limit: usize) -> Result<usize, Error> {
        let mut purged = 0;
        while purged < limit {
            let batch = (limit - purged).min(PURGE_BATCH);
            let done = retry_conflicts(|| {
                let query = sqlx::query(AssertSqlSafe(self.sql.purge.clone()))
                    .bind(i64::try_from(batch).unwrap_or(i64::MAX));
                self.timed(|c| Box::pin(query.execute(c)))
            })
            .await;
            let done = match done {
                Ok(done) => usize::try_from(done.rows_affected()).unwrap_or(usize::MAX),
                Err(e) => return Err(self.fail(e).await),
            };
            purged += done;
            if done < batch {
                break;
            }
        }
        Ok(purged)
    }

    async fn poll_until_settled(&self, key: &Key, max: Duration) -> Result<(), Error> {
        // Saturating: `max` may be `Duration::MAX` ("no bound").
        let until = deadline(tokio::time::Instant::now(), max);
        let mut step = Duration::from_millis(5);
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep(jittered(step).min(until - now)).await;
            let row = retry_conflicts(|| {
                let query = sqlx::query(AssertSqlSafe(self.sql.state.clone()))
                    .bind(key.as_bytes().as_slice());
                self.timed(|c| Box::pin(query.fetch_optional(c)))
            })
            .await;
            let row = match row {
                Ok(row) => row,
                Err(e) => return Err(self.fail(e).await),
            };
            match row {
                Some(row) if self.columns(&row, key).state(0)? == "in_progress" => {}
                _ => return Ok(()),
            }
            step = (step * 2).min(Duration::from_millis(200));
        }
    }

    async fn claim_now(
        &self,
        key: &Key,
        fingerprint: &Fingerprint,
        token: Token,
        lease: Duration,
    ) -> Result<Claim, Error> {
        let token = token.to_bytes();
        // Statements that found a concurrent claim's row invisible to their snapshot, and
        // statements the server aborted for a serialization failure or deadlock (see
        // `is_conflict`): each bounded on its own.
        let (mut races, mut conflicts) = (0, 0);
        loop {
            // Before sending: the cached entry then never outlives the record on the server.
            let sent = self
                .cache
                .as_ref()
                .map(|cache| (cache, std::time::Instant::now(), cache.epoch()));
            let sql = if self.no_claim_function.load(Ordering::Relaxed) {
                &self.sql.claim_without_function
            } else {
                &self.sql.claim
            };
            // Sized up front (each value plus its 4-byte length): binding one by one would
            // grow the buffer several times per claim.
            let mut args = PgArguments::default();
            args.reserve(4, 4 * 4 + 32 + 32 + 16 + 8);
            args.add(key.as_bytes().as_slice())
                .and_then(|()| args.add(fingerprint.as_bytes().as_slice()))
                .and_then(|()| args.add(token.as_slice()))
                .and_then(|()| args.add(millis(lease)))
                .map_err(|e| Error::store(NAME, e))?;
            let query = sqlx::query_with(AssertSqlSafe(sql.clone()), args);
            let row = self.timed(|c| Box::pin(query.fetch_optional(c))).await;
            let row = match row {
                Ok(Some(row)) => row,
                // The legacy statement answers no row where the function answers `false`.
                Ok(None) => {
                    races += 1;
                    if races < CLAIM_ATTEMPTS {
                        continue;
                    }
                    break;
                }
                // (Only once: the fallback statement calls no function.)
                Err(e) if is_undefined_function(&e) && Arc::ptr_eq(sql, &self.sql.claim) => {
                    // The table was created at schema version 1 (by an older `migrate()` or
                    // copied DDL): claim with the one-statement upsert until the function
                    // exists. Both are atomic; the upsert costs the server more per replay.
                    // (Were the table missing too, the statement would have failed on it
                    // first, with `undefined_table`.)
                    if !self.no_claim_function.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            target: "idem",
                            function = %self.sql.claim_function,
                            "the idem claim function is missing; run PostgresStore::migrate() \
                             (schema version 2) for cheaper replays; this store claims with a \
                             fallback statement until it runs migrate() itself"
                        );
                    }
                    continue;
                }
                // Under `REPEATABLE READ` / `SERIALIZABLE`: a concurrent claim's row, or a
                // deadlock. The next statement is a new transaction and sees the other claim.
                Err(e) if is_conflict(&e) && conflicts + 1 < CONFLICT_ATTEMPTS => {
                    conflicts += 1;
                    conflict_backoff(conflicts).await;
                    continue;
                }
                Err(e) => return Err(self.fail(e).await),
            };
            // Columns by position (the name lookup hashes each name): state, fingerprint,
            // value, remaining, acquired.
            let columns = self.columns(&row, key);
            let state: Option<&str> = columns.get(0)?;
            return match state {
                None => match columns.get::<Option<bool>>(4)? {
                    Some(true) => Ok(Claim::Acquired),
                    // A live record committed by a concurrent claim after this statement's
                    // snapshot: the function could not take the key, and this statement could
                    // not see the record. The next statement's snapshot sees it.
                    _ => {
                        races += 1;
                        if races < CLAIM_ATTEMPTS {
                            continue;
                        }
                        break;
                    }
                },
                Some("completed") => {
                    let (fingerprint, value) = (columns.fingerprint(1)?, columns.value(2)?);
                    if let Some((cache, sent_at, epoch)) = sent {
                        let lifetime = columns.remaining(3)?;
                        cache.insert(key, fingerprint, &value, sent_at, epoch, lifetime);
                    }
                    Ok(Claim::Completed { fingerprint, value })
                }
                Some("in_progress") => Ok(Claim::InProgress {
                    fingerprint: columns.fingerprint(1)?,
                    remaining: columns.remaining(3)?,
                }),
                Some(other) => Err(columns.malformed(format_args!("unknown state {other:?}"))),
            };
        }
        Err(Error::store(
            NAME,
            format!(
                "the claim of key {key} kept racing with concurrent claims of it \
                 ({CLAIM_ATTEMPTS} statements could not see their row); retry"
            ),
        ))
    }

    async fn complete_now(
        &self,
        key: &Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, Error> {
        if value.len() > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        let codec = (value.len() >= 6 && value.starts_with(b"idm")).then(|| i16::from(value[4]));
        let (key_bytes, token, value) = (key.as_bytes().as_slice(), token.to_bytes(), &value[..]);
        let done = retry_conflicts(|| {
            let query = sqlx::query(AssertSqlSafe(self.sql.complete.clone()))
                .bind(key_bytes)
                .bind(token.as_slice())
                .bind(value)
                .bind(codec)
                .bind(millis(ttl));
            self.timed(|c| Box::pin(query.execute(c)))
        })
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Runs a statement that returns at most one boolean row.
    async fn flag(&self, sql: &Arc<str>, key: &Key, token: Option<Token>) -> Result<bool, Error> {
        let token = token.map(Token::to_bytes);
        let row = retry_conflicts(|| {
            let mut query = sqlx::query(AssertSqlSafe(sql.clone())).bind(key.as_bytes().as_slice());
            if let Some(token) = &token {
                query = query.bind(token.as_slice());
            }
            self.timed(|c| Box::pin(query.fetch_optional(c)))
        })
        .await;
        match row {
            Ok(Some(row)) => self.columns(&row, key).get(0),
            Ok(None) => Ok(false),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn renew_now(&self, key: &Key, token: Token, lease: Duration) -> Result<bool, Error> {
        let token = token.to_bytes();
        let done = retry_conflicts(|| {
            let query = sqlx::query(AssertSqlSafe(self.sql.renew.clone()))
                .bind(key.as_bytes().as_slice())
                .bind(token.as_slice())
                .bind(millis(lease));
            self.timed(|c| Box::pin(query.execute(c)))
        })
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn get_now(&self, key: &Key) -> Result<Option<Record>, Error> {
        let row = retry_conflicts(|| {
            let query =
                sqlx::query(AssertSqlSafe(self.sql.get.clone())).bind(key.as_bytes().as_slice());
            self.timed(|c| Box::pin(query.fetch_optional(c)))
        })
        .await;
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e).await),
        };
        // Columns: state, fingerprint, value, remaining.
        let columns = self.columns(&row, key);
        match columns.state(0)? {
            "completed" => Ok(Some(Record::Completed {
                fingerprint: columns.fingerprint(1)?,
                value: columns.value(2)?,
                expires_in: columns.remaining(3)?,
            })),
            "in_progress" => Ok(Some(Record::InProgress {
                fingerprint: columns.fingerprint(1)?,
                remaining: columns.remaining(3)?,
            })),
            other => Err(columns.malformed(format_args!("unknown state {other:?}"))),
        }
    }
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn describe(&self) -> String {
        let options = self.pool.connect_options();
        format!(
            "postgres at {}:{}/{}, table {}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's database)"),
            self.sql.qualified
        )
    }

    fn claim<'a>(
        &'a self,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
        if let Some(cache) = &self.cache
            && let Some((fingerprint, value)) = cache.get(key)
        {
            return Box::pin(std::future::ready(Ok(Claim::Completed {
                fingerprint,
                value,
            })));
        }
        Box::pin(self.claim_now(key, fingerprint, token, lease))
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.complete_now(key, token, value, ttl))
    }

    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool> {
        Box::pin(self.flag(&self.sql.release, key, Some(token)))
    }

    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(self.renew_now(key, token, lease))
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(self.get_now(key))
    }

    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let Some(cache) = &self.cache else {
                return self.flag(&self.sql.remove, key, None).await;
            };
            cache.remove(key);
            let removed = self.flag(&self.sql.remove, key, None).await;
            // Again after the server's answer (see `LocalCache::remove`), even if it failed.
            cache.remove(key);
            removed
        })
    }

    /// Deletes up to `limit` expired rows, in statements of at most 1,000 rows each.
    fn purge_expired(&self, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(self.purge(limit))
    }

    fn wait_for_change<'a>(&'a self, key: &'a Key, max: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.poll_until_settled(key, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(
            quote_ident("table", "idem_records", 48).unwrap(),
            "\"idem_records\""
        );
        assert_eq!(quote_ident("table", "Idem2", 48).unwrap(), "\"Idem2\"");
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "é", &"x".repeat(49)] {
            assert!(
                matches!(quote_ident("table", bad, 48), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert!(Sql::new("public", "idem_records").is_ok());
        assert!(Sql::new("pub\"lic", "idem_records").is_err());
    }

    #[test]
    fn statements_are_compact() {
        let sql = Sql::new("public", "idem_records").unwrap();
        for statement in [
            &sql.claim,
            &sql.claim_without_function,
            &sql.complete,
            &sql.get,
        ] {
            assert!(
                !statement.contains("  ") && !statement.contains('\n'),
                "{statement}"
            );
        }
        assert!(sql.claim.contains("\"public\".\"idem_records_claim\"("));
        assert!(sql.complete.contains("interval '1 millisecond'"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        for (url, shown) in [
            ("postgres://u@h/db?password=secret", "postgres://u@h/db"),
            (
                "postgres://u@h/db?sslmode=require&PassWord=secret&application_name=a",
                "postgres://u@h/db?sslmode=require&application_name=a",
            ),
            ("postgres://u@h/db?sslpassword=secret", "postgres://u@h/db"),
            ("postgres://:secret@h/db", "postgres://h/db"),
            ("postgres://u:se@cret@h/db", "postgres://u@h/db"),
            ("host=h user=u password=secret", "host=h user=u"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn the_version_table_name_is_reserved() {
        for table in ["idem_schema_version", "idem_schema_version_pkey"] {
            assert!(matches!(Sql::new("public", table), Err(Error::Config(_))));
        }
        assert!(Sql::new("public", "Idem_schema_version").is_ok());
        assert!(Sql::new("public", "idem_schema_versions").is_ok());
    }

    #[test]
    fn schemas_reserved_by_postgres_are_refused() {
        for schema in ["pg_catalog", "pg_idem"] {
            assert!(matches!(Sql::new(schema, "t"), Err(Error::Config(m)) if m.contains("`pg_`")));
        }
        assert!(Sql::new("PG_idem", "t").is_ok());
        assert!(Sql::new("idem_pg_", "t").is_ok());
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }
}
