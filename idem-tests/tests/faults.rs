//! Crash and fault behaviour of the shared stores:
//!
//! - a process killed with SIGKILL while it holds a claim: another process takes the key over
//!   after the lease and completes it; the killed owner's token can no longer complete or
//!   release;
//! - the server unreachable, or the connection dropped mid-call: `Error::Store` with the cause,
//!   the body does not run when the claim could not be recorded (fail closed), no panic, and
//!   the same store works again once the server is back;
//! - a value the caller received is already in the store (acknowledged / committed);
//! - a partition that answers nothing: the body learns its lease may have lapsed when it ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use idem_runtime::store::{PostgresStore, Record, RedisStore};
use idem_runtime::{Error, Operation, Store, Token};
use idem_tests::conformance::{Fixture, unique_key};
use idem_tests::proxy::FaultProxy;
use idem_tests::servers::{PgFixture, RedisFixture, RedisServer, database_url, pg_pool, redis_url};
use idem_tests::worker::{self, Backend};
use sqlx::postgres::PgPoolOptions;

static OP: Operation = Operation::new("faults.op").with_wait_timeout(Duration::from_secs(5));

/// Runs one call of [`OP`] whose body counts its runs and returns `label`.
async fn call(
    store: &Arc<dyn Store>,
    key: idem_runtime::Key,
    runs: &Arc<AtomicUsize>,
    label: &str,
) -> Result<String, Error> {
    let runs = runs.clone();
    let label = label.to_owned();
    OP.call(key)
        .store(store.clone())
        .run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(label)
        })
        .await
}

