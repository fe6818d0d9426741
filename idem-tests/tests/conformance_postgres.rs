//! The store conformance suite against PostgreSQL (`IDEM_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test migrates a schema of its own and drops
//! it afterwards.

use std::time::Duration;

use idem_runtime::store::{Claim, Store};
use idem_runtime::{Fingerprint, Token};
use idem_tests::conformance::{claim_and_get_errors, unique_key};
use idem_tests::servers::PgFixture;
use sqlx::{AssertSqlSafe, Row};

idem_tests::conformance_suite!(PgFixture::new());

/// A table at schema version 1: migrated, then without the claim function that version 2 adds.
async fn version_1_fixture() -> PgFixture {
    let fixture = PgFixture::new().await;
    let store = fixture.postgres();
    let drop = format!("DROP FUNCTION {}", store.claim_function());
    sqlx::query(AssertSqlSafe(drop))
        .execute(store.pool())
        .await
        .expect("drop the claim function");
    let version = format!(
        "UPDATE \"{}\".idem_schema_version SET version = 1",
        fixture.schema()
    );
    sqlx::query(AssertSqlSafe(version))
        .execute(store.pool())
        .await
        .expect("record version 1");
    fixture
}

/// The same suite on a table without the claim function (created by an older `migrate()` or
/// from copied version-1 DDL): claims fall back to the single upsert statement.
mod without_claim_function {
    idem_tests::conformance_suite!(super::version_1_fixture());
}

/// The same suite with the local cache of completed records in front of PostgreSQL: a cached
/// replay must be indistinguishable from one answered by the server (TTL expiry and `remove`
/// included).
mod local_cache {
    use idem_tests::servers::PgFixture;

    idem_tests::conformance_suite!(PgFixture::with_local_cache());
}

/// `(xmin, xmax, ctid)` of the key's row: any write or row lock changes one of them.
async fn row_version(fixture: &PgFixture, key: &idem_runtime::Key) -> (String, String, String) {
    let sql = format!(
        "SELECT xmin::text, xmax::text, ctid::text FROM {} WHERE key = $1",
        fixture.postgres().qualified_table()
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(key.as_bytes().as_slice())
        .fetch_one(fixture.postgres().pool())
        .await
        .expect("the row exists");
    (row.get(0), row.get(1), row.get(2))
}

/// A replay (and a duplicate of a running call) is a read: it neither rewrites nor locks the
/// row, so it writes no WAL and never waits for another claim's row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_neither_write_nor_lock_the_row() {
    let fixture = PgFixture::new().await;
    let store = fixture.postgres();
    assert!(store.claims_with_function());
    let key = unique_key("pg-read-only-replay");
    let (fp, other) = (
        Fingerprint::from_bytes([1; 32]),
        Fingerprint::from_bytes([2; 32]),
    );
    let lease = Duration::from_secs(30);

    assert_eq!(
        store
            .claim(&key, &fp, Token::generate(), lease)
            .await
            .unwrap(),
        Claim::Acquired
    );
    let claimed = row_version(&fixture, &key).await;
    assert_eq!(claimed.1, "0", "a fresh claim leaves no row lock behind");
    for fingerprint in [&fp, &other] {
        let claim = store.claim(&key, fingerprint, Token::generate(), lease);
        assert!(matches!(claim.await.unwrap(), Claim::InProgress { .. }));
    }
    assert_eq!(row_version(&fixture, &key).await, claimed);

    let token = Token::generate();
    let key = unique_key("pg-read-only-replay-completed");
    assert_eq!(
        store.claim(&key, &fp, token, lease).await.unwrap(),
        Claim::Acquired
    );
    let value = idem_runtime::record::encode("pg", &"done").unwrap();
    assert!(
        store
            .complete(&key, token, value.clone(), Duration::from_secs(60))
            .await
            .unwrap()
    );
    let completed = row_version(&fixture, &key).await;
    for fingerprint in [&fp, &other, &fp] {
        match store
            .claim(&key, fingerprint, Token::generate(), lease)
            .await
            .unwrap()
        {
            Claim::Completed {
                fingerprint: recorded,
                value: replayed,
            } => {
                assert_eq!(recorded, fp);
                assert_eq!(replayed, value);
            }
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    assert_eq!(
        row_version(&fixture, &key).await,
        completed,
        "replays must not touch the row (xmin, xmax, ctid unchanged)"
    );
}

/// A store on a version-1 table claims with the fallback statement, and `migrate()` brings the
/// table to version 2 (adding the function), after which claims use the function again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_upgrades_a_version_1_table() {
    let fixture = version_1_fixture().await;
    let store = fixture.postgres();
    let (fp, lease) = (Fingerprint::from_bytes([3; 32]), Duration::from_secs(30));
    let before = unique_key("pg-v1-claim");
    assert_eq!(
        store
            .claim(&before, &fp, Token::generate(), lease)
            .await
            .unwrap(),
        Claim::Acquired
    );
    assert!(
        !store.claims_with_function(),
        "fell back without the function"
    );

    store.migrate().await.expect("migrate to version 2");
    let version: i32 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{}\".idem_schema_version",
        fixture.schema()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(version, idem_runtime::store::PostgresStore::SCHEMA_VERSION);
    assert_eq!(version, 2);
    assert!(store.claims_with_function());

    let after = unique_key("pg-v2-claim");
    assert_eq!(
        store
            .claim(&after, &fp, Token::generate(), lease)
            .await
            .unwrap(),
        Claim::Acquired
    );
    assert!(store.claims_with_function(), "the function exists now");
    assert!(matches!(
        store
            .claim(&before, &fp, Token::generate(), lease)
            .await
            .unwrap(),
        Claim::InProgress { .. }
    ));
    // Migrating again is a no-op.
    store.migrate().await.expect("migrate is idempotent");
}

/// The local cache answers replays without the database (a row deleted behind the store's back
/// is still replayed until the entry's maximum age), forgets on `remove` at once, and never
/// outlives the record's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_serves_replays_within_its_bounds() {
    use idem_runtime::store::PostgresStore;

    let max_age = Duration::from_secs(1);
    let fixture =
        PgFixture::with_builder(PostgresStore::builder().local_cache(100, max_age), 4).await;
    let store = fixture.postgres();
    let delete = format!("DELETE FROM {}", store.qualified_table());
    idem_tests::conformance::local_cache_bounds(store, max_age, async || {
        sqlx::query(AssertSqlSafe(delete.clone()))
            .execute(store.pool())
            .await
            .unwrap();
    })
    .await;
}

