//! An opt-in, bounded, process-local cache of *completed* records in front of a remote store
//! (`RedisStoreBuilder::local_cache`, `PostgresStoreBuilder::local_cache`).
//!
//! A completed record never changes until it expires or is removed, so a process that has seen
//! one can answer later claims of the same key from memory, without a round trip. Only records
//! observed through a claim (a replay) are cached, with the lifetime the server reported for them
//! at that moment, capped by the configured maximum age. The price is staleness towards *other*
//! processes: a `remove` (`forget`) there is seen here only once the entry's maximum age has
//! passed. A `remove` through the same store instance (or its clones) drops the entry at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::{Fingerprint, Key};

/// Values larger than this are never cached, so that the cache's memory stays bounded by
/// `max_entries` × 64 KiB at most.
pub(crate) const MAX_CACHED_VALUE_BYTES: usize = 64 * 1024;

/// Independent locks, so that concurrent replays of different keys rarely wait for each other
/// (fewer when the cache holds fewer entries: every shard holds at least one).
const SHARDS: usize = 16;

pub(crate) struct LocalCache {
    shards: Box<[Mutex<Shard>]>,
    /// The configured bound: the shards' capacities add up to exactly this.
    max_entries: usize,
    max_age: Duration,
    /// Counts `remove` calls. A claim reads it before it asks the server and caches what it
    /// got only if no removal happened meanwhile: otherwise a replay that raced with a
    /// `remove` in this process could put the removed record back.
    removals: AtomicU64,
}

struct Shard {
    /// At most this many entries (at least 1).
    capacity: usize,
    entries: HashMap<[u8; 32], Entry>,
    /// Keys in insertion order: the oldest entry is evicted first when the shard is full.
    /// A key appears here exactly once while it is in `entries`.
    order: VecDeque<[u8; 32]>,
}

struct Entry {
    fingerprint: Fingerprint,
    value: Bytes,
    /// When the entry stops being served: the record's own expiry as the server reported it
    /// (counted from before the request was sent, so never later than the server's), or the
    /// maximum age, whichever comes first.
    until: Instant,
}

impl LocalCache {
    /// A cache of at most `max_entries` records in total, each served for at most `max_age`;
    /// `None` when either is zero (no cache).
    ///
    /// The bound is split over the shards exactly (never rounded up): `min(max_entries, 16)`
    /// shards, whose capacities differ by at most one and add up to `max_entries`.
    pub(crate) fn new(max_entries: usize, max_age: Duration) -> Option<LocalCache> {
        if max_entries == 0 || max_age.is_zero() {
            return None;
        }
        let count = max_entries.min(SHARDS);
        let (base, extra) = (max_entries / count, max_entries % count);
        let shards = (0..count)
            .map(|i| {
                Mutex::new(Shard {
                    capacity: base + usize::from(i < extra),
                    entries: HashMap::new(),
                    order: VecDeque::new(),
                })
            })
            .collect();
        Some(LocalCache {
            shards,
            max_entries,
            max_age,
            removals: AtomicU64::new(0),
        })
    }

    pub(crate) fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub(crate) fn max_age(&self) -> Duration {
        self.max_age
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        // Key digests are uniformly distributed: any bytes pick a shard evenly (two bytes, so
        // that a shard count that does not divide 256 skews it by at most 1/4096).
        let bits = usize::from(u16::from_le_bytes([key.as_bytes()[30], key.as_bytes()[31]]));
        &self.shards[bits % self.shards.len()]
    }

    /// The completed record of `key`, if cached and still live.
    pub(crate) fn get(&self, key: &Key) -> Option<(Fingerprint, Bytes)> {
        let mut shard = self.shard(key).lock();
        let entry = shard.entries.get(key.as_bytes())?;
        if Instant::now() < entry.until {
            return Some((entry.fingerprint, entry.value.clone()));
        }
        shard.remove(key.as_bytes());
        None
    }

