//! The `Idempotency-Key` layer over a real socket: concurrent duplicates, disconnects, lease
//! renewal, panics.

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use http_support::{post, scoped, serve};
use idem_runtime::{MemoryStore, OnConflict, Store};

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_one_key_run_once() {
    let server = serve(scoped("concurrent").store(memory()).build().unwrap()).await;
    let request = Arc::new(
        post("/payments")
            .tenant("acme")
            .key("same-key")
            .header("x-delay-ms", "300")
            .body("pay"),
    );
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (request, addr) = (request.clone(), server.addr);
            tokio::spawn(async move { request.send(addr).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    assert_eq!(server.runs(), 1, "the handler ran once");
    let recorded = request.send(server.addr).await;
    assert!(recorded.replayed());
    let (mut created, mut conflicts) = (0, 0);
    for reply in &replies {
        match reply.status {
            StatusCode::CREATED => {
                created += 1;
                assert_eq!(
                    reply.body, recorded.body,
                    "every success is the recorded response"
                );
            }
            StatusCode::CONFLICT => {
                conflicts += 1;
                reply.assert_problem(409, "idempotency-request-in-progress");
                assert_eq!(reply.header("retry-after"), Some("1"));
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert!(created >= 1, "the first request got its response");
    assert_eq!(created + conflicts, 50);
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_duplicates_all_get_the_recorded_response() {
    let layer = scoped("wait")
        .store(memory())
        .on_conflict(OnConflict::Wait)
        .wait_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let server = serve(layer).await;
    let request = Arc::new(
        post("/payments")
            .tenant("acme")
            .key("k")
            .header("x-delay-ms", "200")
            .body("pay"),
    );
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (request, addr) = (request.clone(), server.addr);
            tokio::spawn(async move { request.send(addr).await })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut replayed = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        replayed += usize::from(reply.replayed());
        bodies.push(reply.body);
    }
    assert_eq!(replayed, 9);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(server.runs(), 1);
    // A different request with the key gets 422 while waiting would be pointless.
    let other = post("/payments")
        .tenant("acme")
        .key("k")
        .body("other")
        .send(server.addr)
        .await;
    other.assert_problem(422, "idempotency-key-reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_duplicate_of_an_unrecorded_response_gets_409() {
    let layer = scoped("wait-fail")
        .store(memory())
        .on_conflict(OnConflict::Wait)
        .build()
        .unwrap();
    let server = serve(layer).await;
    // The owner answers 500 (never recorded) after 1 s.
    let request = Arc::new(
        post("/status/500")
            .tenant("acme")
            .key("k")
            .header("x-delay-ms", "1000"),
    );
    let owner = {
        let (request, addr) = (request.clone(), server.addr);
        tokio::spawn(async move { request.send(addr).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = request.send(server.addr).await;
    waiter.assert_problem(409, "idempotency-request-not-recorded");
    assert_eq!(
        owner.await.unwrap().status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        server.runs(),
        1,
        "the waiter did not run the handler in turn"
    );
    // Sent again, it runs.
    assert_eq!(
        request.send(server.addr).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(server.runs(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_handler_then_retry_gets_the_recorded_response() {
    let server = serve(scoped("disconnect").store(memory()).build().unwrap()).await;
    let request = post("/payments")
        .tenant("acme")
        .key("k")
        .header("x-delay-ms", "1000")
        .body("pay");
    request
        .send_and_disconnect(server.addr, Duration::from_millis(100))
        .await;
    // The handler is still running in its own task: the key is held, not lost.
    let during = request.send(server.addr).await;
    during.assert_problem(409, "idempotency-request-in-progress");
    let retry = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = request.send(server.addr).await;
        if reply.status != StatusCode::CONFLICT {
            break reply;
        }
    };
    assert_eq!(retry.status, StatusCode::CREATED);
    assert!(
        retry.replayed(),
        "the response recorded after the disconnect is replayed"
    );
    assert_eq!(retry.json()["run"], 1);
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_handlers_keep_their_lease() {
    let layer = scoped("lease")
        .store(memory())
        .lease(Duration::from_millis(900))
        .build()
        .unwrap();
    let server = serve(layer).await;
    let request = post("/payments")
        .tenant("acme")
        .key("k")
        .header("x-delay-ms", "2500")
        .body("pay");
    let owner = {
        let (request, addr) = (
            post("/payments")
                .tenant("acme")
                .key("k")
                .header("x-delay-ms", "2500")
                .body("pay"),
            server.addr,
        );
        tokio::spawn(async move { request.send(addr).await })
    };
    // Well past the 900 ms lease: without renewal a duplicate would take the key over.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        request
            .send(server.addr)
            .await
            .assert_problem(409, "idempotency-request-in-progress");
    }
    let first = owner.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED);
    let again = request.send(server.addr).await;
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    assert_eq!(server.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrecorded_responses_release_the_key() {
    let server = serve(scoped("release").store(memory()).build().unwrap()).await;
    let failing = post("/status/503").tenant("acme").key("k");
    assert_eq!(
        failing.send(server.addr).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        failing.send(server.addr).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        server.runs(),
        2,
        "released at once, not held until the lease lapses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_releases_the_key() {
    let server = serve(scoped("panic").store(memory()).build().unwrap()).await;
    for run in 1..=2 {
        // hyper drops the connection of a panicking handler; the client sees an error.
        let addr = server.addr;
        let attempt =
            tokio::spawn(async move { post("/panic").tenant("acme").key("k").send(addr).await });
        assert!(attempt.await.is_err());
        assert_eq!(server.runs(), run, "the key was released");
    }
}

/// A request waiting for one whose server crashed (its claim never renewed, recorded or
/// released) takes the key over when that claim's lease lapses and runs the handler, as the
/// engine's waiters do (it answered 409, and only the client's retry ran the handler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_duplicate_takes_a_crashed_servers_key_over() {
    use idem_runtime::store::{Claim, Record};
    use idem_runtime::{KeyHasher, Token};
    let store = Arc::new(MemoryStore::new());
    let layer = scoped("wait-crash")
        .store(store.clone())
        .on_conflict(OnConflict::Wait)
        .build()
        .unwrap();
    let server = serve(layer).await;
    let request = post("/payments").tenant("acme").key("k").body("x");
    // The layer's key (documented in `idem_runtime::http`), and the request's fingerprint
    // from a first, recorded run.
    let mut hasher = KeyHasher::for_key("http:wait-crash", 0);
    hasher.scoped();
    hasher.write_str("acme");
    hasher.write_str("k");
    let key = hasher.finish_key().unwrap();
    assert_eq!(request.send(server.addr).await.status, StatusCode::CREATED);
    let Some(Record::Completed { fingerprint, .. }) = store.get(&key).await.unwrap() else {
        panic!("recorded under the documented key");
    };
    // A crashed server's claim of the same request: nobody renews or releases it.
    assert!(store.remove(&key).await.unwrap());
    let crashed = store
        .claim(
            &key,
            &fingerprint,
            Token::generate(),
            Duration::from_millis(400),
        )
        .await
        .unwrap();
    assert_eq!(crashed, Claim::Acquired);
    let started = tokio::time::Instant::now();
    let waiter = request.send(server.addr).await;
    assert_eq!(waiter.status, StatusCode::CREATED, "{}", waiter.text());
    assert!(!waiter.replayed(), "the handler ran for it");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "after the lapse"
    );
    assert_eq!(server.runs(), 2);
    assert!(request.send(server.addr).await.replayed());
}
