//! How stale a replica's data may be, as a time bound.
//!
//! Every append (entries or heartbeat) the primary sends says "index C was committed, and I last
//! heard from a quorum of voters `age` ago". So the primary was surely the primary, with C
//! committed, at `received - age` (a primary cut off from its quorum keeps sending heartbeats,
//! but their age grows). Once this node has applied C, its data is at least as fresh as the
//! cluster's was at that moment. The lag is the time since the newest such moment: it grows
//! while entries are not applied, while nothing is heard, and while the primary that is heard has
//! no quorum; it is what the replica read rule (`--replica-max-lag-ms`) and `/ready` compare
//! against.
//!
//! Pure logic over an injected clock reading, so it is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Commit positions remembered while waiting for them to be applied.
const PENDING_MAX: usize = 4096;

#[derive(Default)]
struct Inner {
    /// (when heard, commit index heard), oldest first, commit strictly increasing.
    pending: VecDeque<(Instant, u64)>,
    /// Data here is at least as fresh as the primary's at this moment.
    fresh_at: Option<Instant>,
    last_heard: Option<Instant>,
    leader_commit: u64,
}

#[derive(Default)]
pub struct LagTracker {
    inner: Mutex<Inner>,
}

/// A replica's lag, as of one clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lag {
    /// Time since the data was last known to be as fresh as the primary's; None if it never was.
    pub staleness: Option<Duration>,
    /// Commit index last heard from the primary, less the applied index.
    pub entries: u64,
    /// Time since anything was last heard from the primary.
    pub since_heard: Option<Duration>,
    pub leader_commit: u64,
}

impl LagTracker {
    /// An append arrived at `received`; its primary had `leader_commit` committed and a quorum
    /// as of `valid_at` (None: it does not know of any quorum contact). `applied` is this node's
    /// applied index.
    pub fn heard(
        &self,
        received: Instant,
        valid_at: Option<Instant>,
        leader_commit: u64,
        applied: u64,
    ) {
        let mut st = self.inner.lock();
        st.last_heard = Some(received);
        let Some(now) = valid_at else {
            return;
        };
        st.leader_commit = st.leader_commit.max(leader_commit);
        if leader_commit <= applied {
            st.fresh_at = Some(now);
            st.pending.clear();
            return;
        }
        let full = st.pending.len() >= PENDING_MAX;
        match st.pending.back_mut() {
            Some((_, c)) if *c >= leader_commit => {}
            Some((_, c)) if full => {
                // Claiming the newer commit at the older time only overstates the lag.
                *c = leader_commit;
            }
            _ => st.pending.push_back((now, leader_commit)),
        }
    }

    /// The lag now, given the applied index.
    pub fn lag(&self, now: Instant, applied: u64) -> Lag {
        let mut st = self.inner.lock();
        while let Some(&(t, c)) = st.pending.front() {
            if c > applied {
                break;
            }
            st.fresh_at = Some(st.fresh_at.map_or(t, |f| f.max(t)));
            st.pending.pop_front();
        }
        Lag {
            staleness: st.fresh_at.map(|t| now.saturating_duration_since(t)),
            entries: st.leader_commit.saturating_sub(applied),
            since_heard: st.last_heard.map(|t| now.saturating_duration_since(t)),
            leader_commit: st.leader_commit,
        }
    }

    /// Forgets everything (this node became the primary, or left the cluster).
    pub fn reset(&self) {
        *self.inner.lock() = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_caught_up_replica_lags_by_the_time_since_it_last_heard() {
        let t0 = Instant::now();
        let l = LagTracker::default();
        assert_eq!(l.lag(t0, 0).staleness, None, "never heard: unknown");
        l.heard(t0, Some(t0), 5, 5);
        assert_eq!(l.lag(t0 + ms(30), 5).staleness, Some(ms(30)));
        l.heard(t0 + ms(100), Some(t0 + ms(100)), 5, 5);
        assert_eq!(l.lag(t0 + ms(100), 5).staleness, Some(ms(0)));
        assert_eq!(l.lag(t0 + ms(5000), 5).staleness, Some(ms(4900)));
        assert_eq!(l.lag(t0 + ms(5000), 5).since_heard, Some(ms(4900)));
    }

    #[test]
    fn applying_a_heard_commit_makes_the_data_as_fresh_as_when_it_was_heard() {
        let t0 = Instant::now();
        let l = LagTracker::default();
        l.heard(t0, Some(t0), 10, 10);
        l.heard(t0 + ms(100), Some(t0 + ms(100)), 20, 10);
        l.heard(t0 + ms(200), Some(t0 + ms(200)), 30, 10);
        // Nothing applied yet: fresh as of t0.
        let lag = l.lag(t0 + ms(250), 10);
        assert_eq!(lag.staleness, Some(ms(250)));
        assert_eq!(lag.entries, 20);
        // Index 25 applied: covers the commit heard at +100 but not the one at +200.
        assert_eq!(l.lag(t0 + ms(250), 25).staleness, Some(ms(150)));
        assert_eq!(l.lag(t0 + ms(250), 30).staleness, Some(ms(50)));
        assert_eq!(l.lag(t0 + ms(250), 30).entries, 0);
    }

    /// A primary cut off from its quorum keeps sending heartbeats, but each says how long ago it
    /// last heard a quorum: a replica it keeps talking to still goes stale.
    #[test]
    fn heartbeats_from_a_primary_without_quorum_do_not_keep_a_replica_fresh() {
        let t0 = Instant::now();
        let l = LagTracker::default();
        l.heard(t0, Some(t0), 7, 7);
        for i in 1..=50u64 {
            // Heard every 100 ms; the quorum was last seen at t0.
            l.heard(t0 + ms(100 * i), Some(t0), 7, 7);
        }
        let lag = l.lag(t0 + ms(5000), 7);
        assert_eq!(lag.staleness, Some(ms(5000)));
        assert_eq!(lag.since_heard, Some(ms(0)));
        // Nothing known about a quorum: heard, but no fresher.
        l.heard(t0 + ms(5100), None, 7, 7);
        assert_eq!(l.lag(t0 + ms(5100), 7).staleness, Some(ms(5100)));
    }

    #[test]
    fn a_full_queue_overstates_rather_than_understates() {
        let t0 = Instant::now();
        let l = LagTracker::default();
        for i in 0..(PENDING_MAX as u64 + 10) {
            l.heard(t0 + ms(i), Some(t0 + ms(i)), 100 + i, 0);
        }
        let last = 100 + PENDING_MAX as u64 + 9;
        let lag = l.lag(t0 + ms(PENDING_MAX as u64 + 10), last);
        // Fresh as of some moment no later than when `last` was actually heard.
        assert!(lag.staleness.unwrap() >= ms(1), "{lag:?}");
    }
}
