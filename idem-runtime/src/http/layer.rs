//! The layer, its builder and its configuration.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use super::service::IdempotencyService;
use crate::engine::MIN_LEASE;
use crate::store::Store;
use crate::{DEFAULT_LEASE, DEFAULT_TTL, Error, KeyHasher, OnConflict, Operation};

/// Default limit of a request body the layer buffers and fingerprints: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1 << 20;
/// Default limit of a response body the layer records: 512 KiB. Its record takes at most 4/3
/// of that (binary bodies are base64-encoded) plus the replayed headers, which the 1 MiB value
/// limit of the built-in stores holds.
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 512 << 10;
/// Default time a duplicate waits for the running request with [`OnConflict::Wait`]: 10 s.
pub const DEFAULT_HTTP_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default base of the problem `type` URIs.
pub const DEFAULT_PROBLEM_TYPE_BASE: &str =
    "https://docs.rs/idem-runtime/latest/idem_runtime/http/index.html#";

type ScopeFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Scope {
    Unscoped,
    Extractor(Arc<ScopeFn>),
}

/// The settings of one layer, shared by all its services.
pub(crate) struct Config {
    /// `"http:<name>"`, the operation name of every key and record of this layer.
    pub(crate) operation: &'static str,
    /// The same as an engine operation (name, version, ttl, lease, wait timeout), for the
    /// engine's wait for a running request.
    pub(crate) spec: Operation,
    pub(crate) version: u32,
    /// The operation's hash keys for keys and fingerprints, derived once per layer.
    pub(crate) key_hash_key: [u8; 32],
    pub(crate) fingerprint_hash_key: [u8; 32],
    pub(crate) required: bool,
    pub(crate) methods: Vec<Method>,
    pub(crate) fingerprint_headers: Vec<HeaderName>,
    pub(crate) replay_headers: Vec<HeaderName>,
    pub(crate) record_statuses: Vec<StatusCode>,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) lease: Duration,
    pub(crate) ttl: Duration,
    pub(crate) on_conflict: OnConflict,
    pub(crate) wait_timeout: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) scope: Scope,
    pub(crate) problem_type_base: String,
    /// The `WWW-Authenticate` challenge of the `401` for a request without a principal.
    pub(crate) challenge: Option<HeaderValue>,
}

impl Config {
    /// Whether a response with `status` from the inner service may be recorded.
    pub(crate) fn records(&self, status: StatusCode) -> bool {
        status.is_success() || self.record_statuses.contains(&status)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("operation", &self.operation)
            .field("version", &self.version)
            .field("required", &self.required)
            .field("methods", &self.methods)
            .field("scoped", &matches!(self.scope, Scope::Extractor(_)))
            .field("fingerprint_headers", &self.fingerprint_headers)
            .field("replay_headers", &self.replay_headers)
            .field("record_statuses", &self.record_statuses)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .field("on_conflict", &self.on_conflict)
            .field("wait_timeout", &self.wait_timeout)
            .field("store", &self.store.as_ref().map(|s| s.name()))
            .finish_non_exhaustive()
    }
}

/// Statuses that are never recorded, whatever the configuration: they describe a transient
/// situation, and the client is expected to retry.
const NEVER_RECORDED: [StatusCode; 4] = [
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::CONFLICT,
    StatusCode::TOO_EARLY,
    StatusCode::TOO_MANY_REQUESTS,
];

