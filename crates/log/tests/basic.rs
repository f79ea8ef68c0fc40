//! The log's everyday operations, each checked again after a reopen.

mod common;

use std::io;
use std::sync::mpsc;

use bytes::Bytes;
use common::*;
use tandem_log::config::{OPAQUE_BYTES_MAX, PAYLOAD_BYTES_MAX};
use tandem_log::{FsyncPolicy, Log, LogConfig, LogError};

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!((report.first_index, report.last_index), (None, None));
    assert_eq!(report.segments, 0);

    append_range(&log, 1..=100, 7);
    assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(100)));
    assert_entries(&log, 1..101, 1..=100);
    assert_entries(&log, 40..45, 40..=44);
    assert_entries(&log, 95..1000, 95..=100);
    assert_entries(&log, 0..3, 1..=2);
    assert!(log.read(101..200).unwrap().is_empty());
    assert!(log.read(5..5).unwrap().is_empty());
    log.close().unwrap();

    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!(
        (report.first_index, report.last_index),
        (Some(1), Some(100))
    );
    assert_eq!(report.truncated_tail, None);
    assert_eq!(report.segments, 1);
    assert_entries(&log, 1..101, 1..=100);
    append_range(&log, 101..=110, 3);
    drop(log);

    let (log, _) = open(dir.path(), LogConfig::default());
    assert_entries(&log, 1..111, 1..=110);
}

#[test]
fn entries_start_at_any_index_including_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    append_wait(&log, vec![(0, payload(0)), (1, payload(1))]).unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!((report.first_index, report.last_index), (Some(0), Some(1)));
    assert_entries(&log, 0..2, 0..=1);
}

#[test]
fn reads_come_from_disk_when_the_cache_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(4096, 0));
    append_range(&log, 1..=300, 10);
    let stats = log.stats();
    assert_eq!(stats.cache_entries, 0, "{stats:?}");
    assert!(stats.segments > 5, "{stats:?}");
    assert_entries(&log, 1..301, 1..=300);
    assert_entries(&log, 77..78, 77..=77);
}

#[test]
fn reads_join_disk_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    // A cache of about 2 KiB: the oldest entries are read from disk, the newest from memory.
    let (log, _) = open(dir.path(), small(4096, 2048));
    append_range(&log, 1..=200, 1);
    let stats = log.stats();
    assert!(
        stats.cache_entries > 0 && stats.cache_entries < 200,
        "{stats:?}"
    );
    assert_entries(&log, 1..201, 1..=200);
}

#[test]
fn segments_roll_over_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(512, 0));
    append_range(&log, 1..=500, 3);
    let stats = log.stats();
    assert!(stats.segments >= 50, "{stats:?}");
    assert_eq!(stats.disk_bytes, 512 * stats.segments as u64, "{stats:?}");
    assert_eq!(segment_files(dir.path()).len(), stats.segments);
    log.close().unwrap();

    let (log, report) = open(dir.path(), small(512, 0));
    assert_eq!(report.segments, stats.segments);
    assert_entries(&log, 1..501, 1..=500);
}

#[test]
fn an_entry_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(256, 0));
    let big = Bytes::from(vec![7u8; 10_000]);
    append_wait(&log, vec![(1, payload(1))]).unwrap();
    append_wait(&log, vec![(2, big.clone())]).unwrap();
    append_wait(&log, vec![(3, payload(3))]).unwrap();
    log.close().unwrap();
    let (log, _) = open(dir.path(), small(256, 0));
    let got = log.read(1..4).unwrap();
    assert_eq!(got[1], (2, big));
    assert_eq!(got[2], (3, payload(3)));
}

#[test]
fn truncate_after_then_append_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || small(1024, 0);
    let (log, _) = open(dir.path(), cfg());
    append_range(&log, 1..=100, 4);
    let segments_before = log.stats().segments;

    log.truncate_after(Some(30)).unwrap();
    assert_eq!(log.last_index(), Some(30));
    assert_entries(&log, 1..200, 1..=30);
    assert!(log.stats().segments < segments_before);

    // New entries 31.. with different payloads from the ones truncated.
    let other = |i: u64| Bytes::from(format!("second life of {i}"));
    for i in 31..=40 {
        append_wait(&log, vec![(i, other(i))]).unwrap();
    }
    log.close().unwrap();

    let (log, report) = open(dir.path(), cfg());
    assert_eq!((report.first_index, report.last_index), (Some(1), Some(40)));
    assert_eq!(report.truncated_tail, None);
    assert_entries(&log, 1..31, 1..=30);
    let tail = log.read(31..100).unwrap();
    assert_eq!(tail.len(), 10);
    for (i, p) in tail {
        assert_eq!(p, other(i));
    }
}

