//! The Redis store against a server before Redis 7.0, played by a fake ([`FakeRedis`]; the
//! real test server is newer, and no server answers the claim script with a malformed reply):
//!
//! - `SET … NX PX … GET` refused with a syntax error switches the store (and its clones) to
//!   the Lua claim script for good, also when the claim was sent in a transaction with its
//!   `PTTL` (local cache on); the script goes as `EVALSHA`, and once as `EVAL` after
//!   `NOSCRIPT`;
//! - the script's answer, nil or `{previous record, PTTL}`, is read as the `SET`'s would be;
//!   any other array is `Error::Store` naming the key, without a panic.
//!
//! Needs no Redis server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use idem_runtime::store::{Claim, ClaimOrder, RedisStore};
use idem_runtime::{Error, Fingerprint, Key, Store, Token};
use idem_tests::conformance::unique_key;
use idem_tests::fake_redis::{
    Command, FakeRedis, Reply, completed_record, connection_reply, in_progress_record, name,
};

const LEASE_MS: u64 = 1500;
const LEASE: Duration = Duration::from_millis(LEASE_MS);

/// A Redis 6.2 as the store sees it: refuses `SET … NX … GET` with `ERR syntax error`, knows
/// no script until it was sent with `EVAL` (answers `NOSCRIPT` to `EVALSHA` before), and
/// answers the claim script's calls with `script` (given the call's arguments).
fn legacy_server(
    script: impl Fn(&[Vec<u8>]) -> Reply + Send + Sync + 'static,
) -> impl Fn(&[Vec<u8>]) -> Reply + Send + Sync + 'static {
    let loaded = AtomicBool::new(false);
    move |command| match name(command).as_str() {
        "SET" if command.iter().any(|arg| arg.eq_ignore_ascii_case(b"GET")) => {
            Reply::error("ERR syntax error")
        }
        "EVALSHA" if !loaded.load(Ordering::SeqCst) => {
            Reply::error("NOSCRIPT No matching script. Please use EVAL.")
        }
        "EVALSHA" => script(command),
        "EVAL" => {
            loaded.store(true, Ordering::SeqCst);
            script(command)
        }
        _ => connection_reply(command),
    }
}

/// A store on the fake, claiming first (no `GET` before the claim, whatever it saw).
async fn store_on(fake: &FakeRedis) -> RedisStore {
    connect(fake, RedisStore::builder()).await
}

/// A store on the fake, configured by `builder` and claiming first.
async fn connect(fake: &FakeRedis, builder: idem_runtime::store::RedisStoreBuilder) -> RedisStore {
    builder
        .key_prefix("legacy:")
        .claim_order(ClaimOrder::ClaimFirst)
        .response_timeout(Duration::from_secs(5))
        .connect(&fake.url())
        .await
        .expect("connect to the fake Redis")
}

/// The commands the store sent, after the connection's setup (`CLIENT SETINFO`).
fn sent(fake: &FakeRedis) -> Vec<Command> {
    fake.commands()
        .into_iter()
        .filter(|command| name(command) != "CLIENT")
        .collect()
}

fn names(commands: &[Command]) -> Vec<String> {
    commands.iter().map(|command| name(command)).collect()
}

/// Arguments as text (non-ASCII bytes escaped), for readable failures.
fn shown(args: &[Vec<u8>]) -> Vec<String> {
    args.iter()
        .map(|arg| arg.escape_ascii().to_string())
        .collect()
}

fn args(args: &[&[u8]]) -> Vec<String> {
    args.iter()
        .map(|arg| arg.escape_ascii().to_string())
        .collect()
}

fn claim_parts(label: &str) -> (Key, Fingerprint, Token) {
    (
        unique_key(label),
        Fingerprint::from_bytes([7; 32]),
        Token::generate(),
    )
}

