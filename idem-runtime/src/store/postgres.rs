//! The PostgreSQL store (feature `postgres`): durable records in one table, on a sqlx
//! `PgPool`. See [`PostgresStore`] for the schema, statements, round trips and durability.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use super::{Claim, Record, Store, StoreFuture, jittered};
use crate::{Error, Fingerprint, Key, Token};

const NAME: &str = "postgres";
/// How often a claim statement is retried when a concurrent claim's row was invisible to its
/// snapshot (each retry has a newer snapshot; more than one is rare).
const CLAIM_ATTEMPTS: usize = 8;
/// Rows deleted per statement by [`PostgresStore::purge_expired`].
const PURGE_BATCH: usize = 1000;
/// First argument of `pg_advisory_xact_lock(int, int)` for migrations: "idem" in ASCII.
const LOCK_CLASS: i32 = 0x6964_656d;

/// The schema migrations, in order; `migrate()` applies those not yet recorded.
/// `{t}` is the quoted, qualified table name, `{idx}` the quoted index name.
const MIGRATIONS: &[&[&str]] = &[&[
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
]];

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
/// Cloning is cheap and shares the pool.
/// [`PgPool`].
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
/// ```
///
/// `expires_at` is the one column every decision reads: the lease end while in progress, the
/// completion time plus the TTL once completed. A row whose `expires_at` has passed behaves as
/// absent (a claim takes it over) until [`PostgresStore::purge_expired`] deletes it.
///
/// Migrations run under `pg_advisory_xact_lock`, so several instances can start at once, and
/// are tracked in the store's own table `idem_schema_version` (one row per records table) in the
/// same schema, never in sqlx's `_sqlx_migrations`, which belongs to your own migrator. You may
/// also copy the DDL above into your migrations and skip `migrate()`.
///
/// ## Statements
///
/// All SQL is built at run time from the validated, quoted identifiers (no `query!` macros, so
/// building needs no database) and sent as prepared statements that sqlx caches per connection.
/// The **database clock** decides expiry: every statement compares `expires_at` with
/// `clock_timestamp()` and computes new expiry times from it, never from the application's clock.
///
/// - **claim** is one statement, correct under `READ COMMITTED`: a CTE reads the live row (if
///   any) and, only when there is none, runs `INSERT … ON CONFLICT (key) DO UPDATE … WHERE
///   <row expired>`, which inserts an absent key or takes over an expired or lease-lapsed row. The
///   answer is either "acquired" or the live row (completed: fingerprint and value; in progress:
///   fingerprint and remaining lease). A live row committed by a concurrent claim *after* the
///   statement's snapshot is invisible to the read and makes the upsert's `WHERE` false, which
///   returns no row at all; the store then runs the statement again (a new snapshot sees the
///   row). Under a storm of first callers the losers therefore take 2 round trips.
/// - **complete**, **release** and **renew** carry the token in `WHERE` (`token = $2 AND state =
///   'in_progress' AND expires_at > clock_timestamp()`); a row lock serialises them with claims.
///
/// ## Round trips
///
/// | path | round trips |
/// |---|---|
/// | replay (record completed) | 1 (the claim statement returns the value; a read, no write) |
/// | first call | 2 (claim insert, then `complete` update: two commits) |
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
/// the owner's remaining lease.
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
}

/// Configures a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreBuilder {
    schema: String,
    table: String,
    max_value_bytes: usize,
    max_connections: u32,
    acquire_timeout: Duration,
}

/// The statements, built once from the identifiers.
struct Sql {
    schema: String,
    table: String,
    qualified: String,
    claim: Arc<str>,
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
        }
    }
}

impl PostgresStoreBuilder {
    /// The schema holding the table (default `public`). Created by [`PostgresStore::migrate`]
    /// if missing. ASCII letters, digits and `_`, not starting with a digit, at most 63 bytes.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The table name (default `idem_records`). Same rules as the schema, at most 48 bytes (the
    /// index name adds a suffix).
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

    /// Builds the store on `pool` (no I/O). Fails with [`Error::Config`] on an invalid schema or
    /// table name.
    pub fn build(self, pool: PgPool) -> Result<PostgresStore, Error> {
        let sql = Sql::new(&self.schema, &self.table)?;
        Ok(PostgresStore {
            pool,
            sql: Arc::new(sql),
            max_value_bytes: self.max_value_bytes,
        })
    }

