//! The service: one request through the record state machine.

use std::borrow::Cow;
use std::fmt;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::Service;

use super::body::{IdemBody, Resumed};
use super::header::{IDEMPOTENT_REPLAYED, key_from_headers};
use super::layer::{Config, Scope};
use super::problem::{self, Kind};
use super::recorded;
use crate::context::Frame;
use crate::engine::{
    AbortOnDrop, Backend, Waited, claim_still_held, renew_lease, renewal_period, wait_for_owner,
};
use crate::guard::ClaimGuard;
use crate::store::{Claim, Store};
use crate::{BoxError, Error, Fingerprint, Key, KeyHasher, OnConflict, Token, global};

/// The service of an [`IdempotencyLayer`](super::IdempotencyLayer) around the inner service `S`.
pub struct IdempotencyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> IdempotencyService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        IdempotencyService { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for IdempotencyService<S> {
    fn clone(&self) -> Self {
        IdempotencyService {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

type Reply<B, E> = Result<Response<IdemBody<B>>, E>;
type BoxFuture<B, E> = Pin<Box<dyn Future<Output = Reply<B, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IdempotencyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<IdemBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        if !config.methods.contains(request.method()) {
            return ResponseFuture::inner(self.inner.call(request));
        }
        let (parts, body) = request.into_parts();
        let client_key = match key_from_headers(&parts.headers) {
            Ok(Some(key)) => key,
            Ok(None) if !config.required => {
                return ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)));
            }
            Ok(None) => {
                let detail = format!(
                    "{} {} requires an Idempotency-Key header (1 to 255 visible ASCII characters, e.g. \
                     a UUID); send the same key again to retry this request safely",
                    parts.method,
                    request_uri(&parts).path()
                );
                return ResponseFuture::ready(problem(config, Kind::KeyMissing, &detail, None));
            }
            Err(error) => {
                return ResponseFuture::ready(problem(
                    config,
                    Kind::KeyMalformed,
                    &error.to_string(),
                    None,
                ));
            }
        };
        let mut hasher = KeyHasher::with_key_hash_key(config.key_hash_key);
        match &config.scope {
            Scope::Unscoped => hasher.unscoped(),
            Scope::Extractor(extract) => match extract(&parts) {
                Some(scope) => {
                    hasher.scoped();
                    hasher.write_str(&scope);
                }
                None => {
                    let detail = "the request has no authenticated principal or tenant to scope its \
                                  Idempotency-Key; authenticate the request";
                    let mut refused = problem(config, Kind::NoPrincipal, detail, None);
                    if let Some(challenge) = &config.challenge {
                        refused
                            .headers_mut()
                            .insert(http::header::WWW_AUTHENTICATE, challenge.clone());
                    }
                    return ResponseFuture::ready(refused);
                }
            },
        }
        hasher.write_str(&client_key);
        let key = match hasher.finish_key() {
            Ok(key) => key,
            Err(error) => return ResponseFuture::ready(internal(config, Kind::NoStore, &error)),
        };
        if let Some(length) = content_length(&parts.headers)
            && length > config.max_request_body as u64
        {
            return ResponseFuture::ready(too_large(config));
        }
        let store = match &config.store {
            Some(store) => store.clone(),
            None => match global::resolve() {
                Ok(resolved) => resolved.into_owned(),
                Err(error) => {
                    return ResponseFuture::ready(internal(config, Kind::NoStore, &error));
                }
            },
        };
        // Take the service that `poll_ready` readied; leave a fresh clone for the next call.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        ResponseFuture::boxed(Box::pin(handle(
            config.clone(),
            inner,
            parts,
            body,
            key,
            store,
        )))
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn problem<B>(
    config: &Config,
    kind: Kind,
    detail: &str,
    retry_after: Option<Duration>,
) -> Response<IdemBody<B>> {
    // What the client was told, so that its misuse (a missing or reused key) can be found in
    // the server's log too (its kind only: the detail may quote the request). Store failures
    // are logged where they happen, at warn.
    tracing::debug!(target: "idem", operation = config.operation, status = kind.status().as_u16(), problem = kind.slug(), "answered by the idempotency layer");
    problem::response(&config.problem_type_base, kind, detail, retry_after)
}

