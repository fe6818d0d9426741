//! Reaching the Redis and PostgreSQL servers the store tests run against, per-test isolation
//! (a key prefix / a schema of its own, cleaned up on drop, even when the test panics), and
//! private `redis-server` processes (one server, or a 3-node Redis Cluster) on loopback.
//!
//! Tests read `IDEM_REDIS_URL` (default `redis://127.0.0.1:6379`) and `IDEM_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). An unreachable server fails the test
//! with a message naming the variable and how to start the server: these tests never pass
//! silently.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use idem_runtime::Store;
use idem_runtime::store::{PostgresStore, RedisStore};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::conformance::Fixture;

/// Environment variable with the Redis URL for the tests.
pub const REDIS_URL_VAR: &str = "IDEM_REDIS_URL";
/// Environment variable with the PostgreSQL URL for the tests.
pub const DATABASE_URL_VAR: &str = "IDEM_DATABASE_URL";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The Redis server of the tests: `IDEM_REDIS_URL` or `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var(REDIS_URL_VAR).unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// The PostgreSQL database of the tests: `IDEM_DATABASE_URL` or
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn database_url() -> String {
    std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A string no other test run uses: process id, a counter and random bits.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = idem_runtime::Token::generate().to_string();
    format!("{}_{n}_{}", std::process::id(), &random[..8])
}

/// Fails the test: Redis at `url` cannot be reached.
pub fn redis_unreachable(url: &str, error: &dyn std::fmt::Display) -> ! {
    panic!(
        "cannot reach Redis at {url} ({REDIS_URL_VAR}): {error}\n\
         start a local server with `redis-server --daemonize yes` (package redis-server), or set \
         {REDIS_URL_VAR} to a reachable server (e.g. redis://127.0.0.1:6379)"
    )
}

/// Fails the test: PostgreSQL at `url` cannot be reached.
pub fn postgres_unreachable(url: &str, error: &dyn std::fmt::Display) -> ! {
    panic!(
        "cannot reach PostgreSQL at {url} ({DATABASE_URL_VAR}): {error}\n\
         start the local cluster with `pg_ctlcluster 15 main start` (package postgresql; trust \
         auth for 127.0.0.1 and a database `test`: `createdb -U postgres test`), or set \
         {DATABASE_URL_VAR} to a reachable database (e.g. postgres://postgres@127.0.0.1:5432/test)"
    )
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Connects a [`RedisStore`] with `prefix` to the tests' Redis, failing the test with a clear
/// message if the server is unreachable.
pub async fn redis_store(prefix: &str) -> RedisStore {
    let url = redis_url();
    match RedisStore::builder().key_prefix(prefix).connect(&url).await {
        Ok(store) => store,
        Err(error) => redis_unreachable(&url, &error),
    }
}

/// Deletes every key matching `pattern` (a `SCAN MATCH` glob) on the server at `url`.
/// Synchronous, so that it can run in `Drop`.
pub fn delete_redis_keys(url: &str, pattern: &str) -> redis::RedisResult<usize> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK").arg(&keys).query(&mut conn)?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// A [`RedisStore`] on the tests' Redis with a key prefix of its own; its keys are deleted
/// when the fixture is dropped.
pub struct RedisFixture {
    store: RedisStore,
    url: String,
    prefix: String,
}

impl RedisFixture {
    /// Connects (or fails the test naming `IDEM_REDIS_URL`).
    pub async fn new() -> Self {
        let prefix = format!("idem-test:{}:", unique_suffix());
        RedisFixture {
            store: redis_store(&prefix).await,
            url: redis_url(),
            prefix,
        }
    }

    /// Like [`new`](Self::new), but the store claims with the Lua script used for servers
    /// before Redis 7.0 instead of `SET … NX GET`.
    pub async fn with_script_claim() -> Self {
        Self::with_builder(RedisStore::builder().claim_with_script(true)).await
    }

    /// Like [`new`](Self::new), with a local cache of completed records (1,000 entries, 60 s).
    pub async fn with_local_cache() -> Self {
        Self::with_builder(RedisStore::builder().local_cache(1000, Duration::from_secs(60))).await
    }

    /// Like [`new`](Self::new), reading each record before claiming it
    /// ([`ClaimOrder::ReadFirst`](idem_runtime::store::ClaimOrder::ReadFirst)).
    pub async fn with_read_first() -> Self {
        Self::with_builder(
            RedisStore::builder().claim_order(idem_runtime::store::ClaimOrder::ReadFirst),
        )
        .await
    }

    /// Connects a store configured by `builder` (its key prefix is replaced by the fixture's).
    pub async fn with_builder(builder: idem_runtime::store::RedisStoreBuilder) -> Self {
        let prefix = format!("idem-test:{}:", unique_suffix());
        let url = redis_url();
        let store = match builder.key_prefix(&prefix).connect(&url).await {
            Ok(store) => store,
            Err(error) => redis_unreachable(&url, &error),
        };
        RedisFixture { store, url, prefix }
    }

    /// The store.
    pub fn redis(&self) -> &RedisStore {
        &self.store
    }

    /// The key prefix of this fixture.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Fixture for RedisFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

impl Drop for RedisFixture {
    fn drop(&mut self) {
        if let Err(error) = delete_redis_keys(&self.url, &format!("{}*", self.prefix)) {
            eprintln!(
                "warning: could not delete the test keys {}*: {error}",
                self.prefix
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A pool on the tests' database, failing the test with a clear message if the server is
/// unreachable. Creates the database if the server answers that it does not exist.
pub async fn pg_pool(max_connections: u32) -> PgPool {
    let url = database_url();
    let connect = || {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
    };
    match connect().await {
        Ok(pool) => pool,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            create_database(&url).await;
            connect()
                .await
                .unwrap_or_else(|e| postgres_unreachable(&url, &e))
        }
        Err(error) => postgres_unreachable(&url, &error),
    }
}

async fn create_database(url: &str) {
    let (server, name) = url
        .rsplit_once('/')
        .expect("a database URL ends in /<database>");
    let name = name.split('?').next().unwrap_or(name);
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| postgres_unreachable(url, &e));
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    if let Err(error) = sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&admin)
        .await
    {
        // A concurrent test may have created it first.
        eprintln!("note: CREATE DATABASE {name}: {error}");
    }
    admin.close().await;
}

/// Drops `schema` (and everything in it) on the tests' database. Blocking, on a thread and
/// runtime of its own, so that it can run in `Drop`, inside or outside a runtime.
pub fn drop_pg_schema(schema: &str) {
    let statements = vec![format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")];
    if let Err(error) = run_blocking(statements) {
        eprintln!("warning: could not drop the test schema {schema}: {error}");
    }
}

/// Runs `statements` in order on a connection of its own, from a thread of its own (so it
/// works from `Drop`, inside or outside a runtime).
fn run_blocking(statements: Vec<String>) -> Result<(), String> {
    let url = database_url();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let mut done = Ok(());
            for statement in statements {
                done = sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string());
                if done.is_err() {
                    break;
                }
            }
            pool.close().await;
            done
        })
    })
    .join();
    outcome.unwrap_or_else(|_| Err("the statements' thread panicked".to_owned()))
}

/// A login role of the test's own with the privileges an application role has on a schema
/// another role migrated: `USAGE` on the schema, reads and writes on its tables, `EXECUTE` on
/// its functions, and no `CREATE`. Dropped with the value.
pub struct PgRole {
    name: String,
}

impl PgRole {
    /// Creates the role on `schema` (already migrated), with at most `connection_limit`
    /// connections at once if given.
    pub async fn application(schema: &str, connection_limit: Option<u32>) -> Self {
        let name = format!("idem_app_{}", unique_suffix());
        let limit = connection_limit.map_or(String::new(), |n| format!(" CONNECTION LIMIT {n}"));
        let statements = vec![
            format!("CREATE ROLE \"{name}\" LOGIN{limit}"),
            format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{name}\""),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{name}\""
            ),
            format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{schema}\" TO \"{name}\""),
        ];
        let role = PgRole { name };
        let pool = pg_pool(1).await;
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .expect("create the test role");
        }
        pool.close().await;
        role
    }

    /// The role's name, quoted for SQL.
    pub fn name(&self) -> String {
        format!("\"{}\"", self.name)
    }

    /// A pool of at most `max_connections` connections as this role, waiting `acquire_timeout`
    /// for one.
    pub async fn pool(&self, max_connections: u32, acquire_timeout: Duration) -> PgPool {
        let url = database_url();
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.username(&self.name))
            .await
            .unwrap_or_else(|e| postgres_unreachable(&url, &e))
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let name = &self.name;
        let statements = vec![
            format!("DROP OWNED BY \"{name}\""),
            format!("DROP ROLE IF EXISTS \"{name}\""),
        ];
        if let Err(error) = run_blocking(statements) {
            eprintln!("warning: could not drop the test role {name}: {error}");
        }
    }
}

/// A migrated [`PostgresStore`] in a schema of its own; the schema is dropped when the fixture
/// is dropped.
pub struct PgFixture {
    store: PostgresStore,
    schema: String,
}

impl PgFixture {
    /// Connects (or fails the test naming `IDEM_DATABASE_URL`) and migrates.
    pub async fn new() -> Self {
        Self::with_pool_size(8).await
    }

    /// [`new`](Self::new) with a pool of `max_connections`.
    pub async fn with_pool_size(max_connections: u32) -> Self {
        Self::with_builder(PostgresStore::builder(), max_connections).await
    }

    /// Like [`new`](Self::new), with a local cache of completed records (1,000 entries, 60 s).
    pub async fn with_local_cache() -> Self {
        Self::with_builder(
            PostgresStore::builder().local_cache(1000, Duration::from_secs(60)),
            8,
        )
        .await
    }

    /// A store configured by `builder` (its schema is replaced by the fixture's) on a pool of
    /// `max_connections`, migrated.
    pub async fn with_builder(
        builder: idem_runtime::store::PostgresStoreBuilder,
        max_connections: u32,
    ) -> Self {
        let schema = format!("idem_test_{}", unique_suffix());
        let pool = pg_pool(max_connections).await;
        let store = builder
            .schema(&schema)
            .build(pool)
            .expect("valid identifiers");
        let fixture = PgFixture { store, schema };
        fixture.store.migrate().await.expect("migrate");
        fixture
    }

    /// The store.
    pub fn postgres(&self) -> &PostgresStore {
        &self.store
    }

    /// The schema of this fixture.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        drop_pg_schema(&self.schema);
    }
}

// ---------------------------------------------------------------------------------------------
// Private redis-server processes

/// A loopback TCP port that is free now (and, with `bus`, whose cluster bus port `+10000` is
/// free too).
pub fn free_port(bus: bool) -> u16 {
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if !bus {
            return port;
        }
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A `redis-server` process of the test's own on a free loopback port, in a temporary
/// directory, without persistence. Killed (and its directory removed) on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    fn start_with(cluster: bool) -> Self {
        let port = free_port(cluster);
        let dir = std::env::temp_dir().join(format!("idem-redis-{port}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("create a temp dir for redis-server");
        let mut server = RedisServer {
            port,
            dir,
            cluster,
            child: None,
        };
        server.restart();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL): connections drop, the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port (empty: nothing is persisted) and waits for it.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--protected-mode", "no", "--loglevel", "warning"]);
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "5000"]);
        }
        let log = std::fs::File::create(self.dir.join("server.log")).expect("create server log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}); install it (apt-get install redis-server) \
                     so that the tests can run private Redis servers"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("redis-server on port {} did not come up:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = redis::Client::open(self.url())?
            .get_connection_with_timeout(Duration::from_millis(500))?;
        redis::cmd("PING").query::<String>(&mut conn).map(drop)
    }

    /// Runs one command synchronously on this server.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn =
            redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?;
        cmd.query(&mut conn)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 3-node Redis Cluster (no replicas) on loopback, made of private `redis-server` processes
/// and `redis-cli --cluster create`. Torn down (processes killed, directories removed) when the
/// last handle is dropped, also when a test panics.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// The cluster shared by the tests of this process that are running now; a new one is
    /// started when none is alive.
    pub fn shared() -> Arc<RedisCluster> {
        static SHARED: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(RedisCluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// Starts three cluster-enabled servers, creates the cluster and waits for
    /// `cluster_state:ok` on every node.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(true)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `redis-cli --cluster create` ({e}); install redis-tools")
            });
        let cluster = RedisCluster { nodes };
        if !output.status.success() {
            panic!(
                "redis-cli --cluster create failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &cluster.nodes {
            loop {
                let info: String = node
                    .query(redis::cmd("CLUSTER").arg("INFO"))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the test cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A [`RedisStore`] on a (shared) private Redis Cluster with a key prefix of its own.
pub struct RedisClusterFixture {
    store: RedisStore,
    // Dropped after the store's handle in `Fixture::store` users; keeps the cluster alive.
    _cluster: Arc<RedisCluster>,
}

impl RedisClusterFixture {
    /// Starts (or joins) the test cluster and connects a store to it.
    pub async fn new() -> Self {
        Self::with_builder(RedisStore::builder()).await
    }

    /// Like [`new`](Self::new), reading each record before claiming it.
    pub async fn with_read_first() -> Self {
        Self::with_builder(
            RedisStore::builder().claim_order(idem_runtime::store::ClaimOrder::ReadFirst),
        )
        .await
    }

    /// Connects a store configured by `builder` (its key prefix is replaced by the fixture's).
    pub async fn with_builder(builder: idem_runtime::store::RedisStoreBuilder) -> Self {
        let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
            .await
            .expect("cluster start-up panicked");
        let store = builder
            .key_prefix(format!("idem-test:{}:", unique_suffix()))
            .connect_cluster(cluster.urls())
            .await
            .expect("connect to the test cluster");
        RedisClusterFixture {
            store,
            _cluster: cluster,
        }
    }
}

impl Fixture for RedisClusterFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }
}
