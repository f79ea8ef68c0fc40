//! What this node knows about damaged copies of its values: counters per source, the keys to
//! check first (suspects), the keys no member could repair (quarantine), and the scrubber's
//! progress. The repair protocol that acts on it is `repair.rs`; the scrubber is
//! `server/scrub.rs`. Everything here is shown in INFO `integrity` and `/metrics`.
//!
//! Every structure has a limit ([`SUSPECTS_MAX`], [`QUARANTINE_KEYS_MAX`]); past it, further keys
//! are counted as dropped, never stored: the scrubber's next pass finds them again.
//!
//! The quarantine is this node's statement about its own copy only. Nothing here marks another
//! member's copy bad: a member that could not be reached is counted as unreachable, not damaged,
//! and a quarantined key is retried every [`QUARANTINE_RETRY_INTERVAL`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tandem_core::{Batch, Keyspace};
use tracing::error;

/// Keys waiting to be checked first by the scrubber, at most.
pub const SUSPECTS_MAX: usize = 10_000;

/// Keys held in quarantine, at most.
pub const QUARANTINE_KEYS_MAX: usize = 10_000;

/// A quarantined key is tried again (by the scrubber) this long after its last attempt; reads
/// of it in between answer CORRUPT at once instead of asking every member again.
pub const QUARANTINE_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Where a damaged copy was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A client read (GET, MGET, ..., or a write that reads the stored value first), or a
    /// client's DIGEST.REPORT.
    Read,
    /// The background scrubber.
    Scrub,
    /// Applying a committed entry: a value in it failed its checksum, or a write met damaged
    /// stored bytes.
    Apply,
    /// A received snapshot that failed verification, or values a snapshot loaded at start-up
    /// with damage.
    Snapshot,
    /// An append received from the primary carrying a value that fails its checksum.
    Transport,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Read,
        Source::Scrub,
        Source::Apply,
        Source::Snapshot,
        Source::Transport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Read => "read",
            Source::Scrub => "scrub",
            Source::Apply => "apply",
            Source::Snapshot => "snapshot",
            Source::Transport => "transport",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Settings of repair.
#[derive(Clone, Copy, Debug)]
pub struct RepairConfig {
    /// Deadline of one member's answer to a repair fetch (`--repair-timeout-ms`).
    pub peer_timeout: Duration,
}

/// A key in quarantine: no member offered a usable copy at the last attempt.
#[derive(Clone, Debug)]
pub struct Quarantined {
    pub source: Source,
    /// Why the last attempt failed, for the operator.
    pub reason: String,
    pub since: Instant,
    pub last_attempt: Instant,
}

/// The scrubber's progress (written by `server/scrub.rs`).
#[derive(Default)]
pub struct ScrubProgress {
    /// The scrubber runs a background pass (its rate is not 0).
    pub enabled: AtomicBool,
    pub keys_per_sec: AtomicU64,
    pub bytes_per_sec: AtomicU64,
    pub passes_completed: AtomicU64,
    /// Unix ms when the last full pass ended (0: none yet).
    pub last_pass_end_unix_ms: AtomicU64,
    pub last_pass_duration_ms: AtomicU64,
    /// Keys verified so far in the pass under way.
    pub pass_keys: AtomicU64,
    pub keys_checked: AtomicU64,
    pub bytes_checked: AtomicU64,
    /// Damaged keys the scrubber found (in passes and among suspects).
    pub faults_found: AtomicU64,
    /// Of those, the ones it repaired.
    pub repairs: AtomicU64,
}

#[derive(Default)]
struct Suspects {
    queue: VecDeque<(Bytes, Option<Source>)>,
    queued: HashSet<Bytes>,
}

/// Counters and lists of one node; see the module doc.
pub struct Damage {
    pub config: RepairConfig,
    detected: [AtomicU64; 5],
    repaired: [AtomicU64; 5],
    unrepairable: [AtomicU64; 5],
    /// Received data refused for damage (an append, a snapshot) and not yet received again
    /// intact, per source: the next good one repairs them.
    refused_pending: [AtomicU64; 5],
    suspects: Mutex<Suspects>,
    suspects_dropped: AtomicU64,
    quarantine: Mutex<BTreeMap<Bytes, Quarantined>>,
    quarantine_dropped: AtomicU64,
    pub scrub: ScrubProgress,
    /// Tests only (`DEBUG REPAIR OFF`): damaged copies are found and counted but not repaired,
    /// so a test can see what clients see from a node that cannot repair.
    pub repair_off: AtomicBool,
    /// Repairs under way, one per key (`repair.rs`).
    pub(super) in_flight: Mutex<std::collections::HashMap<Bytes, super::repair::InFlight>>,
}

