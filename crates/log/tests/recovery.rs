//! What open does with damaged files: torn tails are cut and reported, any other damage is
//! an error naming the file and offset, and `force_truncate_corrupt` keeps the good prefix.

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use tandem_log::layout::{record_len, segment_file_name, META_FILE_NAME, SEGMENT_HEADER_LEN};
use tandem_log::{Log, LogConfig, LogError};

const SEGMENT: u64 = 64 * 1024;

fn cfg() -> LogConfig {
    small(SEGMENT, 0)
}

fn forced() -> LogConfig {
    LogConfig {
        force_truncate_corrupt: true,
        ..cfg()
    }
}

/// Offset of entry `index`'s record in a segment that starts at `first` and holds only
/// entries written with [`payload`].
fn record_offset(first: u64, index: u64) -> u64 {
    SEGMENT_HEADER_LEN as u64
        + (first..index)
            .map(|i| record_len(payload(i).len()) as u64)
            .sum::<u64>()
}

/// A closed log in a fresh directory holding `1..=last`, one entry per append.
fn pristine(last: u64, cfg: LogConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), cfg);
    append_range(&log, 1..=last, 1);
    log.close().unwrap();
    dir
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
    f.sync_all().unwrap();
}

fn flip(path: &Path, at: u64) {
    let mut b = [0u8; 1];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    overwrite(path, at, &[b[0] ^ 0xFF]);
}

