//! What the shared stores answer when the server refuses the client (credentials, database,
//! permissions, a missing table): [`Error::Config`], not retryable, with what to fix; a server
//! that cannot be reached stays [`Error::Store`], retryable. Needs the tests' Redis and
//! PostgreSQL (`IDEM_REDIS_URL`, `IDEM_DATABASE_URL`).

use std::time::Duration;

use idem_runtime::store::{PostgresStore, RedisStore};
use idem_runtime::{Error, Fingerprint, Store, Token};
use idem_tests::conformance::unique_key;
use idem_tests::servers::{PgFixture, database_url, redis_url, unique_suffix};

fn refused<T: std::fmt::Debug>(out: Result<T, Error>) -> String {
    match out {
        Err(error @ Error::Config(_)) => {
            assert!(!error.is_retryable(), "{error}");
            // Not PostgreSQL's own source line, which sqlx appends and reads like a place in
            // the user's SQL.
            let message = error.to_string();
            assert!(!message.contains(" at line "), "{message}");
            message
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

fn unreachable<T: std::fmt::Debug>(out: Result<T, Error>) -> String {
    match out {
        Err(error @ Error::Store { .. }) => {
            assert!(error.is_retryable(), "{error}");
            error.to_string()
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
}

fn redis() -> idem_runtime::store::RedisStoreBuilder {
    RedisStore::builder()
        .connection_timeout(Duration::from_millis(500))
        .reconnect_retries(0)
}

#[tokio::test]
async fn redis_refusals_are_config_errors() {
    let message = refused(redis().connect("http://127.0.0.1:6379").await);
    assert!(message.contains("invalid Redis URL"), "{message}");

    // The server answers, and refuses the database number.
    let url = format!("{}/99", redis_url().trim_end_matches('/'));
    let message = refused(redis().connect(&url).await);
    assert!(
        message.contains("refused the connection") && !message.contains("is the server running"),
        "{message}"
    );

    // Nobody answers: that may pass.
    let message = unreachable(redis().connect("redis://127.0.0.1:1").await);
    assert!(message.contains("is the server running?"), "{message}");
}

/// A user whose ACL allows no command gets `NOPERM` on every call.
#[tokio::test]
async fn redis_acl_refusals_are_config_errors() {
    let user = format!("idem_noperm_{}", unique_suffix());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| idem_tests::servers::redis_unreachable(&redis_url(), &e));
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                &user,
                "on",
                "nopass",
                "~*",
                "-@all",
                "+@connection",
            ][..],
        )
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = redis_url().replacen("redis://", &format!("redis://{user}:any@"), 1);
    let outcome = async {
        let store = redis().connect(&url).await?;
        store
            .claim(
                &unique_key("noperm"),
                &Fingerprint::NONE,
                Token::generate(),
                Duration::from_secs(5),
            )
            .await
    }
    .await;
    let _: () = redis::cmd("ACL")
        .arg(&["DELUSER", &user][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let message = refused(outcome);
    assert!(message.contains("no permissions"), "{message}");
}

#[tokio::test]
async fn postgres_refusals_are_config_errors() {
    let store = || PostgresStore::builder().acquire_timeout(Duration::from_secs(5));
    let message = refused(
        store()
            .connect("postgres://127.0.0.1:5432/?sslmode=bogus")
            .await,
    );
    assert!(message.contains("check the URL"), "{message}");

    let (server, _) = database_url()
        .rsplit_once('/')
        .map(|(server, db)| (server.to_owned(), db.to_owned()))
        .unwrap();
    let missing_db = format!("{server}/idem_no_such_db_{}", unique_suffix());
    let message = refused(store().connect(&missing_db).await);
    assert!(message.contains("does not exist"), "{message}");

    let missing_role = database_url().replacen(
        "postgres://postgres@",
        &format!("postgres://idem_no_such_role_{}@", unique_suffix()),
        1,
    );
    if missing_role != database_url() {
        let message = refused(store().connect(&missing_role).await);
        assert!(message.contains("does not exist"), "{message}");
    }

    // A table nobody migrated, and a role without privileges on a migrated one.
    let fixture = PgFixture::new().await;
    let never = PostgresStore::builder()
        .schema(fixture.schema())
        .table("never_migrated")
        .build(fixture.postgres().pool().clone())
        .unwrap();
    let message = refused(never.get(&unique_key("pg-refusals")).await);
    assert!(
        message.contains("run PostgresStore::migrate() first"),
        "{message}"
    );

    let role = idem_tests::servers::PgRole::application(fixture.schema(), None).await;
    let pool = role.pool(1, Duration::from_secs(5)).await;
    let revoke_role = format!(
        "REVOKE SELECT ON ALL TABLES IN SCHEMA \"{}\" FROM {}",
        fixture.schema(),
        role.name()
    );
    sqlx::query(sqlx::AssertSqlSafe(revoke_role))
        .execute(fixture.postgres().pool())
        .await
        .unwrap();
    let denied = PostgresStore::builder()
        .schema(fixture.schema())
        .build(pool.clone())
        .unwrap();
    let message = refused(denied.get(&unique_key("pg-denied")).await);
    assert!(
        message.contains("permission denied") && message.contains("(SQLSTATE 42501)"),
        "{message}"
    );
    pool.close().await;

    let message = unreachable(
        store()
            .acquire_timeout(Duration::from_millis(300))
            .connect("postgres://postgres@127.0.0.1:1/test")
            .await,
    );
    assert!(message.contains("cannot connect"), "{message}");
}

/// What the stores tell an operator about themselves (logged by `install`): where they are and
/// which keys or table are theirs.
#[tokio::test]
async fn stores_describe_where_they_are() {
    let redis = redis()
        .key_prefix("idem:describe:")
        .connect(&redis_url())
        .await;
    let redis = redis.unwrap_or_else(|e| idem_tests::servers::redis_unreachable(&redis_url(), &e));
    assert_eq!(
        redis.describe(),
        format!("redis at {}, key prefix \"idem:describe:\"", redis_url())
    );
    let fixture = PgFixture::new().await;
    let described = fixture.postgres().describe();
    assert!(
        described.starts_with("postgres at ")
            && described.ends_with(&format!(
                ", table \"{}\".\"idem_records\"",
                fixture.schema()
            )),
        "{described}"
    );
}

/// A transient database error (here a row lock held past the session's `lock_timeout`) stays a
/// retryable `Error::Store`, shown as the server's message and SQLSTATE (not sqlx's source
/// line of PostgreSQL's C code), with the sqlx error still reachable through `source()`.
#[tokio::test]
async fn a_transient_database_error_is_a_store_error_with_its_sqlstate() {
    let fixture = PgFixture::new().await;
    let store = fixture.postgres();
    let key = unique_key("pg-locked");
    let lease = Duration::from_secs(5);
    store
        .claim(&key, &Fingerprint::NONE, Token::generate(), lease)
        .await
        .unwrap();
    // Another session holds the row.
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {} WHERE key = $1 FOR UPDATE",
        store.qualified_table()
    )))
    .bind(key.as_bytes().as_slice())
    .execute(&mut *holder)
    .await
    .unwrap();
    let options: sqlx::postgres::PgConnectOptions = database_url().parse().unwrap();
    let impatient = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.options([("lock_timeout", "50ms")]))
        .await
        .unwrap();
    let blocked = PostgresStore::builder()
        .schema(fixture.schema())
        .build(impatient.clone())
        .unwrap();
    let error = blocked.remove(&key).await.unwrap_err();
    assert!(
        matches!(error, Error::Store { .. }) && error.is_retryable(),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("(SQLSTATE 55P03)") && !message.contains(" at line "),
        "{message}"
    );
    let mut source = std::error::Error::source(&error);
    let mut found_sqlx = false;
    while let Some(cause) = source {
        found_sqlx |= cause.downcast_ref::<sqlx::Error>().is_some();
        source = cause.source();
    }
    assert!(
        found_sqlx,
        "the sqlx error is in the source chain: {error:?}"
    );
    holder.rollback().await.unwrap();
    impatient.close().await;
}
