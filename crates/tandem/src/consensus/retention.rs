//! Log retention: how far the log is purged behind the newest snapshot.
//!
//! openraft is told never to purge on its own; once a second this task purges up to the newest
//! snapshot's index, but keeps at least the last `entries` entries, the entries written in the
//! last `age`, and the last `bytes` bytes of entries. A replica that restarts or loses its
//! connection for less than that catches up from the log, without a snapshot.
//!
//! Age and bytes are tracked by sampling (time, last index, bytes written) every tick; entries
//! written before this process started count as written at its start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use tracing::{debug, warn};

use super::node::{Node, Retention};

const TICK: Duration = Duration::from_secs(1);

/// Samples kept. Beyond it the samples are thinned (every other one after the oldest dropped),
/// never the oldest: the age and byte bounds stay decidable, only coarser.
const SAMPLES_MAX: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    last_index: u64,
    written_bytes: u64,
}

/// The highest index that may be purged, or None.
fn purge_upto(
    retention: &Retention,
    samples: &VecDeque<Sample>,
    now: Instant,
    snapshot_index: u64,
    last_index: u64,
    written_bytes: u64,
) -> Option<u64> {
    let mut upto = snapshot_index.min(last_index.saturating_sub(retention.entries));
    // By age: entries up to the index of the newest sample taken at least `age` ago are older
    // than `age`.
    let old_enough = samples
        .iter()
        .rev()
        .find(|s| now.saturating_duration_since(s.at) >= retention.age)
        .map(|s| s.last_index);
    upto = upto.min(old_enough.unwrap_or(0));
    // By bytes: entries up to the newest sample with at least `bytes` written after it.
    let far_enough = samples
        .iter()
        .rev()
        .find(|s| written_bytes.saturating_sub(s.written_bytes) >= retention.bytes)
        .map(|s| s.last_index);
    upto = upto.min(far_enough.unwrap_or(0));
    (upto > 0).then_some(upto)
}

/// Halves the samples, keeping the oldest and the newest: a coarser timeline over the same span.
fn thin(samples: &mut VecDeque<Sample>) {
    let last = samples.len() - 1;
    let kept: VecDeque<Sample> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i == last || i % 2 == 0)
        .map(|(_, s)| *s)
        .collect();
    *samples = kept;
}

pub async fn run(node: Arc<Node>) {
    let retention = node.config.retention;
    let mut samples: VecDeque<Sample> = VecDeque::new();
    let mut last_purge: Option<u64> = None;
    loop {
        let now = Instant::now();
        let (snapshot, last, purged) = {
            let m = node.raft.metrics().borrow_watched().clone();
            (
                m.snapshot.map(|l| l.index()).unwrap_or(0),
                m.last_log_index.unwrap_or(0),
                m.purged.map(|l| l.index()),
            )
        };
        let written = node.log.stats().written_bytes;
        samples.push_back(Sample {
            at: now,
            last_index: last,
            written_bytes: written,
        });
        if samples.len() > SAMPLES_MAX {
            thin(&mut samples);
        }
        if let Some(upto) = purge_upto(&retention, &samples, now, snapshot, last, written) {
            if Some(upto) > purged && Some(upto) > last_purge {
                debug!("retention: purging the log up to {upto}");
                if let Err(e) = node.raft.trigger().purge_log(upto).await {
                    warn!("retention: purge failed: {e}");
                    return;
                }
                last_purge = Some(upto);
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(entries: u64, bytes: u64, age_ms: u64) -> Retention {
        Retention {
            entries,
            bytes,
            age: Duration::from_millis(age_ms),
        }
    }

    #[test]
    fn thinning_keeps_the_oldest_sample_so_old_entries_stay_purgeable() {
        let t0 = Instant::now();
        let mut samples: VecDeque<Sample> = (0..=SAMPLES_MAX as u64)
            .map(|i| Sample {
                at: t0 + Duration::from_secs(i),
                last_index: i * 10,
                written_bytes: i * 100,
            })
            .collect();
        thin(&mut samples);
        assert!(samples.len() <= SAMPLES_MAX / 2 + 2);
        assert_eq!(samples.front().unwrap().last_index, 0);
        assert_eq!(samples.back().unwrap().last_index, SAMPLES_MAX as u64 * 10);
        let now = t0 + Duration::from_secs(SAMPLES_MAX as u64 + 1);
        // Age bound of SAMPLES_MAX - 10 s: samples 0..=11 are old enough; of those, thinning kept
        // the even ones, so the newest old-enough sample is #10 (last index 100).
        let age_ms = (SAMPLES_MAX as u64 - 10) * 1000;
        let written = SAMPLES_MAX as u64 * 100;
        let upto = purge_upto(&r(0, 0, age_ms), &samples, now, u64::MAX, u64::MAX, written);
        assert_eq!(upto, Some(100));
    }

    #[test]
    fn keeps_the_longest_of_entries_age_and_bytes() {
        let t0 = Instant::now();
        let s = |secs: u64, last_index: u64, written_bytes: u64| Sample {
            at: t0 + Duration::from_secs(secs),
            last_index,
            written_bytes,
        };
        let samples: VecDeque<Sample> = [s(0, 100, 0), s(10, 200, 1000), s(20, 300, 2000)]
            .into_iter()
            .collect();
        let now = t0 + Duration::from_secs(20);
        // Only entries: keep 50 of 300 → purge up to 250 (the snapshot covers 280).
        assert_eq!(
            purge_upto(&r(50, 0, 0), &samples, now, 280, 300, 2000),
            Some(250)
        );
        // The snapshot bounds it.
        assert_eq!(
            purge_upto(&r(50, 0, 0), &samples, now, 120, 300, 2000),
            Some(120)
        );
        // Age 15 s: only what was written by t0 (index 100) is old enough.
        assert_eq!(
            purge_upto(&r(50, 0, 15_000), &samples, now, 280, 300, 2000),
            Some(100)
        );
        // Bytes 1500: 2000 - 0 >= 1500 at the first sample only → 100.
        assert_eq!(
            purge_upto(&r(0, 1500, 0), &samples, now, 280, 300, 2000),
            Some(100)
        );
        // Nothing old enough: nothing purged.
        assert_eq!(
            purge_upto(&r(0, 0, 60_000), &samples, now, 280, 300, 2000),
            None
        );
        assert_eq!(
            purge_upto(&r(1000, 0, 0), &samples, now, 280, 300, 2000),
            None
        );
    }
}
