//! The HTTP `Idempotency-Key` layer for tower and axum (feature `http`; with axum's
//! `Router::nest`, also feature `axum`: see [Nested routers](#nested-routers-axum)).
//!
//! [`IdempotencyLayer`] makes `POST` and `PATCH` requests safe to retry, following
//! [draft-ietf-httpapi-idempotency-key-header] and Stripe's API: a client sends a unique
//! `Idempotency-Key` with a request; if it sends the same request again with the same key (its
//! connection dropped, it timed out, it crashed and restarted), it gets the first response back,
//! byte for byte, and the handler does not run again. Records live in the same [`Store`]s as
//! every other idempotent operation: in memory by default, or a shared store for several
//! processes.
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use idem_runtime::http::IdempotencyLayer;
//!
//! #[derive(Clone)]
//! struct Principal(String); // inserted into the request extensions by your auth layer
//!
//! let idempotency = IdempotencyLayer::builder("payments")
//!     .scope(|parts| parts.extensions.get::<Principal>().map(|p| p.0.clone()))
//!     .build()?; // an `Error::Config` for a refused setting (e.g. a lease under 3 ms)
//! let app = Router::new()
//!     .route("/payments", post(|| async { "paid" }))
//!     // On matched routes only: with `.layer`, an unknown path or method without a key would
//!     // get the layer's 400 instead of the router's 404 / 405.
//!     .route_layer(idempotency);
//!     // .layer(your_auth_layer)  — wraps the router, so it runs before (outside) idempotency
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What a request gets
//!
//! | request | response |
//! |---|---|
//! | method not handled (`GET`, …; default set: `POST`, `PATCH`) | the handler's, untouched |
//! | no `Idempotency-Key`, layer [`required`](IdempotencyLayerBuilder::required) (default) | `400`, [`idempotency-key-missing`](#idempotency-key-missing) |
//! | no `Idempotency-Key`, layer optional | the handler's, untouched |
//! | malformed key, or two `Idempotency-Key` headers | `400`, [`idempotency-key-malformed`](#idempotency-key-malformed) |
//! | scope extractor returns `None` | `401`, [`idempotency-scope-missing`](#idempotency-scope-missing), with the `WWW-Authenticate` given to [`challenge`](IdempotencyLayerBuilder::challenge) |
//! | body above [`max_request_body`](IdempotencyLayerBuilder::max_request_body), or cut off by an outer body limit | `413`, [`idempotency-request-too-large`](#idempotency-request-too-large); nothing recorded |
//! | new key | the handler runs; its response is recorded if it is recordable (below) |
//! | same key, same request, recorded | the recorded response, with `Idempotent-Replayed: true` |
//! | same key, different request | `422`, [`idempotency-key-reused`](#idempotency-key-reused) |
//! | same key while the first request runs | `409` + `Retry-After`, [`idempotency-request-in-progress`](#idempotency-request-in-progress); or, with [`OnConflict::Wait`](crate::OnConflict::Wait), the first request's response once recorded |
//! | store unreachable | `503` + `Retry-After`, [`idempotency-store-unavailable`](#idempotency-store-unavailable) |
//! | store refuses this server (credentials, a missing table or privilege: [`Error::Config`](crate::Error::Config)) | `500`, [`idempotency-store-refused`](#idempotency-store-refused) |
//!
//! **The key.** The header holds a structured-field string (`"…"`, RFC 8941, with `\"` and
//! `\\` as its only escapes) or a bare token; `"abc"` and `abc` are the same key. It is 1 to 255
//! characters of visible ASCII (the quoted form also allows spaces, as RFC 8941 does). A bare
//! token must not contain a comma: `a,b` is a list (two keys joined into one field line, e.g.
//! by an intermediary) and is refused; quote a key that contains one (`"a,b"`). The quoted form
//! may carry RFC 8941 parameters (`"abc";v=1`, `"abc"; p`), which are checked and ignored:
//! `"abc";v=1` is the key `abc`. The record's key is
//! `KeyHasher::for_key("http:<layer name>", version)`, then the scope, then the header's key:
//! clients never choose the storage key directly.
//!
//! **The fingerprint** covers the method, the path, the query, the body and any headers added
//! with [`fingerprint_header`](IdempotencyLayerBuilder::fingerprint_header). The path and
//! query are those of the URI the layer sees, which inside axum's `Router::nest` lacks the
//! nest's prefix unless feature `axum` is on (see [Nested routers](#nested-routers-axum)). The
//! body is buffered for it (up to the request limit) and handed to the handler as a complete
//! body. **Request trailers are dropped**: they are not in the fingerprint, and the handler
//! gets the buffered body without them.
//!
//! **Recorded responses.** Every `2xx`, and the `4xx` added with
//! [`record_status`](IdempotencyLayerBuilder::record_status) (deterministic client errors such
//! as `400`, `404`, `422`). Never `1xx`, `3xx`, `408`, `409`, `425`, `429`, `5xx` (`build()`
//! refuses them with [`Error::Config`](crate::Error::Config)), nor the layer's own problem responses: those release the key, so a
//! retry runs the handler again. A record holds the status, the allowlisted response headers
//! ([`replay_header`](IdempotencyLayerBuilder::replay_header); `Set-Cookie`, `Content-Length`
//! and the hop-by-hop headers are never recorded) and the body. A response body above
//! [`max_response_body`](IdempotencyLayerBuilder::max_response_body), or one with trailers, is
//! passed to the client unchanged and not recorded, and the key is released. The record format
//! is described in the `recorded` section below.
//!
//! **Responses are buffered.** To be recorded, a response body is read whole (up to
//! `max_response_body`) before anything is sent: the client gets the status line when the
//! handler's body has ended, or passed the limit. Keep the layer off streaming routes
//! (server-sent events, long downloads, token streams): there the first bytes would wait for
//! the end of the stream. A body that fails part way is not recorded and reaches the client as
//! a failed (cut off) response, as it would without the layer.
//!
//! **A response that cannot be recorded** (the store fails while recording it, or the claim was
//! taken over meanwhile: a lease that lapsed while the store was unreachable, a `forget`) is
//! still sent to the client: the handler ran, and its side effects happened. Nothing is
//! recorded for it (logged as a warning), so a retry with the same key runs the handler again
//! once the key is free, as for a handler that crashed after its side effects.
//!
//! **Disconnects and crashes.** Once the key is claimed, the handler runs to completion in its
//! own task (the layer takes the service that `poll_ready` readied, by `std::mem::replace`, and
//! moves it into the task): a client that disconnects neither cancels the handler nor loses its
//! response, which is recorded for the retry, and the key never stays stuck. While the handler
//! runs, its lease is renewed every third of [`lease`](IdempotencyLayerBuilder::lease); if the
//! process dies, the key is free again when the lease lapses. A panicking handler releases the
//! key and the panic resumes in the request's task. Inside the handler,
//! [`idem_runtime::current()`](crate::current) returns the request's key, to pass downstream.
//!
//! **Scope.** [`scope`](IdempotencyLayerBuilder::scope) takes the principal or tenant from the
//! request (`Fn(&http::request::Parts) -> Option<String>`, usually reading an extension your
//! authentication inserted), so two tenants that send the same key get two records and never
//! see each other's responses. [`unscoped`](IdempotencyLayerBuilder::unscoped) opts out
//! explicitly; `build()` does not compile until one of them is called.
//!
//! # Where the layer goes in a stack
//!
//! ```text
//! request ─▶ trace ─▶ authentication ─▶ request body limit ─▶ compression ─▶ IdempotencyLayer ─▶ handler
//! ```
//!
//! - **Inside authentication**, so the principal is known to the scope extractor, and
//!   unauthenticated requests are refused before they can claim a key. (In axum, a layer added
//!   with a later `.layer(…)` call runs earlier: add the idempotency layer first, with
//!   `.route_layer(…)`, then authentication with `.layer(…)`.)
//! - **Inside compression** (`tower_http::compression`), so that records hold the uncompressed
//!   body and every replay is compressed for the client that asked for it. Outside compression
//!   the layer would record a body compressed for the first client; `content-encoding` is
//!   replayed (it is in the default allowlist), so replays stay correct but ignore the
//!   retrying client's `Accept-Encoding`. Request decompression, if any, goes outside too, so
//!   the fingerprint covers the decoded body.
//! - **Body limits**: the layer enforces its own request limit (it must buffer the body) and
//!   answers `413` before reading more than that; a general body limit layer can stay outside.
//!   When the outer limit cuts a body off while the layer reads it (the body fails with
//!   `http_body_util::LengthLimitError` anywhere in its error's source chain, as with
//!   tower-http's `RequestBodyLimit`), the layer answers `413`
//!   [`idempotency-request-too-large`](#idempotency-request-too-large) too, and records
//!   nothing. Timeouts go outside as well: a timed-out request's handler still completes in its
//!   task and records its response for the retry.
//!
//! ## Nested routers (axum)
//!
//! axum's `Router::nest("/accounts/{id}", inner)` strips the prefix from the request's URI
//! before `inner` and its layers see it. A layer added to `inner` then sees `POST /payments`
//! for both `POST /accounts/A/payments` and `POST /accounts/B/payments`: **without feature
//! `axum`, the two have the same fingerprint, and the same key and body sent to account B get
//! account A's recorded response** instead of `422`. Either
//!
//! - enable feature **`axum`** (`idem-runtime = { features = ["axum"] }`): the layer then
//!   fingerprints the path and query of axum's
//!   [`OriginalUri`](https://docs.rs/axum/0.8/axum/extract/struct.OriginalUri.html) request
//!   extension (the URI before any nesting; the feature also turns on axum's `original-uri`
//!   feature, which records it) and falls back to the request's URI when there is none; or
//! - put the layer outside the nesting router (on the outer `Router`, or around it), where the
//!   URI is still complete; or
//! - add what the prefix carries to the fingerprint yourself (for example a header, with
//!   [`fingerprint_header`](IdempotencyLayerBuilder::fingerprint_header)), or to the scope.
//!
//! # A session with curl
//!
//! Against `cargo run -p idem-examples --bin http_server`:
//!
//! ```text
//! $ curl -i -X POST localhost:3000/payments -H 'Idempotency-Key: 8e03978e-40d5' \
//!        -H 'content-type: application/json' -d '{"amount_cents":1999}'
//! HTTP/1.1 201 Created
//! content-type: application/json
//!
//! {"id":"pay_1","amount_cents":1999}
//!
//! $ curl -i -X POST localhost:3000/payments -H 'Idempotency-Key: 8e03978e-40d5' \
//!        -H 'content-type: application/json' -d '{"amount_cents":1999}'
//! HTTP/1.1 201 Created
//! content-type: application/json
//! idempotent-replayed: true
//!
//! {"id":"pay_1","amount_cents":1999}
//!
//! $ curl -i -X POST localhost:3000/payments -H 'Idempotency-Key: 8e03978e-40d5' \
//!        -H 'content-type: application/json' -d '{"amount_cents":5}'
//! HTTP/1.1 422 Unprocessable Entity
//! content-type: application/problem+json
//!
//! {"type":"https://docs.rs/idem-runtime/latest/idem_runtime/http/index.html#idempotency-key-reused",
//!  "title":"Idempotency-Key reused with a different request","status":422,
//!  "detail":"this Idempotency-Key was already used with a different request (method, path, query, body or fingerprinted headers); use a new key for a new request"}
//!
//! $ curl -i -X POST localhost:3000/payments -d '{"amount_cents":1999}'
//! HTTP/1.1 400 Bad Request
//! content-type: application/problem+json
//!
//! {"type":"https://docs.rs/idem-runtime/latest/idem_runtime/http/index.html#idempotency-key-missing",
//!  "title":"Idempotency-Key is missing","status":400,
//!  "detail":"POST /payments requires an Idempotency-Key header (1 to 255 visible ASCII characters, e.g. a UUID); send the same key again to retry this request safely"}
//! ```
//!
//! # Problem types
//!
//! Every reply of the layer itself is `application/problem+json` (RFC 9457) with `type`,
//! `title`, `status` and `detail`, and `Cache-Control: no-store`. The `type` is
//! [`problem_type_base`](IdempotencyLayerBuilder::problem_type_base) followed by one of these
//! names (the default base points at this section).
//!
//! ### idempotency-key-missing
//! `400`: the method needs an `Idempotency-Key` and the request has none.
//! ### idempotency-key-malformed
//! `400`: the key is empty, longer than 255 characters, not visible ASCII, has unbalanced
//! quotes or an invalid escape, is a list (a comma in a bare token, or two quoted keys), has
//! malformed parameters or other characters after its closing quote, or the request has two
//! `Idempotency-Key` headers.
//! ### idempotency-scope-missing
//! `401`: the scope extractor found no principal or tenant; the layer is probably outside
//! authentication.
//! ### idempotency-request-too-large
//! `413`: the body is above the layer's request limit, or an outer body limit cut it off
//! (`http_body_util::LengthLimitError`); nothing was recorded.
//! ### idempotency-request-unreadable
//! `400`: reading the request body failed for another reason (the client aborted the upload).
//! ### idempotency-key-reused
//! `422`: the key was used for a different request (method, path, query, body or
//! fingerprinted headers).
//! ### idempotency-request-in-progress
//! `409` + `Retry-After`: the first request with this key is still running.
//! ### idempotency-request-not-recorded
//! `409` + `Retry-After`: (with [`OnConflict::Wait`](crate::OnConflict::Wait)) the request
//! this one waited for ended without a recorded response (an error status, a panic); sending it
//! again runs it. (A request whose server died is taken over by a waiting one once its lease
//! lapses: that one runs the handler.)
//! ### idempotency-store-unavailable
//! `503` + `Retry-After`: either the store failed, and this request was not run (it claimed
//! no key); or the server is shutting down and the runtime cancelled the handler's task after the
//! key was claimed: the handler may have run, partly or entirely (its side effects may have
//! happened), and its response was most likely not recorded. A retry with the same key, to
//! this or another server sharing the store, replays the response if it was recorded, and
//! otherwise runs the handler again once the claim is released or its lease lapses.
//! ### idempotency-store-refused
//! `500`: the store answered, and refused this server for a reason a retry cannot fix
//! (credentials, a missing table, database or privilege, an ACL; logged); the request was not
//! run.
//! ### idempotency-record-unreadable
//! `500`: the record cannot be decoded by this version of the server (logged).
//! ### idempotency-store-not-configured
//! `500`: strict mode is on and no store is installed (logged).
//!
//! # Recorded
//!
//! A record's value is a version-1 [record](crate::record) (JSON codec) whose payload is
//! `{"status":201,"headers":[["content-type","application/json"]],"body":{"json":{…}}}`. The
//! body takes the most compact form that keeps its exact bytes: `{"json": …}` embeds a JSON
//! body verbatim (no escaping, so the record is as small and as readable with `redis-cli` or
//! `psql` as the response, and a replay copies it out without unescaping), `{"text": "…"}`
//! holds other UTF-8, and `{"base64": "…"}` anything else (4/3 of its size rather than the
//! 3–4× of a JSON array of numbers). Header values are stored byte for byte as Latin-1
//! characters.
//!
//! [draft-ietf-httpapi-idempotency-key-header]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
//! [`Store`]: crate::Store

mod body;
mod header;
mod layer;
mod problem;
mod recorded;
mod service;

pub use body::IdemBody;
pub use header::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, MAX_KEY_LEN};
pub use layer::{
    DEFAULT_HTTP_WAIT_TIMEOUT, DEFAULT_MAX_REQUEST_BODY, DEFAULT_MAX_RESPONSE_BODY,
    DEFAULT_PROBLEM_TYPE_BASE, IdempotencyLayer, IdempotencyLayerBuilder, ScopeChosen,
    ScopeIsChosen, ScopeMissing,
};
pub use service::{IdempotencyService, ResponseFuture};