fn expect_corrupt(dir: &Path, cfg: LogConfig) -> (PathBuf, u64, String) {
    match Log::open(dir, cfg) {
        Err(e @ LogError::Corrupt { .. }) => {
            let msg = e.to_string();
            let LogError::Corrupt { path, offset, .. } = e else {
                unreachable!()
            };
            (path, offset, msg)
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok((_, report)) => panic!("expected Corrupt, open succeeded: {report:?}"),
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_cut_and_the_rest_survives() {
    let last = 20;
    let base = pristine(last, cfg());
    let seg_name = segment_file_name(1);
    let start = record_offset(1, last);
    let end = start + record_len(payload(last).len()) as u64;
    println!("last record spans bytes {start}..{end} of {seg_name}");

    // A crash mid-write leaves zeros past the point reached; a torn sector may leave garbage.
    for fill in [0x00u8, 0xA5] {
        for cut in start..end {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(base.path(), dir.path());
            let seg = dir.path().join(&seg_name);
            overwrite(&seg, cut, &vec![fill; (end - cut) as usize]);

            let (log, report) = open(dir.path(), cfg());
            let ctx = format!("fill {fill:#04x}, cut at {cut}");
            assert_eq!(report.last_index, Some(last - 1), "{ctx}");
            if fill == 0 && cut == start {
                assert_eq!(
                    report.truncated_tail, None,
                    "{ctx}: nothing of the record was written"
                );
            } else {
                let tail = report
                    .truncated_tail
                    .unwrap_or_else(|| panic!("{ctx}: no report"));
                assert_eq!(tail.file, seg, "{ctx}");
                assert_eq!(tail.offset, start, "{ctx}");
                assert!(
                    tail.bytes_dropped > 0 && tail.bytes_dropped <= end - start,
                    "{ctx}: {tail:?}"
                );
                assert_eq!(tail.segments_deleted, 0, "{ctx}");
            }
            assert_entries(&log, 1..last + 1, 1..=last - 1);

            // The log goes on from there, and the next open finds it intact.
            append_range(&log, last..=last + 1, 1);
            log.close().unwrap();
            let (log, report) = open(dir.path(), cfg());
            assert_eq!(report.truncated_tail, None, "{ctx}");
            assert_entries(&log, 1..last + 2, 1..=last + 1);
        }
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_names_file_and_offset_and_force_keeps_the_prefix() {
    let base = pristine(20, cfg());
    let seg_name = segment_file_name(1);
    let start = record_offset(1, 10);
    let rec_len = record_len(payload(10).len()) as u64;
    // Every field: length, crc, kind, index, first and last payload byte.
    for at in [0, 1, 4, 8, 9, 16, 17, rec_len - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let seg = dir.path().join(&seg_name);
        flip(&seg, start + at);

        let (path, offset, msg) = expect_corrupt(dir.path(), cfg());
        assert_eq!(path, seg, "flip at +{at}");
        assert_eq!(offset, start, "flip at +{at}: {msg}");
        assert!(
            msg.contains(&seg_name) && msg.contains(&start.to_string()),
            "{msg}"
        );
        assert!(
            msg.contains("force_truncate_corrupt"),
            "the message says what to do: {msg}"
        );

        let (log, report) = open(dir.path(), forced());
        let tail = report.truncated_tail.expect("reported");
        assert_eq!(
            (tail.file.clone(), tail.offset),
            (seg.clone(), start),
            "{tail:?}"
        );
        assert_eq!(report.last_index, Some(9));
        assert_entries(&log, 1..30, 1..=9);
        append_range(&log, 10..=12, 1);
        log.close().unwrap();

        let (log, report) = open(dir.path(), cfg());
        assert_eq!(report.truncated_tail, None);
        assert_entries(&log, 1..30, 1..=12);
    }
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_never_a_torn_tail() {
    let cfg = || small(512, 0);
    let base = pristine(60, cfg());
    let segs = segment_files(base.path());
    assert!(segs.len() >= 4, "{segs:?}");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(base.path(), dir.path());
    let segs = segment_files(dir.path());
    // The last record of the first segment: nothing valid follows it in that file.
    let second_first: u64 = {
        let name = segs[1].file_name().unwrap().to_str().unwrap();
        name[4..24].parse().unwrap()
    };
    let start = record_offset(1, second_first - 1);
    flip(&segs[0], start + 20);

    let (path, offset, msg) = expect_corrupt(dir.path(), cfg());
    assert_eq!((path, offset), (segs[0].clone(), start), "{msg}");
    assert!(msg.contains("not the last"), "{msg}");

    let (log, report) = open(
        dir.path(),
        LogConfig {
            force_truncate_corrupt: true,
            ..cfg()
        },
    );
    let tail = report.truncated_tail.unwrap();
    assert_eq!(tail.segments_deleted, segs.len() - 1, "{tail:?}");
    assert_eq!(report.last_index, Some(second_first - 2));
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_entries(&log, 1..100, 1..=second_first - 2);
}

#[test]
fn a_zeroed_record_length_in_the_middle_is_damage_not_the_end() {
    let dir = pristine(20, cfg());
    let seg = dir.path().join(segment_file_name(1));
    let start = record_offset(1, 5);
    overwrite(&seg, start, &[0, 0, 0, 0]);
    let (path, offset, msg) = expect_corrupt(dir.path(), cfg());
    assert_eq!((path, offset), (seg, start));
    assert!(msg.contains("length is zero"), "{msg}");
}

#[test]
fn a_damaged_segment_header_is_reported_and_force_drops_that_segment_on() {
    let cfg = || small(512, 0);
    let dir = pristine(60, cfg());
    let segs = segment_files(dir.path());
    flip(&segs[2], 3);
    let (path, offset, msg) = expect_corrupt(dir.path(), cfg());
    assert_eq!((path, offset), (segs[2].clone(), 0), "{msg}");
    assert!(msg.contains("magic"), "{msg}");

    let (log, report) = open(
        dir.path(),
        LogConfig {
            force_truncate_corrupt: true,
            ..cfg()
        },
    );
    let tail = report.truncated_tail.unwrap();
    assert_eq!(tail.segments_deleted, segs.len() - 2, "{tail:?}");
    assert_eq!(segment_files(dir.path()), segs[..2].to_vec());
    let last = report.last_index.unwrap();
    assert_entries(&log, 1..100, 1..=last);
}

#[test]
fn a_missing_segment_in_the_middle_is_reported() {
    let cfg = || small(512, 0);
    let dir = pristine(60, cfg());
    let segs = segment_files(dir.path());
    fs::remove_file(&segs[1]).unwrap();
    let (path, _, msg) = expect_corrupt(dir.path(), cfg());
    assert_eq!(path, segs[2]);
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn a_damaged_meta_file_is_an_error_even_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), cfg());
    log.save_vote(Bytes::from_static(b"vote")).unwrap();
    log.close().unwrap();
    let meta = dir.path().join(META_FILE_NAME);
    flip(&meta, 18);
    for cfg in [cfg(), forced()] {
        let (path, _, msg) = expect_corrupt(dir.path(), cfg);
        assert_eq!(path, meta, "{msg}");
    }
}

#[test]
fn a_read_from_disk_never_returns_bytes_that_fail_their_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = open(dir.path(), cfg());
    append_range(&log, 1..=20, 1);
    let seg = dir.path().join(segment_file_name(1));
    let start = record_offset(1, 7);
    flip(&seg, start + 18);
    assert_entries(&log, 1..7, 1..=6);
    let err = log.read(1..21).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(
        msg.contains(&segment_file_name(1)) && msg.contains(&start.to_string()),
        "{msg}"
    );
}

#[test]
fn an_interrupted_purge_is_finished_at_open() {
    let cfg = || small(512, 0);
    let dir = pristine(100, cfg());
    let before = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), before.path());

    let (log, _) = open(dir.path(), cfg());
    log.purge_upto(70, Bytes::from_static(b"p70")).unwrap();
    let kept = segment_files(dir.path()).len();
    log.close().unwrap();
    // As if the crash came after the meta file was written but before any deletion.
    for seg in segment_files(before.path()) {
        let to = dir.path().join(seg.file_name().unwrap());
        if !to.exists() {
            fs::copy(&seg, &to).unwrap();
        }
    }
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.first_index, Some(71));
    assert_eq!(report.purged_index, Some(70));
    assert_eq!(segment_files(dir.path()).len(), kept);
    assert_entries(&log, 71..200, 71..=100);
}

