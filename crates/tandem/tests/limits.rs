//! Every write is (part of) one log entry, and a log entry has a size limit. A request or a
//! transaction too large for one entry is refused with an error before it reaches the log — it
//! must never reach the log and stop the consensus core (which once made every later write
//! fail until a restart) — and a long pipeline of writes is split into entries of bounded size.

mod common;

use common::{phase, Frame, Tandem};

fn error_text(f: &Frame) -> String {
    f.error_text()
        .unwrap_or_else(|| panic!("expected an error, got {f:?}"))
        .to_string()
}

#[test]
fn oversize_requests_and_transactions_are_refused_and_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tandem::start(&dir.path().join("data"), &["--proposal-bytes-max", "1000"]);
    let mut c = t.conn();
    let big = "x".repeat(2000);

    phase("a single request over the limit");
    let e = error_text(&c.cmd(&["SET", "big", &big]));
    assert!(e.starts_with("ERR request too large"), "{e}");
    assert_eq!(c.cmd(&["EXISTS", "big"]).as_int(), Some(0));

    phase("a transaction over the limit is aborted whole");
    let part = "y".repeat(400);
    c.ok(&["MULTI"]);
    assert_eq!(c.cmd(&["SET", "t1", &part]), Frame::Simple("QUEUED".into()));
    assert_eq!(c.cmd(&["SET", "t2", &part]), Frame::Simple("QUEUED".into()));
    let e = error_text(&c.cmd(&["SET", "t3", &part]));
    assert!(e.contains("transaction too large"), "{e}");
    let e = error_text(&c.cmd(&["EXEC"]));
    assert!(e.starts_with("EXECABORT"), "{e}");
    assert_eq!(c.cmd(&["EXISTS", "t1", "t2", "t3"]).as_int(), Some(0));

    phase("the node still writes");
    c.ok(&["SET", "after", "ok"]);
    assert_eq!(c.cmd(&["GET", "after"]), Frame::bulk("ok"));
    let info = c.cmd(&["INFO", "replication"]);
    let text = String::from_utf8_lossy(info.as_bulk().expect("INFO is a bulk string")).to_string();
    assert!(text.contains("role:master"), "{text}");
}

#[test]
fn a_long_pipeline_is_split_into_bounded_entries() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tandem::start(
        &dir.path().join("data"),
        &[
            "--pipeline-batch-bytes-max",
            "1000",
            "--pipeline-batch-max",
            "7",
        ],
    );
    let mut c = t.conn();
    let value = "v".repeat(100);
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend(common::encode_cmd(&["SET", &format!("k{i}"), &value]));
    }
    wire.extend(common::encode_cmd(&["DBSIZE"]));
    c.send(&wire).unwrap();
    for i in 0..200 {
        assert_eq!(c.read_reply().unwrap().0, Frame::ok(), "reply {i}");
    }
    assert_eq!(c.read_reply().unwrap().0.as_int(), Some(200));
    let info = c.cmd(&["INFO", "persistence"]);
    let text = String::from_utf8_lossy(info.as_bulk().unwrap()).to_string();
    let last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("log_last_index:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("log_last_index in INFO persistence");
    // 200 writes of ~110 bytes with at most 1000 bytes (and 7 writes) per entry: at least 29
    // entries, not one.
    assert!(last >= 29, "the pipeline went into {last} entries");
}
