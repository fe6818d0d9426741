//! The Redis store (feature `redis`): one server through a `ConnectionManager`, or Redis
//! Cluster through the crate's async cluster client. See [`RedisStore`] for the record layout,
//! round trips and durability.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::{Buf, Bytes};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, RedisError, RedisWrite, ToRedisArgs, Value};

use super::claim_order::{ClaimOrder, ReplayShare};
use super::{Claim, Record, Store, StoreFuture, deadline, jittered};
use crate::{Error, Fingerprint, Key, Token};

use super::local_cache::LocalCache;

const NAME: &str = "redis";

/// The claim for servers before Redis 7.0 (no `SET … NX GET`): `KEYS[1]` record; `ARGV`: the
/// in-progress record, lease in ms. Answers `{previous record, its PTTL}` (read together, so
/// the local cache never keeps a record longer than it lives), or nil after claiming.
const CLAIM_LUA: &str = r"
local r = redis.call('GET', KEYS[1])
if r then
  return {r, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// `KEYS[1]` record; `ARGV`: token, value, TTL in ms. Answers 1 if completed, 0 if fenced out
/// (a completed record is never ours: it keeps no token; see `RedisStore::complete` for a call
/// sent again after a lost reply).
const COMPLETE_LUA: &str = r"
local r = redis.call('GET', KEYS[1])
if not r or string.sub(r, 1, 1) ~= 'p' or string.sub(r, 34, 49) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'c' .. string.sub(r, 2, 33) .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// `KEYS[1]` record; `ARGV`: token. Answers 1 if released, 0 if fenced out.
const RELEASE_LUA: &str = r"
local r = redis.call('GET', KEYS[1])
if not r or string.sub(r, 1, 1) ~= 'p' or string.sub(r, 34, 49) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
";

/// `KEYS[1]` record; `ARGV`: token, lease in ms. Answers 1 if renewed, 0 if fenced out.
const RENEW_LUA: &str = r"
local r = redis.call('GET', KEYS[1])
if not r or string.sub(r, 1, 1) ~= 'p' or string.sub(r, 34, 49) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// `KEYS[1]` record. Answers `0` (absent) or `{record, pttl}`.
const GET_LUA: &str = r"
local r = redis.call('GET', KEYS[1])
if not r then
  return 0
end
return {r, redis.call('PTTL', KEYS[1])}
";

const IN_PROGRESS: u8 = b'p';
const COMPLETED: u8 = b'c';
const FINGERPRINT: std::ops::Range<usize> = 1..33;
const TOKEN: std::ops::Range<usize> = 33..49;
const LEASE: std::ops::Range<usize> = 49..57;

/// A record as stored, parsed.
enum Stored {
    InProgress {
        fingerprint: Fingerprint,
        token: [u8; 16],
        lease: Duration,
    },
    Completed {
        fingerprint: Fingerprint,
        value: Bytes,
    },
}

/// The in-progress record of a claim, built on the stack: it is copied once, into the command.
fn in_progress_record(fingerprint: &Fingerprint, token: Token, lease_ms: u64) -> [u8; LEASE.end] {
    let mut record = [0; LEASE.end];
    record[0] = IN_PROGRESS;
    record[FINGERPRINT].copy_from_slice(fingerprint.as_bytes());
    record[TOKEN].copy_from_slice(&token.to_bytes());
    record[LEASE].copy_from_slice(&lease_ms.to_be_bytes());
    record
}

fn parse_record(rkey: RecordKey<'_>, bytes: Vec<u8>) -> Result<Stored, Error> {
    let fingerprint = bytes
        .get(FINGERPRINT)
        .and_then(|f| <[u8; 32]>::try_from(f).ok())
        .map(Fingerprint::from_bytes)
        .ok_or_else(|| malformed(rkey, "shorter than its header"))?;
    match bytes[0] {
        COMPLETED => {
            // `advance` on a `Bytes` made from a `Vec` only moves its start (the buffer is
            // freed whole later); `slice` would allocate a shared handle on every replay.
            let mut value = Bytes::from(bytes);
            value.advance(FINGERPRINT.end);
            Ok(Stored::Completed { fingerprint, value })
        }
        IN_PROGRESS => {
            let lease = bytes
                .get(LEASE)
                .and_then(|l| <[u8; 8]>::try_from(l).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| malformed(rkey, "in-progress record too short"))?;
            let token = bytes
                .get(TOKEN)
                .and_then(|t| <[u8; 16]>::try_from(t).ok())
                .ok_or_else(|| malformed(rkey, "in-progress record too short"))?;
            Ok(Stored::InProgress {
                fingerprint,
                token,
                lease: Duration::from_millis(lease),
            })
        }
        other => Err(malformed(rkey, &format!("unknown state byte {other:#04x}"))),
    }
}

/// A Lua script with its SHA1, computed once.
struct Lua {
    source: &'static str,
    script: LazyLock<redis::Script>,
}

macro_rules! lua {
    ($name:ident = $source:ident) => {
        static $name: Lua = Lua {
            source: $source,
            script: LazyLock::new(|| redis::Script::new($source)),
        };
    };
}

lua!(CLAIM = CLAIM_LUA);
lua!(COMPLETE = COMPLETE_LUA);
lua!(RELEASE = RELEASE_LUA);
lua!(RENEW = RENEW_LUA);
lua!(GET = GET_LUA);

/// One argument of a script call.
enum Arg<'a> {
    Bytes(&'a [u8]),
    Int(u64),
}

/// The Redis key of a record (`<prefix><64 hex digits>`) as a command argument: written
/// straight into the command's buffer, without a `Vec` of its own per call.
#[derive(Clone, Copy)]
struct RecordKey<'a> {
    prefix: &'a [u8],
    key: &'a Key,
}

impl RecordKey<'_> {
    /// The key's length in bytes.
    fn len(self) -> usize {
        self.prefix.len() + 2 * self.key.as_bytes().len()
    }

    /// The key as one `Vec` (for the rare paths that need the bytes themselves).
    fn to_vec(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(self.prefix);
        out.extend_from_slice(&hex(self.key));
        out
    }
}

impl ToRedisArgs for RecordKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // The command buffer grows as needed; writing to it cannot fail.
        let _ = arg.write_all(self.prefix);
        let _ = arg.write_all(&hex(self.key));
    }
}