/// `spawn_sweeper(Duration::ZERO)` sweeps every millisecond (a zero period made
/// `tokio::time::interval` panic inside the task, so nothing was ever swept), and the task ends
/// once the `Arc` it was given is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_with_zero_period_sweeps_and_stops_with_its_arc() {
    let fixture = PgFixture::new().await;
    let store = std::sync::Arc::new(fixture.postgres().clone());
    let key = unique_key("pg-sweep-zero");
    store
        .claim(
            &key,
            &Fingerprint::NONE,
            Token::generate(),
            Duration::from_micros(1),
        )
        .await
        .unwrap();
    let count = format!(
        "SELECT count(*) FROM {} WHERE key = $1",
        store.qualified_table()
    );
    let rows = async || -> i64 {
        sqlx::query_scalar(AssertSqlSafe(count.clone()))
            .bind(key.as_bytes().as_slice())
            .fetch_one(fixture.postgres().pool())
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 1);
    let sweeper = store.spawn_sweeper(Duration::ZERO);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rows().await > 0 {
        assert!(!sweeper.is_finished(), "the sweeper task ended early");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired row was never swept"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A store value cloned out of the Arc does not keep the task alive; the Arc's clones do.
    let value = (*store).clone();
    let arc_clone = store.clone();
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sweeper.is_finished(), "an Arc clone is still alive");
    drop(arc_clone);
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("the sweeper stops once every Arc is dropped")
        .expect("the sweeper task did not panic");
    drop(value);
}

/// Runs 20 rounds of 8 concurrent first claims of one key on `store`: every claim answers
/// (one `Acquired` at most, the others `InProgress`), none fails.
async fn claim_races_answer(store: std::sync::Arc<idem_runtime::store::PostgresStore>) {
    let fp = Fingerprint::from_bytes([5; 32]);
    let mut errors = Vec::new();
    for round in 0..20 {
        let key = unique_key(&format!("pg-isolation-{round}"));
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .claim(&key, &fp, Token::generate(), Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        let mut acquired = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(Claim::Acquired) => acquired += 1,
                Ok(Claim::InProgress { .. }) => {}
                Ok(other) => panic!("{other:?}"),
                Err(error) => errors.push(error.to_string()),
            }
        }
        assert!(acquired <= 1, "two owners of one key");
        assert!(
            acquired == 1 || !errors.is_empty(),
            "nobody acquired the key"
        );
    }
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        errors.first()
    );
}

