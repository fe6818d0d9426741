//! Exactly once across processes: 4 OS processes of `idem_worker` call the same operation for
//! the same 200 keys at the same time, against Redis and against PostgreSQL. Each body
//! increments a counter held in that server; afterwards the counter is 200 and every process
//! saw the same result for every key.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idem_tests::servers::{PgFixture, RedisFixture, database_url, redis_url};
use idem_tests::worker::{self, Backend};

const PROCESSES: u32 = 4;
const KEYS: u64 = 200;

/// Starts the workers, waits for them, and returns each one's results by key.
async fn run_workers(backend: Backend, url: &str, namespace: &str) -> Vec<BTreeMap<u64, String>> {
    let start_at =
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_millis(1500);
    let children: Vec<_> = (0..PROCESSES)
        .map(|worker| {
            worker::command(
                env!("CARGO_BIN_EXE_idem_worker"),
                "run",
                backend,
                url,
                namespace,
            )
            .args(["--worker", &worker.to_string(), "--keys", &KEYS.to_string()])
            .args(["--start-at-ms", &start_at.as_millis().to_string()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn idem_worker")
        })
        .collect();
    let outputs: Vec<Output> = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| child.wait_with_output().expect("wait for idem_worker"))
            .collect()
    })
    .await
    .unwrap();
    outputs
        .iter()
        .enumerate()
        .map(|(worker, output)| {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "worker {worker} failed ({}):\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            let mut results = BTreeMap::new();
            for line in stdout.lines() {
                let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let key = line["key"].as_u64().expect("key");
                let result = line["result"]
                    .as_str()
                    .unwrap_or_else(|| panic!("worker {worker}: {line}"));
                assert!(
                    results.insert(key, result.to_owned()).is_none(),
                    "key {key} twice"
                );
            }
            assert_eq!(
                results.len() as u64,
                KEYS,
                "worker {worker} reported every key"
            );
            results
        })
        .collect()
}

fn check_identical(results: &[BTreeMap<u64, String>]) {
    for key in 0..KEYS {
        let first = &results[0][&key];
        for (worker, theirs) in results.iter().enumerate() {
            assert_eq!(
                &theirs[&key], first,
                "worker {worker} saw another result for key {key}"
            );
        }
        assert!(
            first.starts_with(&format!("key {key} ran in worker ")),
            "{first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_four_processes_run_each_key_once() {
    let fixture = RedisFixture::new().await;
    let url = redis_url();
    let results = run_workers(Backend::Redis, &url, fixture.prefix()).await;
    check_identical(&results);
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let counter: i64 = redis::cmd("GET")
        .arg(format!("{}counter", fixture.prefix()))
        .query(&mut conn)
        .unwrap();
    assert_eq!(counter, KEYS as i64, "every body ran exactly once");
    // Every increment number appears once: no body ran twice for one key.
    let mut increments: Vec<&str> = results[0]
        .values()
        .map(|r| r.rsplit(' ').next().unwrap())
        .collect();
    increments.sort();
    increments.dedup();
    assert_eq!(increments.len() as u64, KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_processes_run_each_key_once() {
    let fixture = PgFixture::new().await;
    let pool = fixture.postgres().pool().clone();
    let counter_table = format!("\"{}\".counter", fixture.schema());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {counter_table} (id int PRIMARY KEY, n bigint NOT NULL)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {counter_table} VALUES (1, 0)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let results = run_workers(Backend::Postgres, &database_url(), fixture.schema()).await;
    check_identical(&results);
    let counter: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT n FROM {counter_table} WHERE id = 1"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counter, KEYS as i64, "every body ran exactly once");
    let completed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {} WHERE state = 'completed'",
        fixture.postgres().qualified_table()
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(completed, KEYS as i64);
    pool.close().await;
}