#[test]
fn leftover_temp_files_are_removed_and_other_files_left_alone() {
    let dir = pristine(5, cfg());
    let tmp = dir.path().join(format!("{}.tmp", segment_file_name(6)));
    fs::write(&tmp, b"half-made segment").unwrap();
    fs::write(dir.path().join("log.meta.tmp"), b"half-made meta").unwrap();
    fs::write(dir.path().join("README"), b"not ours").unwrap();
    let (log, report) = open(dir.path(), cfg());
    assert_eq!(report.last_index, Some(5));
    assert!(!tmp.exists());
    assert!(!dir.path().join("log.meta.tmp").exists());
    assert!(dir.path().join("README").exists());
    assert_entries(&log, 1..6, 1..=5);
}

#[test]
fn check_reports_what_open_would_find_and_changes_nothing() {
    let base = pristine(20, cfg());
    let report = tandem_log::check(base.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.first_index, report.last_index), (Some(1), Some(20)));
    assert_eq!((report.segments, report.entries_verified), (1, 20));
    assert_eq!(
        (report.torn_tail.clone(), report.damage.clone()),
        (None, None)
    );

    // A torn tail is reported, not cut.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(base.path(), dir.path());
    let seg = dir.path().join(segment_file_name(1));
    let start = record_offset(1, 20);
    overwrite(&seg, start + 5, &[0; 8]);
    let before = fs::read(&seg).unwrap();
    let report = tandem_log::check(dir.path()).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.torn_tail.as_ref().map(|p| p.offset), Some(start));
    assert_eq!(report.last_index, Some(19));
    assert_eq!(fs::read(&seg).unwrap(), before, "check changed the file");

    // Damage in the middle is reported with file and offset.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(base.path(), dir.path());
    let seg = dir.path().join(segment_file_name(1));
    let start = record_offset(1, 4);
    flip(&seg, start + 17);
    let report = tandem_log::check(dir.path()).unwrap();
    assert!(!report.is_ok());
    let damage = report.damage.unwrap();
    assert_eq!((damage.file, damage.offset), (seg, start));
}

#[test]
fn check_entries_shows_every_live_payload_and_names_a_rejected_one() {
    let dir = pristine(30, small(512, 0));
    let (log, _) = open(dir.path(), small(512, 0));
    log.purge_upto(10, Bytes::from_static(b"p")).unwrap();
    log.close().unwrap();

    let mut seen = Vec::new();
    let report = tandem_log::verify_dir(dir.path(), |index, p| {
        assert_eq!(p, &payload(index)[..]);
        seen.push(index);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (11..=30).collect::<Vec<_>>());
    assert_eq!(report.purged_index, Some(10));
    assert_eq!(
        (report.first_index, report.last_index),
        (Some(11), Some(30))
    );

    let err = tandem_log::check_entries(dir.path(), |index, _| {
        if index == 17 {
            Err("does not decode".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("entry 17 was rejected: does not decode"),
        "{msg}"
    );
    assert!(msg.contains(".seg"), "{msg}");
}