/// The key digest in lowercase hex.
fn hex(key: &Key) -> [u8; 64] {
    /// The two hex digits of every byte: one lookup per byte instead of two.
    static PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [HEX[b >> 4], HEX[b & 0x0f]];
            b += 1;
        }
        pairs
    };
    let mut out = [0; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(key.as_bytes()) {
        pair.copy_from_slice(&PAIRS[usize::from(*b)]);
    }
    out
}

/// A shared store on Redis or Redis Cluster.
///
/// ```no_run
/// # async fn demo() -> Result<(), idem_runtime::Error> {
/// use idem_runtime::store::RedisStore;
///
/// // One server (or a primary behind a proxy):
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// idem_runtime::install(store)?;
///
/// // Redis Cluster, with a prefix of its own and replica acknowledgement:
/// let cluster = RedisStore::builder()
///     .key_prefix("billing:idem:")
///     .wait_for_replicas(1, std::time::Duration::from_millis(200))
///     .connect_cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .await?;
/// # let _ = cluster; Ok(()) }
/// ```
///
/// Cloning is cheap and shares the connection.
///
/// ## Record layout
///
/// One Redis **string** per key, named `<prefix><64 lowercase hex digits of the key>` (prefix
/// `idem:` by default), with the record's lifetime as the key's native `PX` expiry:
///
/// | bytes | in progress | completed |
/// |---|---|---|
/// | 0 | `p` | `c` (`e` is reserved for a future *recorded error*) |
/// | 1..33 | fingerprint (32 bytes) | fingerprint (32 bytes) |
/// | 33..49 | fencing token (16 bytes, big-endian) | the record bytes of [`crate::record`] (6-byte header `idm…` + JSON), byte for byte |
/// | 49..57 | the lease in ms (u64, big-endian) | |
/// | key expiry (`PTTL`) | the lease | the TTL, counted from completion |
///
/// `redis-cli GET idem:<hex>` shows a record; a completed one ends in its readable JSON.
///
/// ## Atomic single-key steps
///
/// Every step touches a single key, so it is atomic on the server and runs on the one cluster
/// node that owns the key (no cross-slot access):
///
/// - **claim** is one command, `SET <key> <in-progress record> NX PX <lease> GET`: it writes the
///   claim only if the key is absent (never written, expired, released or lease lapsed) and
///   answers the previous record: nothing → *acquired*; a completed record → its fingerprint and
///   value (a replay is this one round trip; it neither changes the record nor its expiry); an
///   in-progress record → its fingerprint, plus one `PTTL` for the remaining lease. On the
///   server the command costs about twice the instructions of a plain `GET` of the record
///   (Redis looks the key up twice and parses seven arguments; callgrind: 10.8k vs 5.3k per
///   command, unpipelined), which `redis-benchmark` sees as 5–10 % fewer commands per second.
///   Servers older than Redis 7.0 refuse `NX` with `GET` (a syntax error); the store then
///   switches to an equivalent Lua script, with every clone of it, for as long as it lives: a
///   deployment that upgrades its servers to 7.0 or later uses `SET … NX GET` again from its
///   next start.
///   When the store reads first ([`RedisStoreBuilder::claim_order`]: by default only while
///   nearly all recent claims were replays), a plain `GET` comes first and answers completed
///   records by itself; the claim command follows only when it found none.
/// - **complete**, **release**, **renew** are Lua scripts: each compares the caller's token
///   with the record's (fencing) and then rewrites (`SET … PX ttl`), deletes or re-expires
///   (`PEXPIRE`) the key; a completed record has no token, an expired one is gone. `get` is a
///   script too, with no token: it reads the record and its remaining lifetime (`PTTL`) at once.
///   Scripts are sent as `EVALSHA`; a server that does not know a script yet (restart, failover,
///   `SCRIPT FLUSH`) answers `NOSCRIPT`, and the store then sends the same call once as `EVAL`
///   with the full source, which also caches it. `remove` is a plain `DEL`.
///
/// ## Clock and expiry
///
/// Leases and TTLs are sent as durations and stored as the key's `PX` expiry, so the **Redis
/// server's clock** decides when a lease lapses or a record expires; the application's clock is
/// never consulted. An expired key is gone for every client at once, which also makes
/// [`Store::purge_expired`] a no-op (it returns 0).
///
/// ## Round trips
///
/// | path | round trips |
/// |---|---|
/// | replay (record completed) | 1 (`SET … NX GET` returns the value, or a `GET` when reading first: [`RedisStoreBuilder::claim_order`]) |
/// | replay with [`RedisStoreBuilder::local_cache`], record seen before by this process | 0 |
/// | first call | 2 (`SET … NX GET`, then `EVALSHA complete`; +1 `WAIT` with [`RedisStoreBuilder::wait_for_replicas`]; +1 `GET` when reading first, which the default [`ClaimOrder::Adaptive`] does only while ≥ 95 % of recent claims were replays) |
/// | first call whose body fails | 2 (claim, `EVALSHA release`) |
/// | duplicate while running | 2 (claim, `PTTL`; 1 with the local cache on, which pipelines the `PTTL`), then polls (below), then 1 read |
/// | script unknown to the server | +1 once per script and server (`EVAL` after `NOSCRIPT`) |
///
/// ## Lost connections
///
/// A command that fails because the connection was lost (not one that timed out) is sent once
/// more, over the connection the manager opens again: a server restart, a failover or a
/// provider's idle timeout between two calls, or while a body runs, costs a reconnect instead
/// of a failed call or a lost result. The commands resent are safe to repeat after they may
/// have run: a claim that ran but whose answer was lost finds its own record (by its token),
/// renews its lease and is acquired; a `complete` sent again that finds the record completed
/// with its own value answers "completed" (a completed record keeps no token, nor is the
/// fingerprint compared: in the rare case that this claim's lease had run out before the
/// resend and another caller completed the key with the very same bytes, that is what it
/// reports; without a lost connection a
/// completed record always fences a late `complete` out); a `release` sent again that finds the
/// key free answers "released". On a Redis Cluster the client also resends by itself (its own
/// retries, which the store cannot see): a `complete` whose first send ran then answers
/// "fenced out" and the call fails with [`Error::LeaseLost`] although its value is recorded (a
/// retry replays it: an error too many, never a second run hidden), a `release` answers
/// `false`, and `remove`'s `DEL` may be repeated after a lost answer. If the repeat fails as
/// well, the call fails with [`Error::Store`] and the body does not run (fail closed). The store
/// itself never resends `remove`: a `DEL` repeated after another caller's claim would delete
/// that claim.
///
/// ## Waiting for a running call
///
/// Redis has no per-key change notification that survives reconnects cheaply, so a duplicate
/// waits by **polling** the record's state byte (`GETRANGE <key> 0 0`) with a jittered
/// exponential backoff: 5 ms, then doubling up to 200 ms, each sleep drawn uniformly from
/// 50–100 % of the step, never beyond the caller's wait bound (`wait_timeout`, and the owner's
/// remaining lease). It returns as soon as the record is no longer in progress.
///
/// ## Durability
///
/// A completed record is acknowledged by the **primary** that owns the key: `complete` returns
/// only after the script ran there, and the engine hands the value to the caller only after that.
/// What this means for a second run of the same key:
///
/// - **Replication is asynchronous.** If the primary fails before a replica received the record,
///   the promoted replica does not have it, and a later call runs the body again.
///   [`RedisStoreBuilder::wait_for_replicas`] sends `WAIT n timeout` after each `complete` and
///   fails the call with [`Error::Store`] when fewer than `n` replicas acknowledged in time (the
///   record is still on the primary; a retry replays it). `WAIT` narrows the window but is not
///   consensus: Redis may still lose acknowledged writes in some failover sequences. Note that
///   `WAIT` blocks the (multiplexed) connection on the server while it waits, which is why the
///   builder refuses a `WAIT` timeout that is not at least [`RedisStore::WAIT_HEADROOM`]
///   shorter than the response timeout.
/// - **Persistence.** Without AOF (`appendonly yes`, ideally `appendfsync everysec` or
///   `always`), a restart of the server loses every record, and every key runs once more. With
///   RDB snapshots only, records written since the last snapshot are lost.
/// - **Eviction.** Use `maxmemory-policy noeviction` or a `volatile-*` policy that you have sized
///   for: an evicted record is a forgotten record (the next call runs again), and an evicted
///   claim lets a duplicate run concurrently.
///
/// Use the PostgreSQL store when a second run after a server failure is not acceptable.
///
/// ## Limits
///
/// Values larger than [`RedisStoreBuilder::max_value_bytes`] (1 MiB by default) are refused with
/// [`Error::ValueTooLarge`] before anything is sent; the claim stays in place for the engine to
/// release. Keep hash tags (`{…}`) out of the key prefix: they would put every record in one
/// cluster slot.
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    /// Where it connected (URLs without passwords), for [`Store::describe`]; `None` on a
    /// connection the application made.
    target: Option<Arc<str>>,
    prefix: Arc<[u8]>,
    max_value_bytes: usize,
    replicas: Option<(usize, Duration)>,
    /// Set once the server refused `SET … NX GET` (before Redis 7.0): claim with a script.
    legacy_claim: Arc<AtomicBool>,
    /// Completed records seen by this process (opt-in, [`RedisStoreBuilder::local_cache`]).
    cache: Option<Arc<LocalCache>>,
    /// [`RedisStoreBuilder::claim_order`].
    order: ClaimOrder,
    /// What [`ClaimOrder::Adaptive`] follows (shared by clones, like the connection).
    replay_share: Arc<ReplayShare>,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Configures a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    max_value_bytes: usize,
    replicas: Option<(usize, Duration)>,
    response_timeout: Duration,
    connection_timeout: Duration,
    reconnect_retries: usize,
    script_claim: bool,
    local_cache: (usize, Duration),
    order: ClaimOrder,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: RedisStore::DEFAULT_KEY_PREFIX.to_owned(),
            max_value_bytes: RedisStore::DEFAULT_MAX_VALUE_BYTES,
            replicas: None,
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
            reconnect_retries: 2,
            script_claim: false,
            local_cache: (0, Duration::ZERO),
            order: ClaimOrder::Adaptive,
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix of every record's Redis key (default `"idem:"`). Give each application or
    /// environment sharing a server its own prefix. Keep `{`/`}` out of it in a cluster.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Upper bound on one encoded value in bytes (default 1 MiB). Larger values are refused
    /// with [`Error::ValueTooLarge`] before anything is written.
    pub fn max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// After each `complete`, sends `WAIT replicas timeout` to the key's primary and fails the
    /// call with [`Error::Store`] if fewer than `replicas` replicas acknowledged the record
    /// within `timeout` (the record stays on the primary; a retry replays it). Off by default
    /// (`replicas` 0 turns it off).
    ///
    /// `timeout` is sent in whole milliseconds, rounded up, and at least 1 ms: Redis reads
    /// `WAIT n 0` as "block until `n` replicas acknowledged", which would hold the store's
    /// shared connection for as long as a replica is missing.
    ///
    /// **Interaction with [`response_timeout`](Self::response_timeout):** without enough
    /// replicas, `WAIT` answers only when its timeout has passed, and that answer must still
    /// reach the client within the response timeout, or the call fails with a bare timeout
    /// while `WAIT` keeps the (multiplexed) connection blocked on the server. So
    /// [`connect`](Self::connect) and [`connect_cluster`](Self::connect_cluster) refuse, with
    /// [`Error::Config`], a `timeout` that is not at least
    /// [`RedisStore::WAIT_HEADROOM`] (100 ms) shorter than the response timeout (default 2 s:
    /// a `WAIT` timeout of up to 1.9 s). With
    /// [`build_with_manager`](Self::build_with_manager) or
    /// [`build_with_cluster`](Self::build_with_cluster) the connection's own response timeout
    /// applies, which the store cannot see: keep the same margin there yourself. Note also
    /// that `WAIT`s of concurrent completions run one after another on the shared connection:
    /// while replicas are missing, commands queued behind several of them can still time out.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// How long one command may take before it fails with [`Error::Store`] (default 2 s).
    ///
    /// With [`wait_for_replicas`](Self::wait_for_replicas), this must exceed the `WAIT`
    /// timeout by at least [`RedisStore::WAIT_HEADROOM`] (100 ms); `connect` and
    /// `connect_cluster` refuse the configuration otherwise.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 1 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How often a lost single-server connection is retried (with exponential backoff from
    /// 100 ms) before the calls waiting for it fail (default 2). The next call starts over, so
    /// the store recovers by itself once the server is back.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
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
    /// calls are always asked for. While the cache is on, a claim that reaches Redis also
    /// pipelines a `PTTL` (same round trip) to learn how long the record lives.
    pub fn local_cache(mut self, max_entries: usize, max_age: Duration) -> Self {
        self.local_cache = (max_entries, max_age);
        self
    }

    /// Whether a claim starts with a plain `GET` of the record, sending the atomic claim
    /// (`SET … NX GET`) only when that finds no completed record: always
    /// ([`ClaimOrder::ReadFirst`]), never ([`ClaimOrder::ClaimFirst`]), or while nearly all
    /// recent claims were replays ([`ClaimOrder::Adaptive`], the default).
    ///
    /// Reading first, a replay costs the server a `GET` (about half the work of the claim
    /// command), but a first call costs **three** round trips instead of two (`GET`, claim,
    /// complete). Measured at 32 callers (docs/PERFORMANCE.md, *Shared stores*): replays
    /// 0.92–1.01× a raw `GET` instead of 0.85–0.90×, first calls 4–20 % slower. Atomicity is
    /// the same in every order: the `GET` only reads; every claim is the single `SET … NX GET`.
    pub fn claim_order(mut self, order: ClaimOrder) -> Self {
        self.order = order;
        self
    }

    /// Claims with the Lua script that servers before Redis 7.0 need, instead of
    /// `SET … NX GET` (chosen automatically; for tests).
    #[doc(hidden)]
    pub fn claim_with_script(mut self, script: bool) -> Self {
        self.script_claim = script;
        self
    }

    /// Connects to one Redis server (`redis://[user:password@]host:port[/db]`, or `rediss://`
    /// when the `redis` crate's TLS features are enabled) through a [`ConnectionManager`],
    /// which reconnects by itself after a connection loss.
    ///
    /// Fails with [`Error::Config`] when the [`wait_for_replicas`](Self::wait_for_replicas)
    /// timeout does not fit in the [`response_timeout`](Self::response_timeout), when the URL
    /// is invalid or when the server refuses the connection (credentials, database number: a
    /// retry will not help), and with [`Error::Store`] when the server cannot be reached (the
    /// messages show the URL without its password).
    pub async fn connect(self, url: &str) -> Result<RedisStore, Error> {
        self.check_wait_timeout()?;
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("invalid Redis URL {}: {e}", redact(url))))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(self.reconnect_retries);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| connect_error(&redact(url), e))?;
        let mut store = self.build(Connection::Single(manager));
        store.target = Some(redact(url).into());
        Ok(store)
    }

    /// Connects to a Redis Cluster through any of its nodes (the client discovers the others
    /// and follows slot migrations and failovers).
    ///
    /// Fails like [`connect`](Self::connect): [`Error::Config`] for a `WAIT` timeout that does
    /// not fit in the response timeout, for invalid node URLs, or when a node refuses the
    /// connection; [`Error::Store`] when no node can be reached (URLs without passwords). The
    /// client reports some refusals during its first connections as I/O errors (a wrong
    /// password, for one): those come as [`Error::Store`], with the node's answer.
    pub async fn connect_cluster<I, S>(self, nodes: I) -> Result<RedisStore, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check_wait_timeout()?;
        let nodes: Vec<String> = nodes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let shown = || {
            nodes
                .iter()
                .map(|node| redact(node))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .response_timeout(self.response_timeout)
            .connection_timeout(self.connection_timeout)
            .build()
            .map_err(|e| Error::Config(format!("invalid Redis Cluster nodes {}: {e}", shown())))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| connect_error(&shown(), e))?;
        let mut store = self.build(Connection::Cluster(conn));
        store.target = Some(format!("cluster {}", shown()).into());
        Ok(store)
    }

    /// Uses an existing connection manager (its own timeouts and retries apply; keep a
    /// [`wait_for_replicas`](Self::wait_for_replicas) timeout well below its response timeout).
    pub fn build_with_manager(self, manager: ConnectionManager) -> RedisStore {
        self.build(Connection::Single(manager))
    }

    /// Uses an existing async cluster connection (its own timeouts apply; keep a
    /// [`wait_for_replicas`](Self::wait_for_replicas) timeout well below its response timeout).
    pub fn build_with_cluster(self, conn: ClusterConnection) -> RedisStore {
        self.build(Connection::Cluster(conn))
    }

    /// Refuses a `WAIT` timeout that would not be answered within the response timeout.
    fn check_wait_timeout(&self) -> Result<(), Error> {
        let Some((replicas, wait)) = self.replicas else {
            return Ok(());
        };
        // What is sent (whole milliseconds, rounded up), plus the margin for the answer.
        let sent = Duration::from_millis(wait_millis(wait));
        if sent
            .checked_add(RedisStore::WAIT_HEADROOM)
            .is_some_and(|needed| needed <= self.response_timeout)
        {
            return Ok(());
        }
        Err(Error::Config(format!(
            "RedisStoreBuilder::wait_for_replicas({replicas}, {wait:?}) needs the \
             RedisStoreBuilder::response_timeout ({:?}) to be at least {:?} longer than the WAIT \
             timeout: WAIT answers only after its timeout when replicas are missing, and the \
             call would fail with a bare timeout while WAIT keeps the connection blocked; \
             shorten the WAIT timeout to at most {:?} or raise the response timeout to at least \
             {:?}",
            self.response_timeout,
            RedisStore::WAIT_HEADROOM,
            self.response_timeout
                .saturating_sub(RedisStore::WAIT_HEADROOM)
                .max(Duration::from_millis(1)),
            sent.saturating_add(RedisStore::WAIT_HEADROOM),
        )))
    }

    fn build(self, conn: Connection) -> RedisStore {
        RedisStore {
            conn,
            target: None,
            prefix: Arc::from(self.prefix.into_bytes()),
            max_value_bytes: self.max_value_bytes,
            replicas: self.replicas,
            legacy_claim: Arc::new(AtomicBool::new(self.script_claim)),
            cache: LocalCache::new(self.local_cache.0, self.local_cache.1).map(Arc::new),
            order: self.order,
            replay_share: Arc::default(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "mode",
                &match self.conn {
                    Connection::Single(_) => "single",
                    Connection::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("max_value_bytes", &self.max_value_bytes)
            .field("replicas", &self.replicas)
            .field(
                "local_cache",
                &self.cache.as_ref().map(|c| (c.max_entries(), c.max_age())),
            )
            .finish()
    }
}

fn store_error(e: RedisError) -> Error {
    if is_permanent(&e) {
        return Error::Config(format!(
            "redis store: {e}; the server refuses this client's credentials or permissions \
             (ACL), a retry will not help"
        ));
    }
    Error::store(NAME, e)
}

/// Whether `e` needs a change of the settings or of the server's ACL, not time.
fn is_permanent(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::AuthenticationFailed
            | redis::ErrorKind::InvalidClientConfig
            | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
    )
}

/// Whether `error` is a connection that failed (broken, dropped, refused), not an answer, and
/// not a timeout: a server too slow to answer is not sent the command a second time.
fn connection_lost(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal())
}

