//! Every limit the log enforces that the other test files do not already cover: the queue
//! depth, the batch size, and the largest files open accepts.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tandem_log::config::{BATCH_BYTES_MAX, QUEUE_OPS_MAX};
use tandem_log::layout::{segment_file_name, META_FILE_NAME};
use tandem_log::{Log, LogConfig, LogError};

#[test]
fn a_full_queue_makes_append_wait_instead_of_growing_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let log = Arc::new(log);

    // Hold the writer thread inside the first `done` so that nothing is dequeued.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    log.append(
        vec![(1, payload(1))],
        Box::new(move |r| {
            r.unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        }),
    );
    held_rx.recv().unwrap();

    let done_count = Arc::new(AtomicUsize::new(0));
    let submitted_all = Arc::new(AtomicBool::new(false));
    let extra = 10;
    let submitter = {
        let (log, done_count, submitted_all) = (
            Arc::clone(&log),
            Arc::clone(&done_count),
            Arc::clone(&submitted_all),
        );
        std::thread::spawn(move || {
            for i in 2..(2 + QUEUE_OPS_MAX + extra) as u64 {
                let done_count = Arc::clone(&done_count);
                log.append(
                    vec![(i, Bytes::from_static(b"x"))],
                    Box::new(move |_| {
                        done_count.fetch_add(1, Ordering::SeqCst);
                    }),
                );
            }
            submitted_all.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !submitted_all.load(Ordering::SeqCst),
        "append should block once {QUEUE_OPS_MAX} requests wait"
    );
    release_tx.send(()).unwrap();
    submitter.join().unwrap();
    let log = Arc::try_unwrap(log).unwrap();
    log.close().unwrap();
    assert_eq!(done_count.load(Ordering::SeqCst), QUEUE_OPS_MAX + extra);
}

#[test]
fn one_group_commit_writes_at_most_about_batch_bytes_max() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(64 << 20, 0));
    let entry = Bytes::from(vec![3u8; 1 << 20]);
    let n = 3 * BATCH_BYTES_MAX / entry.len() + 3;
    let (tx, rx) = mpsc::channel();
    for i in 1..=n as u64 {
        let tx = tx.clone();
        log.append(
            vec![(i, entry.clone())],
            Box::new(move |r| tx.send(r).unwrap()),
        );
    }
    for _ in 0..n {
        rx.recv().unwrap().unwrap();
    }
    let stats = log.stats();
    // Each group stops growing once it holds BATCH_BYTES_MAX (plus the append that crossed it).
    let most_per_batch = (BATCH_BYTES_MAX + entry.len() + 64) as u64;
    assert!(
        stats.batches_written >= stats.written_bytes.div_ceil(most_per_batch),
        "{stats:?}"
    );
}

#[test]
fn a_segment_file_above_the_size_limit_is_refused_without_reading_it() {
    let dir = pristine_one_entry();
    let seg = dir.path().join(segment_file_name(1));
    // Sparse: no space is used, but the size says 2 GiB.
    fs_set_len(&seg, 2 << 30);
    match Log::open(dir.path(), LogConfig::default()) {
        Err(LogError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, seg);
            assert!(reason.contains("larger than"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
    }
}

#[test]
fn a_meta_file_above_its_size_limit_is_refused_without_reading_it() {
    let dir = pristine_one_entry();
    let meta = dir.path().join(META_FILE_NAME);
    std::fs::write(&meta, b"TNDMMETA").unwrap();
    fs_set_len(&meta, 1 << 30);
    match Log::open(dir.path(), LogConfig::default()) {
        Err(LogError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, meta);
            assert!(reason.contains("larger than"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r)),
    }
}

fn pristine_one_entry() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    append_wait(&log, vec![(1, payload(1))]).unwrap();
    log.close().unwrap();
    dir
}

fn fs_set_len(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}
