//! The `Idempotency-Key` layer over a real socket: keys, statuses, replay, scope, limits.

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing;
use http_support::{Req, post, raw, scoped, serve, serve_router};
use idem_runtime::http::{IdempotencyLayerBuilder, ScopeChosen};
use idem_runtime::store::{Claim, Record};
use idem_runtime::{Error, KeyHasher, MemoryStore, OnConflict, Store, Token};
use idem_tests::down_store::DownStore;

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn first_call_then_byte_identical_replay() {
    let server = serve(scoped("payments").store(memory()).build().unwrap()).await;
    let request = post("/payments")
        .tenant("acme")
        .key("pay-1")
        .body(r#"{"amount_cents":1999}"#);

    let first = request.send(server.addr).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert!(!first.replayed());
    assert_eq!(first.json()["run"], 1);
    // The handler saw its key through `idem_runtime::current()`.
    assert_eq!(first.header("x-idem-key").unwrap().len(), 64);

    let again = request.send(server.addr).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert!(again.replayed());
    assert_eq!(
        again.body, first.body,
        "the replayed body is byte-identical"
    );
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(
        again.header("content-length"),
        first.header("content-length")
    );
    assert_eq!(
        again.header("x-idem-key"),
        None,
        "not in the replay allowlist"
    );
    assert_eq!(server.runs(), 1);

    // The quoted structured-field form names the same key.
    let quoted = post("/payments")
        .tenant("acme")
        .key("\"pay-1\"")
        .body(r#"{"amount_cents":1999}"#);
    let third = quoted.send(server.addr).await;
    assert!(third.replayed());
    assert_eq!(third.body, first.body);
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn set_cookie_is_never_replayed() {
    let server = serve(scoped("cookies").store(memory()).build().unwrap()).await;
    let request = post("/payments").tenant("acme").key("cookie-1").body("x");
    let first = request.send(server.addr).await;
    assert_eq!(
        first.header("set-cookie"),
        Some("session=first-caller-secret")
    );
    assert_eq!(first.header("x-not-replayed"), Some("1"));
    let again = request.send(server.addr).await;
    assert!(again.replayed());
    assert_eq!(again.header("set-cookie"), None);
    assert_eq!(again.header("x-not-replayed"), None);
}

/// The message of the `Error::Config` with which `build()` refuses `builder`'s settings.
fn refusal(builder: IdempotencyLayerBuilder<ScopeChosen>) -> Option<String> {
    match builder.build() {
        Ok(_) => None,
        Err(Error::Config(message)) => Some(message),
        Err(other) => panic!("expected Error::Config, got {other:?}"),
    }
}

#[test]
fn set_cookie_cannot_be_allowlisted() {
    let message = refusal(scoped("x").replay_header(axum::http::header::SET_COOKIE))
        .expect("set-cookie was accepted");
    assert!(
        message.contains("`set-cookie` response header is never recorded or replayed")
            && message.contains("cookie to another"),
        "{message}"
    );
}

/// The contract records 2xx and an allowlist of 4xx: `record_status` refuses every other class
/// (3xx and the non-standard 6xx–9xx were accepted, and a 302 was recorded and replayed).
/// Refused settings are reported by `build()` as `Error::Config`, never by a panic.
#[test]
fn only_4xx_can_be_allowlisted() {
    for code in [
        100, 103, 300, 301, 302, 303, 304, 307, 308, 408, 409, 425, 429, 500, 503, 599, 600, 799,
        999,
    ] {
        let status = StatusCode::from_u16(code).unwrap();
        let message = refusal(scoped("x").record_status(status))
            .unwrap_or_else(|| panic!("record_status({code}) was accepted"));
        assert!(
            message.contains(&format!("status {status} is never recorded")),
            "{code}: {message}"
        );
    }
    for code in [200, 201, 400, 401, 403, 404, 410, 418, 422, 451, 499] {
        let status = StatusCode::from_u16(code).unwrap();
        assert_eq!(
            refusal(scoped("x").record_status(status)),
            None,
            "record_status({code}) must be accepted"
        );
    }
}

/// Hop-by-hop headers describe one connection, not the response: `replay_header` refuses them
/// all (it accepted `keep-alive`, `proxy-connection`, `te`, `proxy-authenticate` and
/// `proxy-authorization`).
#[test]
fn hop_by_hop_headers_cannot_be_allowlisted() {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "content-length",
    ] {
        let header = HeaderName::from_static(name);
        let message = refusal(scoped("x").replay_header(header.clone()))
            .unwrap_or_else(|| panic!("replay_header({name}) was accepted"));
        assert!(
            message.contains(&format!(
                "`{name}` response header is never recorded or replayed"
            )),
            "{name}: {message}"
        );
        // The bulk setter goes through the same check.
        assert!(
            refusal(scoped("x").replay_headers([header.clone()])).is_some(),
            "replay_headers([{name}]) was accepted"
        );
    }
}

/// Every refused setting is reported at once, in one error naming the layer.
#[test]
fn build_reports_every_refused_setting_together() {
    let message = refusal(
        scoped("several")
            .record_status(StatusCode::FOUND)
            .replay_header(axum::http::header::SET_COOKIE)
            .lease(Duration::ZERO),
    )
    .expect("three refused settings were accepted");
    assert!(
        message.starts_with("idempotency layer `several`: "),
        "{message}"
    );
    for part in [
        "status 302 Found is never recorded",
        "`set-cookie` response header",
        "a lease of 0ns is under 3 ms",
    ] {
        assert!(message.contains(part), "missing {part:?} in: {message}");
    }
}

/// A lease under 3 ms would lapse before its first renewal and let duplicates run side by
/// side; a ttl shorter
/// than the lease would expire records before their claims. Both were accepted (the ttl was
/// silently raised to the lease).
#[test]
fn build_refuses_a_lease_too_short_to_renew_and_a_ttl_under_the_lease() {
    for lease in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_millis(2),
    ] {
        let message = refusal(scoped("x").lease(lease))
            .unwrap_or_else(|| panic!("a lease of {lease:?} was accepted"));
        assert!(message.contains("under 3 ms"), "{message}");
    }
    let message = refusal(
        scoped("x")
            .lease(Duration::from_secs(60))
            .ttl(Duration::from_secs(30)),
    )
    .expect("a ttl under the lease was accepted");
    assert!(
        message.contains("a ttl of 30s is shorter than the lease of 60s"),
        "{message}"
    );
    // The bounds themselves are fine.
    assert_eq!(refusal(scoped("x").lease(Duration::from_millis(3))), None);
    assert_eq!(
        refusal(
            scoped("x")
                .lease(Duration::from_secs(60))
                .ttl(Duration::from_secs(60))
        ),
        None
    );
}

#[tokio::test]
async fn same_key_different_request_is_422() {
    let server = serve(scoped("mismatch").store(memory()).build().unwrap()).await;
    let first = post("/payments?currency=eur")
        .tenant("acme")
        .key("k")
        .body("a")
        .send(server.addr)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    for other in [
        post("/payments?currency=eur")
            .tenant("acme")
            .key("k")
            .body("b"),
        post("/payments?currency=usd")
            .tenant("acme")
            .key("k")
            .body("a"),
        post("/payments").tenant("acme").key("k").body("a"),
        post("/status/201?currency=eur")
            .tenant("acme")
            .key("k")
            .body("a"),
        Req::new("PATCH", "/payments?currency=eur")
            .tenant("acme")
            .key("k")
            .body("a"),
    ] {
        other
            .send(server.addr)
            .await
            .assert_problem(422, "idempotency-key-reused");
    }
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn fingerprinted_headers() {
    let layer = scoped("fp-headers")
        .store(memory())
        .fingerprint_header("x-api-version".parse().unwrap())
        .build()
        .unwrap();
    let server = serve(layer).await;
    let v1 = post("/payments")
        .tenant("t")
        .key("k")
        .header("x-api-version", "1")
        .body("a");
    assert_eq!(v1.send(server.addr).await.status, StatusCode::CREATED);
    let v2 = post("/payments")
        .tenant("t")
        .key("k")
        .header("x-api-version", "2")
        .body("a");
    v2.send(server.addr)
        .await
        .assert_problem(422, "idempotency-key-reused");
    // A header outside the fingerprint does not matter.
    let other = post("/payments")
        .tenant("t")
        .key("k")
        .header("x-api-version", "1")
        .header("x-trace", "z")
        .body("a");
    assert!(other.send(server.addr).await.replayed());
}

#[tokio::test]
async fn missing_key_required_and_optional() {
    let required = serve(scoped("required").store(memory()).build().unwrap()).await;
    let reply = post("/payments")
        .tenant("acme")
        .body("x")
        .send(required.addr)
        .await;
    let json = reply.assert_problem(400, "idempotency-key-missing");
    assert!(
        json["detail"].as_str().unwrap().contains("POST /payments"),
        "{json}"
    );
    assert_eq!(required.runs(), 0);

    let optional = serve(
        scoped("optional")
            .store(memory())
            .required(false)
            .build()
            .unwrap(),
    )
    .await;
    for run in 1..=2 {
        let reply = post("/payments")
            .tenant("acme")
            .body("x")
            .send(optional.addr)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!reply.replayed());
        assert_eq!(
            reply.header("set-cookie"),
            Some("session=first-caller-secret"),
            "untouched"
        );
        assert_eq!(optional.runs(), run);
    }
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let server = serve(scoped("malformed").store(memory()).build().unwrap()).await;
    let long = "k".repeat(256);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("empty quoted", b"\"\"".to_vec()),
        ("256 characters", long.as_bytes().to_vec()),
        ("256 characters quoted", format!("\"{long}\"").into_bytes()),
        ("non-ASCII", "clé-1".as_bytes().to_vec()),
        ("control character (tab)", b"a\tb".to_vec()),
        ("space in a bare token", b"a b".to_vec()),
        ("unbalanced opening quote", b"\"abc".to_vec()),
        ("unbalanced closing quote", b"abc\"".to_vec()),
        ("escaped closing quote", b"\"abc\\\"".to_vec()),
        ("bad escape", b"\"a\\nb\"".to_vec()),
        ("characters after the string", b"\"a\"b".to_vec()),
        // A comma makes a list: two keys joined into one field line by an intermediary.
        ("comma in a bare token", b"a,b".to_vec()),
        ("comma and space in a bare token", b"a, b".to_vec()),
        ("two quoted keys", b"\"a\", \"b\"".to_vec()),
        (
            "two quoted keys with parameters",
            b"\"a\";p=1,\"b\"".to_vec(),
        ),
        // Malformed RFC 8941 parameters after a quoted key.
        ("parameter without a name", b"\"a\";".to_vec()),
        ("uppercase parameter name", b"\"a\";P=1".to_vec()),
        ("parameter without a value", b"\"a\";p=".to_vec()),
        ("unterminated parameter string", b"\"a\";p=\"x".to_vec()),
        ("invalid parameter value", b"\"a\";p=?2".to_vec()),
        ("space before the parameter", b"\"a\" ;p=1".to_vec()),
        ("characters after a parameter", b"\"a\";p=1x".to_vec()),
    ];
    for (what, key) in cases {
        let reply = post("/payments")
            .tenant("acme")
            .header_bytes("idempotency-key", &key)
            .body("x")
            .send(server.addr)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.text()
        );
        reply.assert_problem(400, "idempotency-key-malformed");
    }
    // Two keys.
    let reply = post("/payments")
        .tenant("acme")
        .key("a")
        .key("b")
        .body("x")
        .send(server.addr)
        .await;
    let json = reply.assert_problem(400, "idempotency-key-malformed");
    assert!(json["detail"].as_str().unwrap().contains("more than one"));
    // 255 characters is fine.
    let ok = post("/payments")
        .tenant("acme")
        .key(&"k".repeat(255))
        .body("x")
        .send(server.addr)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    // A raw control character never reaches the handler (hyper refuses the header itself).
    let reply = raw(
        server.addr,
        b"POST /payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\nIdempotency-Key: a\x01b\r\n\
          Content-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(server.runs(), 1);
}

