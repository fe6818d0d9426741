//! Probing a call for its key without running it: [`key_of`](crate::key_of) and
//! [`forget_call`](crate::forget_call).
//!
//! The probe runs the call's future inside a task-local slot. The generated code computes the
//! key as usual, then (in [`run`](super::run)) hands it to the slot and returns an error
//! instead of claiming the key or running the body. A process-wide counter of active probes
//! keeps the normal path to one relaxed atomic load.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::store::Store;
use crate::{Error, Key};

/// What a probed call reported.
pub(crate) struct Probed {
    /// The operation's name.
    pub(crate) operation: &'static str,
    pub(crate) key: Result<Key, Error>,
    pub(crate) store: Option<Arc<dyn Store>>,
}

tokio::task_local! {
    static PROBE: RefCell<Option<Probed>>;
}

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

pub(crate) enum Offer {
    /// This task is probing: the key was taken; return this error instead of running.
    Taken(Error),
    /// Not probing: run as usual.
    NotProbed(Result<Key, Error>),
}

/// Offers a call's key to the probe of this task, if any.
#[inline]
pub(crate) fn offer(
    operation: &'static str,
    key: Result<Key, Error>,
    store: Option<&Arc<dyn Store>>,
) -> Offer {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return Offer::NotProbed(key);
    }
    offer_slow(operation, key, store)
}

/// Whether some task is probing (`key_of`/`forget_call`): one atomic load.
#[inline(always)]
pub(crate) fn any_active() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

/// Offers a hand-built call's key to the probe of this task: the refusal to return instead of
/// running, if this task is probing.
#[cold]
#[inline(never)]
pub(crate) fn refusal_for(
    operation: &'static str,
    key: Key,
    store: Option<&Arc<dyn Store>>,
) -> Option<Error> {
    match offer(operation, Ok(key), store) {
        Offer::Taken(refusal) => Some(refusal),
        Offer::NotProbed(_) => None,
    }
}

/// Offers `error` in place of a call's key (the operation's name is not unique): the probe of
/// this task, if any, reports it as the call's outcome. Returns the error the call returns.
#[cold]
pub(crate) fn offer_error(
    operation: &'static str,
    error: Error,
    store: Option<&Arc<dyn Store>>,
) -> Error {
    match offer(operation, Err(error), store) {
        Offer::Taken(refusal) => refusal,
        Offer::NotProbed(Err(error)) => error,
        Offer::NotProbed(Ok(_)) => unreachable!("an error was offered"),
    }
}

#[cold]
fn offer_slow(
    operation: &'static str,
    key: Result<Key, Error>,
    store: Option<&Arc<dyn Store>>,
) -> Offer {
    let mut key = Some(key);
    // Inside a probe every call is refused (none runs); the first one's key is kept, with the
    // store it would use: its own, else the task's scoped one (`with_store` inside the probed
    // future), which `forget_call` cannot see from outside.
    let probing = PROBE
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                *slot = Some(Probed {
                    operation,
                    key: key.take().expect("offered once"),
                    store: store.cloned().or_else(crate::global::scoped_store),
                });
            }
        })
        .is_ok();
    match key {
        Some(key) if !probing => Offer::NotProbed(key),
        _ => Offer::Taken(Error::Config(format!(
            "operation `{operation}` was not run: this call was made inside \
             idem_runtime::key_of/forget_call, which only compute its key"
        ))),
    }
}

struct ActiveGuard;

impl ActiveGuard {
    fn new() -> Self {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        ActiveGuard
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `call` as a probe and returns what its first idempotent call reported.
pub(crate) async fn probe<F: Future>(call: F) -> Result<Probed, Error> {
    let _active = ActiveGuard::new();
    let probed = PROBE
        .scope(RefCell::new(None), async move {
            drop(call.await);
            PROBE.with(|slot| slot.borrow_mut().take())
        })
        .await;
    probed.ok_or_else(|| {
        Error::Config(
            "idem_runtime::key_of/forget_call: the future made no idempotent call (an \
             #[idempotent] fn, or `Operation::call(..).run(..)`, in this task); pass the call \
             itself, e.g. `key_of(charge(req, &gateway))`"
                .into(),
        )
    })
}
