//! Under `--appendfsync everysec` (or `no`) a power loss can take the unsynced tail of the log
//! while the snapshot taken just before it, which is fsynced, survives. The snapshot holds
//! everything those entries did, so the node must start from it and go on — this once left a data
//! dir that refused to start ("inverted log order") or could never write again ("append must
//! continue the log"). The test reproduces the loss by putting back an older copy of the log
//! segments after the snapshot was taken, as a power loss would leave them.

mod common;

use std::path::Path;

use common::{files_with_ext, phase, Frame, Tandem};

fn set_range(t: &Tandem, range: std::ops::Range<u32>) {
    let mut c = t.conn();
    for i in range {
        c.ok(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
}

fn assert_range(t: &Tandem, range: std::ops::Range<u32>) {
    let mut c = t.conn();
    for i in range {
        assert_eq!(
            c.cmd(&["GET", &format!("k{i}")]),
            Frame::bulk(format!("v{i}")),
            "key k{i}"
        );
    }
}

fn copy_segments(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for seg in files_with_ext(from, "seg") {
        std::fs::copy(&seg, to.join(seg.file_name().unwrap())).unwrap();
    }
}

/// Replaces the log's segments by the saved ones (keeping log.meta and the snapshots).
fn restore_segments(saved: &Path, log_dir: &Path) {
    for seg in files_with_ext(log_dir, "seg") {
        std::fs::remove_file(seg).unwrap();
    }
    copy_segments(saved, log_dir);
}

fn lost_tail_after_snapshots(saves: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let saved = dir.path().join("saved-segments");
    let args = ["--appendfsync", "everysec"];

    phase("write 50 keys and keep a copy of the log as it is now");
    let mut t = Tandem::start(&data, &args);
    set_range(&t, 0..50);
    t.stop();
    copy_segments(&data.join("log"), &saved);

    phase(format!("write more and take {saves} snapshot(s)"));
    t.restart();
    let mut written = 50;
    for _ in 0..saves {
        set_range(&t, written..written + 50);
        written += 50;
        t.conn().ok(&["SAVE"]);
    }
    t.stop();

    phase("lose the log's tail behind the snapshots, as a power loss would");
    restore_segments(&saved, &data.join("log"));

    phase("the node starts from the newest snapshot, serves everything in it, and writes");
    t.restart();
    assert_range(&t, 0..written);
    t.conn().ok(&["SET", "after", "1"]);
    set_range(&t, written..written + 10);

    phase("and restarts again cleanly");
    t.restart();
    assert_range(&t, 0..written + 10);
    assert_eq!(t.conn().cmd(&["GET", "after"]), Frame::bulk("1"));
}

#[test]
fn lost_log_tail_behind_one_snapshot() {
    lost_tail_after_snapshots(1);
}

#[test]
fn lost_log_tail_behind_two_snapshots() {
    lost_tail_after_snapshots(2);
}