/// `target` is already [redacted](redact). A server that answered, but refused the
/// connection's set-up (credentials, database number), is a configuration error.
fn connect_error(target: &str, e: RedisError) -> Error {
    let unreachable = connection_lost(&e)
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound;
    if unreachable {
        return Error::store(
            NAME,
            format!("cannot connect to Redis at {target}: {e} (is the server running?)"),
        );
    }
    Error::Config(format!(
        "Redis at {target} refused the connection: {e}; check the URL's user, password and \
         database number, a retry will not help"
    ))
}

/// `url` without its password, for error messages: the password of the userinfo
/// (`redis://user:password@host` shows as `redis://user@host`, `redis://:password@host` as
/// `redis://host`) and `pass` / `password` query parameters (`redis+unix:///socket?pass=…`)
/// are left out.
fn redact(url: &str) -> String {
    super::redact::url_without_password(url, |name| {
        name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password")
    })
}

/// A `WAIT` timeout in whole milliseconds: rounded up, at least 1 (`WAIT n 0` blocks until the
/// replicas acknowledged, however long that takes), and within what Redis accepts (it adds the
/// timeout to its clock in a signed 64-bit integer).
fn wait_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64 / 2)
}

/// An answer that is not an idem record (or not what the command answers), naming the Redis
/// key so that an operator can inspect it (`redis-cli GET <key>`).
fn malformed(rkey: RecordKey<'_>, what: &str) -> Error {
    Error::store(
        NAME,
        format!(
            "malformed idem record at Redis key {:?}: {what}",
            String::from_utf8_lossy(&rkey.to_vec())
        ),
    )
}

