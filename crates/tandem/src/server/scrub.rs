//! The scrubber: a background task on every node that verifies every stored value against its
//! checksum, so damage is found (and repaired from another member) before a client reads it.
//!
//! Each tick ([`SCRUB_TICK`]) it does, in this order:
//! 1. suspects: keys a report, a peer's fetch, an apply or a deferred repair pointed at (at most
//!    [`SUSPECTS_PER_TICK_MAX`]), checked and repaired first;
//! 2. quarantined keys due for another attempt (at most [`QUARANTINE_RETRIES_PER_TICK_MAX`]),
//!    released if they were rewritten or deleted meanwhile;
//! 3. the background pass: keys in hash order from where the last tick stopped, paced to
//!    `--scrub-keys-per-sec` and `--scrub-bytes-per-sec` (the lower wins), in batches of at most
//!    [`SCRUB_BATCH_KEYS_MAX`] keys per hold of the state's read lock, so applies never wait long.
//!    A pass that ends waits [`SCRUB_PASS_GAP_MIN`] before the next starts.
//!
//! Damage it finds goes through the same repair as a read's (`consensus/repair.rs`), counted
//! under the source `scrub`. At start-up, values a snapshot loaded with damage are found by one
//! unpaced scan and queued as suspects of the source `snapshot`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::consensus::damage::Source;
use crate::consensus::repair::Outcome;
use crate::consensus::Node;

use super::{now_ms, Shared};

/// How often the scrubber wakes.
pub const SCRUB_TICK: Duration = Duration::from_millis(100);

/// Keys verified under one hold of the state's read lock, at most.
pub const SCRUB_BATCH_KEYS_MAX: usize = 256;

/// Suspects checked per tick, at most.
pub const SUSPECTS_PER_TICK_MAX: usize = 64;

/// Quarantined keys retried per tick, at most.
pub const QUARANTINE_RETRIES_PER_TICK_MAX: usize = 16;

/// Shortest time between the starts of two background passes (an empty or small keyspace is
/// not verified in a loop).
pub const SCRUB_PASS_GAP_MIN: Duration = Duration::from_secs(1);

/// Unused rate carried over from tick to tick, at most this many ticks' worth: a scrubber that
/// fell behind (a long repair) does not burst to catch up.
const CREDIT_TICKS_MAX: f64 = 2.0;

/// Keys per lock hold of the start-up scan for damaged snapshot values.
const STARTUP_SCAN_BATCH_KEYS: usize = 4096;

/// The pace of the background pass.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// 0: no background pass.
    pub keys_per_sec: u64,
    pub bytes_per_sec: u64,
}

pub async fn run(shared: Arc<Shared>) {
    let node = shared.node.clone();
    let rate = Rate {
        keys_per_sec: shared.config.scrub_keys_per_sec,
        bytes_per_sec: shared.config.scrub_bytes_per_sec,
    };
    let mut shutdown = shared.shutdown.subscribe();
    let progress = &node.damage.scrub;
    progress
        .enabled
        .store(rate.keys_per_sec > 0, Ordering::Relaxed);
    progress
        .keys_per_sec
        .store(rate.keys_per_sec, Ordering::Relaxed);
    progress
        .bytes_per_sec
        .store(rate.bytes_per_sec, Ordering::Relaxed);
    if node
        .sm
        .shared
        .stats
        .loaded_damaged_values
        .load(Ordering::Relaxed)
        > 0
    {
        queue_damaged_snapshot_values(&node).await;
    }
    let mut pass = Pass::new(rate);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SCRUB_TICK) => {}
            _ = shutdown.changed() => return,
        }
        check_suspects(&node).await;
        retry_quarantine(&node).await;
        pass.tick(&node).await;
    }
}