fn too_large<B>(config: &Config) -> Response<IdemBody<B>> {
    let detail = format!(
        "the request body is larger than {} bytes, the limit for requests with an Idempotency-Key; \
         nothing was recorded",
        config.max_request_body
    );
    problem(config, Kind::RequestTooLarge, &detail, None)
}

/// `413` for a body that an outer layer's limit (`http_body_util::Limited`, e.g. tower-http's
/// `RequestBodyLimit`) cut off while this layer read it.
fn too_large_outer<B>(config: &Config) -> Response<IdemBody<B>> {
    let detail = "the request body is larger than the server's request body limit; nothing was \
                  recorded";
    problem(config, Kind::RequestTooLarge, detail, None)
}

/// A problem for a server-side failure: the error goes to the log, not to the client.
fn internal<B>(config: &Config, kind: Kind, error: &Error) -> Response<IdemBody<B>> {
    tracing::error!(target: "idem", operation = config.operation, %error, "idempotency layer failure");
    let detail = match kind {
        Kind::RecordUnreadable => {
            "the response recorded for this Idempotency-Key could not be read by this server version"
        }
        Kind::StoreRefused => {
            "the idempotency store refuses this server's requests (its configuration needs a fix); \
             the request was not processed"
        }
        _ => "the server has no usable idempotency store",
    };
    problem(config, kind, detail, None)
}

fn store_failed<B>(config: &Config, key: &Key, error: &Error) -> Response<IdemBody<B>> {
    if !error.is_retryable() {
        // Credentials, a missing table, an ACL: no retry can succeed until someone changes
        // the deployment, so no `Retry-After`.
        return internal(config, Kind::StoreRefused, error);
    }
    tracing::warn!(target: "idem", operation = config.operation, %key, %error, "idempotency store failed");
    let detail = "the idempotency store could not be reached; the request was not processed, retry it \
                  later with the same Idempotency-Key";
    problem(
        config,
        Kind::StoreUnavailable,
        detail,
        Some(Duration::from_secs(1)),
    )
}

fn key_reused<B>(config: &Config) -> Response<IdemBody<B>> {
    let detail = "this Idempotency-Key was already used with a different request (method, path, query, \
                  body or fingerprinted headers); use a new key for a new request";
    problem(config, Kind::KeyReused, detail, None)
}

fn in_flight<B>(config: &Config, remaining: Duration) -> Response<IdemBody<B>> {
    let detail = "a request with this Idempotency-Key is still being processed; retry after the \
                  Retry-After delay with the same key to get its response";
    let after = config.retry_after.min(remaining);
    problem(config, Kind::InFlight, detail, Some(after))
}