const READ_SCRIPT_ANSWER: &str = "the read script answered neither 0 nor a record and its PTTL";

/// An answer from the server (not a stored record) that is not what the command answers: a
/// proxy or server that does not speak Redis's protocol as Redis does.
fn unexpected(rkey: RecordKey<'_>, what: &str) -> Error {
    Error::store(
        NAME,
        format!(
            "unexpected answer from the server for Redis key {:?}: {what}; is it Redis (or a \
             compatible server) without a proxy that rewrites answers?",
            String::from_utf8_lossy(&rkey.to_vec())
        ),
    )
}

/// A duration as whole milliseconds for `PX`, at least 1 (0 would delete the key at once).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64 / 2)
}

fn pttl(rkey: RecordKey<'_>, v: &Value) -> Result<Duration, Error> {
    match v {
        Value::Int(ms) => Ok(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))),
        _ => Err(unexpected(rkey, "PTTL is not an integer")),
    }
}

fn flag(rkey: RecordKey<'_>, v: Value) -> Result<bool, Error> {
    match v {
        Value::Int(n) => Ok(n == 1),
        _ => Err(unexpected(rkey, "a script answered other than 0 or 1")),
    }
}

impl RedisStore {
    /// Default key prefix (see [`RedisStoreBuilder::key_prefix`]).
    pub const DEFAULT_KEY_PREFIX: &'static str = "idem:";
    /// Default bound on one encoded value (see [`RedisStoreBuilder::max_value_bytes`]): 1 MiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
    /// How much longer than a [`RedisStoreBuilder::wait_for_replicas`] timeout the
    /// [`RedisStoreBuilder::response_timeout`] must be: the time `WAIT`'s answer may need to
    /// reach the client after its timeout passed on the server (a round trip, plus the wait
    /// behind commands sent earlier on the shared connection, plus the server's event-loop
    /// granularity).
    pub const WAIT_HEADROOM: Duration = Duration::from_millis(100);