/// The suspects of this tick.
async fn check_suspects(node: &Arc<Node>) {
    let progress = &node.damage.scrub;
    for (key, found) in node.damage.take_suspects(SUSPECTS_PER_TICK_MAX) {
        if node.damage.recently_quarantined(&key) || !node.state().read().keyspace.is_damaged(&key)
        {
            continue;
        }
        let source = match found {
            Some(source) => source,
            None => {
                // A hint: the damage is the scrubber's own finding.
                node.damage.detected(Source::Scrub, 1);
                progress.faults_found.fetch_add(1, Ordering::Relaxed);
                Source::Scrub
            }
        };
        let outcome = node.repair_key(key, source).await;
        if source == Source::Scrub && matches!(outcome, Outcome::Repaired { .. }) {
            progress.repairs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Quarantined keys due for another attempt.
async fn retry_quarantine(node: &Arc<Node>) {
    for (key, source) in node.damage.quarantine_due(QUARANTINE_RETRIES_PER_TICK_MAX) {
        if node.state().read().keyspace.is_damaged(&key) {
            node.repair_key(key, source).await;
        } else {
            node.damage.release(&key);
        }
    }
}

/// One background pass at a time, paced.
struct Pass {
    rate: Rate,
    /// Where the pass goes on (a key hash); None: between passes.
    cursor: Option<u64>,
    started: Instant,
    key_credit: f64,
    byte_credit: f64,
}

impl Pass {
    fn new(rate: Rate) -> Pass {
        Pass {
            rate,
            cursor: Some(0),
            started: Instant::now(),
            key_credit: 0.0,
            byte_credit: 0.0,
        }
    }

    async fn tick(&mut self, node: &Arc<Node>) {
        if self.rate.keys_per_sec == 0 {
            return;
        }
        let progress = &node.damage.scrub;
        let tick = SCRUB_TICK.as_secs_f64();
        let (keys_per_tick, bytes_per_tick) = (
            self.rate.keys_per_sec as f64 * tick,
            self.rate.bytes_per_sec as f64 * tick,
        );
        self.key_credit = (self.key_credit + keys_per_tick).min(keys_per_tick * CREDIT_TICKS_MAX);
        self.byte_credit =
            (self.byte_credit + bytes_per_tick).min(bytes_per_tick * CREDIT_TICKS_MAX);
        let from = match self.cursor {
            Some(from) => from,
            None if self.started.elapsed() >= SCRUB_PASS_GAP_MIN => {
                self.started = Instant::now();
                progress.pass_keys.store(0, Ordering::Relaxed);
                0
            }
            None => return,
        };
        let mut from = Some(from);
        while let Some(at) = from {
            if self.key_credit < 1.0 || self.byte_credit <= 0.0 {
                break;
            }
            let keys_max = (self.key_credit as usize).clamp(1, SCRUB_BATCH_KEYS_MAX);
            let step =
                node.state()
                    .read()
                    .keyspace
                    .scrub(at, now_ms(), keys_max, self.byte_credit as u64);
            self.key_credit -= step.keys.max(1) as f64;
            self.byte_credit -= step.bytes as f64;
            progress
                .keys_checked
                .fetch_add(step.keys as u64, Ordering::Relaxed);
            progress
                .pass_keys
                .fetch_add(step.keys as u64, Ordering::Relaxed);
            progress
                .bytes_checked
                .fetch_add(step.bytes, Ordering::Relaxed);
            for key in step.damaged {
                node.damage.detected(Source::Scrub, 1);
                progress.faults_found.fetch_add(1, Ordering::Relaxed);
                if let Outcome::Repaired { .. } = node.repair_key(key, Source::Scrub).await {
                    progress.repairs.fetch_add(1, Ordering::Relaxed);
                }
            }
            from = step.next;
            if from.is_none() {
                progress.passes_completed.fetch_add(1, Ordering::Relaxed);
                progress
                    .last_pass_end_unix_ms
                    .store(now_ms().max(0) as u64, Ordering::Relaxed);
                progress
                    .last_pass_duration_ms
                    .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            tokio::task::yield_now().await;
        }
        self.cursor = from;
    }
}

/// Start-up: finds the values the snapshot loaded with damage and queues them for repair.
async fn queue_damaged_snapshot_values(node: &Arc<Node>) {
    let mut from = Some(0);
    let mut found = 0u64;
    while let Some(at) = from {
        let step =
            node.state()
                .read()
                .keyspace
                .scrub(at, i64::MIN, STARTUP_SCAN_BATCH_KEYS, u64::MAX);
        for key in step.damaged {
            found += 1;
            node.damage.detected(Source::Snapshot, 1);
            node.damage.suspect(key, Some(Source::Snapshot));
        }
        from = step.next;
        tokio::task::yield_now().await;
    }
    tracing::warn!(
        "{found} value(s) loaded from the snapshot fail their checksum; repairing them from the other members"
    );
}