async fn handle<S, ReqBody, ResBody>(
    config: Arc<Config>,
    inner: S,
    parts: Parts,
    body: ReqBody,
    key: Key,
    store: Arc<dyn Store>,
) -> Reply<ResBody, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let body = match read_request(body, config.max_request_body).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return Ok(too_large(&config)),
        Err(ReadError::OuterLimit) => return Ok(too_large_outer(&config)),
        Err(ReadError::Body(error)) => {
            let detail = format!("the request body could not be read: {error}");
            return Ok(problem(&config, Kind::RequestUnreadable, &detail, None));
        }
    };
    let fingerprint = fingerprint(&config, &parts, &body);
    let token = Token::generate();
    // If this future is dropped while a remote claim is in flight, the guard sees the claim
    // through to its answer and releases it then.
    let mut guard = ClaimGuard::new(config.operation, Cow::Owned(store.clone()), key, token);
    let mut claimed_at = tokio::time::Instant::now();
    let give_up_at = crate::store::deadline(claimed_at, config.wait_timeout);
    // Claimed again after a waited-for request's lease lapsed (its server crashed).
    loop {
        let claim = guard.claim(&fingerprint, config.lease, claimed_at).await;
        let claim = match claim {
            // A late answer is confirmed before the handler runs (else claim again), as the
            // engine does.
            Ok(Claim::Acquired) if store.as_memory().is_none() => {
                let held = claim_still_held(
                    &store,
                    &key,
                    token,
                    config.lease,
                    &mut claimed_at,
                    give_up_at,
                );
                match held.await {
                    Ok(true) => Ok(Claim::Acquired),
                    Ok(false) => continue,
                    Err(error) => Err(error),
                }
            }
            claim => claim,
        };
        let (remaining, running) = match claim {
            Err(error) => return Ok(store_failed(&config, &key, &error)),
            Ok(Claim::Acquired) => break,
            Ok(Claim::Completed {
                fingerprint: recorded,
                value,
            }) => {
                guard.disarm();
                if recorded != fingerprint {
                    return Ok(key_reused(&config));
                }
                tracing::debug!(target: "idem", operation = config.operation, %key, "replaying the recorded response");
                return Ok(replay(&config, &value));
            }
            Ok(Claim::InProgress {
                fingerprint: running,
                remaining,
            }) => (remaining, running),
        };
        guard.disarm();
        if running != fingerprint {
            return Ok(key_reused(&config));
        }
        if config.on_conflict == OnConflict::Reject {
            return Ok(in_flight(&config, remaining));
        }
        // The engine's wait: a recorded response is replayed, a lapsed lease is taken over.
        let claim_latency = tokio::time::Instant::now().saturating_duration_since(claimed_at);
        let waited = wait_for_owner(
            &config.spec,
            Backend::of(&store),
            key,
            &fingerprint,
            remaining,
            give_up_at,
            claim_latency,
        );
        match waited.await {
            Ok(Waited::Recorded(value)) => return Ok(replay(&config, &value)),
            Ok(Waited::Lapsed) => {
                guard.arm();
                claimed_at = tokio::time::Instant::now();
            }
            Err(Error::PayloadMismatch { .. }) => return Ok(key_reused(&config)),
            Err(Error::InFlight { retry_after, .. }) => {
                return Ok(in_flight(&config, retry_after));
            }
            Err(Error::OwnerFailed { .. }) => {
                let detail = "the earlier request with this Idempotency-Key ended without a recorded \
                              response (an error status, or the server failed); send the request again \
                              with the same key to process it";
                return Ok(problem(
                    &config,
                    Kind::OwnerFailed,
                    detail,
                    Some(Duration::from_secs(1)),
                ));
            }
            Err(error) => return Ok(store_failed(&config, &key, &error)),
        }
    }
    tracing::debug!(target: "idem", operation = config.operation, %key, "claimed; running the handler");
    let request = Request::from_parts(parts, ReqBody::from(body));
    // The handler runs to completion in its own task, whatever happens to this future
    // (a client that disconnects drops it): the task records or releases the key.
    match tokio::spawn(run_claimed(
        config.clone(),
        inner,
        request,
        store,
        guard,
        claimed_at,
    ))
    .await
    {
        Ok(reply) => reply,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => {
            let detail =
                "the server is shutting down; retry the request with the same Idempotency-Key";
            Ok(problem(
                &config,
                Kind::StoreUnavailable,
                detail,
                Some(Duration::from_secs(1)),
            ))
        }
    }
}