#[test]
fn truncate_inside_the_last_segment_leaves_no_stale_record_behind() {
    // Regression guard: a truncation that only rewound the write position would leave the old
    // records after it, and a new record of the same length would make them look valid again.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    append_range(&log, 1..=10, 1);
    log.truncate_after(Some(5)).unwrap();
    append_wait(&log, vec![(6, payload(6))]).unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!(report.last_index, Some(6));
    assert_entries(&log, 1..11, 1..=6);
}

#[test]
fn truncate_everything_then_start_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(1024, 1 << 20));
    append_range(&log, 10..=50, 5);
    log.truncate_after(None).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    assert!(log.read(0..100).unwrap().is_empty());
    assert_eq!(log.stats().segments, 0);
    append_range(&log, 3..=5, 1);
    log.close().unwrap();
    let (log, report) = open(dir.path(), small(1024, 0));
    assert_eq!((report.first_index, report.last_index), (Some(3), Some(5)));
    assert_entries(&log, 0..100, 3..=5);
}

#[test]
fn truncate_below_the_first_entry_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    append_range(&log, 10..=20, 5);
    log.truncate_after(Some(3)).unwrap();
    assert_eq!(log.last_index(), None);
    log.truncate_after(Some(100)).unwrap(); // nothing above 100: a no-op
    append_range(&log, 4..=6, 5);
    drop(log);
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!((report.first_index, report.last_index), (Some(4), Some(6)));
    assert_entries(&log, 0..30, 4..=6);
}

#[test]
fn purge_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || small(1024, 0);
    let (log, _) = open(dir.path(), cfg());
    append_range(&log, 1..=200, 5);
    let before = log.stats().segments;

    log.purge_upto(150, Bytes::from_static(b"purged@150"))
        .unwrap();
    assert_eq!(log.first_index(), Some(151));
    assert_eq!(log.purged(), Some((150, Bytes::from_static(b"purged@150"))));
    let after = log.stats().segments;
    assert!(after < before, "{before} -> {after}");
    let err = log.read(100..160).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_entries(&log, 151..201, 151..=200);
    // A purge below the current point changes nothing.
    log.purge_upto(10, Bytes::from_static(b"old")).unwrap();
    assert_eq!(log.purged().unwrap().0, 150);
    log.close().unwrap();

    let (log, report) = open(dir.path(), cfg());
    assert_eq!(
        (report.first_index, report.last_index),
        (Some(151), Some(200))
    );
    assert_eq!(report.purged.as_deref(), Some(&b"purged@150"[..]));
    assert_eq!(report.purged_index, Some(150));
    assert_eq!(report.segments, after);
    assert_entries(&log, 151..201, 151..=200);
    assert!(log.read(150..152).is_err());
    append_range(&log, 201..=210, 5);
    assert_entries(&log, 151..211, 151..=210);
}

#[test]
fn purge_beyond_the_last_entry_empties_the_log_for_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), small(1024, 0));
    append_range(&log, 1..=50, 5);
    log.purge_upto(500, Bytes::from_static(b"snap")).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    assert_eq!(log.stats().segments, 0);

    let err = append_wait(&log, vec![(500, payload(500))]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    append_range(&log, 501..=510, 2);
    log.close().unwrap();

    let (log, report) = open(dir.path(), small(1024, 0));
    assert_eq!(
        (report.first_index, report.last_index),
        (Some(501), Some(510))
    );
    assert_eq!(report.purged_index, Some(500));
    assert_entries(&log, 501..600, 501..=510);
}

#[test]
fn committed_marker_survives_reopen_truncation_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || small(512, 0);
    let (log, _) = open(dir.path(), cfg());
    append_range(&log, 1..=20, 2);
    committed_wait(&log, b"c@10").unwrap();
    append_range(&log, 21..=40, 2);
    committed_wait(&log, b"c@30").unwrap();
    log.close().unwrap();

    println!("phase: reopen returns the latest marker");
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"c@30"[..]));

    println!("phase: truncation removes the record holding the latest marker");
    log.truncate_after(Some(25)).unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"c@30"[..]));
    assert_eq!(report.last_index, Some(25));

    println!("phase: a newer marker in a segment beats the copy in the meta file");
    append_range(&log, 26..=30, 5);
    committed_wait(&log, b"c@30 again").unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"c@30 again"[..]));

    println!("phase: a purge deletes every segment");
    log.purge_upto(30, Bytes::from_static(b"p30")).unwrap();
    assert_eq!(log.stats().segments, 0);
    log.close().unwrap();
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"c@30 again"[..]));
    assert_eq!(report.last_index, None);

    println!("phase: a marker on an empty log goes to the meta file");
    committed_wait(&log, b"c on empty").unwrap();
    log.close().unwrap();
    let (_log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"c on empty"[..]));
}

