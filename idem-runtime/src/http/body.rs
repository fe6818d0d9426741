//! The response body of the layer.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The response body of [`IdempotencyService`](super::IdempotencyService): the inner
    /// service's body untouched (requests the layer does not handle), a complete buffer (a
    /// recorded, replayed or problem response), or a body the layer started buffering and hands
    /// back unchanged (a response it did not record because of its size or its trailers).
    pub struct IdemBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Inner { #[pin] body: B },
        Resumed { state: Box<Resumed<B>> },
    }
}

/// A body whose first part was read already.
pub(crate) struct Resumed<B> {
    pub(crate) head: Option<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) error: Option<BoxError>,
    pub(crate) rest: Option<Pin<Box<B>>>,
}

impl<B> IdemBody<B> {
    /// A complete body.
    pub(crate) fn full(data: Bytes) -> Self {
        IdemBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// The inner service's body, untouched.
    pub(crate) fn inner(body: B) -> Self {
        IdemBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn resumed(state: Resumed<B>) -> Self {
        IdemBody {
            kind: Kind::Resumed {
                state: Box::new(state),
            },
        }
    }
}

impl<B> fmt::Debug for IdemBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "full",
            Kind::Inner { .. } => "inner",
            Kind::Resumed { .. } => "resumed",
        };
        f.debug_struct("IdemBody").field("kind", &kind).finish()
    }
}

fn to_bytes<D: Buf>(mut data: D) -> Bytes {
    data.copy_to_bytes(data.remaining())
}

impl<B> Body for IdemBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame.map_data(to_bytes)))),
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Resumed { state } => {
                if let Some(head) = state.head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                if let Some(error) = state.error.take() {
                    state.rest = None;
                    return Poll::Ready(Some(Err(error)));
                }
                if let Some(trailers) = state.trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                let Some(rest) = state.rest.as_mut() else {
                    return Poll::Ready(None);
                };
                match rest.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame.map_data(to_bytes)))),
                    Poll::Ready(Some(Err(error))) => {
                        state.rest = None;
                        Poll::Ready(Some(Err(error.into())))
                    }
                    Poll::Ready(None) => {
                        state.rest = None;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Resumed { state } => {
                state.head.is_none()
                    && state.error.is_none()
                    && state.trailers.is_none()
                    && state.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
            Kind::Resumed { state } => {
                let head = state.head.as_ref().map_or(0, |h| h.len() as u64);
                match &state.rest {
                    Some(rest) => {
                        let rest = rest.size_hint();
                        let mut hint = SizeHint::new();
                        hint.set_lower(head + rest.lower());
                        if let Some(upper) = rest.upper() {
                            hint.set_upper(head + upper);
                        }
                        hint
                    }
                    // A body that failed part way must not look complete: with an exact size,
                    // the server would frame what came before the error as the whole message.
                    None if state.error.is_some() => {
                        let mut hint = SizeHint::new();
                        hint.set_lower(head);
                        hint
                    }
                    None => SizeHint::with_exact(head),
                }
            }
        }
    }
}
