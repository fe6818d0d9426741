//! The Redis store against a server whose scripts answer what no Redis answers (a proxy that
//! rewrites replies, a server that is not Redis), played by a fake ([`FakeRedis`]):
//!
//! - `get`'s read script: anything but `0` or `{record, PTTL}` (a bulk string, an array of
//!   another length, a non-string record, a PTTL that is not an integer);
//! - `renew`'s and `release`'s scripts: anything but an integer.
//!
//! Each is an [`Error::Store`] that names the Redis key and says what was wrong, never a panic
//! and never a made-up answer (`None`, `false`).
//!
//! Also the read that checks a `complete` or `release` sent again after a lost connection: what
//! it finds decides the answer, and when it fails, so does the call.
//!
//! Needs no Redis server.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use idem_runtime::store::RedisStore;
use idem_runtime::{Error, Fingerprint, Key, Store, Token};
use idem_tests::conformance::unique_key;
use idem_tests::fake_redis::{self, FakeRedis, Reply, connection_reply, name};

/// A server answering every script call (`EVALSHA`) with `reply`.
async fn scripts_answering(reply: Reply) -> FakeRedis {
    FakeRedis::start(move |command| match name(command).as_str() {
        "EVALSHA" | "EVAL" => reply.clone(),
        _ => connection_reply(command),
    })
    .await
}

async fn store_on(fake: &FakeRedis) -> RedisStore {
    RedisStore::builder()
        .key_prefix("unexpected:")
        .response_timeout(Duration::from_secs(5))
        .connect(&fake.url())
        .await
        .expect("connect to the fake Redis")
}

/// Asserts a store error that names `key`'s Redis key and contains `what`.
fn assert_unexpected<T: std::fmt::Debug>(
    store: &RedisStore,
    key: &Key,
    answer: Result<T, Error>,
    what: &str,
    case: &str,
) {
    let error = match answer {
        Err(error @ Error::Store { .. }) => error.to_string(),
        other => panic!("{case}: expected Error::Store, got {other:?}"),
    };
    let rkey = String::from_utf8_lossy(&store.redis_key(key)).into_owned();
    assert!(
        error.contains(&format!("{rkey:?}")) && error.contains(what),
        "{case}: the error should name {rkey:?} and say {what:?}: {error}"
    );
}

/// A completed record of the value `1u8`.
fn completed_record() -> Vec<u8> {
    let value = idem_runtime::record::encode("unexpected.op", &1u8).expect("encode");
    fake_redis::completed_record(&Fingerprint::from_bytes([3; 32]), &value)
}

#[tokio::test]
async fn a_read_script_answer_that_is_neither_zero_nor_a_record_and_its_pttl_is_an_error() {
    let read_script = "the read script answered neither 0 nor a record and its PTTL";
    let cases = [
        ("a bulk string", Reply::Bulk(b"c".to_vec()), read_script),
        ("an integer other than 0", Reply::Integer(1), read_script),
        ("nil", Reply::Nil, read_script),
        (
            "an array of one",
            Reply::Array(vec![Reply::Bulk(completed_record())]),
            read_script,
        ),
        (
            "an array of three",
            Reply::Array(vec![
                Reply::Bulk(completed_record()),
                Reply::Integer(1000),
                Reply::Integer(1000),
            ]),
            read_script,
        ),
        (
            "a record that is not a string",
            Reply::Array(vec![Reply::Integer(7), Reply::Integer(1000)]),
            read_script,
        ),
        (
            "a PTTL that is not an integer",
            Reply::Array(vec![
                Reply::Bulk(completed_record()),
                Reply::Bulk(b"1000".to_vec()),
            ]),
            "PTTL is not an integer",
        ),
    ];
    for (case, reply, what) in cases {
        let fake = scripts_answering(reply).await;
        let store = store_on(&fake).await;
        let key = unique_key("read");
        assert_unexpected(&store, &key, store.get(&key).await, what, case);
    }
}

#[tokio::test]
async fn a_renew_or_release_answer_that_is_not_an_integer_is_an_error() {
    let flag = "a script answered other than 0 or 1";
    for (case, reply) in [
        ("nil", Reply::Nil),
        ("a bulk string", Reply::Bulk(b"1".to_vec())),
        ("an array", Reply::Array(vec![Reply::Integer(1)])),
    ] {
        let fake = scripts_answering(reply).await;
        let store = store_on(&fake).await;
        let key = unique_key("flag");
        let token = Token::generate();
        let renewed = store.renew(&key, token, Duration::from_secs(1)).await;
        assert_unexpected(&store, &key, renewed, flag, &format!("renew, {case}"));
        let released = store.release(&key, token).await;
        assert_unexpected(&store, &key, released, flag, &format!("release, {case}"));
    }
}

#[tokio::test]
async fn the_expected_answers_still_read_as_such() {
    // The same fake, answering as Redis does: `0` is no record, a pair is a record.
    let fake = scripts_answering(Reply::Integer(0)).await;
    let store = store_on(&fake).await;
    assert!(matches!(store.get(&unique_key("none")).await, Ok(None)));

    let fake = scripts_answering(Reply::Array(vec![
        Reply::Bulk(completed_record()),
        Reply::Integer(60_000),
    ]))
    .await;
    let store = store_on(&fake).await;
    let got = store.get(&unique_key("some")).await;
    assert!(
        matches!(got, Ok(Some(idem_runtime::store::Record::Completed { .. }))),
        "{got:?}"
    );
}