/// Response headers that are never recorded: cookies (a replay must not hand one client's
/// session to another), `content-length` (the server writes its own for the replayed body) and
/// the hop-by-hop headers of RFC 9110 §7.6.1 and RFC 7230/2616 (they describe one connection,
/// not the response).
const NEVER_REPLAYED: [HeaderName; 11] = [
    header::SET_COOKIE,
    header::CONTENT_LENGTH,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TRAILER,
    header::TE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// A tower [`Layer`](tower::Layer) that makes `POST`/`PATCH` requests idempotent by their
/// `Idempotency-Key` header. Build it with [`IdempotencyLayer::builder`]; see the
/// [module docs](super) for the behaviour and where it goes in a stack.
#[derive(Clone, Debug)]
pub struct IdempotencyLayer {
    pub(crate) config: Arc<Config>,
}

impl IdempotencyLayer {
    /// Starts a layer named `name` (e.g. `"payments"`).
    ///
    /// The name is part of every key (`KeyHasher::for_key("http:<name>", version)`): keep it
    /// stable across deploys, and give two layers that must not share keys two names.
    ///
    /// Choose the scope next, with [`scope`](IdempotencyLayerBuilder::scope) or
    /// [`unscoped`](IdempotencyLayerBuilder::unscoped): `build()` is only available after one of
    /// them.
    pub fn builder(name: &str) -> IdempotencyLayerBuilder<ScopeMissing> {
        IdempotencyLayerBuilder {
            name: name.to_owned(),
            version: 0,
            required: true,
            methods: vec![Method::POST, Method::PATCH],
            fingerprint_headers: Vec::new(),
            replay_headers: vec![
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::CONTENT_LANGUAGE,
                header::CONTENT_LOCATION,
                header::LOCATION,
                header::ETAG,
                header::LAST_MODIFIED,
            ],
            record_statuses: Vec::new(),
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            max_response_body: DEFAULT_MAX_RESPONSE_BODY,
            lease: DEFAULT_LEASE,
            ttl: DEFAULT_TTL,
            on_conflict: OnConflict::Reject,
            wait_timeout: DEFAULT_HTTP_WAIT_TIMEOUT,
            retry_after: Duration::from_secs(1),
            store: None,
            scope: None,
            problem_type_base: DEFAULT_PROBLEM_TYPE_BASE.to_owned(),
            challenge: None,
            refused: Vec::new(),
            _state: PhantomData,
        }
    }

    /// The operation name of this layer's keys and records (`"http:<name>"`).
    pub fn operation(&self) -> &'static str {
        self.config.operation
    }
}

impl<S> tower::Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, self.config.clone())
    }
}

/// Typestate of [`IdempotencyLayerBuilder`]: no scope chosen yet.
#[derive(Debug)]
pub struct ScopeMissing;

/// Typestate of [`IdempotencyLayerBuilder`]: the scope is chosen; `build()` is available.
#[derive(Debug)]
pub struct ScopeChosen;

/// Builder of an [`IdempotencyLayer`]; from [`IdempotencyLayer::builder`].
#[must_use = "call `.build()?` to get the layer"]
pub struct IdempotencyLayerBuilder<State> {
    name: String,
    version: u32,
    required: bool,
    methods: Vec<Method>,
    fingerprint_headers: Vec<HeaderName>,
    replay_headers: Vec<HeaderName>,
    record_statuses: Vec<StatusCode>,
    max_request_body: usize,
    max_response_body: usize,
    lease: Duration,
    ttl: Duration,
    on_conflict: OnConflict,
    wait_timeout: Duration,
    retry_after: Duration,
    store: Option<Arc<dyn Store>>,
    scope: Option<Scope>,
    problem_type_base: String,
    challenge: Option<HeaderValue>,
    /// Settings refused so far, reported together by `build()`.
    refused: Vec<String>,
    _state: PhantomData<State>,
}