#[tokio::test]
async fn a_syntax_error_switches_every_later_claim_to_the_script() {
    let fake = FakeRedis::start(legacy_server(|_| Reply::Nil)).await;
    let store = store_on(&fake).await;
    let (key, fingerprint, token) = claim_parts("first");
    let claim = store.claim(&key, &fingerprint, token, LEASE).await;
    assert!(matches!(claim, Ok(Claim::Acquired)), "{claim:?}");

    let commands = sent(&fake);
    assert_eq!(names(&commands), ["SET", "EVALSHA", "EVAL"]);
    let rkey = store.redis_key(&key);
    let record = in_progress_record(&fingerprint, token, LEASE_MS);
    let lease = LEASE_MS.to_string();
    assert_eq!(
        shown(&commands[0]),
        args(&[
            b"SET",
            &rkey,
            &record,
            b"NX",
            b"PX",
            lease.as_bytes(),
            b"GET"
        ])
    );
    // The script: the one whose SHA was sent first, writing the record only if it is absent.
    let source = std::str::from_utf8(&commands[2][1]).expect("the script's source");
    assert!(
        source.contains("redis.call('GET', KEYS[1])")
            && source.contains("redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"),
        "{source}"
    );
    let sha = redis::Script::new(source).get_hash().to_owned();
    let call = args(&[b"1", &rkey, &record, lease.as_bytes()]);
    assert_eq!(
        shown(&commands[1][..2]),
        args(&[b"EVALSHA", sha.as_bytes()])
    );
    assert_eq!(shown(&commands[1][2..]), call);
    assert_eq!(shown(&commands[2][2..]), call);

    // Later claims, by this store and by a clone: the script alone, now known to the server.
    let clone = store.clone();
    for (i, store) in [&store, &clone].into_iter().enumerate() {
        let (key, fingerprint, token) = claim_parts("later");
        let claim = store.claim(&key, &fingerprint, token, LEASE).await;
        assert!(matches!(claim, Ok(Claim::Acquired)), "claim {i}: {claim:?}");
        let last = sent(&fake).pop().expect("a command");
        assert_eq!(shown(&last[..2]), args(&[b"EVALSHA", sha.as_bytes()]));
        assert_eq!(
            shown(&last[3..4]),
            args(&[&store.redis_key(&key)]),
            "claim {i}"
        );
    }
    assert_eq!(
        names(&sent(&fake)),
        ["SET", "EVALSHA", "EVAL", "EVALSHA", "EVALSHA"],
        "SET is never sent again"
    );
}

#[tokio::test]
async fn the_scripts_pair_answers_like_the_set_would() {
    let value = idem_runtime::record::encode("legacy.op", &"done").expect("encode");
    let done = Fingerprint::from_bytes([1; 32]);
    let running = Fingerprint::from_bytes([2; 32]);
    let other = Token::generate();
    let answer_value = value.to_vec();
    // Which record the key holds, told by the claimant's fingerprint (in the record it sent:
    // `EVALSHA sha 1 key record lease`).
    let fake = FakeRedis::start(legacy_server(move |call| {
        match call.get(4).and_then(|record| record.get(1)) {
            Some(1) => Reply::Array(vec![
                Reply::Bulk(completed_record(&done, &answer_value)),
                Reply::Integer(60_000),
            ]),
            // Its PTTL (700 ms) is shorter than the lease it was claimed with (1000 ms).
            Some(2) => Reply::Array(vec![
                Reply::Bulk(in_progress_record(&running, other, 1000)),
                Reply::Integer(700),
            ]),
            _ => Reply::error("ERR unexpected claim"),
        }
    }))
    .await;
    let store = store_on(&fake).await;

    let claim = store
        .claim(&unique_key("done"), &done, Token::generate(), LEASE)
        .await;
    assert_eq!(
        claim.expect("a replay"),
        Claim::Completed {
            fingerprint: done,
            value: value.clone(),
        }
    );
    let claim = store
        .claim(&unique_key("running"), &running, Token::generate(), LEASE)
        .await;
    assert_eq!(
        claim.expect("in progress"),
        Claim::InProgress {
            fingerprint: running,
            remaining: Duration::from_millis(700),
        }
    );
    // The script answered the PTTL itself: no `PTTL` of its own.
    assert_eq!(names(&sent(&fake)), ["SET", "EVALSHA", "EVAL", "EVALSHA"]);
}