/// A server whose script calls are answered in turn: the first hangs up (the connection is
/// lost, its answer with it), the second answers 0 (the resend found nothing to do: the first
/// send did it, or someone else's record is there) and the third, the read that checks which,
/// answers `check`.
async fn resent_then_checked(check: Reply) -> FakeRedis {
    let scripts = Arc::new(AtomicUsize::new(0));
    FakeRedis::start(move |command| match name(command).as_str() {
        "EVALSHA" | "EVAL" => match scripts.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::Hangup,
            1 => Reply::Integer(0),
            _ => check.clone(),
        },
        _ => connection_reply(command),
    })
    .await
}

fn scripts_sent(fake: &FakeRedis) -> usize {
    fake.names()
        .iter()
        .filter(|n| n.starts_with("EVAL"))
        .count()
}

#[tokio::test]
async fn a_resent_complete_answers_what_the_check_finds_and_fails_when_the_check_fails() {
    let value = idem_runtime::record::encode("unexpected.op", &1u8).expect("encode");
    let other = idem_runtime::record::encode("unexpected.op", &2u8).expect("encode");
    let fp = Fingerprint::from_bytes([3; 32]);
    let with = |value: &[u8]| {
        Reply::Array(vec![
            Reply::Bulk(fake_redis::completed_record(&fp, value)),
            Reply::Integer(60_000),
        ])
    };
    for (case, check, expected) in [
        ("completed with this value", with(&value), Some(true)),
        ("completed with another value", with(&other), Some(false)),
        ("no record", Reply::Integer(0), Some(false)),
        ("a malformed read", Reply::Bulk(b"c".to_vec()), None),
        ("the read's connection lost twice", Reply::Hangup, None),
    ] {
        let fake = resent_then_checked(check).await;
        let store = store_on(&fake).await;
        let key = unique_key("resent-complete");
        let ttl = Duration::from_secs(60);
        let answer = store
            .complete(&key, Token::generate(), value.clone(), ttl)
            .await;
        match expected {
            Some(completed) => assert_eq!(answer.ok(), Some(completed), "{case}"),
            None => assert!(
                matches!(&answer, Err(Error::Store { .. })),
                "{case}: the check failed, so must the call: {answer:?}"
            ),
        }
        // The complete, its resend, and the check (sent twice when its connection is lost).
        let sent = if case.contains("twice") { 4 } else { 3 };
        assert_eq!(scripts_sent(&fake), sent, "{case}: {:?}", fake.names());
    }
}

#[tokio::test]
async fn a_resent_release_answers_what_the_check_finds_and_fails_when_the_check_fails() {
    let held = Reply::Array(vec![
        Reply::Bulk(fake_redis::in_progress_record(
            &Fingerprint::from_bytes([3; 32]),
            Token::generate(),
            30_000,
        )),
        Reply::Integer(30_000),
    ]);
    for (case, check, expected) in [
        ("the key free", Reply::Integer(0), Some(true)),
        ("another caller's claim", held, Some(false)),
        ("a malformed read", Reply::Nil, None),
    ] {
        let fake = resent_then_checked(check).await;
        let store = store_on(&fake).await;
        let key = unique_key("resent-release");
        let answer = store.release(&key, Token::generate()).await;
        match expected {
            Some(released) => assert_eq!(answer.ok(), Some(released), "{case}"),
            None => assert_unexpected(
                &store,
                &key,
                answer,
                "the read script answered neither 0 nor a record",
                case,
            ),
        }
        assert_eq!(scripts_sent(&fake), 3, "{case}: {:?}", fake.names());
    }
}

/// A refusal (`NOPERM`) is `Error::Config`, not retryable, as the command was not applied; but
/// a refusal of a command sent again after a lost connection is `Error::Store`: the first send
/// may have been applied, and the caller must treat the outcome as unknown.
#[tokio::test]
async fn a_refusal_after_a_resend_is_a_store_error() {
    for lost_first in [false, true] {
        let scripts = Arc::new(AtomicUsize::new(0));
        let fake = FakeRedis::start(move |command| match name(command).as_str() {
            "EVALSHA" | "EVAL" => match scripts.fetch_add(1, Ordering::SeqCst) {
                0 if lost_first => Reply::Hangup,
                _ => {
                    Reply::error("NOPERM this user has no permissions to run the 'evalsha' command")
                }
            },
            _ => connection_reply(command),
        })
        .await;
        let store = store_on(&fake).await;
        let answer = store
            .release(&unique_key("resent-refused"), Token::generate())
            .await;
        match (lost_first, &answer) {
            (false, Err(error @ Error::Config(_))) | (true, Err(error @ Error::Store { .. })) => {
                assert_eq!(error.is_retryable(), lost_first, "{error}")
            }
            _ => panic!("lost first: {lost_first}: {answer:?}"),
        }
    }
}
