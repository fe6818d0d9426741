//! The store conformance suite against PostgreSQL (`IDEM_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test migrates a schema of its own and drops
//! it afterwards.

use std::time::Duration;

use idem_runtime::store::{Claim, Store};
use idem_runtime::{Fingerprint, Token};
use idem_tests::conformance::unique_key;
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