    /// Opens a pool on `url` (`postgres://user:password@host:port/database`) and builds the
    /// store. Fails with [`Error::Store`] if the server cannot be reached.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, Error> {
        Sql::new(&self.schema, &self.table)?;
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect(url)
            .await
            .map_err(|e| {
                Error::store(
                    NAME,
                    format!("cannot connect to PostgreSQL at {}: {e}", redact(url)),
                )
            })?;
        self.build(pool)
    }
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
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
        let s = quote_ident("schema", schema, 63)?;
        let t = format!("{s}.{}", quote_ident("table", table, 48)?);
        let ms = "$::bigint * interval '1 millisecond'";
        let lease = ms.replace('$', "$4");
        let remaining =
            "GREATEST(0, (extract(epoch FROM (expires_at - clock_timestamp())) * 1000)::bigint)";
        let arc = |sql: String| -> Arc<str> { Arc::from(sql) };
        Ok(Sql {
            schema: schema.to_owned(),
            table: table.to_owned(),
            qualified: t.clone(),
            claim: arc(format!(
                "WITH live AS (
                    SELECT state, fingerprint, value, {remaining} AS remaining_ms
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
                SELECT 'acquired' AS state, NULL::bytea AS fingerprint, NULL::bytea AS value,
                       NULL::bigint AS remaining_ms FROM taken
                UNION ALL
                SELECT state, fingerprint, value, remaining_ms FROM live"
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
                "SELECT state, fingerprint, value, {remaining} AS remaining_ms
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
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.sql.qualified)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

fn malformed(what: &str) -> Error {
    Error::store(NAME, format!("malformed idem record in PostgreSQL: {what}"))
}

/// A duration as whole milliseconds, at least 1.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX)
        .clamp(1, 1 << 50)
}

fn fingerprint_of(row: &PgRow) -> Result<Fingerprint, Error> {
    let bytes: Vec<u8> = row
        .try_get("fingerprint")
        .map_err(|e| Error::store(NAME, e))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| malformed("fingerprint is not 32 bytes"))?;
    Ok(Fingerprint::from_bytes(bytes))
}

fn remaining_of(row: &PgRow) -> Result<Duration, Error> {
    let ms: i64 = row
        .try_get("remaining_ms")
        .map_err(|e| Error::store(NAME, e))?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn value_of(row: &PgRow) -> Result<Bytes, Error> {
    let value: Option<Vec<u8>> = row.try_get("value").map_err(|e| Error::store(NAME, e))?;
    value
        .map(Bytes::from)
        .ok_or_else(|| malformed("completed record without a value"))
}

fn state_of(row: &PgRow) -> Result<String, Error> {
    row.try_get("state").map_err(|e| Error::store(NAME, e))
}

impl PostgresStore {
    /// Default bound on one encoded value: 1 MiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
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

    /// The quoted, schema-qualified table name, e.g. `"public"."idem_records"`.
    pub fn qualified_table(&self) -> &str {
        &self.sql.qualified
    }

    /// Creates or upgrades the schema, table and index. Idempotent, and safe when several
    /// instances run it at once: it holds a transaction-scoped advisory lock and records the
    /// applied version in `idem_schema_version` (in the store's schema). Fails with
    /// [`Error::Config`] if the table was migrated by a newer version of idem.
    pub async fn migrate(&self) -> Result<(), Error> {
        let fail = |e: sqlx::Error| {
            Error::store(
                NAME,
                format!("migration of {} failed: {e}", self.sql.qualified),
            )
        };
        let schema = quote_ident("schema", &self.sql.schema, 63)?;
        let versions = format!("{schema}.\"idem_schema_version\"");
        let mut tx = self.pool.begin().await.map_err(fail)?;
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
            tracing::info!(target: "idem", table = %self.sql.qualified, version, "idem postgres schema migrated");
        }
        tx.commit().await.map_err(fail)
    }

    /// Spawns a task that deletes expired rows every `every`, in batches. It stops by itself
    /// once the store is dropped. Needs a tokio runtime; errors are logged and retried.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(self);
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

    /// Maps a sqlx error; a pool timeout is probed once for its cause (e.g. connection refused).
    async fn fail(&self, e: sqlx::Error) -> Error {
        if !matches!(e, sqlx::Error::PoolTimedOut) {
            return Error::store(NAME, e);
        }
        let options = self.pool.connect_options();
        let probe = tokio::time::timeout(Duration::from_secs(2), options.connect()).await;
        let cause = match probe {
            Ok(Ok(conn)) => {
                drop(conn);
                "the server is reachable, so the pool is exhausted (raise its size)".to_owned()
            }
            Ok(Err(cause)) => format!("cannot reach the server: {cause}"),
            Err(_) => "the server does not answer".to_owned(),
        };
        Error::store(
            NAME,
            format!("no pooled PostgreSQL connection in time; {cause}"),
        )
    }

    async fn purge(&self, limit: usize) -> Result<usize, Error> {
        let mut purged = 0;
        while purged < limit {
            let batch = (limit - purged).min(PURGE_BATCH);
            let done = match sqlx::query(AssertSqlSafe(self.sql.purge.clone()))
                .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
            {
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
        let deadline = tokio::time::Instant::now() + max;
        let mut step = Duration::from_millis(5);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            tokio::time::sleep(jittered(step).min(deadline - now)).await;
            let row = sqlx::query(AssertSqlSafe(self.sql.state.clone()))
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) => return Err(self.fail(e).await),
            };
            match row {
                Some(row) if state_of(&row)? == "in_progress" => {}
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
        for _ in 0..CLAIM_ATTEMPTS {
            let row = sqlx::query(AssertSqlSafe(self.sql.claim.clone()))
                .bind(key.as_bytes().as_slice())
                .bind(fingerprint.as_bytes().as_slice())
                .bind(token.as_slice())
                .bind(millis(lease))
                .fetch_optional(&self.pool)
                .await;
            let row = match row {
                Ok(Some(row)) => row,
                // A concurrent claim committed after this statement's snapshot: look again.
                Ok(None) => continue,
                Err(e) => return Err(self.fail(e).await),
            };
            return match state_of(&row)?.as_str() {
                "acquired" => Ok(Claim::Acquired),
                "completed" => Ok(Claim::Completed {
                    fingerprint: fingerprint_of(&row)?,
                    value: value_of(&row)?,
                }),
                "in_progress" => Ok(Claim::InProgress {
                    fingerprint: fingerprint_of(&row)?,
                    remaining: remaining_of(&row)?,
                }),
                other => Err(malformed(&format!("unknown state {other:?}"))),
            };
        }
        Err(Error::store(
            NAME,
            format!(
                "the claim kept racing with concurrent claims ({CLAIM_ATTEMPTS} attempts); retry"
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
        let done = sqlx::query(AssertSqlSafe(self.sql.complete.clone()))
            .bind(key.as_bytes().as_slice())
            .bind(token.to_bytes().as_slice())
            .bind(value.as_ref())
            .bind(codec)
            .bind(millis(ttl))
            .execute(&self.pool)
            .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Runs a statement that returns at most one boolean row.
    async fn flag(&self, sql: &Arc<str>, key: &Key, token: Option<Token>) -> Result<bool, Error> {
        let mut query = sqlx::query(AssertSqlSafe(sql.clone())).bind(key.as_bytes().as_slice());
        if let Some(token) = token {
            query = query.bind(token.to_bytes().to_vec());
        }
        match query.fetch_optional(&self.pool).await {
            Ok(Some(row)) => row.try_get::<bool, _>(0).map_err(|e| Error::store(NAME, e)),
            Ok(None) => Ok(false),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn renew_now(&self, key: &Key, token: Token, lease: Duration) -> Result<bool, Error> {
        let done = sqlx::query(AssertSqlSafe(self.sql.renew.clone()))
            .bind(key.as_bytes().as_slice())
            .bind(token.to_bytes().as_slice())
            .bind(millis(lease))
            .execute(&self.pool)
            .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn get_now(&self, key: &Key) -> Result<Option<Record>, Error> {
        let row = sqlx::query(AssertSqlSafe(self.sql.get.clone()))
            .bind(key.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await;
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e).await),
        };
        match state_of(&row)?.as_str() {
            "completed" => Ok(Some(Record::Completed {
                fingerprint: fingerprint_of(&row)?,
                value: value_of(&row)?,
                expires_in: remaining_of(&row)?,
            })),
            "in_progress" => Ok(Some(Record::InProgress {
                fingerprint: fingerprint_of(&row)?,
                remaining: remaining_of(&row)?,
            })),
            other => Err(malformed(&format!("unknown state {other:?}"))),
        }
    }
}

impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn claim<'a>(
        &'a self,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
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
        Box::pin(self.flag(&self.sql.remove, key, None))
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
    fn urls_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
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