/// Under a `REPEATABLE READ` or `SERIALIZABLE` default isolation (here set for the session
/// through the URL's `options`), the losers of a claim race answered a serialization failure
/// (SQLSTATE 40001) instead of `InProgress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_races_answer_under_stricter_default_isolation() {
    let fixture = PgFixture::new().await;
    for (level, shown) in [
        ("repeatable%5C%20read", "repeatable read"),
        ("serializable", "serializable"),
    ] {
        let pool = pool_with_default_isolation(Some(level), 8).await;
        let isolation: String = sqlx::query_scalar("SHOW default_transaction_isolation")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(isolation, shown);
        let store = std::sync::Arc::new(
            idem_runtime::store::PostgresStore::builder()
                .schema(fixture.schema())
                .build(pool.clone())
                .unwrap(),
        );
        claim_races_answer(store.clone()).await;

        // The owner's writes racing with each other (renewals while completing) are retried
        // too, and answer as under READ COMMITTED.
        for round in 0..20 {
            let key = unique_key(&format!("pg-isolation-writes-{round}"));
            let token = Token::generate();
            let lease = Duration::from_secs(30);
            assert_eq!(
                store
                    .claim(&key, &Fingerprint::NONE, token, lease)
                    .await
                    .unwrap(),
                Claim::Acquired
            );
            let renewals: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.renew(&key, token, lease).await })
                })
                .collect();
            let value = idem_runtime::record::encode("pg", &round).unwrap();
            assert!(
                store
                    .complete(&key, token, value, Duration::from_secs(60))
                    .await
                    .unwrap()
            );
            for renewal in renewals {
                renewal
                    .await
                    .unwrap()
                    .expect("a renewal answers, never fails");
            }
        }
        pool.close().await;
    }
}

/// The same race with the isolation set by the application's pool (`after_connect`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_races_answer_on_a_repeatable_read_pool() {
    let fixture = PgFixture::new().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(
                    conn,
                    "SET default_transaction_isolation = 'repeatable read'",
                )
                .await
                .map(drop)
            })
        })
        .connect(&idem_tests::servers::database_url())
        .await
        .unwrap();
    let store = idem_runtime::store::PostgresStore::builder()
        .schema(fixture.schema())
        .build(pool.clone())
        .unwrap();
    claim_races_answer(std::sync::Arc::new(store)).await;
    pool.close().await;
}

/// A schema name PostgreSQL reserves (`pg_…`) is refused by `build` as a configuration error,
/// not left for `migrate()` to fail on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserved_schema_name_is_a_config_error() {
    let fixture = PgFixture::new().await;
    let built = idem_runtime::store::PostgresStore::builder()
        .schema("pg_idem")
        .build(fixture.postgres().pool().clone());
    match built {
        Err(idem_runtime::Error::Config(message)) => {
            assert!(message.contains("reserved"), "{message}")
        }
        Err(other) => panic!("expected Error::Config, got {other}"),
        Ok(_) => panic!("a pg_ schema was accepted"),
    }
}

/// A claim on a table that was never migrated says to run `migrate()`, instead of only
/// `relation "…" does not exist`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_before_migrate_says_to_migrate() {
    let fixture = PgFixture::new().await;
    let store = idem_runtime::store::PostgresStore::builder()
        .schema(fixture.schema())
        .table("never_migrated")
        .build(fixture.postgres().pool().clone())
        .unwrap();
    let key = unique_key("pg-unmigrated");
    let token = Token::generate();
    let lease = Duration::from_secs(5);
    let errors = [
        store
            .claim(&key, &Fingerprint::NONE, token, lease)
            .await
            .unwrap_err(),
        store.get(&key).await.unwrap_err(),
        store
            .complete(&key, token, bytes::Bytes::new(), lease)
            .await
            .unwrap_err(),
    ];
    for error in errors {
        let message = error.to_string();
        assert!(
            message.contains("run PostgresStore::migrate() first")
                && message.contains("never_migrated"),
            "{message}"
        );
    }
}