    /// To be read before a request whose answer may be [inserted](Self::insert).
    pub(crate) fn epoch(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Caches the completed record of `key` that a request sent at `sent_at` (when the cache
    /// was at `epoch`) found, with `lifetime` left on the server's clock at that moment.
    pub(crate) fn insert(
        &self,
        key: &Key,
        fingerprint: Fingerprint,
        value: &Bytes,
        sent_at: Instant,
        epoch: u64,
        lifetime: Duration,
    ) {
        if value.len() > MAX_CACHED_VALUE_BYTES {
            return;
        }
        let Some(until) = sent_at.checked_add(lifetime.min(self.max_age)) else {
            return;
        };
        if until <= Instant::now() {
            return;
        }
        let entry = Entry {
            fingerprint,
            value: value.clone(),
            until,
        };
        let mut shard = self.shard(key).lock();
        // Checked under the lock that `remove` takes after counting: either the removal is
        // seen here, or it removes this entry after.
        if self.removals.load(Ordering::Acquire) != epoch {
            return;
        }
        if shard.entries.insert(*key.as_bytes(), entry).is_none() {
            shard.order.push_back(*key.as_bytes());
            while shard.entries.len() > shard.capacity {
                let Some(oldest) = shard.order.pop_front() else {
                    break;
                };
                shard.entries.remove(&oldest);
            }
        }
    }

    /// Forgets `key`. Called before and again after the store removes the record, so that no
    /// replay in flight meanwhile can cache it again.
    pub(crate) fn remove(&self, key: &Key) {
        self.removals.fetch_add(1, Ordering::AcqRel);
        self.shard(key).lock().remove(key.as_bytes());
    }
}

impl Shard {
    fn remove(&mut self, key: &[u8; 32]) {
        if self.entries.remove(key).is_some()
            && let Some(at) = self.order.iter().position(|k| k == key)
        {
            self.order.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        let mut bytes = [n; 32];
        (bytes[30], bytes[31]) = (0, 0); // all in one shard
        Key::from_bytes(bytes)
    }

    /// Keys spread over every shard.
    fn spread_key(n: u32) -> Key {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[28..].copy_from_slice(&n.to_le_bytes());
        Key::from_bytes(bytes)
    }

    #[test]
    fn never_holds_more_than_max_entries() {
        let (fp, value) = (Fingerprint::NONE, Bytes::from_static(b"v"));
        for max_entries in (1..=40).chain([100, 1000]) {
            let cache = LocalCache::new(max_entries, Duration::from_secs(60)).unwrap();
            assert_eq!(cache.max_entries(), max_entries);
            let capacity: usize = cache.shards.iter().map(|s| s.lock().capacity).sum();
            assert_eq!(capacity, max_entries);
            assert!(cache.shards.iter().all(|s| s.lock().capacity >= 1));
            let now = Instant::now();
            for n in 0..u32::try_from(max_entries * 4).unwrap() {
                let ttl = Duration::from_secs(60);
                cache.insert(&spread_key(n), fp, &value, now, cache.epoch(), ttl);
            }
            let held: usize = cache.shards.iter().map(|s| s.lock().entries.len()).sum();
            assert!(held <= max_entries, "{held} > {max_entries}");
            assert!(held > 0);
        }
    }

    #[test]
    fn serves_until_the_shorter_of_lifetime_and_max_age() {
        let cache = LocalCache::new(64, Duration::from_secs(60)).unwrap();
        let (fp, value) = (Fingerprint::from_bytes([7; 32]), Bytes::from_static(b"v"));
        let now = Instant::now();
        cache.insert(
            &key(1),
            fp,
            &value,
            now,
            cache.epoch(),
            Duration::from_secs(3600),
        );
        assert_eq!(cache.get(&key(1)), Some((fp, value.clone())));
        // Already past its lifetime: not cached at all.
        cache.insert(&key(2), fp, &value, now, cache.epoch(), Duration::ZERO);
        assert_eq!(cache.get(&key(2)), None);
        cache.insert(
            &key(3),
            fp,
            &value,
            now,
            cache.epoch(),
            Duration::from_millis(20),
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&key(3)), None, "expired with the record");
        cache.remove(&key(1));
        assert_eq!(cache.get(&key(1)), None);
        // A replay that was sent before a removal does not put the record back.
        let before = cache.epoch();
        cache.remove(&key(1));
        cache.insert(&key(1), fp, &value, now, before, Duration::from_secs(60));
        assert_eq!(cache.get(&key(1)), None);
        assert!(LocalCache::new(0, Duration::from_secs(1)).is_none());
        assert!(LocalCache::new(1, Duration::ZERO).is_none());
    }

    #[test]
    fn bounded_oldest_first_and_large_values_skipped() {
        let cache = LocalCache::new(SHARDS * 2, Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        // Inserts as a replay sent just now would, with a record lifetime of a minute.
        let put = |n: u8, value: &Bytes| {
            let ttl = Duration::from_secs(60);
            cache.insert(&key(n), Fingerprint::NONE, value, now, cache.epoch(), ttl);
        };
        let value = Bytes::from_static(b"v");
        for n in 1..=3 {
            put(n, &value);
        }
        assert_eq!(cache.get(&key(1)), None, "the oldest was evicted");
        assert!(cache.get(&key(2)).is_some() && cache.get(&key(3)).is_some());
        // Re-inserting a cached key does not duplicate it in the eviction order.
        put(3, &value);
        cache.remove(&key(2));
        put(4, &value);
        assert!(cache.get(&key(3)).is_some() && cache.get(&key(4)).is_some());
        let shard = cache.shard(&key(3)).lock();
        assert_eq!(shard.entries.len(), shard.order.len());
        drop(shard);

        put(5, &Bytes::from(vec![0; MAX_CACHED_VALUE_BYTES + 1]));
        assert_eq!(cache.get(&key(5)), None);
    }
}