impl<State> fmt::Debug for IdempotencyLayerBuilder<State> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayerBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("scope_chosen", &self.scope.is_some())
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayerBuilder<ScopeMissing> {
    /// Scopes every key to the principal or tenant that `extract` reads from the request (for
    /// example from an extension your authentication layer inserted). Two principals that send
    /// the same `Idempotency-Key` get two independent records.
    ///
    /// A request for which `extract` returns `None` is answered `401 Unauthorized` (problem type
    /// `idempotency-scope-missing`) without reaching the handler: the layer cannot tell whose
    /// key it is, and guessing could replay one tenant's response to another. Place the layer
    /// inside the authentication layer so that the principal is known.
    pub fn scope<F>(self, extract: F) -> IdempotencyLayerBuilder<ScopeChosen>
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with_scope(Scope::Extractor(Arc::new(extract)))
    }

    /// Uses one key space for all clients: the same `Idempotency-Key` from two clients is one
    /// record. Only for services whose clients cannot see each other's keys by accident (a
    /// single client, or keys that are unguessable and never shared, such as UUIDv4 generated
    /// per request), or where the whole API is one tenant.
    pub fn unscoped(self) -> IdempotencyLayerBuilder<ScopeChosen> {
        self.with_scope(Scope::Unscoped)
    }

    fn with_scope(self, scope: Scope) -> IdempotencyLayerBuilder<ScopeChosen> {
        IdempotencyLayerBuilder {
            name: self.name,
            version: self.version,
            required: self.required,
            methods: self.methods,
            fingerprint_headers: self.fingerprint_headers,
            replay_headers: self.replay_headers,
            record_statuses: self.record_statuses,
            max_request_body: self.max_request_body,
            max_response_body: self.max_response_body,
            lease: self.lease,
            ttl: self.ttl,
            on_conflict: self.on_conflict,
            wait_timeout: self.wait_timeout,
            retry_after: self.retry_after,
            store: self.store,
            scope: Some(scope),
            problem_type_base: self.problem_type_base,
            challenge: self.challenge,
            refused: self.refused,
            _state: PhantomData,
        }
    }
}

/// Implemented by [`ScopeChosen`] only: `build()` needs a scope decision.
#[diagnostic::on_unimplemented(
    message = "choose the idempotency scope before calling `build()`",
    label = "no scope chosen yet",
    note = "call `.scope(|parts| …)` with a principal/tenant extractor, or `.unscoped()` if every client shares one key space"
)]
pub trait ScopeIsChosen: sealed::Sealed {}

impl ScopeIsChosen for ScopeChosen {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ScopeChosen {}
}

impl<State> IdempotencyLayerBuilder<State> {
    /// Builds the layer. Only available once the scope is chosen with
    /// [`scope`](Self::scope) or [`unscoped`](Self::unscoped).
    ///
    /// # Errors
    ///
    /// [`Error::Config`], listing every refused setting at once:
    /// - a [`lease`](Self::lease) under 3 ms (a claim would lapse before its first renewal, and
    ///   duplicates would run side by side);
    /// - a [`ttl`](Self::ttl) shorter than the lease (the record would expire before the
    ///   claim that wrote it);
    /// - a status that [`record_status`](Self::record_status) never records;
    /// - a header that [`replay_header`](Self::replay_header) never replays.
    pub fn build(self) -> Result<IdempotencyLayer, Error>
    where
        State: ScopeIsChosen,
    {
        let mut refused = self.refused;
        if self.lease < MIN_LEASE {
            refused.push(format!(
                "a lease of {:?} is under 3 ms: claims would lapse before the handler runs and \
                 duplicates would run side by side; use a lease longer than the slowest \
                 handler's run (default 60 s)",
                self.lease
            ));
        } else if self.ttl < self.lease {
            refused.push(format!(
                "a ttl of {:?} is shorter than the lease of {:?}: a record would expire before \
                 the claim that wrote it; raise the ttl or lower the lease",
                self.ttl, self.lease
            ));
        }
        if !refused.is_empty() {
            return Err(Error::Config(format!(
                "idempotency layer `{}`: {}",
                self.name,
                refused.join("; ")
            )));
        }
        // One small allocation per layer, kept for the process's lifetime: records and errors
        // carry the operation name as `&'static str`. Layers are built once at startup.
        let operation: &'static str = Box::leak(format!("http:{}", self.name).into_boxed_str());
        Ok(IdempotencyLayer {
            config: Arc::new(Config {
                operation,
                spec: Operation::new(operation)
                    .with_version(self.version)
                    .with_ttl(self.ttl)
                    .with_lease(self.lease)
                    .with_wait_timeout(self.wait_timeout),
                version: self.version,
                key_hash_key: KeyHasher::operation_key(operation, self.version),
                fingerprint_hash_key: KeyHasher::operation_fingerprint_key(operation, self.version),
                required: self.required,
                methods: self.methods,
                fingerprint_headers: self.fingerprint_headers,
                replay_headers: self.replay_headers,
                record_statuses: self.record_statuses,
                max_request_body: self.max_request_body,
                max_response_body: self.max_response_body,
                lease: self.lease,
                ttl: self.ttl,
                on_conflict: self.on_conflict,
                wait_timeout: self.wait_timeout,
                retry_after: self.retry_after,
                store: self.store,
                scope: self.scope.unwrap_or(Scope::Unscoped),
                problem_type_base: self.problem_type_base,
                challenge: self.challenge,
            }),
        })
    }
}