    /// Connects to one Redis server with the default settings (see [`RedisStoreBuilder`]).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        RedisStoreBuilder::default().connect(url).await
    }

    /// Connects to a Redis Cluster with the default settings.
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisStoreBuilder::default().connect_cluster(nodes).await
    }

    /// Configures prefix, limits, timeouts and replica acknowledgement.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The configured bound on one value.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// Whether this store's next claim starts with a `GET` (see
    /// [`RedisStoreBuilder::claim_order`]): always with [`ClaimOrder::ReadFirst`], never with
    /// [`ClaimOrder::ClaimFirst`], and with [`ClaimOrder::Adaptive`] while at least 95 % of the
    /// recent claims of this store and its clones found a completed record.
    pub fn reads_first(&self) -> bool {
        match self.order {
            ClaimOrder::ClaimFirst => false,
            ClaimOrder::ReadFirst => true,
            ClaimOrder::Adaptive => self.replay_share.mostly_replays(),
        }
    }

    /// Counts a claim that reached Redis (local-cache answers do not: they cost the server
    /// nothing either way) for [`ClaimOrder::Adaptive`].
    fn note_claim(&self, replay: bool) {
        if self.order == ClaimOrder::Adaptive {
            self.replay_share.note(replay);
        }
    }

    /// The Redis key holding the record of `key`: the prefix, then the key in lowercase hex.
    pub fn redis_key(&self, key: &Key) -> Vec<u8> {
        self.record_key(key).to_vec()
    }

    fn record_key<'a>(&'a self, key: &'a Key) -> RecordKey<'a> {
        RecordKey {
            prefix: &self.prefix,
            key,
        }
    }

    /// Sends `cmd`, and once more if the connection was lost: the first command sent on a
    /// connection that dropped since the last one (a server restart, a failover, a provider's
    /// idle timeout) fails while the connection manager reconnects, and the repeat goes over
    /// the new connection. Without it, a body that outlived such a blip would fail its
    /// `complete` and have its key released for a second run, and the next claim would fail.
    /// Every command sent here is safe to repeat after it may have run (`remove`'s `DEL`, which
    /// is not, goes through [`query_once`](Self::query_once)): reads; a claim, whose
    /// repeat answers the record it wrote, recognised by its token; the token-fenced scripts,
    /// whose repeat answers 0 when the first send did the work, which `complete` and `release`
    /// then check ([`query_resending`](Self::query_resending) tells them it was repeated).
    async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        self.query_resending(cmd).await.0
    }

    /// [`query`](Self::query), and whether the command was sent a second time: then its first
    /// send may have run too, its answer lost with the connection.
    async fn query_resending(&self, cmd: &Cmd) -> (Result<Value, RedisError>, bool) {
        match self.query_once(cmd).await {
            Err(error) if connection_lost(&error) => {
                tracing::debug!(target: "idem", %error, "redis connection lost; sending again");
                let again = match self.query_once(cmd).await {
                    // The first send may have been applied: a refusal of the second (credentials
                    // rotated meanwhile) must not pass for "nothing applied" (`Error::Config`).
                    Err(refused) if is_permanent(&refused) => Err(RedisError::from((
                        redis::ErrorKind::Io,
                        "connection lost, then the command sent again was refused",
                        refused.to_string(),
                    ))),
                    again => again,
                };
                (again, true)
            }
            answer => (answer, false),
        }
    }

    async fn query_once(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        match &self.conn {
            // `query_async` boxes the connection's future: one allocation, but the futures that
            // await this one (a claim's, boxed per call) stay small. Awaiting the manager's
            // `send_packed_command` inline saved ~300 instructions per replay under callgrind,
            // yet tripled the claim future (1.9 KB instead of 0.6 KB) and cost ~10 % more CPU
            // per replay at 32 callers on 2 threads, where moving big futures is not free.
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await,
            Connection::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// Whether `key`'s record is completed with `value` (after a `complete` that may have been
    /// sent twice).
    async fn completed_with(&self, key: &Key, value: &Bytes) -> Result<bool, Error> {
        Ok(matches!(
            Store::get(self, key).await?,
            Some(Record::Completed { value: stored, .. }) if stored == *value
        ))
    }

    /// `SET key record NX PX lease GET`: the claim, answering the previous record (or nil),
    /// and with `with_pttl` the key's `PTTL` right after it (in one `MULTI`/`EXEC`: the same
    /// round trip, and no other client's command in between).
    async fn set_nx_get(
        &self,
        rkey: RecordKey<'_>,
        record: &[u8],
        lease_ms: u64,
        with_pttl: bool,
    ) -> Result<(Value, Option<Value>), Error> {
        if !self.legacy_claim.load(Ordering::Relaxed) {
            // Sized up front: the command's buffers would otherwise grow (and copy) several
            // times per claim, which was a visible share of a replay's client-side work.
            let mut cmd = Cmd::with_capacity(7, rkey.len() + record.len() + 3 + 2 + 2 + 20 + 3);
            cmd.arg("SET")
                .arg(rkey)
                .arg(record)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .arg("GET");
            let answer = if with_pttl {
                Box::pin(self.query_with_pttl(cmd, rkey))
                    .await
                    .map(|(claim, left)| (claim, Some(left)))
            } else {
                self.query(&cmd).await.map(|claim| (claim, None))
            };
            match answer {
                Err(e)
                    if e.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                        && e.detail().is_some_and(|d| d.contains("syntax")) =>
                {
                    // Logged once, by the first of the claims that met the refusal.
                    if !self.legacy_claim.swap(true, Ordering::Relaxed) {
                        tracing::info!(target: "idem", "Redis before 7.0: claiming with a Lua script");
                    }
                }
                other => return other.map_err(store_error),
            }
        }
        // Boxed: this rare path would otherwise make every claim's future larger (and costlier
        // to move) by two more commands.
        let claim =
            Box::pin(self.eval(&CLAIM, rkey, &[Arg::Bytes(record), Arg::Int(lease_ms)])).await?;
        match claim {
            Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                Ok([previous, left]) => Ok((previous, Some(left))),
                Err(_) => Err(unexpected(rkey, "the claim script did not answer a pair")),
            },
            Value::Nil => Ok((Value::Nil, None)),
            _ => Err(unexpected(
                rkey,
                "the claim script answered neither nil nor a pair",
            )),
        }
    }

    /// The read-first step of a claim: `GET` (with the local cache, and `PTTL` in the same
    /// round trip); answers the replay if the record is completed, else `None` (the caller
    /// then claims: an in-progress record is answered by the claim, with its lease).
    async fn read_completed(&self, key: &Key, rkey: RecordKey<'_>) -> Result<Option<Claim>, Error> {
        let mut cmd = Cmd::with_capacity(2, 3 + rkey.len());
        cmd.arg("GET").arg(rkey);
        let sent = self
            .cache
            .as_ref()
            .map(|cache| (cache, std::time::Instant::now(), cache.epoch()));
        let (record, left) = if sent.is_some() {
            let (record, left) = Box::pin(self.query_with_pttl(cmd, rkey))
                .await
                .map_err(store_error)?;
            (record, Some(left))
        } else {
            (self.query(&cmd).await.map_err(store_error)?, None)
        };
        match record {
            Value::BulkString(bytes) => match parse_record(rkey, bytes)? {
                Stored::Completed { fingerprint, value } => {
                    if let (Some((cache, sent_at, epoch)), Some(left)) = (sent, left) {
                        let left = pttl(rkey, &left)?;
                        cache.insert(key, fingerprint, &value, sent_at, epoch, left);
                    }
                    Ok(Some(Claim::Completed { fingerprint, value }))
                }
                Stored::InProgress { .. } => Ok(None),
            },
            Value::Nil => Ok(None),
            _ => Err(unexpected(rkey, "GET answered neither a record nor nil")),
        }
    }

    /// `cmd` and `PTTL rkey` in one transaction (`MULTI`/`EXEC`, one round trip); answers both
    /// replies (errors as errors). A plain pipeline is not enough: another client's claim could
    /// run between the two, and the `PTTL` of its fresh lease would let the local cache keep
    /// the record this `cmd` read long after it expired. Single key: cluster-safe.
    async fn query_with_pttl(
        &self,
        cmd: Cmd,
        rkey: RecordKey<'_>,
    ) -> Result<(Value, Value), RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic().add_command(cmd).cmd("PTTL").arg(rkey);
        // Each reply is checked below, so that the claim's own error (e.g. a server before
        // 7.0 refusing `NX` with `GET`) keeps its kind.
        pipe.ignore_errors();
        let send = || async {
            match &self.conn {
                Connection::Single(c) => pipe.query_async::<Vec<Value>>(&mut c.clone()).await,
                Connection::Cluster(c) => pipe.query_async::<Vec<Value>>(&mut c.clone()).await,
            }
        };
        // Once more after a lost connection, as `query` does.
        let replies = match send().await {
            Err(error) if connection_lost(&error) => send().await?,
            answer => answer?,
        };
        match <[Value; 2]>::try_from(replies) {
            Ok([claim, left]) => Ok((claim.extract_error()?, left.extract_error()?)),
            Err(_) => Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline of two commands did not answer twice",
            ))),
        }
    }

    /// `EVALSHA`, then `EVAL` once if the server does not know the script.
    async fn eval(&self, lua: &Lua, key: RecordKey<'_>, args: &[Arg<'_>]) -> Result<Value, Error> {
        self.eval_resending(lua, key, args)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`eval`](Self::eval), and whether the script was sent more than once after a lost
    /// connection (see [`query_resending`](Self::query_resending)).
    async fn eval_resending(
        &self,
        lua: &Lua,
        key: RecordKey<'_>,
        args: &[Arg<'_>],
    ) -> Result<(Value, bool), Error> {
        let build = |verb: &str, body: &str| {
            let data = args
                .iter()
                .fold(verb.len() + body.len() + 1 + key.len(), |n, arg| {
                    n + match arg {
                        Arg::Bytes(b) => b.len(),
                        Arg::Int(_) => 20,
                    }
                });
            let mut cmd = Cmd::with_capacity(4 + args.len(), data);
            cmd.arg(verb).arg(body).arg(1).arg(key);
            for arg in args {
                match arg {
                    Arg::Bytes(b) => cmd.arg(*b),
                    Arg::Int(n) => cmd.arg(*n),
                };
            }
            cmd
        };
        match self
            .query_resending(&build("EVALSHA", lua.script.get_hash()))
            .await
        {
            (Err(e), resent)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let (answer, again) = self.query_resending(&build("EVAL", lua.source)).await;
                answer
                    .map(|answer| (answer, resent || again))
                    .map_err(store_error)
            }
            (answer, resent) => answer.map(|answer| (answer, resent)).map_err(store_error),
        }
    }

    async fn wait_for_replicas(
        &self,
        rkey: RecordKey<'_>,
        replicas: usize,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(wait_millis(timeout));
        let answer = match &self.conn {
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await,
            Connection::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(rkey.to_vec()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.clone().route_command(cmd, routing).await
            }
        }
        .map_err(store_error)?;
        let acked = match answer {
            Value::Int(n) => usize::try_from(n).unwrap_or(0),
            _ => return Err(unexpected(rkey, "WAIT did not answer an integer")),
        };
        if acked < replicas {
            let waited = Duration::from_millis(wait_millis(timeout));
            return Err(Error::store(
                NAME,
                format!(
                    "the result was recorded on the primary, but only {acked} of {replicas} \
                     replicas acknowledged it within {waited:?}; calling again replays it"
                ),
            ));
        }
        Ok(())
    }

    /// Polls `GETRANGE <key> 0 0` (the state byte) until the record is no longer in progress or `max` has passed,
    /// with a jittered exponential backoff (5 ms doubling to 200 ms, 50–100 % jitter).
    async fn poll_until_settled(&self, key: &Key, max: Duration) -> Result<(), Error> {
        let rkey = self.record_key(key);
        // Saturating: `max` may be `Duration::MAX` ("no bound").
        let until = deadline(tokio::time::Instant::now(), max);
        let mut step = Duration::from_millis(5);
        loop {
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep(jittered(step).min(until - now)).await;
            let mut cmd = redis::cmd("GETRANGE");
            cmd.arg(rkey).arg(0).arg(0);
            match self.query(&cmd).await.map_err(store_error)? {
                Value::BulkString(s) if s == [IN_PROGRESS] => {}
                _ => return Ok(()),
            }
            step = (step * 2).min(Duration::from_millis(200));
        }
    }
}

