//! A data dir belongs to one node of one cluster. Starting it as another node, starting a second
//! process on it, or starting on a dir that holds data but lost its identity file is refused with
//! a message saying what to do — never silently accepted.

mod common;

use std::time::Duration;

use common::{phase, Outcome, Tandem};

fn exited(outcome: Outcome) -> String {
    match outcome {
        Outcome::Exited(status, log) => {
            assert!(
                !status.success(),
                "a refused start must exit non-zero:\n{log}"
            );
            log
        }
        Outcome::Ready => panic!("the server started, but it must refuse this data dir"),
    }
}

#[test]
fn a_data_dir_is_refused_under_another_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    phase("start as node 1 and write");
    let mut t = Tandem::start(&data, &["--node-id", "1"]);
    t.conn().ok(&["SET", "k", "v"]);
    t.stop();

    phase("restart as node 2: refused, naming the owner");
    t.set_args(&["--node-id", "2"]);
    let log = exited(t.restart_outcome(Duration::from_secs(20)));
    assert!(log.contains("belongs to node 1"), "{log}");
    assert!(
        log.contains("--node-id 1"),
        "the message says what to do: {log}"
    );

    phase("restart as node 1: the data is intact");
    t.set_args(&["--node-id", "1"]);
    t.restart();
    assert_eq!(t.conn().cmd(&["GET", "k"]), common::Frame::bulk("v"));
}

#[test]
fn a_data_dir_with_data_but_no_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut t = Tandem::start(&data, &[]);
    t.conn().ok(&["SET", "k", "v"]);
    t.stop();
    std::fs::remove_file(data.join("identity.toml")).unwrap();
    let log = exited(t.restart_outcome(Duration::from_secs(20)));
    assert!(log.contains("no identity.toml"), "{log}");
}

#[test]
fn a_second_process_cannot_open_a_data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Tandem::start(&data, &[]);
    let mut second = Tandem::spawn(common::free_port(), &data, &[]);
    let log = exited(second.wait(Duration::from_secs(20)));
    assert!(log.contains("in use by another tandem process"), "{log}");
    drop(first);
}

/// The reverse: the identity file survives but the log and snapshots were deleted. Coming back
/// with an empty log under an identity a cluster trusts could vote twice and drop acknowledged
/// entries, so the node refuses to start.
#[test]
fn an_identity_whose_log_and_snapshots_are_gone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut t = Tandem::start(&data, &[]);
    t.conn().ok(&["SET", "k", "v"]);
    t.stop();
    std::fs::remove_dir_all(data.join("log")).unwrap();
    std::fs::remove_dir_all(data.join("snapshots")).unwrap();
    let log = exited(t.restart_outcome(Duration::from_secs(20)));
    assert!(log.contains("log and snapshots are gone"), "{log}");
}