/// The owner's task: runs the handler, records its response or releases the key.
async fn run_claimed<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    request: Request<ReqBody>,
    store: Arc<dyn Store>,
    mut guard: ClaimGuard<'static>,
    claimed_at: Instant,
) -> Reply<ResBody, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    let (key, token) = (guard.key, guard.token);
    let frame = Frame::enter(config.operation, key, token);
    let work = async {
        let response = inner.call(request).await?;
        let (parts, body) = response.into_parts();
        if !config.records(parts.status) {
            return Ok((parts, Outcome::Pass(IdemBody::inner(body))));
        }
        Ok(
            match buffer_response(body, config.max_response_body).await {
                Buffered::Complete(bytes) => (parts, Outcome::Record(bytes)),
                Buffered::Partial(resumed) => {
                    // A response the layer would record, but too large to: not idempotent, and
                    // a retry runs the handler again. Loud, unlike a non-success status.
                    tracing::warn!(target: "idem", operation = config.operation, key = %frame.key, status = %parts.status, limit = config.max_response_body, "response larger than the layer records; passed through unrecorded, so a retry runs the handler again (raise IdempotencyLayerBuilder::max_response_body, or return less)");
                    (parts, Outcome::Pass(IdemBody::resumed(resumed)))
                }
            },
        )
    };
    let outcome = renewing(
        frame.clone().scope(work),
        &store,
        &frame,
        config.lease,
        claimed_at,
    )
    .await;
    let (parts, outcome) = match outcome {
        Ok(done) => done,
        Err(error) => {
            guard.release_quietly().await;
            return Err(error);
        }
    };
    match outcome {
        Outcome::Pass(body) => {
            tracing::debug!(target: "idem", operation = config.operation, %key, status = %parts.status, "response not recorded; key released");
            guard.release_quietly().await;
            Ok(Response::from_parts(parts, body))
        }
        Outcome::Record(bytes) => {
            let encoded = recorded::encode(
                config.operation,
                parts.status,
                &parts.headers,
                &config.replay_headers,
                &bytes,
            );
            let completed = match encoded {
                // Seen through if the request is dropped meanwhile (`ClaimGuard::complete`).
                Ok(value) => guard.complete(value, config.ttl).await,
                Err(error) => Err(error),
            };
            match completed {
                Ok(true) => {
                    tracing::debug!(target: "idem", operation = config.operation, %key, "response recorded");
                }
                Ok(false) => {
                    frame.lease.lost();
                    tracing::warn!(target: "idem", operation = config.operation, %key, "lease lost before the response could be recorded: the record was taken over or removed (a lease shorter than the handler's run with the store unreachable for its renewals, a `forget`, or a store restarted without its data)");
                }
                Err(error) => {
                    // (Without an answer the store may have recorded it all the same: a retry
                    // then replays it.) After a store failure, released in the background: the
                    // response is not held back by a second call to a store that just failed.
                    tracing::warn!(target: "idem", operation = config.operation, %key, %error, "response may not be recorded; releasing the key");
                    guard.release_after_failed_complete(&error).await;
                }
            }
            Ok(Response::from_parts(parts, IdemBody::full(bytes)))
        }
    }
}

enum Outcome<B> {
    Record(Bytes),
    Pass(IdemBody<B>),
}

/// Polls `work`; if it is still running a third of the lease after the claim (sent at
/// `claimed_at`), a renewal task keeps the lease alive until `work` ends. Short handlers never
/// spawn it.
async fn renewing<F: Future>(
    work: F,
    store: &Arc<dyn Store>,
    frame: &Arc<Frame>,
    lease: Duration,
    claimed_at: Instant,
) -> F::Output {
    let period = renewal_period(lease);
    let mut work = pin!(work);
    let mut first = pin!(tokio::time::sleep_until(crate::store::deadline(
        claimed_at, period
    )));
    let mut renewer: Option<AbortOnDrop> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        if renewer.is_none() && first.as_mut().poll(cx).is_ready() {
            let task = renew_lease(store.clone(), frame.clone(), lease, period, claimed_at);
            renewer = Some(AbortOnDrop(tokio::spawn(task)));
        }
        Poll::Pending
    })
    .await
}

fn replay<B>(config: &Config, value: &[u8]) -> Response<IdemBody<B>> {
    match recorded::decode(config.operation, value) {
        Ok(recorded) => {
            let mut response = Response::new(IdemBody::full(recorded.body));
            *response.status_mut() = recorded.status;
            *response.headers_mut() = recorded.headers;
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Err(error) => internal(config, Kind::RecordUnreadable, &error),
    }
}

/// The URI whose path and query identify the request: with the `axum` feature, the
/// `OriginalUri` axum's router records before `Router::nest` strips a prefix; else (or when
/// there is none) the request's URI.
fn request_uri(parts: &Parts) -> &Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(uri)) = parts.extensions.get() {
        return uri;
    }
    &parts.uri
}

