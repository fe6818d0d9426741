//! Shared by the `http_*` tests: an axum app behind the idempotency layer, served on
//! 127.0.0.1:0, and a real HTTP/1.1 client (hyper) plus a raw-socket client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use idem_runtime::http::{IdempotencyLayer, IdempotencyLayerBuilder, ScopeMissing};
use tokio::net::{TcpListener, TcpStream};

/// The authenticated principal, inserted by the test's "authentication" middleware.
#[derive(Clone)]
pub struct Principal(pub String);

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub runs: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// A layer builder scoped to the `Principal` extension.
pub fn scoped(name: &str) -> IdempotencyLayerBuilder<idem_runtime::http::ScopeChosen> {
    builder(name).scope(|parts| parts.extensions.get::<Principal>().map(|p| p.0.clone()))
}

pub fn builder(name: &str) -> IdempotencyLayerBuilder<ScopeMissing> {
    IdempotencyLayer::builder(name)
}

/// "Authentication": `authorization: Bearer <principal>` becomes a `Principal` extension;
/// requests without it go on unauthenticated (so the layer's own 401 can be observed).
async fn authenticate(mut request: Request, next: Next) -> Response {
    let principal = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|p| Principal(p.to_owned()));
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

async fn delay(headers: &HeaderMap) {
    if let Some(ms) = headers
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The handlers:
/// - `POST|PATCH|GET /payments`: counts a run, waits `x-delay-ms` (if given), answers 201 with a
///   JSON body naming the run, a `set-cookie`, an `x-not-replayed` header and `x-idem-key` (the
///   key `idem_runtime::current()` reports);
/// - `POST /status/{code}`: counts a run, waits `x-delay-ms`, answers `code`;
/// - `POST /big/{len}`: counts a run and answers `len` bytes;
/// - `POST /panic`: counts a run and panics.
pub fn app(runs: Arc<AtomicUsize>) -> Router {
    let payments = {
        let runs = runs.clone();
        move |headers: HeaderMap, body: Bytes| {
            let runs = runs.clone();
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                delay(&headers).await;
                let key = idem_runtime::current()
                    .map(|c| c.key().to_string())
                    .unwrap_or_default();
                let json = format!(
                    r#"{{"run":{run},"received":{},"bytes":{}}}"#,
                    serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()),
                    body.len()
                );
                (
                    StatusCode::CREATED,
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        ),
                        (
                            header::SET_COOKIE,
                            HeaderValue::from_static("session=first-caller-secret"),
                        ),
                        (
                            header::HeaderName::from_static("x-not-replayed"),
                            HeaderValue::from_static("1"),
                        ),
                        (
                            header::HeaderName::from_static("x-idem-key"),
                            HeaderValue::from_str(&key).unwrap(),
                        ),
                    ],
                    json,
                )
            }
        }
    };
    let status = {
        let runs = runs.clone();
        move |Path(code): Path<u16>, headers: HeaderMap| {
            let runs = runs.clone();
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                delay(&headers).await;
                (
                    StatusCode::from_u16(code).unwrap(),
                    format!("status {code}, run {run}"),
                )
            }
        }
    };
    let big = {
        let runs = runs.clone();
        move |Path(len): Path<usize>| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, vec![b'x'; len]).into_response()
            }
        }
    };
    let panics = {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if runs.load(Ordering::SeqCst) < 1_000_000 {
                    panic!("handler panicked on purpose");
                }
                StatusCode::OK
            }
        }
    };
    Router::new()
        .route(
            "/payments",
            routing::post(payments.clone())
                .patch(payments.clone())
                .get(payments),
        )
        .route("/status/{code}", routing::post(status))
        .route("/big/{len}", routing::post(big))
        .route("/panic", routing::post(panics))
}

/// Serves `app(runs)` behind `layer` and the authentication middleware on 127.0.0.1:0.
pub async fn serve(layer: IdempotencyLayer) -> Server {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = app(runs.clone())
        .layer(layer)
        .layer(middleware::from_fn(authenticate));
    serve_router(router, runs).await
}

pub async fn serve_router(router: Router, runs: Arc<AtomicUsize>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { addr, runs, task }
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// Checks a problem response: status, content type and the members of RFC 9457.
    pub fn assert_problem(&self, status: u16, slug: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let json = self.json();
        assert!(
            json["type"]
                .as_str()
                .unwrap()
                .ends_with(&format!("#{slug}")),
            "{json}"
        );
        assert_eq!(json["status"], status);
        assert!(!json["title"].as_str().unwrap().is_empty());
        assert!(json["detail"].as_str().unwrap().len() > 10, "{json}");
        assert!(!self.replayed());
        json
    }
}

/// A request under construction.
pub struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

pub fn post(path: &str) -> Req {
    Req::new("POST", path)
}

impl Req {
    pub fn new(method: &'static str, path: &str) -> Self {
        Req {
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn key(self, key: &str) -> Self {
        self.header_bytes("idempotency-key", key.as_bytes())
    }

    pub fn tenant(self, tenant: &str) -> Self {
        self.header("authorization", &format!("Bearer {tenant}"))
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn build(&self, addr: SocketAddr) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(format!("http://{addr}{}", self.path))
            .header(header::HOST, addr.to_string());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), HeaderValue::from_bytes(value).unwrap());
        }
        request
            .body(Full::new(Bytes::from(self.body.clone())))
            .unwrap()
    }

    /// Sends the request on a new connection and reads the whole response.
    pub async fn send(&self, addr: SocketAddr) -> Reply {
        let (mut sender, connection) = connect(addr).await;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(self.build(addr)).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        driver.abort();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Sends the request, then closes the connection after `after` without reading the
    /// response (a client that gives up or crashes mid-request).
    pub async fn send_and_disconnect(&self, addr: SocketAddr, after: Duration) {
        let (mut sender, connection) = connect(addr).await;
        let driver = tokio::spawn(connection);
        let pending = sender.send_request(self.build(addr));
        assert!(
            tokio::time::timeout(after, pending).await.is_err(),
            "the response arrived before the client disconnected"
        );
        driver.abort();
        let _ = driver.await;
    }
}

type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

async fn connect(addr: SocketAddr) -> (hyper::client::conn::http1::SendRequest<Full<Bytes>>, Conn) {
    let stream = TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap()
}

/// Writes `raw` bytes on a new connection and returns everything the server answers until it
/// closes the connection (send `Connection: close`).
pub async fn raw(addr: SocketAddr, raw: &[u8]) -> String {
    let raw = raw.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&raw).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}