impl<State> IdempotencyLayerBuilder<State> {
    /// Sets the version; bumping it gives every request a fresh key (old records are ignored).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Whether requests without an `Idempotency-Key` are refused (`true`, the default: 400 with
    /// problem type `idempotency-key-missing`) or passed to the handler untouched (`false`).
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// The methods the layer handles (default `POST` and `PATCH`); requests with other methods
    /// pass through untouched, with or without a key.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Adds a request header to the fingerprint (method, path, query and body are always in
    /// it), e.g. `content-type` or an API version header: the same key with a different value
    /// is then a different request (422).
    pub fn fingerprint_header(mut self, name: HeaderName) -> Self {
        if !self.fingerprint_headers.contains(&name) {
            self.fingerprint_headers.push(name);
        }
        self
    }

    /// Adds a response header to the ones recorded and replayed. The defaults are
    /// `content-type`, `content-encoding`, `content-language`, `content-location`, `location`,
    /// `etag` and `last-modified`.
    ///
    /// Some headers are never replayed, and [`build`](Self::build) refuses them with
    /// [`Error::Config`]: `set-cookie` (a replay must never hand one client's cookie to
    /// another), `content-length` (the server writes its own) and the hop-by-hop headers
    /// `connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `te`, `trailer`,
    /// `upgrade`, `proxy-authenticate` and `proxy-authorization` (they belong to one
    /// connection, not to the response).
    pub fn replay_header(mut self, name: HeaderName) -> Self {
        if NEVER_REPLAYED.contains(&name) {
            let why = if name == header::SET_COOKIE {
                "a replay must not hand one client's cookie to another"
            } else if name == header::CONTENT_LENGTH {
                "the server writes its own for the replayed body"
            } else {
                "it is a hop-by-hop header: it belongs to one connection, not to the response"
            };
            self.refused.push(format!(
                "the `{name}` response header is never recorded or replayed ({why})"
            ));
        } else if !self.replay_headers.contains(&name) {
            self.replay_headers.push(name);
        }
        self
    }