/// The request fingerprint: method, path, query, the configured headers (name, then every
/// value), then the body.
fn fingerprint(config: &Config, parts: &Parts, body: &[u8]) -> Fingerprint {
    let mut hasher = KeyHasher::with_fingerprint_hash_key(config.fingerprint_hash_key);
    let uri = request_uri(parts);
    hasher.write_str(parts.method.as_str());
    hasher.write_str(uri.path());
    match uri.query() {
        Some(query) => {
            hasher.write_some();
            hasher.write_str(query);
        }
        None => hasher.write_none(),
    }
    for name in &config.fingerprint_headers {
        hasher.write_str(name.as_str());
        hasher.begin_seq();
        let mut count = 0u64;
        for value in parts.headers.get_all(name) {
            hasher.write_bytes(value.as_bytes());
            count += 1;
        }
        hasher.end_seq(count);
    }
    hasher.write_bytes(body);
    // Only `write_serde` can make a hasher fail, and it is not used here.
    hasher.finish_fingerprint().unwrap_or(Fingerprint::NONE)
}

/// Bytes read so far; one chunk stays zero-copy.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    more: Option<BytesMut>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        if let Some(more) = self.more.as_mut() {
            more.extend_from_slice(&bytes);
        } else if let Some(first) = self.first.take() {
            let mut more = BytesMut::with_capacity(first.len() + bytes.len());
            more.extend_from_slice(&first);
            more.extend_from_slice(&bytes);
            self.more = Some(more);
        } else {
            self.first = Some(bytes);
        }
    }

    fn finish(self) -> Bytes {
        match (self.first, self.more) {
            (_, Some(more)) => more.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}

fn to_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

enum ReadError {
    /// Above this layer's limit.
    TooLarge,
    /// Above an outer layer's limit: the body failed with a `LengthLimitError`.
    OuterLimit,
    Body(BoxError),
}

impl ReadError {
    fn body(error: BoxError) -> Self {
        if caused_by_length_limit(&*error) {
            ReadError::OuterLimit
        } else {
            ReadError::Body(error)
        }
    }
}

/// Whether `error` or one of its sources is `http_body_util::LengthLimitError`.
fn caused_by_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<LengthLimitError>())
}

/// Reads a request body of at most `limit` bytes. Trailers are dropped.
async fn read_request<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = pin!(body);
    let mut chunks = Chunks::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::body(e.into()))?;
        if let Ok(data) = frame.into_data() {
            let data = to_bytes(data);
            if chunks.len + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            chunks.push(data);
        }
    }
    Ok(chunks.finish())
}

enum Buffered<B> {
    Complete(Bytes),
    Partial(Resumed<B>),
}

/// Buffers a response body of at most `limit` bytes without trailers; otherwise hands back
/// what was read and the rest, to be passed on unchanged.
async fn buffer_response<B>(body: B, limit: usize) -> Buffered<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let partial = |head: Option<Bytes>, trailers, error, rest| {
        Buffered::Partial(Resumed {
            head,
            trailers,
            error,
            rest,
        })
    };
    if body.size_hint().lower() > limit as u64 {
        return partial(None, None, None, Some(Box::pin(body)));
    }
    let mut body = Box::pin(body);
    let mut chunks = Chunks::default();
    loop {
        match body.frame().await {
            None => return Buffered::Complete(chunks.finish()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let data = to_bytes(data);
                    let over = chunks.len + data.len() > limit;
                    chunks.push(data);
                    if over {
                        return partial(Some(chunks.finish()), None, None, Some(body));
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return partial(Some(chunks.finish()), Some(trailers), None, Some(body));
                    }
                }
            },
            Some(Err(error)) => {
                return partial(Some(chunks.finish()), None, Some(error.into()), None);
            }
        }
    }
}

pin_project! {
    /// The future of [`IdempotencyService`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: FutureKind<F, B, E>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F, B, E> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<IdemBody<B>>> },
        Layer { future: BoxFuture<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn inner(future: F) -> Self {
        ResponseFuture {
            kind: FutureKind::Inner { future },
        }
    }

    fn ready(response: Response<IdemBody<B>>) -> Self {
        ResponseFuture {
            kind: FutureKind::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(future: BoxFuture<B, E>) -> Self {
        ResponseFuture {
            kind: FutureKind::Layer { future },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Reply<B, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Inner { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(IdemBody::inner))),
            FutureKindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            FutureKindProj::Layer { future } => future.as_mut().poll(cx),
        }
    }
}