#[test]
fn markers_that_fill_a_segment_without_entries_fall_back_to_the_meta_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || small(128, 0);
    let (log, _) = open(dir.path(), cfg());
    append_wait(&log, vec![(1, Bytes::from_static(b"x"))]).unwrap();
    for i in 0..40u32 {
        let data: &'static [u8] =
            Box::leak(format!("marker {i:02}").into_bytes().into_boxed_slice());
        committed_wait(&log, data).unwrap();
    }
    append_wait(&log, vec![(2, Bytes::from_static(b"y"))]).unwrap();
    log.close().unwrap();
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.committed.as_deref(), Some(&b"marker 39"[..]));
    assert_eq!(report.last_index, Some(2));
    assert_eq!(log.read(1..3).unwrap().len(), 2);
}

#[test]
fn vote_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!(report.vote, None);
    assert_eq!(log.vote(), None);
    log.save_vote(Bytes::from_static(b"term 1")).unwrap();
    log.save_vote(Bytes::from_static(b"term 2")).unwrap();
    assert_eq!(log.vote().as_deref(), Some(&b"term 2"[..]));
    drop(log);
    let (log, report) = open(dir.path(), LogConfig::default());
    assert_eq!(report.vote.as_deref(), Some(&b"term 2"[..]));
    assert_eq!(log.vote().as_deref(), Some(&b"term 2"[..]));
}

#[test]
fn bad_appends_are_refused_through_done_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    append_range(&log, 1..=3, 3);
    for bad in [
        vec![(5, payload(5))],
        vec![(3, payload(3))],
        vec![(4, payload(4)), (6, payload(6))],
    ] {
        let err = append_wait(&log, bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
    // The limit on a payload: a zeroed allocation the check never touches.
    let huge = Bytes::from(vec![0u8; PAYLOAD_BYTES_MAX + 1]);
    let err = append_wait(&log, vec![(4, huge)]).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    append_wait(&log, vec![]).unwrap();
    assert_eq!(log.last_index(), Some(3));
    append_range(&log, 4..=4, 1);

    let too_big = Bytes::from(vec![1u8; OPAQUE_BYTES_MAX + 1]);
    assert!(log.save_vote(too_big.clone()).is_err());
    assert!(log.purge_upto(1, too_big.clone()).is_err());
    let (tx, rx) = mpsc::channel();
    log.save_committed(too_big, Box::new(move |r| tx.send(r).unwrap()));
    assert!(rx.recv().unwrap().is_err());
    assert_entries(&log, 1..10, 1..=4);
}

#[test]
fn every_done_runs_once_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let (tx, rx) = mpsc::channel();
    for i in 1..=200u64 {
        let tx = tx.clone();
        log.append(
            vec![(i, payload(i))],
            Box::new(move |r| tx.send((i, r.is_ok())).unwrap()),
        );
    }
    log.close().unwrap();
    drop(tx);
    let order: Vec<(u64, bool)> = rx.iter().collect();
    assert_eq!(order, (1..=200).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    match Log::open(dir.path(), LogConfig::default()) {
        Err(LogError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(log);
    let _ = open(dir.path(), LogConfig::default());
}

#[test]
fn config_out_of_limits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_size_bytes: 1,
        ..LogConfig::default()
    };
    assert!(matches!(
        Log::open(dir.path(), cfg),
        Err(LogError::Config(_))
    ));
}

#[test]
fn every_policy_stores_and_recovers() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::EverySec, FsyncPolicy::No] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || LogConfig {
            fsync: policy,
            segment_size_bytes: 2048,
            ..LogConfig::default()
        };
        let (log, _) = open(dir.path(), cfg());
        append_range(&log, 1..=100, 3);
        if policy == FsyncPolicy::EverySec {
            std::thread::sleep(std::time::Duration::from_millis(1200));
            assert!(log.stats().fsyncs > 0, "the timer synced");
        }
        log.close().unwrap();
        let (log, report) = open(dir.path(), cfg());
        assert_eq!(report.last_index, Some(100), "{policy}");
        assert_entries(&log, 1..101, 1..=100);
    }
}

#[test]
fn dropping_the_last_handle_inside_a_done_callback_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), LogConfig::default());
    let log = std::sync::Arc::new(log);
    let (tx, rx) = mpsc::channel();
    let held = std::sync::Arc::clone(&log);
    log.append(
        vec![(1, payload(1))],
        Box::new(move |r| {
            // This closure now owns the last handle; it is dropped on the writer thread.
            let _last = held;
            tx.send(r).unwrap();
        }),
    );
    drop(log);
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("done ran")
        .unwrap();
    // The writer finished and released the lock: the directory opens again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Log::open(dir.path(), LogConfig::default()) {
            Ok((log, report)) => {
                assert_eq!(report.last_index, Some(1));
                drop(log);
                break;
            }
            Err(LogError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
}
