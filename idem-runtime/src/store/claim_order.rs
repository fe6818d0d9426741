//! Which Redis command a claim sends first, and the statistic the adaptive order follows.

use std::sync::atomic::{AtomicU32, Ordering};

/// The order of a [`RedisStore`](super::RedisStore)'s claim commands (see
/// [`RedisStoreBuilder::claim_order`](super::RedisStoreBuilder::claim_order)).
///
/// Every order claims with the same single atomic command (`SET … NX PX GET`); they differ in
/// whether a plain `GET` is sent before it. The trade-off (Redis 7.0, docs/PERFORMANCE.md):
/// a `GET` costs the server about half the work of the claim command, so replays that are
/// answered by it are cheaper, but a first call then takes three round trips instead of two
/// and about 5 µs more CPU (client and server), against about 0.4 µs saved per replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClaimOrder {
    /// Claim first: a replay is answered by the claim command (1 round trip), a first call
    /// takes 2 (claim, complete).
    ClaimFirst,
    /// Read first: a `GET` answers replays (1 round trip, half the server's work); a first call
    /// takes 3 (`GET`, claim, complete).
    ReadFirst,
    /// Claim first, switching to read first while at least 95 % of this store's recent claims
    /// (an exponential average over roughly the last 256) found a completed record, as in a
    /// storm of retries or redelivered messages, and back as soon as first calls return
    /// (13 in a row). The default.
    #[default]
    Adaptive,
}

/// The share of recent claims that found a completed record: an exponentially weighted
/// average, in 1/65,536ths, each claim weighing 1/256.
#[derive(Debug, Default)]
pub(crate) struct ReplayShare(AtomicU32);

const ONE: u32 = 1 << 16;
/// [`ClaimOrder::Adaptive`] reads first above this share: the break-even of the measured
/// costs above is about 92 % replays; 95 % leaves first calls their two round trips unless
/// nearly every call is a replay.
const READ_FIRST_ABOVE: u32 = ONE / 100 * 95;

impl ReplayShare {
    /// Counts one claim's outcome. Racing updates may lose a sample: the share only steers the
    /// order of commands, never what a claim decides.
    pub(crate) fn note(&self, replay: bool) {
        let share = self.0.load(Ordering::Relaxed);
        let next = if replay {
            share + ((ONE - share) >> 8)
        } else {
            share - (share >> 8)
        };
        self.0.store(next, Ordering::Relaxed);
    }

    /// Whether nearly all recent claims were replays.
    pub(crate) fn mostly_replays(&self) -> bool {
        self.0.load(Ordering::Relaxed) > READ_FIRST_ABOVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(share: &ReplayShare, replays: bool, n: usize) {
        for _ in 0..n {
            share.note(replays);
        }
    }

    #[test]
    fn a_run_of_replays_switches_to_read_first_and_a_few_first_calls_switch_back() {
        let share = ReplayShare::default();
        assert!(!share.mostly_replays());
        after(&share, true, 772);
        assert!(
            !share.mostly_replays(),
            "772 replays in a row are not yet 95 %"
        );
        after(&share, true, 1);
        assert!(share.mostly_replays(), "773 are");
        after(&share, true, 100_000);
        assert!(
            share.0.load(Ordering::Relaxed) <= ONE,
            "the share never passes 1"
        );
        after(&share, false, 12);
        assert!(share.mostly_replays());
        after(&share, false, 1);
        assert!(
            !share.mostly_replays(),
            "13 first calls in a row end read-first"
        );
    }

    #[test]
    fn a_mix_with_one_first_call_in_ten_stays_claim_first() {
        let share = ReplayShare::default();
        for _ in 0..10_000 {
            after(&share, true, 9);
            after(&share, false, 1);
            assert!(!share.mostly_replays());
        }
    }

    #[test]
    fn a_mix_with_one_first_call_in_a_hundred_reads_first() {
        let share = ReplayShare::default();
        for _ in 0..100 {
            after(&share, true, 99);
            after(&share, false, 1);
        }
        assert!(share.mostly_replays());
    }
}