/// A quoted key may carry RFC 8941 parameters (§3.1.2); they are ignored: `"k";v=1` is the key
/// `k` (it was refused as malformed).
#[tokio::test]
async fn key_parameters_are_ignored() {
    let server = serve(scoped("key-params").store(memory()).build().unwrap()).await;
    let first = post("/payments")
        .tenant("acme")
        .key("pay-1")
        .body("x")
        .send(server.addr)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    for key in [
        "\"pay-1\";p=1",
        "\"pay-1\"; p",
        "\"pay-1\";p=\"x\"",
        "\"pay-1\";v=1;ts=?1;tag=abc;bin=:AQID:;d=1.5",
    ] {
        let again = post("/payments")
            .tenant("acme")
            .key(key)
            .body("x")
            .send(server.addr)
            .await;
        assert_eq!(again.status, StatusCode::CREATED, "{key}: {}", again.text());
        assert!(again.replayed(), "{key} names the key pay-1");
        assert_eq!(again.body, first.body);
    }
    // A comma inside quotes is part of the key.
    let quoted = post("/payments")
        .tenant("acme")
        .key("\"a,b\"")
        .body("x")
        .send(server.addr)
        .await;
    assert_eq!(quoted.status, StatusCode::CREATED, "{}", quoted.text());
    assert!(!quoted.replayed());
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn two_tenants_one_key_two_executions() {
    let server = serve(scoped("tenants").store(memory()).build().unwrap()).await;
    let a = post("/payments")
        .tenant("tenant-a")
        .key("shared-key")
        .body("same");
    let b = post("/payments")
        .tenant("tenant-b")
        .key("shared-key")
        .body("same");
    let a1 = a.send(server.addr).await;
    let b1 = b.send(server.addr).await;
    assert_eq!(
        (a1.status, b1.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert!(!b1.replayed());
    assert_ne!(
        a1.body, b1.body,
        "tenant b must not see tenant a's response"
    );
    assert_eq!(server.runs(), 2);
    assert_eq!(a.send(server.addr).await.body, a1.body);
    assert_eq!(b.send(server.addr).await.body, b1.body);
    assert_eq!(server.runs(), 2);
}

#[tokio::test]
async fn no_principal_is_401() {
    let server = serve(scoped("no-principal").store(memory()).build().unwrap()).await;
    post("/payments")
        .key("k")
        .body("x")
        .send(server.addr)
        .await
        .assert_problem(401, "idempotency-scope-missing");
    assert_eq!(server.runs(), 0);

    // With the application's challenge, the 401 carries it (RFC 9110 requires one).
    let challenge = http::HeaderValue::from_static("Bearer realm=\"payments\"");
    let server = serve(
        scoped("no-principal-challenge")
            .store(memory())
            .challenge(challenge)
            .build()
            .unwrap(),
    )
    .await;
    let reply = post("/payments").key("k").body("x").send(server.addr).await;
    reply.assert_problem(401, "idempotency-scope-missing");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"payments\"")
    );
}

#[tokio::test]
async fn unscoped_layer_shares_keys_across_principals() {
    let server = serve(
        http_support::builder("unscoped")
            .unscoped()
            .store(memory())
            .build()
            .unwrap(),
    )
    .await;
    let first = post("/payments").key("k").body("x").send(server.addr).await;
    let other = post("/payments")
        .tenant("someone")
        .key("k")
        .body("x")
        .send(server.addr)
        .await;
    assert!(other.replayed());
    assert_eq!(other.body, first.body);
}

#[tokio::test]
async fn get_and_other_methods_pass_through() {
    let server = serve(scoped("methods").store(memory()).build().unwrap()).await;
    for run in 1..=2 {
        let reply = Req::new("GET", "/payments")
            .tenant("acme")
            .key("k")
            .send(server.addr)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert!(!reply.replayed());
        assert_eq!(server.runs(), run);
    }
    // Malformed or missing keys do not matter on GET either.
    let reply = Req::new("GET", "/payments")
        .key("\"bad")
        .send(server.addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    // PATCH is handled by default.
    let patch = Req::new("PATCH", "/payments")
        .tenant("acme")
        .key("p")
        .body("x");
    patch.send(server.addr).await;
    assert!(patch.send(server.addr).await.replayed());
    assert_eq!(server.runs(), 4);

    // Configurable: only PUT.
    let put_only = serve(
        scoped("put")
            .store(memory())
            .methods([axum::http::Method::PUT])
            .build()
            .unwrap(),
    )
    .await;
    let reply = post("/payments").body("x").send(put_only.addr).await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "POST is not handled any more"
    );
}

#[tokio::test]
async fn oversized_request_body_is_413_and_not_recorded() {
    let server = serve(
        scoped("limits")
            .store(memory())
            .max_request_body(1024)
            .build()
            .unwrap(),
    )
    .await;
    let big = vec![b'a'; 1025];
    let reply = post("/payments")
        .tenant("acme")
        .key("k")
        .body(big)
        .send(server.addr)
        .await;
    let json = reply.assert_problem(413, "idempotency-request-too-large");
    assert!(json["detail"].as_str().unwrap().contains("1024"));
    // Without Content-Length (chunked), the layer stops reading at the limit.
    let chunk = "a".repeat(1500);
    let request = format!(
        "POST /payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\nIdempotency-Key: k\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let reply = raw(server.addr, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("application/problem+json"));
    assert_eq!(server.runs(), 0);
    // Nothing was recorded: the same key with an acceptable body runs.
    let reply = post("/payments")
        .tenant("acme")
        .key("k")
        .body(vec![b'a'; 1024])
        .send(server.addr)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(server.runs(), 1);
    // A chunked body within the limit is buffered, fingerprinted and replayed.
    let request = "POST /payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\nIdempotency-Key: c\r\n\
                   Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    let first = raw(server.addr, request.as_bytes()).await;
    assert!(
        first.starts_with("HTTP/1.1 201") && first.contains(r#""received":"abcdef""#),
        "{first}"
    );
    let again = post("/payments")
        .tenant("acme")
        .key("c")
        .body("abcdef")
        .send(server.addr)
        .await;
    assert!(again.replayed());
}

#[tokio::test]
async fn oversized_response_is_passed_through_and_released() {
    let server = serve(
        scoped("big")
            .store(memory())
            .max_response_body(1000)
            .build()
            .unwrap(),
    )
    .await;
    let request = post("/big/5000").tenant("acme").key("k");
    for run in 1..=2 {
        let reply = request.send(server.addr).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 5000);
        assert!(reply.body.iter().all(|&b| b == b'x'));
        assert!(!reply.replayed());
        assert_eq!(server.runs(), run, "not recorded: the key was released");
    }
    // At the limit it is recorded.
    let exact = post("/big/1000").tenant("acme").key("e");
    exact.send(server.addr).await;
    let again = exact.send(server.addr).await;
    assert!(again.replayed());
    assert_eq!(again.body.len(), 1000);
}

#[tokio::test]
async fn which_statuses_are_recorded() {
    let layer = scoped("statuses")
        .store(memory())
        .record_status(StatusCode::NOT_FOUND)
        .record_status(StatusCode::UNPROCESSABLE_ENTITY)
        .build()
        .unwrap();
    let server = serve(layer).await;
    let mut expected_runs = 0;
    for (code, recorded) in [
        (200, true),
        (201, true),
        (204, true),
        (202, true),
        (404, true),
        (422, true),
        (400, false),
        (403, false),
        (408, false),
        (409, false),
        (425, false),
        (429, false),
        (500, false),
        (502, false),
        (503, false),
        (302, false),
    ] {
        let request = post(&format!("/status/{code}"))
            .tenant("acme")
            .key(&format!("status-{code}"));
        let first = request.send(server.addr).await;
        expected_runs += 1;
        assert_eq!(first.status.as_u16(), code);
        let second = request.send(server.addr).await;
        assert_eq!(second.status.as_u16(), code);
        if recorded {
            assert!(second.replayed(), "{code} should be replayed");
            assert_eq!(second.body, first.body);
        } else {
            expected_runs += 1;
            assert!(!second.replayed(), "{code} must not be recorded");
            assert_ne!(second.body, first.body, "{code}: ran again");
        }
        assert_eq!(server.runs(), expected_runs, "after {code}");
    }
}

/// A store that is down: `503` with `Retry-After`; one that refuses this server for good
/// (credentials, a missing table): `500` without it. The handler never runs, and the store's
/// own message stays in the log.
#[tokio::test]
async fn store_failure_is_503_with_retry_after_and_a_refusal_500_without() {
    for (refused, status, slug, retry_after, internals) in [
        (
            false,
            503,
            "idempotency-store-unavailable",
            Some("1"),
            "connection refused",
        ),
        (true, 500, "idempotency-store-refused", None, "WRONGPASS"),
    ] {
        let store = Arc::new(if refused {
            DownStore::refusing()
        } else {
            DownStore::unreachable()
        });
        let server = serve(scoped("down").store(store).build().unwrap()).await;
        let reply = post("/payments")
            .tenant("acme")
            .key("k")
            .body("x")
            .send(server.addr)
            .await;
        let json = reply.assert_problem(status, slug);
        assert_eq!(reply.header("retry-after"), retry_after, "{slug}");
        let detail = json["detail"].as_str().unwrap();
        assert!(
            !detail.contains(internals),
            "internals stay in the log: {detail}"
        );
        assert_eq!(server.runs(), 0);
    }
}

#[tokio::test]
async fn documented_key_derivation_and_unreadable_record() {
    let store = Arc::new(MemoryStore::new());
    let server = serve(scoped("derive").store(store.clone()).build().unwrap()).await;
    // The key the module docs specify: for_key("http:<name>", version), scope, header key.
    let mut hasher = KeyHasher::for_key("http:derive", 0);
    hasher.scoped();
    hasher.write_str("acme");
    hasher.write_str("corrupt");
    let key = hasher.finish_key().unwrap();
    let first = post("/payments")
        .tenant("acme")
        .key("corrupt")
        .body("x")
        .send(server.addr)
        .await;
    assert_eq!(first.header("x-idem-key"), Some(key.to_string().as_str()));
    // Overwrite the record, same fingerprint, with bytes this version cannot read.
    let Some(Record::Completed { fingerprint, .. }) = store.get(&key).await.unwrap() else {
        panic!("the response was not recorded under the documented key");
    };
    assert!(store.remove(&key).await.unwrap());
    let token = Token::generate();
    assert_eq!(
        store
            .claim(&key, &fingerprint, token, Duration::from_secs(5))
            .await
            .unwrap(),
        Claim::Acquired
    );
    let garbage = bytes::Bytes::from_static(b"idm\x01\x01\x00[]");
    assert!(
        store
            .complete(&key, token, garbage, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let reply = post("/payments")
        .tenant("acme")
        .key("corrupt")
        .body("x")
        .send(server.addr)
        .await;
    reply.assert_problem(500, "idempotency-record-unreadable");
    assert_eq!(server.runs(), 1);
}

#[tokio::test]
async fn layer_uses_the_process_wide_store_by_default() {
    let server = serve(scoped("default-store").build().unwrap()).await;
    let request = post("/payments").tenant("acme").key("k").body("x");
    request.send(server.addr).await;
    assert!(request.send(server.addr).await.replayed());
    assert_eq!(idem_runtime::store_name().unwrap(), "memory");
}

/// `authorization: Bearer <principal>` → `Principal` (the support module's middleware is
/// private to `serve`).
async fn authenticate(mut request: Request, next: Next) -> Response {
    let principal = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|p| http_support::Principal(p.to_owned()));
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

/// Inside axum's `Router::nest`, the layer sees the URI without the nest's prefix. With feature
/// `axum` (on for these tests) it fingerprints `OriginalUri`: one key and body sent to two
/// accounts are two requests (422), not a replay of account A's payment to account B.
#[tokio::test]
async fn nested_router_prefix_is_in_the_fingerprint() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let runs = runs.clone();
        move |request: Request| {
            let runs = runs.clone();
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    StatusCode::CREATED,
                    format!(
                        "run {run}, path seen by the handler: {}",
                        request.uri().path()
                    ),
                )
            }
        }
    };
    let accounts = Router::new()
        .route("/payments", routing::post(handler))
        .layer(scoped("nested").store(memory()).build().unwrap());
    let router = Router::new()
        .nest("/accounts/{id}", accounts)
        .layer(middleware::from_fn(authenticate));
    let server = serve_router(router, runs).await;

    let a = post("/accounts/A/payments?x=1")
        .tenant("acme")
        .key("k")
        .body("amount=5");
    let first = a.send(server.addr).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert_eq!(first.text(), "run 1, path seen by the handler: /payments");

    let b = post("/accounts/B/payments?x=1")
        .tenant("acme")
        .key("k")
        .body("amount=5")
        .send(server.addr)
        .await;
    b.assert_problem(422, "idempotency-key-reused");
    // The query of the original URI counts too.
    post("/accounts/A/payments?x=2")
        .tenant("acme")
        .key("k")
        .body("amount=5")
        .send(server.addr)
        .await
        .assert_problem(422, "idempotency-key-reused");
    assert_eq!(server.runs(), 1, "the handler never ran for account B");

    // The same account, key and body is still a replay.
    let again = a.send(server.addr).await;
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    // The missing-key problem names the path the client sent.
    let missing = post("/accounts/A/payments")
        .tenant("acme")
        .body("amount=5")
        .send(server.addr)
        .await;
    let json = missing.assert_problem(400, "idempotency-key-missing");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("POST /accounts/A/payments"),
        "{json}"
    );
    assert_eq!(server.runs(), 1);
}

