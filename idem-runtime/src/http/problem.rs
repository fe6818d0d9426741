//! The layer's own replies: RFC 9457 problem details (`application/problem+json`).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use super::body::IdemBody;

/// The problems the layer answers with. Each one's `type` is the configured base
/// ([`problem_type_base`](super::IdempotencyLayerBuilder::problem_type_base)) followed by its
/// slug, and its slug names a section of the [module docs](super#problem-types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    KeyMissing,
    KeyMalformed,
    NoPrincipal,
    RequestTooLarge,
    RequestUnreadable,
    KeyReused,
    InFlight,
    OwnerFailed,
    StoreUnavailable,
    StoreRefused,
    RecordUnreadable,
    NoStore,
}

impl Kind {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Kind::KeyMissing | Kind::KeyMalformed | Kind::RequestUnreadable => {
                StatusCode::BAD_REQUEST
            }
            Kind::NoPrincipal => StatusCode::UNAUTHORIZED,
            Kind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::InFlight | Kind::OwnerFailed => StatusCode::CONFLICT,
            Kind::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::StoreRefused | Kind::RecordUnreadable | Kind::NoStore => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub(crate) fn slug(self) -> &'static str {
        match self {
            Kind::KeyMissing => "idempotency-key-missing",
            Kind::KeyMalformed => "idempotency-key-malformed",
            Kind::NoPrincipal => "idempotency-scope-missing",
            Kind::RequestTooLarge => "idempotency-request-too-large",
            Kind::RequestUnreadable => "idempotency-request-unreadable",
            Kind::KeyReused => "idempotency-key-reused",
            Kind::InFlight => "idempotency-request-in-progress",
            Kind::OwnerFailed => "idempotency-request-not-recorded",
            Kind::StoreUnavailable => "idempotency-store-unavailable",
            Kind::StoreRefused => "idempotency-store-refused",
            Kind::RecordUnreadable => "idempotency-record-unreadable",
            Kind::NoStore => "idempotency-store-not-configured",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Kind::KeyMissing => "Idempotency-Key is missing",
            Kind::KeyMalformed => "Idempotency-Key is malformed",
            Kind::NoPrincipal => "No principal to scope the Idempotency-Key",
            Kind::RequestTooLarge => "Request body too large for an idempotent request",
            Kind::RequestUnreadable => "Request body could not be read",
            Kind::KeyReused => "Idempotency-Key reused with a different request",
            Kind::InFlight => "A request with this Idempotency-Key is still in progress",
            Kind::OwnerFailed => "The earlier request with this Idempotency-Key was not recorded",
            Kind::StoreUnavailable => "Idempotency store unavailable",
            Kind::StoreRefused => "The idempotency store refuses this server",
            Kind::RecordUnreadable => "Recorded response could not be read",
            Kind::NoStore => "No idempotency store configured",
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
}

/// Builds a problem response; `retry_after` adds a `Retry-After` header (whole seconds, at
/// least 1).
pub(crate) fn response<B>(
    base: &str,
    kind: Kind,
    detail: &str,
    retry_after: Option<Duration>,
) -> Response<IdemBody<B>> {
    let status = kind.status();
    let body = Body {
        type_: format!("{base}{}", kind.slug()),
        title: kind.title(),
        status: status.as_u16(),
        detail,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(IdemBody::full(Bytes::from(json)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(after) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
    }
    response
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub(crate) fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}