/// Rows that are not idem records are errors naming the table and the key, never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_name_the_key() {
    let fixture = PgFixture::new().await;
    let store = fixture.postgres();
    let fingerprint = format!("'\\x{}'::bytea", "01".repeat(32));
    let cases = [
        (
            "short fingerprint",
            "'\\x01'::bytea, 'completed', 'idm'::bytea".to_owned(),
        ),
        ("unknown state", format!("{fingerprint}, 'error', NULL")),
        (
            "completed without value",
            format!("{fingerprint}, 'completed', NULL"),
        ),
    ];
    for (what, columns) in cases {
        let key = unique_key(what);
        let sql = format!(
            "INSERT INTO {} (key, fingerprint, state, value, expires_at) \
             VALUES ($1, {columns}, now() + interval '1 hour')",
            store.qualified_table()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(key.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .unwrap();
        for message in claim_and_get_errors(store, &key).await {
            assert!(
                message.contains("malformed")
                    && message.contains(&key.to_string())
                    && message.contains(store.qualified_table()),
                "{what}: {message}"
            );
        }
    }
}

/// A pool whose sessions default to `level` (as written in a URL's `options`: a space is
/// escaped with a backslash, `%5C`), or the plain one for `None`.
async fn pool_with_default_isolation(level: Option<&str>, max: u32) -> sqlx::PgPool {
    let Some(level) = level else {
        return idem_tests::servers::pg_pool(max).await;
    };
    let url = idem_tests::servers::database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-c%20default_transaction_isolation%3D{level}");
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .connect(&url)
        .await
        .unwrap()
}

/// Several instances migrating a fresh schema at once (separate pools), with two tables in it:
/// all succeed and every store claims afterwards, whatever the sessions' default isolation
/// (under `REPEATABLE READ` or `SERIALIZABLE`, a migration that waited for another one's lock
/// read the version table as it was before that one committed, ran every migration again
/// and failed with a serialization error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_of_a_fresh_schema() {
    let fixture = PgFixture::new().await; // owns a unique schema name
    for (round, level) in [None, Some("repeatable%5C%20read"), Some("serializable")]
        .into_iter()
        .enumerate()
    {
        let schema = format!("{}_m{round}", fixture.schema());
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let schema = schema.clone();
                tokio::spawn(async move {
                    let pool = pool_with_default_isolation(level, 2).await;
                    let table = if i % 2 == 0 {
                        "idem_records"
                    } else {
                        "other_records"
                    };
                    let store = idem_runtime::store::PostgresStore::builder()
                        .schema(&schema)
                        .table(table)
                        .build(pool.clone())
                        .unwrap();
                    let migrated = store.migrate().await;
                    let claim = store
                        .claim(
                            &unique_key("pg-migrate"),
                            &Fingerprint::NONE,
                            Token::generate(),
                            Duration::from_secs(5),
                        )
                        .await;
                    pool.close().await;
                    (migrated, claim)
                })
            })
            .collect();
        let mut failures = Vec::new();
        for task in tasks {
            let (migrated, claim) = task.await.unwrap();
            if migrated.is_err() || claim.is_err() {
                failures.push(format!("{migrated:?} / {claim:?}"));
            }
        }
        idem_tests::servers::drop_pg_schema(&schema);
        assert!(failures.is_empty(), "isolation {level:?}: {failures:#?}");
    }
}

/// Claims a fresh key (named after `label`) for 5 s.
async fn claim_new(store: &dyn Store, label: &str) -> Result<Claim, idem_runtime::Error> {
    let key = unique_key(label);
    let lease = Duration::from_secs(5);
    store
        .claim(&key, &Fingerprint::NONE, Token::generate(), lease)
        .await
}