/// A copy of the counters, for INFO and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct DamageStats {
    /// Per [`Source::ALL`] index: (detected, repaired, unrepairable).
    pub by_source: [(u64, u64, u64); 5],
    pub suspects: usize,
    pub suspects_dropped: u64,
    pub quarantined: usize,
    pub quarantine_dropped: u64,
    pub repairs_in_flight: usize,
}

impl Damage {
    pub fn new(config: RepairConfig) -> Damage {
        Damage {
            config,
            detected: Default::default(),
            repaired: Default::default(),
            unrepairable: Default::default(),
            refused_pending: Default::default(),
            suspects: Mutex::new(Suspects::default()),
            suspects_dropped: AtomicU64::new(0),
            quarantine: Mutex::new(BTreeMap::new()),
            quarantine_dropped: AtomicU64::new(0),
            scrub: ScrubProgress::default(),
            repair_off: AtomicBool::new(false),
            in_flight: Mutex::new(Default::default()),
        }
    }

    pub fn detected(&self, source: Source, n: u64) {
        self.detected[source.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn repaired(&self, source: Source) {
        self.repaired[source.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn unrepairable(&self, source: Source) {
        self.unrepairable[source.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Received data was refused for damage: counted as detected, and repaired once the sender
    /// sends it again intact ([`Damage::received_intact`]).
    pub fn refused(&self, source: Source) {
        self.detected(source, 1);
        self.refused_pending[source.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Received data of `source` was accepted: whatever was refused before it has now arrived
    /// intact. One atomic load when nothing was refused.
    pub fn received_intact(&self, source: Source) {
        let pending = &self.refused_pending[source.index()];
        if pending.load(Ordering::Relaxed) > 0 {
            let n = pending.swap(0, Ordering::Relaxed);
            self.repaired[source.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Queues `key` for the scrubber to check first. `found`: the source that already found it
    /// damaged (and counted it); None for a hint to check (a report, a peer that found it
    /// damaged while answering a fetch). Duplicates are ignored; past [`SUSPECTS_MAX`] the key is
    /// dropped (the next pass finds it).
    pub fn suspect(&self, key: Bytes, found: Option<Source>) {
        let mut s = self.suspects.lock();
        if s.queued.contains(&key) {
            return;
        }
        if s.queue.len() >= SUSPECTS_MAX {
            drop(s);
            self.suspects_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.queued.insert(key.clone());
        s.queue.push_back((key, found));
    }

    /// Up to `max` suspects, oldest first, taken off the queue.
    pub fn take_suspects(&self, max: usize) -> Vec<(Bytes, Option<Source>)> {
        let mut s = self.suspects.lock();
        let n = max.min(s.queue.len());
        let taken: Vec<_> = s.queue.drain(..n).collect();
        for (k, _) in &taken {
            s.queued.remove(k);
        }
        taken
    }

    /// Puts `key` in quarantine (or refreshes its entry). Returns whether it is new there.
    pub fn quarantine(&self, key: &Bytes, source: Source, reason: String) -> bool {
        let now = Instant::now();
        let mut q = self.quarantine.lock();
        if let Some(entry) = q.get_mut(key) {
            entry.reason = reason;
            entry.last_attempt = now;
            return false;
        }
        if q.len() >= QUARANTINE_KEYS_MAX {
            drop(q);
            self.quarantine_dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        error!(
            key = %tandem_core::keyspace::escape_key(key),
            source = source.name(),
            reason = %reason,
            "no member has a good copy of this key: quarantined; reads answer CORRUPT until it is rewritten or repaired"
        );
        q.insert(
            key.clone(),
            Quarantined {
                source,
                reason,
                since: now,
                last_attempt: now,
            },
        );
        true
    }

    /// Takes `key` out of quarantine (repaired, rewritten or deleted).
    pub fn release(&self, key: &[u8]) {
        let mut q = self.quarantine.lock();
        if !q.is_empty() {
            q.remove(key);
        }
    }

    /// Whether `key` is quarantined and was tried within [`QUARANTINE_RETRY_INTERVAL`].
    pub fn recently_quarantined(&self, key: &[u8]) -> bool {
        let q = self.quarantine.lock();
        !q.is_empty()
            && q.get(key)
                .is_some_and(|e| e.last_attempt.elapsed() < QUARANTINE_RETRY_INTERVAL)
    }

    /// Quarantined keys due for another attempt, at most `max`, with their source.
    pub fn quarantine_due(&self, max: usize) -> Vec<(Bytes, Source)> {
        self.quarantine
            .lock()
            .iter()
            .filter(|(_, e)| e.last_attempt.elapsed() >= QUARANTINE_RETRY_INTERVAL)
            .take(max)
            .map(|(k, e)| (k.clone(), e.source))
            .collect()
    }

    /// The quarantine, in key order, at most `max` entries.
    pub fn quarantined(&self, max: usize) -> Vec<(Bytes, Quarantined)> {
        self.quarantine
            .lock()
            .iter()
            .take(max)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    pub fn stats(&self) -> DamageStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut by_source = [(0, 0, 0); 5];
        for s in Source::ALL {
            let i = s.index();
            by_source[i] = (
                load(&self.detected[i]),
                load(&self.repaired[i]),
                load(&self.unrepairable[i]),
            );
        }
        DamageStats {
            by_source,
            suspects: self.suspects.lock().queue.len(),
            suspects_dropped: load(&self.suspects_dropped),
            quarantined: self.quarantine.lock().len(),
            quarantine_dropped: load(&self.quarantine_dropped),
            repairs_in_flight: self.in_flight.lock().len(),
        }
    }

    /// The apply-time check, called by the state machine with the keyspace just after it applied
    /// `batch` at `index` (`corrupt_before`: the keyspace's detection counter before). A value of
    /// the entry that fails its checksum was damaged after the primary checked it (in this node's
    /// log or memory): it is applied as it is, so every node stays at the same position, and
    /// since reads verify, its bytes are never served; its key is queued for repair. So is a key
    /// a write found damaged (now diverged). Never fails: a local fault must not stop the node.
    pub fn after_apply(&self, keyspace: &Keyspace, batch: &Batch, index: u64, corrupt_before: u64) {
        for key in batch.corrupt_values() {
            error!(
                index,
                key = %tandem_core::keyspace::escape_key(key),
                "a value of a committed entry failed its checksum when applied (damaged in this node's log or \
                 memory); its key answers CORRUPT until repaired from another member"
            );
            self.detected(Source::Apply, 1);
            self.suspect(key.clone(), Some(Source::Apply));
        }
        if keyspace.integrity().corrupt_detected != corrupt_before && keyspace.has_diverged() {
            for key in keyspace.diverged_keys() {
                if !self.suspects.lock().queued.contains(&key) {
                    self.detected(Source::Apply, 1);
                    self.suspect(key, Some(Source::Apply));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damage() -> Damage {
        Damage::new(RepairConfig {
            peer_timeout: Duration::from_millis(100),
        })
    }

    #[test]
    fn suspects_are_queued_once_and_bounded() {
        let d = damage();
        d.suspect(Bytes::from_static(b"a"), None);
        d.suspect(Bytes::from_static(b"a"), Some(Source::Read));
        d.suspect(Bytes::from_static(b"b"), Some(Source::Apply));
        assert_eq!(d.stats().suspects, 2);
        let taken = d.take_suspects(1);
        assert_eq!(taken, vec![(Bytes::from_static(b"a"), None)]);
        d.suspect(Bytes::from_static(b"a"), Some(Source::Read));
        assert_eq!(
            d.stats().suspects,
            2,
            "taken off the queue, so queued again"
        );
        for i in 0..SUSPECTS_MAX + 5 {
            d.suspect(Bytes::from(format!("k{i}")), None);
        }
        let s = d.stats();
        assert_eq!((s.suspects, s.suspects_dropped), (SUSPECTS_MAX, 7));
        assert_eq!(d.take_suspects(usize::MAX).len(), SUSPECTS_MAX);
    }

    #[test]
    fn the_quarantine_is_bounded_and_retried_after_its_interval() {
        let d = damage();
        let k = Bytes::from_static(b"k");
        assert!(d.quarantine(&k, Source::Read, "no good copy".into()));
        assert!(!d.quarantine(&k, Source::Read, "still none".into()));
        assert!(d.recently_quarantined(b"k"));
        assert!(d.quarantine_due(10).is_empty(), "tried just now");
        assert_eq!(d.quarantined(10)[0].1.reason, "still none");
        d.release(b"k");
        assert!(!d.recently_quarantined(b"k"));
        for i in 0..QUARANTINE_KEYS_MAX + 3 {
            d.quarantine(&Bytes::from(format!("k{i}")), Source::Scrub, "x".into());
        }
        let s = d.stats();
        assert_eq!(
            (s.quarantined, s.quarantine_dropped),
            (QUARANTINE_KEYS_MAX, 3)
        );
        assert_eq!(d.quarantined(5).len(), 5);
    }

    #[test]
    fn refused_data_counts_as_repaired_once_received_intact() {
        let d = damage();
        d.received_intact(Source::Transport);
        d.refused(Source::Transport);
        d.refused(Source::Transport);
        assert_eq!(d.stats().by_source[4], (2, 0, 0));
        d.received_intact(Source::Transport);
        d.received_intact(Source::Transport);
        assert_eq!(d.stats().by_source[4], (2, 2, 0));
        assert_eq!(Source::ALL[4], Source::Transport);
    }
}
