//! The in-process store: the zero-setup default.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Claim, Record, Store, StoreFuture, deadline};
use crate::{Error, Fingerprint, Key, Token};

/// Default bound on the number of records (see [`MemoryStoreBuilder::max_entries`]).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Default bound on one encoded value (see [`MemoryStoreBuilder::max_value_bytes`]).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
const DEFAULT_SHARDS: usize = 16;
/// The shard index is 16 bits of the key.
const MAX_SHARDS: usize = 1 << 16;
/// Fewer records per shard would make one busy shard refuse claims long before the store is
/// full (the bound is per shard).
const MIN_RECORDS_PER_SHARD: usize = 64;

/// New keys a shard takes, beyond half its records, before it drops its expired records.
const MIN_INSERTS_BETWEEN_PURGES: usize = 64;

/// An in-process, sharded, bounded store. The default when no other store is installed.
///
/// - **Atomicity**: each key lives in one shard behind a mutex; a claim is a single
///   lookup-and-insert under that lock.
/// - **Clock**: [`tokio::time::Instant`], so tests with `#[tokio::test(start_paused = true)]`
///   move leases and TTLs forward instantly with `tokio::time::advance`.
/// - **Capacity**: at most `max_entries` records. The bound is split evenly over the shards
///   (each holds `max_entries / shards`), so the total can never exceed it; a claim is refused
///   when its key's shard is full, which, keys being uniform digests, happens near the bound. A full shard first
///   drops its expired records, then evicts the least recently completed records (a batch of
///   1/64 of the shard, to keep inserts amortised O(1)); it never evicts an in-progress record. If
///   only in-progress records remain, [`Store::claim`] answers [`Error::Capacity`].
/// - **Expiry**: expired records behave as absent at once; they are deleted lazily on access,
///   as a shard grows (a pass after as many new keys as half its records, 64 at least), when
///   a shard is full, by [`Store::purge_expired`] and by [`MemoryStore::spawn_sweeper`]. The
///   process-wide default (made by the first call when no store is installed) has no sweeper:
///   a task would need a time driver, and its timer would let paused time jump forward.
/// - **Waiting**: waiters are woken by a notification when the record is completed, released,
///   removed or taken over; no polling.
///
/// - **Replay cache**: a record replayed through [`Call::run_cached`](crate::Call::run_cached)
///   (or `#[idempotent]` with a `Clone` value) also keeps the value its first replay decoded,
///   so later replays clone it instead of decoding; that copy roughly doubles the record's
///   memory and leaves with the record (expiry, removal, eviction, a new completion).
///
/// Records last as long as the process. Several processes need a shared store.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: usize,
    max_entries: usize,
    max_value_bytes: usize,
}

/// Configures a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: usize,
    max_value_bytes: usize,
    shards: usize,
}

struct Shard {
    map: HashMap<Key, Entry, BuildHasherDefault<KeyBitsHasher>>,
    /// Completed keys in completion order, for least-recently-completed eviction. Entries whose
    /// record changed since are skipped (their `seq` no longer matches).
    completed: VecDeque<(Key, u64)>,
    next_seq: u64,
    capacity: usize,
    /// New keys inserted since the shard last dropped its expired records.
    inserts_since_purge: usize,
}

struct Entry {
    fingerprint: Fingerprint,
    state: State,
}

enum State {
    InProgress {
        token: Token,
        lease_until: Instant,
        /// Created by the first waiter, so uncontended claims allocate nothing for it.
        waiters: Option<Arc<Notify>>,
    },
    Completed {
        value: Bytes,
        expires_at: Instant,
        seq: u64,
        /// The value decoded by the first replay of a `Clone` type (see
        /// [`MemoryStore::replay_at`]): later replays clone it instead of decoding again.
        decoded: Option<Box<dyn Any + Send + Sync>>,
    },
}

/// A completed record found by [`MemoryStore::replay_at`].
pub(crate) struct Replay<T> {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) value: ReplayValue<T>,
}

/// The value of a completed record, as kept.
pub(crate) enum ReplayValue<T> {
    /// A clone of what an earlier replay decoded and kept (see
    /// [`MemoryStore::keep_decoded`]).
    Decoded(T),
    /// The encoded value, and the completion it belongs to.
    Encoded { bytes: Bytes, seq: u64 },
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        match &self.state {
            State::InProgress { lease_until, .. } => *lease_until <= now,
            State::Completed { expires_at, .. } => *expires_at <= now,
        }
    }

    fn wake_waiters(&self) {
        if let State::InProgress {
            waiters: Some(notify),
            ..
        } = &self.state
        {
            notify.notify_waiters();
        }
    }
}