impl Store for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn describe(&self) -> String {
        let at = self
            .target
            .as_deref()
            .unwrap_or("a connection of the application's");
        format!(
            "redis at {at}, key prefix {:?}",
            String::from_utf8_lossy(&self.prefix)
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
        Box::pin(async move {
            let rkey = self.record_key(key);
            if self.reads_first()
                && let Some(replay) = self.read_completed(key, rkey).await?
            {
                self.note_claim(true);
                return Ok(replay);
            }
            let lease_ms = millis(lease);
            let record = in_progress_record(fingerprint, token, lease_ms);
            // Before sending: the cached entry then never outlives the record on the server.
            let sent = self
                .cache
                .as_ref()
                .map(|cache| (cache, std::time::Instant::now(), cache.epoch()));
            let (previous, left) = self
                .set_nx_get(rkey, &record, lease_ms, sent.is_some())
                .await?;
            match previous {
                Value::Nil => {
                    self.note_claim(false);
                    Ok(Claim::Acquired)
                }
                Value::BulkString(bytes) => match parse_record(rkey, bytes)? {
                    Stored::Completed { fingerprint, value } => {
                        self.note_claim(true);
                        if let (Some((cache, sent_at, epoch)), Some(left)) = (sent, left) {
                            let left = pttl(rkey, &left)?;
                            cache.insert(key, fingerprint, &value, sent_at, epoch, left);
                        }
                        Ok(Claim::Completed { fingerprint, value })
                    }
                    // Our own record: this claim was sent twice (`query` after a lost
                    // connection) and the first one had been applied. Tokens are unique per
                    // call, so no other caller holds this one. Its lease started at the first
                    // send, maybe seconds ago (the reconnection): renewed now, so the caller
                    // can count a whole lease from this answer.
                    Stored::InProgress { token: held, .. } if held == token.to_bytes() => {
                        self.note_claim(false);
                        let token = token.to_bytes();
                        let args = [Arg::Bytes(&token), Arg::Int(lease_ms)];
                        if flag(rkey, self.eval(&RENEW, rkey, &args).await?)? {
                            Ok(Claim::Acquired)
                        } else {
                            Err(Error::store(
                                NAME,
                                "the claim lapsed while the connection to Redis was restored; \
                                 call again",
                            ))
                        }
                    }
                    Stored::InProgress {
                        fingerprint, lease, ..
                    } => {
                        self.note_claim(false);
                        let left = match left {
                            Some(left) => left,
                            None => {
                                let mut cmd = redis::cmd("PTTL");
                                cmd.arg(rkey);
                                self.query(&cmd).await.map_err(store_error)?
                            }
                        };
                        Ok(Claim::InProgress {
                            fingerprint,
                            remaining: pttl(rkey, &left)?.min(lease),
                        })
                    }
                },
                _ => Err(unexpected(
                    rkey,
                    "the claim answered neither a record nor nil",
                )),
            }
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if value.len() > self.max_value_bytes {
                return Err(Error::ValueTooLarge {
                    size: value.len(),
                    limit: self.max_value_bytes,
                });
            }
            let rkey = self.record_key(key);
            let token = token.to_bytes();
            let args = [
                Arg::Bytes(&token),
                Arg::Bytes(&value),
                Arg::Int(millis(ttl)),
            ];
            // Sent again if the connection was lost (`query`): a blip while the body ran must
            // not lose its result.
            let (answer, resent) = self.eval_resending(&COMPLETE, rkey, &args).await?;
            let mut completed = flag(rkey, answer)?;
            if !completed && resent {
                // The first send may have completed the record, its answer lost: the record
                // then holds this value. A completed record keeps no token, so this cannot tell
                // that from another caller completing it with the same bytes meanwhile (this
                // claim's lease having run out before the resend); it answers what is
                // recorded. Never taken without a lost connection: then a completed record is
                // another caller's, and this call is fenced out (`LeaseLost`).
                completed = self.completed_with(key, &value).await?;
            }
            if completed && let Some((replicas, timeout)) = self.replicas {
                self.wait_for_replicas(rkey, replicas, timeout).await?;
            }
            Ok(completed)
        })
    }

    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let rkey = self.record_key(key);
            let token = token.to_bytes();
            let (answer, resent) = self
                .eval_resending(&RELEASE, rkey, &[Arg::Bytes(&token)])
                .await?;
            let released = flag(rkey, answer)?;
            if !released && resent {
                // The first send may have deleted the record, its answer lost: a key now free
                // was most likely released by it (else its lease ran out during the
                // reconnection: free all the same). A record there is someone else's.
                return Ok(Store::get(self, key).await?.is_none());
            }
            Ok(released)
        })
    }

    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let rkey = self.record_key(key);
            let token = token.to_bytes();
            let args = [Arg::Bytes(&token), Arg::Int(millis(lease))];
            flag(rkey, self.eval(&RENEW, rkey, &args).await?)
        })
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(async move {
            let rkey = self.record_key(key);
            let (record, left) = match self.eval(&GET, rkey, &[]).await? {
                Value::Int(0) => return Ok(None),
                Value::Array(items) => match <[Value; 2]>::try_from(items) {
                    Ok([Value::BulkString(record), left]) => (record, pttl(rkey, &left)?),
                    _ => return Err(unexpected(rkey, READ_SCRIPT_ANSWER)),
                },
                _ => return Err(unexpected(rkey, READ_SCRIPT_ANSWER)),
            };
            Ok(Some(match parse_record(rkey, record)? {
                Stored::Completed { fingerprint, value } => Record::Completed {
                    fingerprint,
                    value,
                    expires_in: left,
                },
                Stored::InProgress {
                    fingerprint, lease, ..
                } => Record::InProgress {
                    fingerprint,
                    remaining: left.min(lease),
                },
            }))
        })
    }

    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if let Some(cache) = &self.cache {
                cache.remove(key);
            }
            let rkey = self.record_key(key);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(rkey);
            // Sent once: a `DEL` repeated after a lost answer could delete a claim another
            // caller made in between (a lost answer is an error; `get` tells what happened).
            // A cluster connection may still send it again by itself (its own retries).
            let removed = self.query_once(&cmd).await;
            // Again after the server's answer (see `LocalCache::remove`), even if it failed.
            if let Some(cache) = &self.cache {
                cache.remove(key);
            }
            flag(rkey, removed.map_err(store_error)?)
        })
    }

    /// Redis expires records natively (server clock): there is never anything to purge.
    fn purge_expired(&self, _limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn wait_for_change<'a>(&'a self, key: &'a Key, max: Duration) -> StoreFuture<'a, ()> {
        Box::pin(self.poll_until_settled(key, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn wait_timeouts_are_whole_positive_milliseconds_redis_accepts() {
        assert_eq!(
            wait_millis(Duration::ZERO),
            1,
            "WAIT n 0 would block forever"
        );
        assert_eq!(wait_millis(Duration::from_micros(500)), 1);
        assert_eq!(wait_millis(Duration::from_micros(1500)), 2, "rounded up");
        assert_eq!(wait_millis(Duration::from_millis(200)), 200);
        assert_eq!(wait_millis(Duration::MAX), i64::MAX as u64 / 2);
    }

    #[test]
    fn wait_timeout_must_fit_in_the_response_timeout() {
        let builder = |wait: Duration, response: Duration| {
            RedisStoreBuilder::default()
                .wait_for_replicas(1, wait)
                .response_timeout(response)
        };
        let second = Duration::from_secs(1);
        assert!(
            builder(Duration::from_millis(900), second)
                .check_wait_timeout()
                .is_ok()
        );
        assert!(
            builder(Duration::from_micros(1), second)
                .check_wait_timeout()
                .is_ok()
        );
        for wait in [Duration::from_millis(901), second, Duration::MAX] {
            let err = builder(wait, second).check_wait_timeout().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err:?}");
        }
        // Replicas off: nothing to check.
        assert!(
            builder(Duration::MAX, second)
                .wait_for_replicas(0, Duration::MAX)
                .check_wait_timeout()
                .is_ok()
        );
    }

    #[test]
    fn urls_are_redacted() {
        for (url, shown) in [
            ("redis://default:hunter2@h:6379", "redis://default@h:6379"),
            ("redis://:hunter2@h:6379/0", "redis://h:6379/0"),
            ("rediss://u:p@ss:w@rd@h", "rediss://u@h"),
            ("redis://h:6379", "redis://h:6379"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=hunter2",
                "redis+unix:///tmp/r.sock?db=1",
            ),
            ("unix:///tmp/r.sock?password=hunter2", "unix:///tmp/r.sock"),
            ("h:6379", "h:6379"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn millis_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert!(millis(Duration::MAX) < i64::MAX as u64);
    }
}
