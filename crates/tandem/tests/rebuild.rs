//! A node whose own files are damaged rebuilds itself from its peers (issue 5, item 5): without
//! being told it refuses to start, naming the damage; with `--rebuild-from-peers` (or configured
//! with `--on-damage rebuild`) it moves its files aside, re-syncs under its identity — demoted
//! while it has no log, so it never votes with an empty log — and is promoted back once caught up.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::{info, wait_for, Cluster, SETTLE_TIMEOUT};
use common::{files_with_ext, flip_byte, phase, Outcome};

/// Flips a byte inside the first record of the node's first log segment: damage before the tail.
fn damage_log(data: &Path) {
    let segs = files_with_ext(&data.join("log"), "seg");
    assert!(!segs.is_empty(), "no log segments in {}", data.display());
    // After the 24-byte segment header and the first record's 8-byte length + CRC.
    flip_byte(&segs[0], 24 + 8 + 4);
}

fn role_of(c: &Cluster, id: u64) -> String {
    info(&c.node(id).server, "replication")
        .get("tandem_role")
        .cloned()
        .unwrap_or_default()
}

/// Which member's files are damaged.
#[derive(Clone, Copy, PartialEq)]
enum Victim {
    Voter,
    ReadReplica,
}

fn rebuild_case(extra_on_restart: &[&str], damage_snapshots: bool, kind: Victim) {
    let dir = tempfile::tempdir().unwrap();
    let replicas = usize::from(kind == Victim::ReadReplica);
    let mut c = Cluster::start(dir.path(), 3, replicas, &[]);
    for i in 0..300 {
        c.write_ok(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let p = c.primary();
    let victim = match kind {
        Victim::Voter => c.nodes.iter().find(|n| n.id != c.nodes[p].id).unwrap().id,
        Victim::ReadReplica => 4,
    };
    let role_after = match kind {
        Victim::Voter => "voter",
        Victim::ReadReplica => "read-replica",
    };
    if damage_snapshots {
        let r = c.node(victim).server.conn().cmd(&["SAVE"]);
        assert!(r.is_ok(), "SAVE: {r}");
    }
    c.assert_converged();
    let original = c.node(victim).server.args.clone();

    phase(format!("stop node {victim} and damage its files"));
    c.node_mut(victim).server.stop();
    let data = c.node(victim).server.data_dir.clone();
    damage_log(&data);
    if damage_snapshots {
        for snap in files_with_ext(&data.join("snapshots"), "snap") {
            let len = std::fs::metadata(&snap).unwrap().len();
            flip_byte(&snap, len / 2);
        }
    }
    match c
        .node_mut(victim)
        .server
        .restart_outcome(Duration::from_secs(30))
    {
        Outcome::Exited(_, out) => {
            phase("without being told, it refuses to start and names the damage");
            assert!(
                out.contains(".seg") || out.contains(".snap"),
                "the refusal must name the damaged file: {out}"
            );
        }
        Outcome::Ready => panic!("node {victim} started on a damaged log"),
    }

    phase("meanwhile the cluster takes writes");
    c.write_ok(&["SET", "during", "1"]);

    phase(format!("restart node {victim} with {extra_on_restart:?}"));
    let mut args: Vec<&str> = original.iter().map(String::as_str).collect();
    args.extend_from_slice(extra_on_restart);
    c.node_mut(victim).server.set_args(&args);
    c.node_mut(victim).server.restart();
    // The marker goes last, after a voter's promotion back has committed.
    wait_for(SETTLE_TIMEOUT, "the rebuild to finish", || {
        !data.join("REBUILDING").exists()
    });
    assert_eq!(role_of(&c, victim), role_after);
    c.write_ok(&["SET", "after", "1"]);
    c.assert_converged();
    let mut conn = c.node(victim).server.conn();
    assert_eq!(conn.cmd(&["GET", "k299"]).as_bulk(), Some(&b"v299"[..]));
    assert_eq!(conn.cmd(&["GET", "during"]).as_bulk(), Some(&b"1"[..]));
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged files are kept aside");
    assert!(
        aside[0].path().join("log").exists(),
        "the damaged log is kept"
    );
    let demoted = format!("node {victim} demoted to read replica while it rebuilds");
    let was_demoted = c
        .nodes
        .iter()
        .filter(|n| n.id != victim)
        .any(|n| n.server.log_text().contains(&demoted));
    assert_eq!(
        was_demoted,
        kind == Victim::Voter,
        "the primary demotes a voter that rebuilds (its empty log must not vote), and only a voter"
    );

    phase("it restarts normally afterwards");
    let plain: Vec<&str> = original.iter().map(String::as_str).collect();
    c.node_mut(victim).server.set_args(&plain);
    c.node_mut(victim).server.restart();
    c.assert_converged();
    assert_eq!(role_of(&c, victim), role_after);
}

#[test]
fn a_voter_with_a_damaged_log_rebuilds_from_its_peers_when_asked() {
    rebuild_case(&["--rebuild-from-peers"], false, Victim::Voter);
}

#[test]
fn a_voter_configured_to_rebuild_on_damage_does_so_for_a_damaged_log_and_snapshot() {
    rebuild_case(&["--on-damage", "rebuild"], true, Victim::Voter);
}

#[test]
fn a_read_replica_with_a_damaged_log_rebuilds_from_its_peers() {
    rebuild_case(&["--rebuild-from-peers"], false, Victim::ReadReplica);
}
