//! Group commit: concurrent appenders share fdatasyncs, and every `done` runs exactly once.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::*;
use tandem_log::{FsyncPolicy, LogConfig};

#[test]
fn concurrent_appenders_share_fsyncs_and_each_done_runs_once() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 250;
    const TOTAL: u64 = THREADS * PER_THREAD;

    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(
        dir.path(),
        LogConfig {
            fsync: FsyncPolicy::Always,
            ..LogConfig::default()
        },
    );
    let log = Arc::new(log);
    // Indexes must be contiguous, so taking the next index and appending happen together.
    let next = Arc::new(Mutex::new(1u64));
    let calls: Arc<Vec<AtomicU32>> = Arc::new((0..=TOTAL).map(|_| AtomicU32::new(0)).collect());

    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (log, next, calls) = (Arc::clone(&log), Arc::clone(&next), Arc::clone(&calls));
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let (tx, rx) = mpsc::channel();
                    {
                        let mut next = next.lock().unwrap();
                        let index = *next;
                        *next += 1;
                        let calls = Arc::clone(&calls);
                        log.append(
                            vec![(index, payload(index))],
                            Box::new(move |r| {
                                r.unwrap();
                                calls[index as usize].fetch_add(1, Ordering::SeqCst);
                                tx.send(()).unwrap();
                            }),
                        );
                    }
                    // Like a client: wait for the acknowledgement before the next write.
                    rx.recv().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    let stats = log.stats();
    println!(
        "{TOTAL} appends from {THREADS} threads: {} fsyncs, {:.1} entries per fsync, {} batches",
        stats.fsyncs,
        stats.entries_per_fsync(),
        stats.batches_written
    );
    for (i, c) in calls.iter().enumerate().skip(1) {
        assert_eq!(c.load(Ordering::SeqCst), 1, "done of entry {i}");
    }
    assert_eq!(stats.entries_written, TOTAL);
    assert!(
        stats.fsyncs * 2 < TOTAL,
        "group commit should need far fewer fsyncs than appends: {stats:?}"
    );
    assert_entries(&log, 1..TOTAL + 1, 1..=TOTAL);
}

#[test]
fn an_idle_log_flushes_each_append_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let started = std::time::Instant::now();
    for i in 1..=20 {
        append_wait(&log, vec![(i, payload(i))]).unwrap();
    }
    let stats = log.stats();
    // Sequential appends cannot share a batch: one write and one fdatasync each, no waiting.
    assert_eq!(stats.batches_written, 20, "{stats:?}");
    assert_eq!(stats.fsyncs, 20, "{stats:?}");
    assert!(started.elapsed().as_secs() < 5);
}
