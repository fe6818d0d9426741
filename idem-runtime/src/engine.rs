//! The engine: one idempotent call, driven through the record state machine of a store.
//!
//! ```text
//! claim ─┬─ Acquired ──── run body ─┬─ Ok(v)  → complete(v) → Ok(v)        (LeaseLost if fenced out)
//!        │                          ├─ Err(e) → release      → Err(e)
//!        │                          └─ panic / dropped → release (drop guard), panic resumes
//!        ├─ Completed ── same fingerprint? → decode → Ok(v)   (replay; the body never runs)
//!        └─ InProgress ─ same fingerprint? → reject: InFlight
//!                                          → wait: until completed (replay), released (OwnerFailed)
//!                                                  or the wait timeout (InFlight)
//! ```
//! A different fingerprint is [`Error::PayloadMismatch`] at once, in either state.

use std::borrow::Cow;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::context::{self, Frame};
use crate::operation::{Call, OnConflict, Operation};
use crate::store::{Claim, MemoryStore, Record, Store};
use crate::{Error, Fingerprint, Key, Token, record};

impl Call<'_> {
    /// Runs the call: replays a recorded result, waits for or rejects a running duplicate, or
    /// claims the key, runs `body` and records its `Ok` value.
    ///
    /// `Err` from the body releases the claim (a later call runs again) and is returned as is.
    /// Idempotency failures arrive as `E::from(idem_runtime::Error)`.
    pub async fn run<T, E, F>(mut self, body: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
    {
        let resolved = self.resolve_store()?;
        execute(self.operation, resolved.get(), self.key, self.fingerprint, body).await
    }
}

async fn execute<T, E, F>(
    op: &Operation,
    store: &Arc<dyn Store>,
    key: Key,
    fingerprint: Fingerprint,
    body: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
    E: From<Error>,
{
    if context::is_running(&key) {
        return Err(Error::Reentrant {
            operation: op.name(),
            key,
        }
        .into());
    }
    let backend = Backend::of(store);
    let token = Token::generate();
    // Armed before the claim is sent: if this future is dropped while a remote claim is in
    // flight, the claim may have been recorded, and the token is all it takes to release it.
    let mut guard = ClaimGuard::new(Cow::Borrowed(store), key, token);
    let claim = backend.claim(&key, &fingerprint, token, op.lease()).await;
    match claim? {
        Claim::Acquired => {
            tracing::debug!(target: "idem", operation = op.name(), %key, "claimed; running the body");
            run_owned(op, backend, guard, body).await
        }
        Claim::Completed {
            fingerprint: recorded,
            value,
        } => {
            guard.disarm();
            check_fingerprint(op, &key, &recorded, &fingerprint)?;
            tracing::debug!(target: "idem", operation = op.name(), %key, "replayed a recorded result");
            Ok(record::decode(op.name(), &value)?)
        }
        Claim::InProgress {
            fingerprint: running,
            remaining,
        } => {
            guard.disarm();
            check_fingerprint(op, &key, &running, &fingerprint)?;
            match op.on_conflict() {
                OnConflict::Reject => {
                    tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: rejected");
                    Err(in_flight(op, key, remaining).into())
                }
                OnConflict::Wait => Ok(wait_for_owner(op, backend, key, &fingerprint, remaining).await?),
            }
        }
    }
}

async fn run_owned<T, E, F>(
    op: &Operation,
    backend: Backend<'_>,
    mut guard: ClaimGuard<'_>,
    body: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    T: Serialize,
    E: From<Error>,
{
    let (key, token) = (guard.key, guard.token);
    let frame = Frame::enter(op.name(), key, token);
    let outcome = drive(body, &frame, &guard.store, op.lease()).await;
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            guard.release_quietly().await;
            tracing::debug!(target: "idem", operation = op.name(), %key, "body failed; claim released");
            return Err(error);
        }
    };
    let bytes = match record::encode(op.name(), &value) {
        Ok(bytes) => bytes,
        Err(error) => {
            guard.release_quietly().await;
            return Err(error.into());
        }
    };
    // A failed `complete` leaves the guard armed: it releases the claim when dropped.
    if backend.complete(&key, token, bytes, op.ttl()).await? {
        guard.disarm();
        Ok(value)
    } else {
        guard.disarm();
        frame.lease_lost.store(true, Ordering::Release);
        tracing::warn!(target: "idem", operation = op.name(), %key, "lease lost; result not recorded");
        Err(Error::LeaseLost {
            operation: op.name(),
            key,
        }
        .into())
    }
}

/// Polls the body inside its call frame. If the body is still running after a third of the
/// lease, a `'static` renewal task takes over keeping the lease alive; short bodies (the common
/// case) never pay for spawning it.
async fn drive<F: Future>(body: F, frame: &Arc<Frame>, store: &Arc<dyn Store>, lease: Duration) -> F::Output {
    let period = renewal_period(lease);
    let mut body = pin!(frame.clone().scope(body));
    let mut first_renewal = pin!(tokio::time::sleep(period));
    let mut renewer: Option<AbortOnDrop> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = body.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        if renewer.is_none() && first_renewal.as_mut().poll(cx).is_ready() {
            let task = renew_lease(store.clone(), frame.clone(), lease, period);
            renewer = Some(AbortOnDrop(tokio::spawn(task)));
        }
        Poll::Pending
    })
    .await
}

fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

