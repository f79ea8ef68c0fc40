//! A process killed while writing leaves nothing that looks like a snapshot; one killed right
//! after `finish` leaves a complete one.
//!
//! The test re-runs its own binary as a child that writes a snapshot and then aborts (no
//! destructors, no flush: as close to `kill -9` as a process can do to itself).

use std::path::Path;
use std::process::{Command, Stdio};

use tandem_snapshot::{list_snapshots, verify_file, SnapshotId, SnapshotWriter};

const CHILD_DIR: &str = "TANDEM_SNAPSHOT_CRASH_DIR";
const CHILD_MODE: &str = "TANDEM_SNAPSHOT_CRASH_MODE";

fn stem() -> String {
    SnapshotId {
        seq: 9,
        last_index: 900,
    }
    .file_stem()
}

/// In the child: write 50,000 records, finish or not, then die.
fn child(dir: &Path, finish: bool) -> ! {
    let mut w = SnapshotWriter::create(dir, &stem(), b"meta").unwrap();
    for i in 0..50_000u32 {
        w.write_record(&i.to_le_bytes().repeat(30)).unwrap();
    }
    if finish {
        w.finish().unwrap();
    }
    std::process::abort();
}

fn run_child(dir: &Path, mode: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_writer_leaves_no_half_snapshot",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        // The child's own test-harness lines would muddle the parent's output.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
}

#[test]
fn a_killed_writer_leaves_no_half_snapshot() {
    if let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) {
        child(Path::new(&dir), mode == "finish");
    }

    println!("phase 1: the writer dies before finish");
    let dir = tempfile::tempdir().unwrap();
    run_child(dir.path(), "mid-write");
    let tmp = dir.path().join(format!("{}.tmp", stem()));
    assert!(tmp.exists(), "the child should have left its temp file");
    assert!(list_snapshots(dir.path()).unwrap().is_empty());
    assert!(!tmp.exists(), "the abandoned temp file was not removed");

    println!("phase 2: the writer dies right after finish");
    run_child(dir.path(), "finish");
    let listed = list_snapshots(dir.path()).unwrap();
    assert_eq!(listed.len(), 1);
    let summary = verify_file(&listed[0]).unwrap();
    assert_eq!(summary.record_count, 50_000);
}
