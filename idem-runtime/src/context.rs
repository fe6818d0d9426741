//! What a running body can learn about its own call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::{Key, Token};

tokio::task_local! {
    static CURRENT: Arc<Frame>;
}

/// One running idempotent call, linked to the call that encloses it (if any).
pub(crate) struct Frame {
    pub(crate) operation: &'static str,
    pub(crate) key: Key,
    pub(crate) token: Token,
    pub(crate) lease: Lease,
    outer: Option<Arc<Frame>>,
}

/// What the call knows of its lease: held (as far as it knows), in doubt (no renewal confirmed
/// for a whole lease; cleared by the next one confirmed), or lost (the claim is another
/// caller's or gone, for good).
#[derive(Default)]
pub(crate) struct Lease(AtomicU8);

const HELD: u8 = 0;
const IN_DOUBT: u8 = 1;
const LOST: u8 = 2;

impl Lease {
    /// The claim is not this call's any more.
    pub(crate) fn lost(&self) {
        self.0.store(LOST, Ordering::Release);
    }

    /// No renewal confirmed for a whole lease; `true` if it was held until now.
    pub(crate) fn in_doubt(&self) -> bool {
        self.0
            .compare_exchange(HELD, IN_DOUBT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A renewal confirmed the claim is still this call's (no other caller can have taken
    /// it meanwhile: its claim would have replaced the token).
    pub(crate) fn confirmed(&self) {
        let _ = self
            .0
            .compare_exchange(IN_DOUBT, HELD, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Lost, or in doubt.
    pub(crate) fn may_be_lost(&self) -> bool {
        self.0.load(Ordering::Acquire) != HELD
    }
}

impl Frame {
    /// A frame for a call that starts now, nested in the current one if any.
    pub(crate) fn enter(operation: &'static str, key: Key, token: Token) -> Arc<Frame> {
        Arc::new(Frame {
            operation,
            key,
            token,
            lease: Lease::default(),
            outer: CURRENT.try_with(Arc::clone).ok(),
        })
    }

    /// Runs `body` with this frame as the current call.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) async fn scope<F: Future>(self: Arc<Self>, body: F) -> F::Output {
        CURRENT.scope(self, body).await
    }
}

/// Runs `f` with `frame` as the current call: for code that polls (or drops) a body by hand.
pub(crate) fn in_frame<R>(frame: &Arc<Frame>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(frame.clone(), f)
}

/// Whether `key` is being run by this task already (directly or further out).
pub(crate) fn is_running(key: &Key) -> bool {
    CURRENT
        .try_with(|frame| {
            let mut next = Some(frame);
            while let Some(frame) = next {
                if frame.key == *key {
                    return true;
                }
                next = frame.outer.as_ref();
            }
            false
        })
        .unwrap_or(false)
}

/// The idempotent call this task is running, seen from inside its body.
///
/// Pass [`key`](Self::key) downstream (for example as a payment provider's `Idempotency-Key`
/// header) so that a retry after a crash is deduplicated there too.
#[derive(Clone)]
pub struct CallContext(Arc<Frame>);

impl CallContext {
    /// The operation's name.
    pub fn operation(&self) -> &'static str {
        self.0.operation
    }

    /// The call's idempotency key.
    pub fn key(&self) -> Key {
        self.0.key
    }

    /// The fencing token of this call's claim.
    pub fn token(&self) -> Token {
        self.0.token
    }

    /// Whether the lease may be lost: a renewal found another caller owning the key (or the
    /// record removed: true for good), or no renewal was confirmed for a whole lease (the store
    /// unreachable or not answering; true from the moment that lease ends until a renewal is
    /// confirmed again), so another caller may own it. The body may stop early; its result is
    /// recorded only if the claim is still its own when it returns (else the call returns
    /// `Error::LeaseLost`).
    pub fn lease_lost(&self) -> bool {
        self.0.lease.may_be_lost()
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("operation", &self.0.operation)
            .field("key", &self.0.key)
            .field("token", &self.0.token)
            .field("lease_lost", &self.lease_lost())
            .finish()
    }
}

/// The innermost idempotent call running in this task, if any.
///
/// `None` outside an idempotent body, and in tasks the body spawned (task-locals do not cross
/// `tokio::spawn`).
pub fn current() -> Option<CallContext> {
    CURRENT.try_with(|frame| CallContext(frame.clone())).ok()
}