/// An outer request-body limit, as `tower_http::limit::RequestBodyLimitLayer` applies to a body
/// it cannot refuse up front: the body is wrapped in `http_body_util::Limited`.
async fn outer_limit(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, 10));
    next.run(Request::from_parts(parts, body)).await
}

/// A body cut off by an outer limit (a `LengthLimitError` in the body error's source chain) is
/// `413 idempotency-request-too-large`, not `400 idempotency-request-unreadable`.
#[tokio::test]
async fn outer_body_limit_is_413() {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = http_support::app(runs.clone())
        .layer(scoped("outer-limit").store(memory()).build().unwrap())
        .layer(middleware::from_fn(outer_limit))
        .layer(middleware::from_fn(authenticate));
    let server = serve_router(router, runs).await;
    let reply = post("/payments")
        .tenant("acme")
        .key("k")
        .body(vec![b'a'; 20])
        .send(server.addr)
        .await;
    let json = reply.assert_problem(413, "idempotency-request-too-large");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was recorded"),
        "{json}"
    );
    // Chunked (no Content-Length): same.
    let request = "POST /payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\nIdempotency-Key: c\r\n\
                   Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n14\r\naaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n";
    let reply = raw(server.addr, request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("idempotency-request-too-large"), "{reply}");
    assert_eq!(server.runs(), 0);
    // Nothing was recorded: the same key with a body under the limit runs.
    let small = post("/payments")
        .tenant("acme")
        .key("k")
        .body("small")
        .send(server.addr)
        .await;
    assert_eq!(small.status, StatusCode::CREATED, "{}", small.text());
    assert!(!small.replayed());
    assert_eq!(server.runs(), 1);
}