/// Asserts that `out` is `Error::Store` and returns its message (which names the cause).
fn expect_store_error<T: std::fmt::Debug>(out: Result<T, Error>) -> String {
    match out {
        Err(error @ Error::Store { .. }) => {
            // `Error`'s message includes its cause.
            let message = error.to_string();
            eprintln!("store error, as expected: {message}");
            message
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
}

/// Retries `f` until it succeeds (the store reconnecting by itself), for at most 15 s.
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(error) if tokio::time::Instant::now() < deadline => {
                assert!(error.is_retryable(), "{error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the store did not recover: {error}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SIGKILL of the owner

/// Spawns `idem_worker hold` on key 0 and returns it with the token it printed.
fn spawn_holder(backend: Backend, url: &str, namespace: &str, lease_ms: u64) -> (Child, Token) {
    let mut child = worker::command(
        env!("CARGO_BIN_EXE_idem_worker"),
        "hold",
        backend,
        url,
        namespace,
    )
    .args(["--first-key", "0", "--lease-ms", &lease_ms.to_string()])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("spawn idem_worker");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the holder's token");
    let line: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let hex = line["token"].as_str().expect("token");
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    (child, Token::from_bytes(bytes.try_into().unwrap()))
}

/// Kills the holder, lets a second worker process take the key over, and checks fencing.
async fn sigkill_takeover(backend: Backend, url: &str, namespace: &str, store: Arc<dyn Store>) {
    let lease_ms = 1000;
    let key = worker::key(0);
    let (mut holder, token) = spawn_holder(backend, url, namespace, lease_ms);
    // The claim is alive, and kept alive by the holder's renewals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        store.get(&key).await.unwrap(),
        Some(Record::InProgress { .. })
    ));
    holder.kill().expect("SIGKILL the holder");
    holder.wait().unwrap();

    let killed_at = std::time::Instant::now();
    let output = tokio::task::spawn_blocking({
        let (url, namespace) = (url.to_owned(), namespace.to_owned());
        move || {
            worker::command(
                env!("CARGO_BIN_EXE_idem_worker"),
                "run",
                backend,
                &url,
                &namespace,
            )
            .args(["--worker", "7", "--first-key", "0", "--keys", "1"])
            .output()
            .expect("run idem_worker")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("key 0 ran in worker 7"), "{stdout}");
    assert!(
        killed_at.elapsed() >= Duration::from_millis(lease_ms / 2),
        "the key was taken over before the dead owner's lease lapsed"
    );
    // The dead owner is fenced out.
    assert!(
        !store
            .complete(
                &key,
                token,
                Bytes::from_static(b"stale"),
                Duration::from_secs(60)
            )
            .await
            .unwrap()
    );
    assert!(!store.release(&key, token).await.unwrap());
    assert!(
        !store
            .renew(&key, token, Duration::from_secs(60))
            .await
            .unwrap()
    );
    match store.get(&key).await.unwrap() {
        Some(Record::Completed { value, .. }) => {
            let value: String = idem_runtime::record::decode("faults", &value).unwrap();
            assert!(value.starts_with("key 0 ran in worker 7"), "{value}");
        }
        other => panic!("expected the takeover's completed record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkilled_owner_is_taken_over_and_fenced() {
    let fixture = RedisFixture::new().await;
    sigkill_takeover(
        Backend::Redis,
        &redis_url(),
        fixture.prefix(),
        fixture.store(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkilled_owner_is_taken_over_and_fenced() {
    let fixture = PgFixture::new().await;
    let pool = fixture.postgres().pool();
    for sql in [
        format!(
            "CREATE TABLE \"{}\".counter (id int PRIMARY KEY, n bigint NOT NULL)",
            fixture.schema()
        ),
        format!("INSERT INTO \"{}\".counter VALUES (1, 0)", fixture.schema()),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    sigkill_takeover(
        Backend::Postgres,
        &database_url(),
        fixture.schema(),
        fixture.store(),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Redis: server down, connection dropped

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_server_down_fails_closed_then_recovers() {
    let mut server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        call(&store, unique_key("up"), &runs, "up").await.unwrap(),
        "up"
    );

    server.stop();
    let down = unique_key("down");
    let message = expect_store_error(call(&store, down, &runs, "down").await);
    assert!(message.contains("redis"), "{message}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body must not run without a recorded claim"
    );
    // Every other method fails the same way, without panicking.
    let token = Token::generate();
    expect_store_error(store.get(&down).await);
    expect_store_error(store.release(&down, token).await);
    expect_store_error(store.renew(&down, token, Duration::from_secs(1)).await);
    expect_store_error(
        store
            .complete(&down, token, Bytes::new(), Duration::from_secs(1))
            .await,
    );
    expect_store_error(store.remove(&down).await);

    server.restart();
    let out = eventually(|| call(&store, down, &runs, "back")).await;
    assert_eq!(out, "back");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // And it is recorded: a replay does not run the body.
    assert_eq!(call(&store, down, &runs, "again").await.unwrap(), "back");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connection_dropped_mid_call() {
    let mut server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    let keys: Vec<_> = (0..20).map(|i| unique_key(&format!("mid-{i}"))).collect();
    // Bodies that are running when the server dies cannot record their result: their callers
    // get Error::Store, never a value that is not in the store.
    let tasks: Vec<_> = keys
        .iter()
        .map(|&key| {
            let (store, runs) = (store.clone(), runs.clone());
            tokio::spawn(async move {
                OP.call(key)
                    .store(store)
                    .run(async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, Error>("value".to_owned())
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop();
    for task in tasks {
        expect_store_error(task.await.expect("no panic"));
    }
    server.restart();
    // The same store serves calls again (the restarted server is empty: no persistence).
    for &key in &keys {
        assert_eq!(
            eventually(|| call(&store, key, &runs, "later")).await,
            "later"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_completed_value_is_acknowledged_before_return() {
    let fixture = RedisFixture::new().await;
    let store = fixture.store();
    let observer = idem_tests::servers::redis_store(fixture.prefix()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    for i in 0..50 {
        let key = unique_key(&format!("ack-{i}"));
        let out = call(&store, key, &runs, &format!("v{i}")).await.unwrap();
        // Read through a different connection, right after the caller got the value.
        match observer.get(&key).await.unwrap() {
            Some(Record::Completed { value, .. }) => {
                assert_eq!(
                    idem_runtime::record::decode::<String>("faults", &value).unwrap(),
                    out
                );
            }
            other => panic!("the value was returned before it was recorded: {other:?}"),
        }
    }
}

/// `host:port` of a `redis://[user:password@]host:port[/db]` URL, for a proxy in front of it.
/// `url` with its host and port replaced by the proxy's.
fn through(proxy: &FaultProxy, url: &str) -> String {
    url.replacen(
        &redis_host_port(url),
        &format!("127.0.0.1:{}", proxy.port()),
        1,
    )
}

fn redis_host_port(url: &str) -> String {
    host_port(url)
}

/// `host:port` of a `scheme://[user[:password]@]host:port[/path]` URL (Redis or PostgreSQL).
fn host_port(url: &str) -> String {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next());
    authority
        .flatten()
        .and_then(|a| a.rsplit('@').next())
        .filter(|host_port| host_port.contains(':'))
        .unwrap_or_else(|| panic!("host:port in {url}"))
        .to_owned()
}

/// Waits (at most 5 s) until `key`'s record (or its absence), read past the proxy, is what
/// `reached` looks for: the muted command ran on the server.
async fn until_the_server_ran(
    direct: &dyn Store,
    key: &idem_runtime::Key,
    reached: fn(Option<&Record>) -> bool,
    what: &str,
) {
    let ran = async {
        while !matches!(direct.get(key).await, Ok(record) if reached(record.as_ref())) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ran)
        .await
        .unwrap_or_else(|_| panic!("{what}: the muted command never reached the server"));
}

/// A store with `fixture`'s key prefix that reaches Redis through `proxy`.
async fn store_through(proxy: &FaultProxy, fixture: &RedisFixture, url: &str) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::builder()
            .key_prefix(fixture.prefix())
            .connect(&through(proxy, url))
            .await
            .unwrap(),
    )
}

/// Drops every connection (with the answers they never delivered) and lets clients connect
/// again, answered this time: a client whose answer was lost sends its command again.
async fn reconnect_answered(proxy: &FaultProxy) {
    proxy.cut().await;
    proxy.mute_replies(false);
    proxy.restore().await;
}

/// A connection that drops and comes back while a body runs (a server restart, a failover, an
/// idle timeout of the provider) fails the first command sent on it. If that is the owner's
/// `complete`, the result must still be recorded, not lost with the key released for a second
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_complete_survives_a_connection_that_dropped_while_the_body_ran() {
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let upstream = redis_host_port(&url);
    let proxy = FaultProxy::start(&upstream).await;
    let store = RedisStore::builder()
        .key_prefix(fixture.prefix())
        .connect(&through(&proxy, &url))
        .await
        .unwrap();
    let (fp, lease) = (idem_runtime::Fingerprint::NONE, Duration::from_secs(60));
    let value = idem_runtime::record::encode("faults", &"done").unwrap();
    for round in 0..3 {
        let key = unique_key(&format!("blip-{round}"));
        let token = Token::generate();
        assert_eq!(
            store.claim(&key, &fp, token, lease).await.unwrap(),
            idem_runtime::store::Claim::Acquired
        );
        // The body runs; meanwhile the connection drops and the server is reachable again.
        proxy.cut().await;
        proxy.restore().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            store
                .complete(&key, token, value.clone(), lease)
                .await
                .unwrap(),
            "round {round}"
        );
        match store.get(&key).await.unwrap() {
            Some(Record::Completed { value: stored, .. }) => assert_eq!(stored, value),
            other => panic!("round {round}: {other:?}"),
        }
    }
    // Called again by hand after it succeeded (no lost connection), `complete` finds a completed
    // record, which keeps no token: fenced out, whatever the value, as on every store. (A
    // `complete` the store sends again after a lost answer:
    // `redis_complete_whose_answer_was_lost_reports_its_value_recorded`.)
    let key = unique_key("blip-repeat");
    let token = Token::generate();
    store.claim(&key, &fp, token, lease).await.unwrap();
    assert!(
        store
            .complete(&key, token, value.clone(), lease)
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete(&key, token, value.clone(), lease)
            .await
            .unwrap()
    );
    let other = idem_runtime::record::encode("faults", &"other").unwrap();
    assert!(!store.complete(&key, token, other, lease).await.unwrap());
}

/// The same blip before a claim: the first claim after it goes out again over the new
/// connection instead of failing. And a claim whose answer was lost after it ran on the server
/// finds its own record when sent again, by its token: it is acquired, not mistaken for another
/// caller's claim (which would make its caller wait out its own lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_claims_survive_a_lost_connection_and_a_lost_answer() {
    use idem_runtime::store::{Claim, ClaimOrder};
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let upstream = redis_host_port(&url);
    let direct = fixture.store();
    let (fp, lease) = (idem_runtime::Fingerprint::NONE, Duration::from_secs(60));
    let value = idem_runtime::record::encode("faults", &"done").unwrap();
    for (script, order) in [
        (false, ClaimOrder::ClaimFirst),
        (true, ClaimOrder::ClaimFirst),
        (false, ClaimOrder::ReadFirst),
    ] {
        let proxy = FaultProxy::start(&upstream).await;
        let store = Arc::new(
            RedisStore::builder()
                .key_prefix(fixture.prefix())
                .claim_with_script(script)
                .claim_order(order)
                .connect(&through(&proxy, &url))
                .await
                .unwrap(),
        );
        let case = format!("script claim {script}, {order:?}");

        let key = unique_key(&format!("blip-claim-{script}-{order:?}"));
        proxy.cut().await;
        proxy.restore().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let token = Token::generate();
        assert_eq!(
            store.claim(&key, &fp, token, lease).await.unwrap(),
            Claim::Acquired,
            "{case}"
        );
        assert!(
            store
                .complete(&key, token, value.clone(), lease)
                .await
                .unwrap()
        );

        let key = unique_key(&format!("lost-answer-{script}-{order:?}"));
        let token = Token::generate();
        // Short, so that the time the answer was lost for is a visible part of it.
        let short = Duration::from_secs(3);
        proxy.mute_replies(true);
        let claim = tokio::spawn({
            let (store, key) = (store.clone(), key);
            async move { store.claim(&key, &fp, token, short).await }
        });
        if order == ClaimOrder::ReadFirst {
            // The read waits for its answer, and the claim is sent after it: both go out again.
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            // The claim ran on the server; its answer is lost with the connection.
            let in_progress = |r: Option<&Record>| matches!(r, Some(Record::InProgress { .. }));
            until_the_server_ran(&*direct, &key, in_progress, &case).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        reconnect_answered(&proxy).await;
        assert_eq!(claim.await.unwrap().unwrap(), Claim::Acquired, "{case}");
        // The caller counts its lease from the answer: the record's lease was renewed then.
        match direct.get(&key).await.unwrap() {
            Some(Record::InProgress { remaining, .. }) => {
                assert!(
                    remaining > Duration::from_millis(2500),
                    "{case}: {remaining:?}"
                )
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(
            store
                .complete(&key, token, value.clone(), lease)
                .await
                .unwrap()
        );
        match direct.get(&key).await.unwrap() {
            Some(Record::Completed { value: stored, .. }) => assert_eq!(stored, value),
            other => panic!("{case}: {other:?}"),
        }
    }
}

/// A claim sent again after its answer was lost finds its own record, but the renewal that
/// would restart its lease arrives after that lease ran out (the reconnection took it): the
/// claim fails with a store error that says so, instead of reporting a key acquired whose
/// lease is gone (another caller may hold it by then). Nothing stays claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_resent_claim_whose_lease_lapsed_before_its_renewal_fails() {
    use idem_runtime::store::ClaimOrder;
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let lease = Duration::from_millis(1500);
    // Every script call (the renewal: `EVALSHA`, or `EVAL`) reaches Redis a lease later.
    let proxy = FaultProxy::start_holding(&redis_host_port(&url), b"EVAL", lease * 2).await;
    let store = Arc::new(
        RedisStore::builder()
            .key_prefix(fixture.prefix())
            .claim_with_script(false)
            .claim_order(ClaimOrder::ClaimFirst)
            // Longer than the held renewal takes to be answered.
            .response_timeout(lease * 4)
            .connect(&through(&proxy, &url))
            .await
            .unwrap(),
    );
    let direct = fixture.store();
    let key = unique_key("lapsed-resent-claim");
    let token = Token::generate();
    proxy.mute_replies(true);
    let claim = tokio::spawn({
        let (store, key) = (store.clone(), key);
        async move {
            store
                .claim(&key, &idem_runtime::Fingerprint::NONE, token, lease)
                .await
        }
    });
    let in_progress = |r: Option<&Record>| matches!(r, Some(Record::InProgress { .. }));
    until_the_server_ran(&*direct, &key, in_progress, "claim").await;
    reconnect_answered(&proxy).await;
    let message = expect_store_error(claim.await.unwrap());
    assert!(
        message.contains("the claim lapsed while the connection to Redis was restored"),
        "{message}"
    );
    assert!(direct.get(&key).await.unwrap().is_none());
}

/// A `complete` that ran on the server but whose answer was lost with the connection is sent
/// again; the record is then completed already (with no token kept), and the store answers what
/// it holds: this call's value, so the call reports it recorded, not `LeaseLost`. A stale
/// owner's `complete` without a lost connection is fenced out even with the same value (the
/// conformance suite's `a_lapsed_owner_is_fenced_even_with_the_same_value`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_complete_whose_answer_was_lost_reports_its_value_recorded() {
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let proxy = FaultProxy::start(&redis_host_port(&url)).await;
    let store = store_through(&proxy, &fixture, &url).await;
    let direct = fixture.store();
    let key = unique_key("lost-complete-answer");
    let token = Token::generate();
    let fp = idem_runtime::Fingerprint::NONE;
    let lease = Duration::from_secs(30);
    let value = idem_runtime::record::encode("faults", &"done").unwrap();
    assert_eq!(
        store.claim(&key, &fp, token, lease).await.unwrap(),
        idem_runtime::store::Claim::Acquired
    );
    proxy.mute_replies(true);
    let complete = tokio::spawn({
        let (store, value) = (store.clone(), value.clone());
        async move { store.complete(&key, token, value, lease).await }
    });
    let completed = |r: Option<&Record>| matches!(r, Some(Record::Completed { .. }));
    until_the_server_ran(&*direct, &key, completed, "complete").await;
    reconnect_answered(&proxy).await;
    assert!(complete.await.unwrap().unwrap(), "reported as recorded");
    match direct.get(&key).await.unwrap() {
        Some(Record::Completed { value: stored, .. }) => assert_eq!(stored, value),
        other => panic!("{other:?}"),
    }
}

/// A `release` that ran on the server but whose answer was lost is sent again and finds the key
/// free: it answers "released", not "the claim was not ours".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_release_whose_answer_was_lost_reports_it_released() {
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let proxy = FaultProxy::start(&redis_host_port(&url)).await;
    let store = store_through(&proxy, &fixture, &url).await;
    let direct = fixture.store();
    let key = unique_key("lost-release-answer");
    let token = Token::generate();
    let fp = idem_runtime::Fingerprint::NONE;
    assert_eq!(
        store
            .claim(&key, &fp, token, Duration::from_secs(30))
            .await
            .unwrap(),
        idem_runtime::store::Claim::Acquired
    );
    proxy.mute_replies(true);
    let release = tokio::spawn({
        let store = store.clone();
        async move { store.release(&key, token).await }
    });
    until_the_server_ran(&*direct, &key, |r| r.is_none(), "release").await;
    reconnect_answered(&proxy).await;
    assert!(release.await.unwrap().unwrap(), "reported as released");
    // Without a lost answer, a second release is not ours: the key is another caller's.
    let other = Token::generate();
    store
        .claim(&key, &fp, other, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!store.release(&key, token).await.unwrap());
    assert!(store.release(&key, other).await.unwrap());
}

/// `remove` whose answer is lost is not sent again: a second `DEL` would delete whatever is
/// there by then, such as another caller's fresh claim. It fails instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_remove_is_not_resent_over_another_callers_claim() {
    use idem_runtime::store::Claim;
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let upstream = redis_host_port(&url);
    let direct = fixture.store();
    let proxy = FaultProxy::start(&upstream).await;
    let store = Arc::new(
        RedisStore::builder()
            .key_prefix(fixture.prefix())
            .connect(&through(&proxy, &url))
            .await
            .unwrap(),
    );
    let (fp, lease) = (idem_runtime::Fingerprint::NONE, Duration::from_secs(60));
    let key = unique_key("remove-lost-answer");
    let first = Token::generate();
    assert_eq!(
        direct.claim(&key, &fp, first, lease).await.unwrap(),
        Claim::Acquired
    );
    let value = idem_runtime::record::encode("faults", &"done").unwrap();
    assert!(direct.complete(&key, first, value, lease).await.unwrap());

    proxy.mute_replies(true);
    let remove = tokio::spawn({
        let store = store.clone();
        async move { store.remove(&key).await }
    });
    // The `DEL` ran on the server; another caller claims the free key.
    let ran = async {
        while direct.get(&key).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ran)
        .await
        .expect("the muted DEL never reached the server");
    let other = Token::generate();
    assert_eq!(
        direct.claim(&key, &fp, other, lease).await.unwrap(),
        Claim::Acquired
    );
    proxy.cut().await;
    proxy.mute_replies(false);
    proxy.restore().await;
    expect_store_error(remove.await.unwrap());
    assert!(
        matches!(
            direct.get(&key).await.unwrap(),
            Some(Record::InProgress { .. })
        ),
        "the other caller's claim was deleted"
    );
}

/// The local cache learns how long a replayed record lives from a `PTTL` sent with the claim.
/// If another client's command ran between the two (a pipeline split across TCP reads, a busy
/// server), the `PTTL` could measure that client's fresh claim, and the cache would keep the
/// expired record for a whole lease next to its successor. The proxy splits every pipeline
/// before its `PTTL` so that another store's claim lands in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_local_cache_never_outlives_a_record_claimed_again_in_between() {
    use idem_runtime::store::ClaimOrder;
    for (script_claim, order) in [
        (false, ClaimOrder::ClaimFirst),
        (true, ClaimOrder::ClaimFirst),
        (false, ClaimOrder::ReadFirst),
    ] {
        let fixture = RedisFixture::new().await;
        let url = redis_url();
        let upstream = redis_host_port(&url);
        let proxy = FaultProxy::start_holding(
            &upstream,
            b"*2\r\n$4\r\nPTTL\r\n",
            Duration::from_millis(150),
        )
        .await;
        let cached = RedisStore::builder()
            .key_prefix(fixture.prefix())
            .local_cache(100, Duration::from_secs(60))
            .claim_with_script(script_claim)
            .claim_order(order)
            .connect(&through(&proxy, &url))
            .await
            .unwrap();
        let other = fixture.store();
        let (fp, lease) = (idem_runtime::Fingerprint::NONE, Duration::from_secs(60));
        let old = idem_runtime::record::encode("faults", &"old").unwrap();
        let new = idem_runtime::record::encode("faults", &"new").unwrap();
        let key = unique_key("split-pttl");

        let first = Token::generate();
        assert_eq!(
            other.claim(&key, &fp, first, lease).await.unwrap(),
            idem_runtime::store::Claim::Acquired
        );
        assert!(
            other
                .complete(&key, first, old.clone(), Duration::from_millis(300))
                .await
                .unwrap()
        );
        let expires = tokio::time::Instant::now() + Duration::from_millis(300);
        // The cached store's claim is sent 50 ms before the record expires and held in the proxy.
        tokio::time::sleep_until(expires - Duration::from_millis(50)).await;
        let replay = {
            let cached = cached.clone();
            tokio::spawn(async move { cached.claim(&key, &fp, Token::generate(), lease).await })
        };
        // Meanwhile the other store claims the key as soon as the record has expired.
        let second = Token::generate();
        loop {
            match other.claim(&key, &fp, second, lease).await.unwrap() {
                idem_runtime::store::Claim::Acquired => break,
                idem_runtime::store::Claim::Completed { .. } => {
                    tokio::time::sleep(Duration::from_millis(2)).await
                }
                answer => panic!("{answer:?}"),
            }
        }
        replay.await.unwrap().unwrap();
        assert!(
            other
                .complete(&key, second, new.clone(), lease)
                .await
                .unwrap()
        );
        match cached
            .claim(&key, &fp, Token::generate(), lease)
            .await
            .unwrap()
        {
            idem_runtime::store::Claim::Completed { value, .. } => assert_eq!(
                value,
                new,
                "{order:?}, script claim {script_claim}: the cache replays the record that expired {:?} ago",
                tokio::time::Instant::now() - expires,
            ),
            answer => panic!("{answer:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_missing_replicas_fail_the_call_but_keep_the_record() {
    let fixture = RedisFixture::new().await;
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::builder()
            .key_prefix(fixture.prefix())
            .wait_for_replicas(1, Duration::from_millis(100))
            .connect(&redis_url())
            .await
            .unwrap(),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let key = unique_key("replicas");
    let message = expect_store_error(call(&store, key, &runs, "v").await);
    assert!(message.contains("replicas acknowledged"), "{message}");
    // The record is on the primary: calling again replays it.
    let plain = fixture.store();
    assert_eq!(call(&plain, key, &runs, "other").await.unwrap(), "v");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A sub-millisecond `WAIT` timeout is sent as 1 ms: it was sent as `WAIT 1 0`, which Redis
/// reads as "block until a replica acknowledged", so without a replica `complete` failed with a
/// bare response timeout and the shared connection stayed blocked for every later command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sub_millisecond_wait_timeout_does_not_block_the_connection() {
    for wait in [Duration::ZERO, Duration::from_micros(500)] {
        let fixture = RedisFixture::with_builder(
            RedisStore::builder()
                .wait_for_replicas(1, wait)
                .response_timeout(Duration::from_millis(500)),
        )
        .await;
        let store = fixture.redis();
        let key = unique_key("sub-ms-wait");
        let token = Token::generate();
        let lease = Duration::from_secs(5);
        assert_eq!(
            store
                .claim(&key, &idem_runtime::Fingerprint::NONE, token, lease)
                .await
                .unwrap(),
            idem_runtime::store::Claim::Acquired
        );
        let value = idem_runtime::record::encode("faults", &"v").unwrap();
        let completed = store
            .complete(&key, token, value, Duration::from_secs(60))
            .await;
        let message = expect_store_error(completed);
        assert!(
            message.contains("replicas acknowledged"),
            "{wait:?}: {message}"
        );
        // The connection answers other commands at once.
        let other = unique_key("sub-ms-wait-other");
        let started = std::time::Instant::now();
        let claim = store
            .claim(
                &other,
                &idem_runtime::Fingerprint::NONE,
                Token::generate(),
                lease,
            )
            .await;
        assert!(claim.is_ok(), "the connection is blocked: {claim:?}");
        assert!(matches!(
            store.get(&key).await.unwrap(),
            Some(Record::Completed { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(400));
    }
}

/// Connection errors show the URL without its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connect_errors_hide_the_password() {
    let builder = || {
        RedisStore::builder()
            .connection_timeout(Duration::from_millis(300))
            .reconnect_retries(0)
    };
    for url in [
        "redis://default:hunter2@127.0.0.1:1",
        "redis://:hunter2@127.0.0.1:1/0",
    ] {
        let message = expect_store_error(builder().connect(url).await);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
    }
    let message = expect_store_error(
        builder()
            .connect_cluster(["redis://default:hunter2@127.0.0.1:1"])
            .await,
    );
    assert!(!message.contains("hunter2"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: unreachable, connection terminated

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_fails_closed_then_recovers() {
    let fixture = PgFixture::new().await;
    let url = database_url();
    let upstream = url
        .split('@')
        .next_back()
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in IDEM_DATABASE_URL")
        .to_owned();
    let proxy = FaultProxy::start(&upstream).await;
    let proxied = url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port()), 1);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&proxied)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::builder()
            .schema(fixture.schema())
            .build(pool.clone())
            .unwrap(),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        call(&store, unique_key("up"), &runs, "up").await.unwrap(),
        "up"
    );

    proxy.cut().await;
    let down = unique_key("down");
    let message = expect_store_error(call(&store, down, &runs, "down").await);
    assert!(message.contains("postgres"), "{message}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body must not run without a recorded claim"
    );
    let second = expect_store_error(call(&store, down, &runs, "down").await);
    assert!(
        second.contains("refused") || second.contains("reach"),
        "the cause is named: {second}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    proxy.restore().await;
    assert_eq!(
        eventually(|| call(&store, down, &runs, "back")).await,
        "back"
    );
    assert_eq!(call(&store, down, &runs, "again").await.unwrap(), "back");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    pool.close().await;
}

/// `PostgresStoreBuilder::connect` to a server that refuses connections names the cause (it
/// said only "pool timed out"), and its message never shows a password, from the userinfo or
/// from the query string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_errors_name_the_cause_and_hide_the_password() {
    for url in [
        "postgres://postgres:hunter2@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:1/test?password=hunter2",
        "postgres://postgres@127.0.0.1:1/test?sslmode=disable&password=hunter2&application_name=x",
    ] {
        let out = PostgresStore::builder()
            .acquire_timeout(Duration::from_millis(500))
            .connect(url)
            .await;
        let message = expect_store_error(out);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(
            message.contains("refused") || message.contains("reach"),
            "the cause is named: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_terminated_mid_call() {
    let fixture = PgFixture::with_pool_size(2).await;
    let store = fixture.store();
    let runs = Arc::new(AtomicUsize::new(0));
    let table = fixture.postgres().qualified_table().to_owned();

    // A lapsed claim row, locked by another session: the next claim's upsert waits for the lock.
    let key = unique_key("terminated");
    store
        .claim(
            &key,
            &idem_runtime::Fingerprint::NONE,
            Token::generate(),
            Duration::from_millis(1),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let admin = pg_pool(2).await;
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {table} WHERE key = $1 FOR UPDATE"
    )))
    .bind(key.as_bytes().as_slice())
    .execute(&mut *blocker)
    .await
    .unwrap();

    let waiting = tokio::spawn({
        let (store, runs) = (store.clone(), runs.clone());
        async move { call(&store, key, &runs, "blocked").await }
    });
    // Terminate the backend that runs the claim while it waits for the lock, again and again:
    // a statement whose connection the server ended runs again on another connection, a
    // bounded number of times, and then the call fails.
    let needle = format!("%{}%", fixture.schema());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut terminations = 0;
    while !waiting.is_finished() {
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()",
        )
        .bind(&needle)
        .fetch_all(&admin)
        .await
        .unwrap();
        terminations += terminated.iter().filter(|t| **t).count();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never gave up ({terminations} terminations)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(terminations > 1, "run again after the first termination");
    let message = expect_store_error(waiting.await.expect("no panic"));
    assert!(message.contains("57P01"), "{message}");
    assert!(message.contains("postgres"), "{message}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the body must not run without a recorded claim"
    );
    blocker.rollback().await.unwrap();

    // Terminate every other connection of the store's pool too: the pool replaces them.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'
           AND query LIKE $1",
    )
    .bind(&needle)
    .execute(&admin)
    .await
    .unwrap();
    assert_eq!(
        eventually(|| call(&store, key, &runs, "after")).await,
        "after"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completed_value_is_committed_before_return() {
    let fixture = PgFixture::new().await;
    let store = fixture.store();
    let observer = pg_pool(1).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let sql = format!(
        "SELECT state, value FROM {} WHERE key = $1",
        fixture.postgres().qualified_table()
    );
    for i in 0..50 {
        let key = unique_key(&format!("commit-{i}"));
        let out = call(&store, key, &runs, &format!("v{i}")).await.unwrap();
        let (state, value): (String, Vec<u8>) = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(key.as_bytes().as_slice())
            .fetch_one(&observer)
            .await
            .unwrap();
        assert_eq!(state, "completed");
        assert_eq!(
            idem_runtime::record::decode::<String>("faults", &value).unwrap(),
            out
        );
    }
    observer.close().await;
}

/// A partition that neither answers nor fails (the server's replies never arrive, and the
/// store's response timeout, 5 s, is far longer than the lease): the body learns that its lease may have lapsed
/// when that lease ends, before another caller takes the key over, instead of never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_renewal_without_answer_flags_the_lease_as_lost_in_time() {
    const LEASE: Duration = Duration::from_millis(400);
    static LEASED: Operation = Operation::new("faults.partitioned").with_lease(LEASE);
    let fixture = PgFixture::new().await;
    let url = database_url();
    let proxy = FaultProxy::start(&host_port(&url)).await;
    let proxied = url.replacen(&host_port(&url), &format!("127.0.0.1:{}", proxy.port()), 1);
    let owner: Arc<dyn Store> = Arc::new(
        PostgresStore::builder()
            .schema(fixture.schema())
            .max_connections(2)
            .connect(&proxied)
            .await
            .expect("connect through the proxy"),
    );
    let key = unique_key("pg-partition");
    let (flagged_tx, flagged) = tokio::sync::oneshot::channel();
    let claimed = tokio::time::Instant::now();
    let call = tokio::spawn(async move {
        LEASED
            .call(key)
            .store(owner)
            .run(async move {
                let call = idem_runtime::current().expect("inside the call");
                while !call.lease_lost() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                flagged_tx.send(claimed.elapsed()).ok();
                // Its `complete` would get no answer either: the test ends here.
                std::future::pending::<Result<u8, Error>>().await
            })
            .await
    });
    // One renewal is answered (a third of the lease in), then nothing comes back.
    tokio::time::sleep(LEASE / 2).await;
    proxy.mute_replies(true);
    let at = tokio::time::timeout(4 * LEASE, flagged)
        .await
        .expect("flagged while the partition lasts (before: never)")
        .unwrap();
    // At the lease's end; the upper bound leaves room for a loaded machine (the test runs
    // beside the others), and is still well before a Redis response timeout (2 s).
    assert!(
        at >= LEASE && at <= 2 * LEASE,
        "flagged {at:?} after the claim, the lease being {LEASE:?}"
    );
    call.abort();
    proxy.mute_replies(false);
    proxy.cut().await;
}

/// A partition during a statement: the call fails within the store's response timeout (before:
/// it waited for as long as the network kept the connection open), and the pool is usable
/// again once the partition heals, because the unanswered connection was closed (returned to
/// the pool, it would have waited for the lost answer before its next statement, forever: with
/// a pool of one, every later call failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_without_answer_fails_in_time_and_the_pool_recovers() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let fixture = PgFixture::new().await;
    // The store's own pool: it checks only connections idle for a while before their use, so
    // the statement itself meets the partition (with sqlx's default check before every use,
    // that check would, bounded by the acquire timeout: "no pooled PostgreSQL connection").
    let (proxy, pg) = one_connection_through_a_proxy(&fixture, TIMEOUT).await;
    let store: Arc<dyn Store> = pg.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    call(&store, unique_key("pg-unanswered-warm"), &runs, "warm")
        .await
        .expect("before the partition");

    // The claim gets no answer. (Not before the pool has its connection back: sqlx checks a
    // connection with a round trip as it returns to the pool, and one muted then would never
    // come back, a wait that no store setting bounds.)
    idle(&pg).await;
    proxy.mute_replies(true);
    let started = tokio::time::Instant::now();
    let out = in_time(call(
        &store,
        unique_key("pg-unanswered-claim"),
        &runs,
        "claim",
    ))
    .await;
    let waited = started.elapsed();
    let message = expect_store_error(out);
    assert!(
        message.contains("no answer from PostgreSQL within 300ms"),
        "{message}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "failed after {waited:?}, the response timeout being {TIMEOUT:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "no body ran unclaimed");

    // Healed: the pool's one connection is usable again.
    proxy.mute_replies(false);
    let recovered =
        eventually(|| call(&store, unique_key("pg-unanswered-after"), &runs, "after")).await;
    assert_eq!(recovered, "after");

    // The body's value gets no answer: the caller hears so in time, and as the server did
    // record it, a retry replays it instead of running the body again.
    let key = unique_key("pg-unanswered-complete");
    let (muting, idle_pg) = (proxy.clone(), pg.clone());
    let runs_before = runs.load(Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let out = in_time(OP.call(key).store(store.clone()).run(async move {
        idle(&idle_pg).await;
        muting.mute_replies(true);
        Ok::<_, Error>("recorded".to_owned())
    }))
    .await;
    let waited = started.elapsed();
    let message = expect_store_error(out);
    assert!(message.contains("no answer from PostgreSQL"), "{message}");
    assert!(waited < Duration::from_secs(5), "failed after {waited:?}");
    proxy.mute_replies(false);
    let replayed = eventually(|| call(&store, key, &runs, "ran again")).await;
    assert_eq!(replayed, "recorded");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        runs_before,
        "replayed, not run again"
    );
    proxy.cut().await;
}

/// Waits until `store`'s pool holds its one connection, idle.
async fn idle(store: &PostgresStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.pool().num_idle() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool's connection never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `call`'s output, failing the test (instead of hanging it) if it takes more than 20 s.
async fn in_time<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call ended (before the response timeout: never, while the partition lasts)")
}

/// A pooled connection that the server closed while it sat idle (a restart, an idle timeout,
/// a failover) is checked and replaced before its next use: the call succeeds. (The store's
/// pool checks only connections idle for a second or more, sparing a round trip per statement
/// in steady use; without any check this call failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connection_closed_while_idle_is_replaced_before_use() {
    let fixture = PgFixture::new().await;
    let one = OneConnection::new(&fixture, "idle").await;
    let runs = Arc::new(AtomicUsize::new(0));
    call(&one.store, unique_key("idle-before"), &runs, "before")
        .await
        .expect("before the restart");
    one.terminate().await;
    let store = one.store;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = call(&store, unique_key("idle-after"), &runs, "after").await;
    assert_eq!(after.expect("the closed connection was replaced"), "after");
}

/// A statement whose caller is dropped before the answer (a renewal in flight when the body
/// ends: the renewal task is aborted) gives its connection up: with a pool of one, the store
/// works again once the partition heals. Before, sqlx checked the connection on its way back
/// to the pool, a check that waited for the lost answer first, for ever here: every later
/// call failed for want of a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_dropped_before_its_answer_frees_its_connection() {
    const LEASE: Duration = Duration::from_millis(300);
    static LEASED: Operation = Operation::new("faults.renewal_dropped").with_lease(LEASE);
    let fixture = PgFixture::new().await;
    // The default response timeout: only the drop can free the connection in time.
    let (proxy, pg) =
        one_connection_through_a_proxy(&fixture, PostgresStore::DEFAULT_RESPONSE_TIMEOUT).await;
    let store: Arc<dyn Store> = pg.clone();
    let muting = proxy.clone();
    let out = in_time(
        LEASED
            .call(unique_key("pg-renewal-dropped"))
            .store(store.clone())
            .run(async move {
                // A renewal is sent every 100 ms: the one after this mute gets no answer, and is
                // still waiting when the body ends (well before the response timeout).
                tokio::time::sleep(LEASE / 2).await;
                muting.mute_replies(true);
                tokio::time::sleep(LEASE / 2).await;
                Ok::<_, Error>(1u8)
            }),
    )
    .await;
    // Its `complete` cannot be recorded meanwhile (no connection answers).
    assert!(out.is_err(), "{out:?}");
    proxy.mute_replies(false);
    let runs = Arc::new(AtomicUsize::new(0));
    let after = eventually(|| {
        call(
            &store,
            unique_key("pg-renewal-dropped-after"),
            &runs,
            "after",
        )
    })
    .await;
    assert_eq!(after, "after");
    proxy.cut().await;
}

/// A server restart ends every pooled connection, and one used less than a second ago is not
/// checked before its next use: its statement meets the closed connection (SQLSTATE 57P01)
/// and runs again on a new one, so the call succeeds. (Before, it failed; had the failed
/// statement been a `complete`, the retry would have run the body a second time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_on_a_connection_the_server_ended_runs_again() {
    let fixture = PgFixture::new().await;
    let one = OneConnection::new(&fixture, "ended").await;
    let store = one.store.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        call(
            &store,
            unique_key(&format!("ended-before-{round}")),
            &runs,
            "before",
        )
        .await
        .expect("before the restart");
        one.terminate().await;
        let key = unique_key(&format!("ended-after-{round}"));
        let after = call(&store, key, &runs, "after").await;
        assert_eq!(after.expect("run again on a new connection"), "after");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 6, "each body once");
}

/// Callers waiting for an owner that crashed (a claim nobody renews, completes or releases):
/// when its lease lapses, one of them takes the key over and runs the body, the others get
/// its value (before: each failed with `OwnerFailed`).
async fn waiters_take_a_crashed_owners_key_over(store: Arc<dyn Store>, namespace: &str) {
    static WAITING: Operation = Operation::new("faults.crashed_owner_waiters")
        .with_lease(Duration::from_secs(5))
        .with_wait_timeout(Duration::from_secs(10));
    let key = unique_key(&format!("{namespace}-crashed-owner"));
    let crashed = store
        .claim(
            &key,
            &idem_runtime::Fingerprint::NONE,
            Token::generate(),
            Duration::from_millis(400),
        )
        .await
        .unwrap();
    assert!(matches!(crashed, idem_runtime::store::Claim::Acquired));
    let runs = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (store, runs) = (store.clone(), runs.clone());
            tokio::spawn(async move {
                WAITING
                    .call(key)
                    .store(store)
                    .run(async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Error>("taken over".to_owned())
                    })
                    .await
            })
        })
        .collect();
    for waiter in waiters {
        assert_eq!(in_time(waiter).await.unwrap().unwrap(), "taken over");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one waiter ran the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_waiters_take_a_crashed_owners_key_over() {
    let fixture = RedisFixture::new().await;
    waiters_take_a_crashed_owners_key_over(fixture.store(), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_waiters_take_a_crashed_owners_key_over() {
    let fixture = PgFixture::new().await;
    waiters_take_a_crashed_owners_key_over(fixture.store(), "postgres").await;
}

/// A call whose claim is sent and whose answer is then left unread for longer than its lease
/// (the call polled once, then not): meanwhile the lease lapses and a duplicate claims the key
/// and runs the body. The first call's late `Acquired` is confirmed by a renewal before its
/// body starts; it is lost, so the call claims again and replays the duplicate's value (before:
/// the body ran twice and the first call failed with `LeaseLost`). The same through the
/// explicit API's `start`.
///
/// On a current-thread runtime: the store's connection is then driven only between the test's
/// own polls, so the claim's answer cannot arrive (and the body start) within the first poll.
async fn a_claim_answered_after_its_lease_is_confirmed_first(store: Arc<dyn Store>, ns: &str) {
    static OP: Operation = Operation::new("faults.late_claim_answer")
        .with_lease(Duration::from_millis(300))
        .with_on_conflict(idem_runtime::OnConflict::Reject);
    let key = unique_key(&format!("{ns}-late-claim-answer"));
    let runs = Arc::new(AtomicUsize::new(0));
    let call = |runs: Arc<AtomicUsize>| {
        OP.call(key).store(store.clone()).run(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u32, Error>(1)
        })
    };
    let mut first = Box::pin(call(runs.clone()));
    assert!(futures::poll!(first.as_mut()).is_pending(), "claim sent");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = in_time(call(runs.clone())).await;
    let first = in_time(first).await;
    assert_eq!((first.unwrap(), second.unwrap()), (1, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");

    let explicit = idem_runtime::Idempotency::<u32>::new(
        Operation::new("faults.late_start_answer").with_lease(Duration::from_millis(300)),
        store.clone(),
    );
    let key = unique_key(&format!("{ns}-late-start-answer"));
    let mut late = Box::pin(explicit.start(key));
    assert!(futures::poll!(late.as_mut()).is_pending(), "claim sent");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Ok(idem_runtime::Start::New(other)) = explicit.start(key).await else {
        panic!("the lapsed key is claimed again");
    };
    match in_time(late).await {
        Err(Error::InFlight { .. }) => {}
        other => panic!(
            "the late claim must not start work: {:?}",
            other.map(|_| ())
        ),
    }
    other.complete(&7).await.unwrap();
}

#[tokio::test]
async fn redis_a_claim_answered_after_its_lease_is_confirmed_first() {
    let fixture = RedisFixture::new().await;
    a_claim_answered_after_its_lease_is_confirmed_first(fixture.store(), "redis").await;
}

#[tokio::test]
async fn postgres_a_claim_answered_after_its_lease_is_confirmed_first() {
    let fixture = PgFixture::new().await;
    a_claim_answered_after_its_lease_is_confirmed_first(fixture.store(), "postgres").await;
}

/// A store on a pool of one connection, named so that the test can end it from the server.
struct OneConnection {
    store: Arc<dyn Store>,
    name: String,
    admin: sqlx::PgPool,
}

impl OneConnection {
    async fn new(fixture: &PgFixture, what: &str) -> Self {
        let name = format!("idem_{what}_{}", std::process::id());
        let url = database_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        let store = PostgresStore::builder()
            .schema(fixture.schema())
            .max_connections(1)
            .connect(&format!("{url}{separator}application_name={name}"))
            .await
            .expect("connect");
        OneConnection {
            store: Arc::new(store),
            name,
            admin: pg_pool(1).await,
        }
    }

    /// Ends the store's connection from the server, as a restart does.
    async fn terminate(&self) {
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&self.name)
        .fetch_all(&self.admin)
        .await
        .unwrap();
        assert_eq!(terminated, [true], "the store's one connection");
    }
}

/// A store made by `connect` with a pool of one connection, through a fault proxy: acquiring
/// gives up after 1 s, a statement after `response_timeout`.
async fn one_connection_through_a_proxy(
    fixture: &PgFixture,
    response_timeout: Duration,
) -> (Arc<FaultProxy>, Arc<PostgresStore>) {
    let url = database_url();
    let proxy = Arc::new(FaultProxy::start(&host_port(&url)).await);
    let proxied = url.replacen(&host_port(&url), &format!("127.0.0.1:{}", proxy.port()), 1);
    let store = PostgresStore::builder()
        .schema(fixture.schema())
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(1))
        .response_timeout(response_timeout)
        .connect(&proxied)
        .await
        .expect("connect through the proxy");
    (proxy, Arc::new(store))
}