/// Keys are already uniform blake3 digests: hashing them again would only cost time.
#[derive(Default)]
struct KeyBitsHasher(u64);

impl Hasher for KeyBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `Key` hashes as its 32-byte array: take 8 bytes that the shard index does not use.
        if let Some(chunk) = bytes.get(8..16) {
            self.0 = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The array length prefix carries no information.
    }
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        MemoryStoreBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            shards: DEFAULT_SHARDS,
        }
    }
}

impl MemoryStoreBuilder {
    /// Upper bound on stored records, in progress or completed (default
    /// [`DEFAULT_MAX_ENTRIES`] = 100,000). Values below 1 are raised to 1.
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// Upper bound on one encoded value in bytes (default 1 MiB); larger values are refused
    /// with [`Error::ValueTooLarge`] and the claim stays in place for the owner to release.
    pub fn max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// Number of lock shards (default 16). More shards mean less lock contention between
    /// unrelated keys. Rounded down to a power of two, to at most 65,536 (the shard is picked
    /// by 16 bits of the key) and so that every shard holds at least 64 records: the bound is
    /// split evenly over the shards, and a store of fewer than 128 records has one shard.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let wanted = self
            .shards
            .min(MAX_SHARDS)
            .min(self.max_entries / MIN_RECORDS_PER_SHARD)
            .max(1);
        let shards = 1usize << wanted.ilog2();
        let capacity = self.max_entries / shards;
        MemoryStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        completed: VecDeque::new(),
                        next_seq: 0,
                        capacity,
                        inserts_since_purge: 0,
                    })
                })
                .collect(),
            shard_mask: shards - 1,
            max_entries: self.max_entries,
            max_value_bytes: self.max_value_bytes,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::builder().build()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("max_entries", &self.max_entries)
            .field("len", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// Its [`Store::name`]: `"memory"`.
    pub const NAME: &'static str = "memory";

    /// A store with the default bounds.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Configures bounds and sharding.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// Number of records held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether the store holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured bound on records.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Spawns a task that purges expired records every `every` (at least every millisecond).
    /// It holds only a weak reference: it stops by itself once every `Arc` of this store is
    /// dropped. Needs a tokio runtime.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                let purged = store.purge_now(usize::MAX);
                if purged > 0 {
                    tracing::debug!(target: "idem", purged, "memory store sweep");
                }
            }
        })
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let index = usize::from(key.as_bytes()[0]) | usize::from(key.as_bytes()[1]) << 8;
        &self.shards[index & self.shard_mask]
    }

    /// Synchronous [`Store::claim`].
    pub(crate) fn claim_now(
        &self,
        key: &Key,
        fingerprint: &Fingerprint,
        token: Token,
        lease: Duration,
    ) -> Result<Claim, Error> {
        self.claim_at(key, fingerprint, token, lease, Instant::now())
    }

    /// [`claim_now`](Self::claim_now) at `now` (a fresh reading of the store's clock), for
    /// callers that need the claim's time themselves.
    pub(crate) fn claim_at(
        &self,
        key: &Key,
        fingerprint: &Fingerprint,
        token: Token,
        lease: Duration,
        now: Instant,
    ) -> Result<Claim, Error> {
        let mut shard = self.shard(key).lock();
        if let Some(entry) = shard.map.get_mut(key) {
            if !entry.is_expired(now) {
                return Ok(match &entry.state {
                    State::Completed { value, .. } => Claim::Completed {
                        fingerprint: entry.fingerprint,
                        value: value.clone(),
                    },
                    State::InProgress { lease_until, .. } => Claim::InProgress {
                        fingerprint: entry.fingerprint,
                        remaining: *lease_until - now,
                    },
                });
            }
            // Expired or lease lapsed: take it over in place. Waiters of a lapsed owner re-check.
            entry.wake_waiters();
            *entry = Entry::in_progress(*fingerprint, token, deadline(now, lease));
            return Ok(Claim::Acquired);
        }
        if shard.map.len() >= shard.capacity {
            shard.make_room(now);
            if shard.map.len() >= shard.capacity {
                return Err(Error::Capacity {
                    max_entries: self.max_entries,
                    shard_capacity: shard.capacity,
                });
            }
        }
        // Expired records are dropped as the shard grows: a pass over the shard after as many
        // new keys as half its records (amortised O(1) per insert), so a store nobody sweeps
        // (the process-wide default) gives their memory back without waiting to be full.
        shard.inserts_since_purge += 1;
        if shard.inserts_since_purge > shard.map.len() / 2 + MIN_INSERTS_BETWEEN_PURGES {
            shard.purge_expired(now, usize::MAX);
            shard.inserts_since_purge = 0;
        }
        shard.map.insert(
            *key,
            Entry::in_progress(*fingerprint, token, deadline(now, lease)),
        );
        Ok(Claim::Acquired)
    }

    /// The completed, live record of `key` at `now`, if there is one: the engine's replay
    /// path, which needs no token, guard or claim when the answer is already recorded (a
    /// completed record cannot change until it expires or is removed, so reading it first and
    /// claiming only when it is absent keeps every claim atomic).
    ///
    /// A decoded value kept by an earlier replay is cloned out by `clone_out` under the shard's
    /// lock (cheaper than sharing it, which costs two atomic operations per replay); if there
    /// is none, or `clone_out` gives none (not a `T`, or a caller that decodes every replay),
    /// the answer is the encoded value.
    #[inline]
    pub(crate) fn replay_at<T>(
        &self,
        key: &Key,
        now: Instant,
        clone_out: impl FnOnce(&(dyn Any + Send + Sync)) -> Option<T>,
    ) -> Option<Replay<T>> {
        let shard = self.shard(key).lock();
        match shard.map.get(key) {
            Some(Entry {
                fingerprint,
                state:
                    State::Completed {
                        value,
                        expires_at,
                        seq,
                        decoded,
                    },
            }) if *expires_at > now => Some(Replay {
                fingerprint: *fingerprint,
                value: match decoded.as_deref().and_then(clone_out) {
                    Some(value) => ReplayValue::Decoded(value),
                    _ => ReplayValue::Encoded {
                        bytes: value.clone(),
                        seq: *seq,
                    },
                },
            }),
            _ => None,
        }
    }

    /// Keeps `decoded` (the value of completion `seq` of `key`, decoded) for later replays,
    /// unless the record changed meanwhile.
    pub(crate) fn keep_decoded(&self, key: &Key, seq: u64, decoded: Box<dyn Any + Send + Sync>) {
        let mut shard = self.shard(key).lock();
        if let Some(Entry {
            state:
                State::Completed {
                    seq: current,
                    decoded: slot,
                    ..
                },
            ..
        }) = shard.map.get_mut(key)
            && *current == seq
        {
            *slot = Some(decoded);
        }
    }

    /// Synchronous [`Store::complete`].
    pub(crate) fn complete_now(
        &self,
        key: &Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, Error> {
        if value.len() > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        let now = Instant::now();
        let mut guard = self.shard(key).lock();
        let shard = &mut *guard;
        let Some(entry) = shard.map.get_mut(key) else {
            return Ok(false);
        };
        if !entry.is_owned_by(token, now) {
            return Ok(false);
        }
        entry.wake_waiters();
        let seq = shard.next_seq;
        shard.next_seq += 1;
        entry.state = State::Completed {
            value,
            expires_at: deadline(now, ttl),
            seq,
            decoded: None,
        };
        shard.completed.push_back((*key, seq));
        shard.compact_queue();
        Ok(true)
    }

    /// Synchronous [`Store::release`].
    pub(crate) fn release_now(&self, key: &Key, token: Token) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        match shard.map.get(key) {
            Some(entry) if entry.is_owned_by(token, now) => {
                entry.wake_waiters();
                shard.map.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Synchronous [`Store::renew`].
    pub(crate) fn renew_now(&self, key: &Key, token: Token, lease: Duration) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        match shard.map.get_mut(key) {
            Some(entry) if entry.is_owned_by(token, now) => {
                if let State::InProgress { lease_until, .. } = &mut entry.state {
                    *lease_until = deadline(now, lease);
                }
                true
            }
            _ => false,
        }
    }

    /// Synchronous [`Store::get`].
    pub(crate) fn get_now(&self, key: &Key) -> Option<Record> {
        let now = Instant::now();
        let shard = self.shard(key).lock();
        let entry = shard.map.get(key).filter(|e| !e.is_expired(now))?;
        Some(match &entry.state {
            State::InProgress { lease_until, .. } => Record::InProgress {
                fingerprint: entry.fingerprint,
                remaining: *lease_until - now,
            },
            State::Completed {
                value, expires_at, ..
            } => Record::Completed {
                fingerprint: entry.fingerprint,
                value: value.clone(),
                expires_in: *expires_at - now,
            },
        })
    }

    /// Synchronous [`Store::remove`].
    pub(crate) fn remove_now(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        match shard.map.remove(key) {
            Some(entry) => {
                entry.wake_waiters();
                !entry.is_expired(now)
            }
            None => false,
        }
    }

    /// Synchronous [`Store::purge_expired`].
    pub(crate) fn purge_now(&self, limit: usize) -> usize {
        let now = Instant::now();
        let mut purged = 0;
        for shard in self.shards.iter() {
            if purged >= limit {
                break;
            }
            purged += shard.lock().purge_expired(now, limit - purged);
        }
        purged
    }

    /// Waits until `key` may have left the in-progress state (a change, or its lease lapsing),
    /// or `max` passes.
    pub(crate) async fn wait_now(&self, key: &Key, max: Duration) {
        let Some(notify) = self.waiters_of(key) else {
            return;
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        let lapses_at = {
            // Register under the shard lock, after re-checking that the same claim is still
            // running: every state change notifies under this lock, so no wake-up is missed.
            let shard = self.shard(key).lock();
            let Some(State::InProgress {
                waiters: Some(current),
                lease_until,
                ..
            }) = shard.map.get(key).map(|e| &e.state)
            else {
                return;
            };
            if !Arc::ptr_eq(current, &notify) {
                return;
            }
            notified.as_mut().enable();
            *lease_until
        };
        // A lapsing lease sends no notification: wake up then too (the claim may be taken over).
        let until = deadline(Instant::now(), max).min(lapses_at);
        let _ = tokio::time::timeout_at(until, notified).await;
    }

    fn waiters_of(&self, key: &Key) -> Option<Arc<Notify>> {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        let entry = shard.map.get_mut(key).filter(|e| !e.is_expired(now))?;
        match &mut entry.state {
            State::InProgress { waiters, .. } => Some(
                waiters
                    .get_or_insert_with(|| Arc::new(Notify::new()))
                    .clone(),
            ),
            State::Completed { .. } => None,
        }
    }
}

impl Entry {
    fn in_progress(fingerprint: Fingerprint, token: Token, lease_until: Instant) -> Entry {
        Entry {
            fingerprint,
            state: State::InProgress {
                token,
                lease_until,
                waiters: None,
            },
        }
    }

    /// Whether `token` holds a live claim on this record.
    fn is_owned_by(&self, token: Token, now: Instant) -> bool {
        matches!(&self.state, State::InProgress { token: t, lease_until, .. } if *t == token && *lease_until > now)
    }
}

impl Shard {
    /// Frees at least one slot if anything but live in-progress records is held.
    fn make_room(&mut self, now: Instant) {
        if self.purge_expired(now, usize::MAX) > 0 {
            return;
        }
        // Evict a batch of the least recently completed, so the next inserts need no scan.
        let mut to_evict = (self.capacity / 64).max(1);
        while to_evict > 0 {
            let Some((key, seq)) = self.completed.pop_front() else {
                break;
            };
            let current = matches!(
                self.map.get(&key).map(|e| &e.state),
                Some(State::Completed { seq: s, .. }) if *s == seq
            );
            if current {
                self.map.remove(&key);
                to_evict -= 1;
            }
        }
    }

    fn purge_expired(&mut self, now: Instant, limit: usize) -> usize {
        let mut purged = 0;
        self.map.retain(|_, entry| {
            if purged < limit && entry.is_expired(now) {
                entry.wake_waiters();
                purged += 1;
                false
            } else {
                true
            }
        });
        if purged > 0 {
            self.compact_queue();
        }
        purged
    }

    /// Drops stale queue entries once they outnumber the records, keeping the queue O(records).
    fn compact_queue(&mut self) {
        if self.completed.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.completed.retain(|(key, seq)| {
                matches!(map.get(key).map(|e| &e.state), Some(State::Completed { seq: s, .. }) if s == seq)
            });
        }
    }
}

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn describe(&self) -> String {
        let shards = self.shards.len();
        let plural = if shards == 1 { "" } else { "s" };
        format!(
            "memory (this process only; at most {} records in {shards} shard{plural})",
            self.max_entries
        )
    }

    fn claim<'a>(
        &'a self,
        key: &'a Key,
        fingerprint: &'a Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(std::future::ready(self.claim_now(
            key,
            fingerprint,
            token,
            lease,
        )))
    }

    fn complete<'a>(
        &'a self,
        key: &'a Key,
        token: Token,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(
            self.complete_now(key, token, value, ttl),
        ))
    }

    fn release<'a>(&'a self, key: &'a Key, token: Token) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.release_now(key, token))))
    }

    fn renew<'a>(&'a self, key: &'a Key, token: Token, lease: Duration) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.renew_now(key, token, lease))))
    }

    fn get<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, Option<Record>> {
        Box::pin(std::future::ready(Ok(self.get_now(key))))
    }

    fn remove<'a>(&'a self, key: &'a Key) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.remove_now(key))))
    }

    fn purge_expired(&self, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(self.purge_now(limit))))
    }

    fn wait_for_change<'a>(&'a self, key: &'a Key, max: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.wait_now(key, max).await;
            Ok(())
        })
    }

    fn as_memory(&self) -> Option<&MemoryStore> {
        Some(self)
    }
}
