//! The snapshot directory: names, newest-first listing, and temp files that are never listed.

mod common;

use std::fs;

use common::{record, write};
use tandem_snapshot::{find_snapshots, list_snapshots, verify_file, SnapshotId, SnapshotWriter};

fn stem(seq: u64, last_index: u64) -> String {
    SnapshotId { seq, last_index }.file_stem()
}

#[test]
fn lists_newest_first_by_sequence_not_by_creation_or_index() {
    let dir = tempfile::tempdir().unwrap();
    // Created out of order; last_index deliberately disagrees with seq order.
    for (seq, last_index) in [(3, 10), (10, 5), (1, 99), (2, 7)] {
        write(dir.path(), &stem(seq, last_index), b"", 64, &[record(0, 5)]);
    }
    let listed = list_snapshots(dir.path()).unwrap();
    let seqs: Vec<u64> = listed
        .iter()
        .map(|p| {
            SnapshotId::parse(p.file_name().unwrap().to_str().unwrap())
                .unwrap()
                .seq
        })
        .collect();
    assert_eq!(seqs, [10, 3, 2, 1]);
    assert!(listed.iter().all(|p| p.parent() == Some(dir.path())));
}

#[test]
fn leftover_temp_file_is_never_listed_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &stem(1, 10), b"", 64, &[record(0, 5)]);

    // A crash mid-write leaves a temp file behind: simulate it by forgetting the writer, so its
    // Drop (which would delete the file) never runs.
    let mut w = SnapshotWriter::create(dir.path(), &stem(2, 20), b"").unwrap();
    w.write_record(&record(1, 5000)).unwrap();
    let tmp = w.tmp_path().to_path_buf();
    std::mem::forget(w);
    // forget() also leaked the writer's claim on the name; a stale file from another run of the
    // process is what a crash really leaves, so make one of those too.
    let crashed = dir.path().join(format!("{}.tmp", stem(3, 30)));
    fs::write(&crashed, b"TNDMSNAP half a snapshot").unwrap();

    // Even a temp file whose bytes are all there (a crash between the last write and the
    // rename) is not a snapshot: only the rename publishes one.
    let complete = write(dir.path(), &stem(4, 40), b"", 64, &[record(0, 5)]);
    let unrenamed = dir.path().join(format!("{}.tmp", stem(4, 40)));
    fs::rename(&complete.path, &unrenamed).unwrap();

    let listed = list_snapshots(dir.path()).unwrap();
    assert_eq!(
        listed,
        vec![dir.path().join(format!("{}.snap", stem(1, 10)))]
    );
    assert!(!crashed.exists(), "stale temp file was not cleaned up");
    assert!(
        !unrenamed.exists(),
        "complete but unrenamed temp file was not cleaned up"
    );
    // The leaked writer still counts as live in this process, so its file is kept.
    assert!(tmp.exists());
}

#[test]
fn listing_during_a_write_does_not_disturb_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SnapshotWriter::create(dir.path(), &stem(5, 50), b"m").unwrap();
    w.write_record(&record(0, 100)).unwrap();
    assert!(
        list_snapshots(dir.path()).unwrap().is_empty(),
        "a .tmp was listed"
    );
    assert!(
        w.tmp_path().exists(),
        "the live writer's temp file was deleted"
    );
    w.write_record(&record(1, 100)).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(list_snapshots(dir.path()).unwrap(), vec![info.path.clone()]);
    assert_eq!(verify_file(&info.path).unwrap().record_count, 2);
}

#[test]
fn relative_and_absolute_paths_agree_on_live_writers() {
    let dir = tempfile::tempdir().unwrap();
    let w = SnapshotWriter::create(dir.path(), &stem(1, 1), b"").unwrap();
    // The same directory spelled differently.
    let other_spelling = dir
        .path()
        .join(".")
        .join("..")
        .join(dir.path().file_name().unwrap());
    list_snapshots(&other_spelling).unwrap();
    assert!(w.tmp_path().exists());
    w.finish().unwrap();
}

#[test]
fn foreign_files_are_ignored_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    fs::write(dir.path().join("random.snap"), b"x").unwrap();
    fs::create_dir(dir.path().join("sub.snap")).unwrap();
    write(dir.path(), &stem(7, 70), b"", 64, &[]);
    assert_eq!(
        list_snapshots(dir.path()).unwrap(),
        vec![dir.path().join(format!("{}.snap", stem(7, 70)))]
    );
    assert!(dir.path().join("notes.txt").exists());
    assert!(dir.path().join("random.snap").exists());
}

#[test]
fn missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(list_snapshots(&dir.path().join("nope")).is_err());
}

#[test]
fn find_snapshots_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &stem(1, 10), b"", 64, &[]);
    write(dir.path(), &stem(2, 20), b"", 64, &[]);
    let stale = dir.path().join(format!("{}.tmp", stem(3, 30)));
    fs::write(&stale, b"partial").unwrap();
    let found = find_snapshots(dir.path()).unwrap();
    let ids: Vec<_> = found
        .iter()
        .map(|(id, _)| (id.seq, id.last_index))
        .collect();
    assert_eq!(ids, [(2, 20), (1, 10)]);
    assert_eq!(found[0].1, dir.path().join(format!("{}.snap", stem(2, 20))));
    assert!(stale.exists(), "a read-only listing deleted a file");
}