async fn renew_lease(store: Arc<dyn Store>, frame: Arc<Frame>, lease: Duration, period: Duration) {
    loop {
        match store.renew(&frame.key, frame.token, lease).await {
            Ok(true) => {}
            Ok(false) => {
                frame.lease_lost.store(true, Ordering::Release);
                tracing::warn!(
                    target: "idem",
                    operation = frame.operation,
                    key = %frame.key,
                    "lease lost while the body runs: another caller took the key over"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(target: "idem", operation = frame.operation, key = %frame.key, %error, "lease renewal failed; retrying");
            }
        }
        tokio::time::sleep(period).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn wait_for_owner<T: DeserializeOwned>(
    op: &Operation,
    backend: Backend<'_>,
    key: Key,
    fingerprint: &Fingerprint,
    mut remaining: Duration,
) -> Result<T, Error> {
    tracing::debug!(target: "idem", operation = op.name(), %key, "conflict: waiting for the running call");
    let deadline = Instant::now() + op.wait_timeout();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(in_flight(op, key, remaining));
        }
        // Wake up at the latest when the owner's lease would lapse, to notice a crashed owner.
        let max = (deadline - now).min(remaining.max(Duration::from_millis(1)));
        backend.wait_for_change(&key, max).await?;
        match backend.get(&key).await? {
            Some(Record::Completed {
                fingerprint: recorded,
                value,
                ..
            }) => {
                check_fingerprint(op, &key, &recorded, fingerprint)?;
                tracing::debug!(target: "idem", operation = op.name(), %key, "replayed after waiting");
                return record::decode(op.name(), &value);
            }
            Some(Record::InProgress {
                fingerprint: running,
                remaining: left,
            }) => {
                check_fingerprint(op, &key, &running, fingerprint)?;
                remaining = left;
            }
            None => {
                return Err(Error::OwnerFailed {
                    operation: op.name(),
                    key,
                });
            }
        }
    }
}

fn check_fingerprint(op: &Operation, key: &Key, recorded: &Fingerprint, ours: &Fingerprint) -> Result<(), Error> {
    if recorded == ours {
        Ok(())
    } else {
        tracing::debug!(target: "idem", operation = op.name(), %key, "payload mismatch");
        Err(Error::PayloadMismatch {
            operation: op.name(),
            key: *key,
        })
    }
}

fn in_flight(op: &Operation, key: Key, remaining: Duration) -> Error {
    Error::InFlight {
        operation: op.name(),
        key,
        retry_after: remaining,
    }
}

/// The store, dispatched statically when it is the built-in memory store (no boxed futures).
#[derive(Clone, Copy)]
pub(crate) enum Backend<'a> {
    Memory(&'a MemoryStore),
    Dyn(&'a dyn Store),
}

impl<'a> Backend<'a> {
    pub(crate) fn of(store: &'a Arc<dyn Store>) -> Self {
        match store.as_memory() {
            Some(memory) => Backend::Memory(memory),
            None => Backend::Dyn(&**store),
        }
    }

    pub(crate) async fn claim(self, key: &Key, fp: &Fingerprint, token: Token, lease: Duration) -> Result<Claim, Error> {
        match self {
            Backend::Memory(m) => m.claim_now(key, fp, token, lease),
            Backend::Dyn(s) => s.claim(key, fp, token, lease).await,
        }
    }

    pub(crate) async fn complete(self, key: &Key, token: Token, value: Bytes, ttl: Duration) -> Result<bool, Error> {
        match self {
            Backend::Memory(m) => m.complete_now(key, token, value, ttl),
            Backend::Dyn(s) => s.complete(key, token, value, ttl).await,
        }
    }

    pub(crate) async fn get(self, key: &Key) -> Result<Option<Record>, Error> {
        match self {
            Backend::Memory(m) => Ok(m.get_now(key)),
            Backend::Dyn(s) => s.get(key).await,
        }
    }

    async fn wait_for_change(self, key: &Key, max: Duration) -> Result<(), Error> {
        match self {
            Backend::Memory(m) => {
                m.wait_now(key, max).await;
                Ok(())
            }
            Backend::Dyn(s) => s.wait_for_change(key, max).await,
        }
    }
}

/// Releases a claim unless disarmed: on `Err`, panic (unwinding) and cancellation alike.
pub(crate) struct ClaimGuard<'a> {
    pub(crate) store: Cow<'a, Arc<dyn Store>>,
    pub(crate) key: Key,
    pub(crate) token: Token,
    armed: bool,
}

impl<'a> ClaimGuard<'a> {
    pub(crate) fn new(store: Cow<'a, Arc<dyn Store>>, key: Key, token: Token) -> Self {
        ClaimGuard {
            store,
            key,
            token,
            armed: true,
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Releases now and waits for the store's answer. `Ok(false)`: the claim was not ours any
    /// more (lease lapsed or record removed).
    pub(crate) async fn release(&mut self) -> Result<bool, Error> {
        self.armed = false;
        match Backend::of(&self.store) {
            Backend::Memory(m) => Ok(m.release_now(&self.key, self.token)),
            Backend::Dyn(s) => s.release(&self.key, self.token).await,
        }
    }

    /// [`release`](Self::release) on the engine's error paths, where the caller's own error
    /// wins: a failure is logged and the lease expires instead.
    async fn release_quietly(&mut self) {
        if let Err(error) = self.release().await {
            tracing::warn!(target: "idem", key = %self.key, %error, "release failed; the lease will expire instead");
        }
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::debug!(target: "idem", key = %self.key, "call dropped or panicked; releasing its claim");
        if let Some(memory) = self.store.as_memory() {
            memory.release_now(&self.key, self.token);
            return;
        }
        // A remote release needs a runtime; without one the lease expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            let (key, token) = (self.key, self.token);
            runtime.spawn(async move {
                if let Err(error) = store.release(&key, token).await {
                    tracing::warn!(target: "idem", %key, %error, "release after drop failed; the lease will expire instead");
                }
            });
        }
    }
}