/// `wait_timeout(Duration::MAX)` means "wait as long as it takes": the duplicate waits and gets
/// the replay (computing its deadline panicked, and the connection was dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_wait_timeout_waits_for_the_owner() {
    let layer = scoped("wait-max")
        .store(memory())
        .on_conflict(OnConflict::Wait)
        .wait_timeout(Duration::MAX)
        .build()
        .unwrap();
    let server = serve(layer).await;
    let addr = server.addr;
    let request = || {
        post("/payments")
            .tenant("acme")
            .key("k")
            .header("x-delay-ms", "500")
            .body("x")
    };
    let owner = tokio::spawn(async move { request().send(addr).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let duplicate = tokio::spawn(async move { request().send(addr).await });
    let owner = owner.await.unwrap();
    let duplicate = duplicate
        .await
        .expect("the waiting duplicate's connection was dropped (server-side panic)");
    assert_eq!(owner.status, StatusCode::CREATED, "{}", owner.text());
    assert!(!owner.replayed());
    assert_eq!(
        duplicate.status,
        StatusCode::CREATED,
        "{}",
        duplicate.text()
    );
    assert!(
        duplicate.replayed(),
        "the duplicate waited and got the replay"
    );
    assert_eq!(duplicate.body, owner.body);
    assert_eq!(server.runs(), 1);
}

/// A response body that fails part way (a streamed export whose database went away) is not
/// recorded, and reaches the client as a failure: chunked and cut off before its last chunk,
/// never framed as a complete message by a `Content-Length` of what came before the error.
#[tokio::test]
async fn a_response_body_that_fails_is_not_framed_as_complete() {
    async fn export(request: Request) -> Response {
        let first = match request.uri().path() {
            "/partial" => vec![Ok(bytes::Bytes::from_static(b"id,amount\n1,"))],
            _ => Vec::new(),
        };
        let failure = Err(std::io::Error::other("database gone"));
        let stream = futures::stream::iter(first.into_iter().chain([failure]));
        Response::new(axum::body::Body::from_stream(stream))
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/partial", routing::post(export))
        .route("/empty", routing::post(export))
        .layer(scoped("failing-body").store(memory()).build().unwrap())
        .layer(middleware::from_fn(authenticate));
    let server = serve_router(router, runs).await;
    for path in ["/partial", "/empty"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\n\
             Idempotency-Key: export\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        // The server cuts the connection: the client sees nothing, or a chunked message
        // without its last chunk, as it would without the layer.
        let reply = raw(server.addr, request.as_bytes()).await;
        let lower = reply.to_ascii_lowercase();
        assert!(
            !lower.contains("content-length"),
            "{path}: framed as complete: {reply}"
        );
        assert!(
            !reply.ends_with("0\r\n\r\n"),
            "{path}: the last chunk was sent: {reply}"
        );
        if !reply.is_empty() {
            assert!(
                lower.contains("transfer-encoding: chunked"),
                "{path}: {reply}"
            );
        }
    }
}

/// With the default limits, every response the layer may record fits the default store: a
/// binary body just under `DEFAULT_MAX_RESPONSE_BODY` (base64 in the record) and text made of
/// characters that JSON escapes are replayed, not run again.
#[tokio::test]
async fn responses_up_to_the_default_limit_fit_the_default_store() {
    use idem_runtime::http::DEFAULT_MAX_RESPONSE_BODY;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let respond = move |request: Request| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let body: Vec<u8> = match request.uri().path() {
                // Not UTF-8.
                "/binary" => (0..DEFAULT_MAX_RESPONSE_BODY)
                    .map(|i| (i % 256) as u8 | 0x80)
                    .collect(),
                _ => "\"\n\u{1}"
                    .repeat(DEFAULT_MAX_RESPONSE_BODY / 3)
                    .into_bytes(),
            };
            (StatusCode::CREATED, body)
        }
    };
    let router = Router::new()
        .route("/binary", routing::post(respond.clone()))
        .route("/escaped", routing::post(respond))
        .layer(scoped("default-limits").store(memory()).build().unwrap())
        .layer(middleware::from_fn(authenticate));
    let server = serve_router(router, runs.clone()).await;
    for path in ["/binary", "/escaped"] {
        let request = post(path).tenant("acme").key(path).body("x");
        let first = request.send(server.addr).await;
        let again = request.send(server.addr).await;
        assert_eq!(first.status, StatusCode::CREATED, "{path}");
        assert!(again.replayed(), "{path}: not recorded");
        assert_eq!(again.body, first.body, "{path}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// The layer as the docs put it, with `route_layer`: an unknown path or method is the router's
/// 404 / 405, not the layer's 400 for a missing key (which a matched route still gets), and
/// authentication, added after with `.layer`, still runs first.
#[tokio::test]
async fn route_layer_leaves_unmatched_requests_to_the_router() {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = http_support::app(runs.clone())
        .route_layer(scoped("routed").store(memory()).build().unwrap())
        .layer(middleware::from_fn(authenticate));
    let server = serve_router(router, runs).await;
    let nope = post("/nope")
        .tenant("acme")
        .body("{}")
        .send(server.addr)
        .await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND, "{}", nope.text());
    let put = Req::new("PUT", "/payments")
        .tenant("acme")
        .body("{}")
        .send(server.addr)
        .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED, "{}", put.text());
    post("/payments")
        .tenant("acme")
        .body("{}")
        .send(server.addr)
        .await
        .assert_problem(400, "idempotency-key-missing");
    let request = post("/payments").tenant("acme").key("routed-1").body("{}");
    assert_eq!(request.send(server.addr).await.status, StatusCode::CREATED);
    assert!(request.send(server.addr).await.replayed());
}

/// The layer (unscoped, lease 300 ms) around the test app, as a `tower::Service` called
/// directly, over a store that answers claims and renewals `answer_in` after applying them; and
/// the app's run counter.
fn layered_over_a_late_store(
    name: &str,
    answer_in: Duration,
) -> (
    idem_runtime::http::IdempotencyService<Router>,
    Arc<AtomicUsize>,
) {
    use tower::Layer;
    let store: Arc<dyn Store> =
        Arc::new(idem_tests::slow_store::SlowStore::answering_in(answer_in));
    let layer = http_support::builder(name)
        .unscoped()
        .store(store)
        .lease(Duration::from_millis(300))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    (layer.layer(http_support::app(runs.clone())), runs)
}

fn payment(key: &str) -> Request {
    axum::http::Request::post("/payments")
        .header("idempotency-key", key)
        .body(axum::body::Body::from("charge"))
        .unwrap()
}

async fn ready<S: tower::Service<Request>>(service: &mut S) {
    if std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .is_err()
    {
        panic!("the service is not ready");
    }
}

/// A claim whose answer the layer reads after its lease lapsed (the request's future polled once,
/// then not for a while) is confirmed before the handler runs: a duplicate that claimed the
/// lapsed key meanwhile ran the handler, and the first request replays its response instead of
/// running the handler a second time.
#[tokio::test(start_paused = true)]
async fn a_claim_answered_after_its_lease_is_confirmed_before_the_handler_runs() {
    use tower::Service;
    let (mut service, runs) = layered_over_a_late_store("late-answer", Duration::from_millis(1));
    ready(&mut service).await;
    let mut first = Box::pin(service.call(payment("late-1")));
    assert!(futures::poll!(first.as_mut()).is_pending(), "claim applied");
    tokio::time::sleep(Duration::from_secs(1)).await;
    ready(&mut service).await;
    let second = service.call(payment("late-1")).await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(
        first
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
}

/// A store whose every answer takes more than a third of the lease: the claim's confirmation
/// holds, and the handler runs once (the request hung, confirming forever).
#[tokio::test(start_paused = true)]
async fn a_steadily_slow_store_answers_the_request() {
    use tower::Service;
    let (mut service, runs) = layered_over_a_late_store("steady-slow", Duration::from_millis(120));
    ready(&mut service).await;
    let response = tokio::time::timeout(Duration::from_secs(60), service.call(payment("steady-1")));
    let response = response.await.expect("answered").unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