    /// Replaces the recorded response headers with `names` (see
    /// [`replay_header`](Self::replay_header): [`build`](Self::build) refuses the same
    /// headers).
    pub fn replay_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.replay_headers.clear();
        names.into_iter().fold(self, Self::replay_header)
    }

    /// Records responses with a `4xx` `status` too (2xx are always recorded; passing one is a
    /// no-op). Use it for deterministic client errors that a retry would only repeat, e.g.
    /// `400`, `404` or `422`. Responses not recorded release the key, so a retry runs the
    /// handler again.
    ///
    /// [`build`](Self::build) refuses with [`Error::Config`] every status but `2xx` and `4xx`,
    /// and the `4xx` that describe a transient situation: `408`, `409`, `425` and `429`. That
    /// is: `1xx` (not a final response), `3xx` (a redirect is not the outcome of the request),
    /// `5xx` (transient), and the non-standard `6xx`–`9xx`.
    pub fn record_status(mut self, status: StatusCode) -> Self {
        let why = if status.is_success() || status.is_client_error() {
            NEVER_RECORDED.contains(&status).then_some(
                "408, 409, 425 and 429 are transient (a retry should run the handler again)",
            )
        } else if status.is_informational() {
            Some("1xx is not a final response")
        } else if status.is_redirection() {
            Some("3xx redirects are not the outcome of the request")
        } else if status.is_server_error() {
            Some("5xx are transient (a retry should run the handler again)")
        } else {
            Some("it is not a standard status (6xx to 9xx)")
        };
        if let Some(why) = why {
            self.refused.push(format!(
                "status {status} is never recorded: {why}; only 2xx and 4xx other than 408, 409, \
                 425 and 429 can be"
            ));
        } else if !status.is_success() && !self.record_statuses.contains(&status) {
            self.record_statuses.push(status);
        }
        self
    }

    /// The largest request body the layer buffers (default 1 MiB). A larger body is answered
    /// `413 Content Too Large` (problem type `idempotency-request-too-large`), the handler does
    /// not run, and nothing is recorded. The body must be buffered to be fingerprinted.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.max_request_body = bytes;
        self
    }

    /// The largest response body the layer records (default 512 KiB). A larger response is
    /// passed to the client unchanged, not recorded, and its key is released.
    ///
    /// A record takes up to 4/3 of the body (a body that is not UTF-8, or text that JSON
    /// escaping would grow more, is base64-encoded) plus the replayed headers, and must fit the
    /// store's value limit (`max_value_bytes`, 1 MiB by default in the built-in stores): when
    /// raising this, raise that too, or responses near the limit are answered but not
    /// recorded (logged as a warning), and a retry runs the handler again.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// How long a claim lives without renewal (default 60 s, at least 3 ms). While the handler
    /// runs, the layer renews it every third of the lease; if the process dies, the key is free
    /// again once the lease lapses.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a recorded response is replayed (default 24 h; at least the lease, or
    /// [`build`](Self::build) refuses it).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// What a request gets while another request with the same key is running:
    /// [`OnConflict::Reject`] (the default) answers `409 Conflict` with `Retry-After` at once;
    /// [`OnConflict::Wait`] waits up to the [wait timeout](Self::wait_timeout) and replays the
    /// recorded response (or answers 409 if there is none by then, or if the running request
    /// ended without one; if its server died, one waiting request takes the key over when its
    /// lease lapses and runs the handler, as the engine's waiters do).
    pub fn on_conflict(mut self, on_conflict: OnConflict) -> Self {
        self.on_conflict = on_conflict;
        self
    }

    /// How long a duplicate waits with [`OnConflict::Wait`] (default 10 s). `Duration::MAX`
    /// waits as long as the running request takes; if its server dies, the key's lease lapses
    /// and one waiting duplicate claims it and runs the handler (the others wait for that one).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// The `Retry-After` of a `409` while a request is in progress (default 1 s; never more than
    /// the running request's remaining lease, never less than 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The store of this layer's records. Default: the store an idempotent call would use at
    /// the time of the request (the process-wide store installed with
    /// [`install`](crate::install), else the in-memory default).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The prefix of the `type` member of problem responses (default
    /// `https://docs.rs/idem-runtime/latest/idem_runtime/http/index.html#`); the problem's slug
    /// (e.g. `idempotency-key-missing`) follows it. Point it at your API's documentation.
    pub fn problem_type_base(mut self, base: impl Into<String>) -> Self {
        self.problem_type_base = base.into();
        self
    }

    /// The `WWW-Authenticate` challenge sent with the `401` of a request the scope extractor
    /// finds no principal in (e.g. `Bearer realm="api"`, your authentication's scheme). A
    /// `401` must carry one (RFC 9110 §15.5.2), and the layer cannot know your scheme, so it
    /// sends none unless told: set it, or let your authentication layer answer such requests
    /// before they reach this one.
    pub fn challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }
}