/// `migrate()` refuses a table of the same name made by something else (its columns are not
/// idem's), rolling back, instead of recording it as migrated and failing every call later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_a_table_of_another_shape() {
    let fixture = PgFixture::new().await;
    let pool = fixture.postgres().pool().clone();
    let schema = fixture.schema();
    let foreign = [
        (
            "foreign_shape",
            "key bytea PRIMARY KEY, expires_at timestamptz NOT NULL, payload jsonb",
            "no column `fingerprint` (bytea)",
        ),
        (
            "text_key",
            "key text PRIMARY KEY, fingerprint bytea NOT NULL, state text NOT NULL, token bytea, \
             lease_until timestamptz, expires_at timestamptz NOT NULL, value bytea, \
             codec smallint, created_at timestamptz NOT NULL DEFAULT now(), \
             completed_at timestamptz",
            "column `key` is text, not bytea",
        ),
        (
            "no_primary_key",
            "key bytea, fingerprint bytea NOT NULL, state text NOT NULL, token bytea, \
             lease_until timestamptz, expires_at timestamptz NOT NULL, value bytea, \
             codec smallint, created_at timestamptz NOT NULL DEFAULT now(), \
             completed_at timestamptz",
            "`key` is not its primary key",
        ),
    ];
    for (table, columns, expected) in foreign {
        let create = format!("CREATE TABLE \"{schema}\".{table} ({columns})");
        sqlx::query(AssertSqlSafe(create))
            .execute(&pool)
            .await
            .unwrap();
        let store = idem_runtime::store::PostgresStore::builder()
            .schema(schema)
            .table(table)
            .build(pool.clone())
            .unwrap();
        match store.migrate().await {
            Err(idem_runtime::Error::Config(message)) => assert!(
                message.contains("is not an idem table") && message.contains(expected),
                "{message}"
            ),
            other => panic!("{table}: expected Error::Config, got {other:?}"),
        }
        let recorded: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT version FROM \"{schema}\".idem_schema_version WHERE table_name = $1"
        )))
        .bind(table)
        .fetch_optional(&pool)
        .await
        .unwrap();
        assert_eq!(recorded, None, "{table}: the migration was rolled back");
    }

    // Used without `migrate()`, a column of another type is named as such, not as a missing
    // claim function.
    let store = idem_runtime::store::PostgresStore::builder()
        .schema(schema)
        .table("text_key")
        .build(pool)
        .unwrap();
    let error = claim_new(&store, "pg-text-key")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("has another type than idem's"), "{error}");
    // The server's message as an operator reads it: its SQLSTATE and its hint, not sqlx's
    // Rust-side wording.
    assert!(error.contains("(SQLSTATE 42883)"), "{error}");
    assert!(
        error.contains("; hint: No operator matches the given name and argument types"),
        "{error}"
    );
}

/// A table dropped by hand after its migration (its version still recorded) is created again
/// by the next `migrate()`, not refused as somebody else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_a_dropped_table_again() {
    let fixture = PgFixture::new().await;
    let store = fixture.postgres();
    sqlx::query(AssertSqlSafe(format!(
        "DROP TABLE {}",
        store.qualified_table()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.expect("created again");
    assert_eq!(
        claim_new(store, "pg-recreated").await.unwrap(),
        Claim::Acquired
    );
}

/// At the current version `migrate()` creates nothing, so an application role without the
/// `CREATE` privilege (beside the role that migrated) can call it at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_at_the_current_version_needs_no_create_privilege() {
    let fixture = PgFixture::new().await;
    let role = idem_tests::servers::PgRole::application(fixture.schema(), None).await;
    let store = idem_runtime::store::PostgresStore::builder()
        .schema(fixture.schema())
        .build(role.pool(2, Duration::from_secs(10)).await)
        .unwrap();
    store
        .migrate()
        .await
        .expect("a no-op at the current version");
    assert!(store.claims_with_function());
    assert_eq!(
        claim_new(&store, "pg-app-role").await.unwrap(),
        Claim::Acquired
    );
    store.pool().close().await;
}

/// An exhausted pool is diagnosed by one probe connection at a time: a role allowed two
/// connections (the pool's one and one probe) sees every failed statement blamed on the pool,
/// never on "too many connections", which one probe per failed statement would cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_probed_once_at_a_time() {
    let fixture = PgFixture::new().await;
    let role = idem_tests::servers::PgRole::application(fixture.schema(), Some(2)).await;
    let pool = role.pool(1, Duration::from_millis(100)).await;
    let store = std::sync::Arc::new(
        idem_runtime::store::PostgresStore::builder()
            .schema(fixture.schema())
            .build(pool.clone())
            .unwrap(),
    );
    let held = pool.acquire().await.unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.get(&unique_key(&format!("pg-pool-{i}"))).await })
        })
        .collect();
    for task in tasks {
        let message = task.await.unwrap().unwrap_err().to_string();
        assert!(
            message.contains("no pooled PostgreSQL connection in time")
                && message.contains("the pool is exhausted"),
            "{message}"
        );
    }
    drop(held);
    pool.close().await;
}