#[tokio::test]
async fn a_script_answer_that_is_not_a_pair_is_a_store_error() {
    let record = completed_record(&Fingerprint::from_bytes([3; 32]), b"idm");
    for items in [
        vec![
            Reply::Bulk(record.clone()),
            Reply::Integer(1000),
            Reply::Integer(1000),
        ],
        vec![Reply::Bulk(record.clone())],
        vec![],
    ] {
        let len = items.len();
        let fake = FakeRedis::start(legacy_server(move |_| Reply::Array(items.clone()))).await;
        let store = store_on(&fake).await;
        let (key, fingerprint, token) = claim_parts("malformed");
        let claim = store.claim(&key, &fingerprint, token, LEASE).await;
        let message = match claim {
            Err(error @ Error::Store { .. }) => error.to_string(),
            other => panic!("an array of {len}: expected Error::Store, got {other:?}"),
        };
        assert!(
            message.contains("the claim script did not answer a pair"),
            "an array of {len}: {message}"
        );
        let rkey = String::from_utf8(store.redis_key(&key)).expect("a hex key");
        assert!(message.contains(&rkey), "names the key: {message}");
        // The script was reached (after the syntax error); nothing else was sent.
        assert_eq!(names(&sent(&fake)), ["SET", "EVALSHA", "EVAL"]);
    }
}

/// The script answers nil (claimed) or a pair; anything else is an answer no Redis gives, not
/// a claim to take for granted: a store error, nothing parsed as a record.
#[tokio::test]
async fn a_script_answer_that_is_neither_nil_nor_an_array_is_a_store_error() {
    let record = completed_record(&Fingerprint::from_bytes([3; 32]), b"idm");
    for (what, answer) in [
        ("an integer", Reply::Integer(1)),
        ("a status", Reply::Simple("OK".to_owned())),
        ("a bulk string", Reply::Bulk(record)),
    ] {
        let fake = FakeRedis::start(legacy_server(move |_| answer.clone())).await;
        let store = store_on(&fake).await;
        let (key, fingerprint, token) = claim_parts("neither");
        let message = match store.claim(&key, &fingerprint, token, LEASE).await {
            Err(error @ Error::Store { .. }) => error.to_string(),
            other => panic!("{what}: expected Error::Store, got {other:?}"),
        };
        assert!(
            message.contains("the claim script answered neither nil nor a pair"),
            "{what}: {message}"
        );
        assert_eq!(names(&sent(&fake)), ["SET", "EVALSHA", "EVAL"], "{what}");
    }
}

/// With the local cache on, the claim goes in a transaction with its `PTTL`: the syntax error
/// comes back inside `EXEC`'s answer, and switches the store to the script all the same. The
/// script's pair feeds the cache.
#[tokio::test]
async fn a_syntax_error_inside_the_transaction_switches_to_the_script_too() {
    let value = idem_runtime::record::encode("legacy.op", &"cached").expect("encode");
    let fingerprint = Fingerprint::from_bytes([4; 32]);
    let answer_value = value.to_vec();
    let legacy = legacy_server(move |_| {
        Reply::Array(vec![
            Reply::Bulk(completed_record(&fingerprint, &answer_value)),
            Reply::Integer(60_000),
        ])
    });
    let fake = FakeRedis::start(move |command: &[Vec<u8>]| match name(command).as_str() {
        // The key is absent: its PTTL, queued after the claim.
        "PTTL" => Reply::Integer(-2),
        _ => legacy(command),
    })
    .await;
    let store = connect(
        &fake,
        RedisStore::builder().local_cache(100, Duration::from_secs(60)),
    )
    .await;
    let key = unique_key("cached");
    let expected = Claim::Completed {
        fingerprint,
        value: value.clone(),
    };
    for round in 0..2 {
        let claim = store
            .claim(
                &key,
                &Fingerprint::from_bytes([5; 32]),
                Token::generate(),
                LEASE,
            )
            .await;
        assert_eq!(claim.expect("a replay"), expected, "round {round}");
    }
    // Once through the transaction and the script, then from the cache.
    let commands = names(&sent(&fake));
    assert_eq!(commands[..4], ["MULTI", "SET", "PTTL", "EXEC"]);
    assert_eq!(commands[4..], ["EVALSHA", "EVAL"], "{commands:?}");

    // Another key: the script straight away, no transaction.
    let other = unique_key("other");
    store
        .claim(&other, &fingerprint, Token::generate(), LEASE)
        .await
        .expect("a replay");
    assert_eq!(names(&sent(&fake))[6..], ["EVALSHA"]);
}
