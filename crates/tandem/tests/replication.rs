//! Replication across real `tandem server` processes over real TCP (DESIGN.md §2, promises 1-4):
//! a primary, voters and read replicas; WAIT; READONLY; the replica read rule; read-your-writes;
//! catching up from the log and from a snapshot; refusing wiped nodes and strangers; a primary
//! without quorum.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{digest, info, wait_for, Cluster, SECRET, SETTLE_TIMEOUT};
use common::{free_port, phase, Frame, Tandem};

fn int(f: &Frame) -> i64 {
    f.as_int()
        .unwrap_or_else(|| panic!("expected an integer, got {f}"))
}

/// Three voters and two read replicas: the whole read and write contract.
#[test]
fn three_voters_and_two_read_replicas_keep_the_replication_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 1, &["--replica-max-lag-ms", "1500"]);

    phase("a fifth node joins with REPLICAOF sent to it");
    let port = free_port();
    let mut fresh = Tandem::spawn(
        port,
        &dir.path().join("node-5"),
        &[
            "--node-id",
            "5",
            "--cluster-secret",
            SECRET,
            "--enable-debug-commands",
            "--replica-max-lag-ms",
            "1500",
        ],
    );
    fresh.ensure_ready();
    let p = c.primary();
    let primary_port = c.nodes[p].server.port;
    let reply = fresh
        .conn()
        .cmd(&["REPLICAOF", "127.0.0.1", &primary_port.to_string()]);
    assert!(reply.is_ok(), "REPLICAOF: {reply}");
    c.nodes.push(common::cluster::Node {
        id: 5,
        server: fresh,
        cluster_port: port + 10000,
    });
    wait_for(SETTLE_TIMEOUT, "node 5 to be a read replica", || {
        info(&c.node(5).server, "replication")
            .get("tandem_role")
            .map(String::as_str)
            == Some("read-replica")
    });

    phase("writes on the primary appear on every replica");
    let mut w = c.nodes[p].server.conn();
    for i in 0..50 {
        let f = w.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]);
        assert!(f.is_ok(), "{f}");
    }
    let pos = int(&w.cmd(&["POSITION"]));
    assert!(pos > 0, "POSITION after a write is its log index");
    for n in &c.nodes {
        let mut r = n.server.conn();
        assert!(int(&r.cmd(&["WAITPOS", &pos.to_string(), "20000"])) >= pos);
        assert_eq!(r.cmd(&["GET", "k49"]), Frame::bulk("v49"), "node {}", n.id);
    }
    c.assert_converged();

    phase("WAIT counts replicas, voting or not, that hold the connection's last write");
    let f = w.cmd(&["SET", "w", "1"]);
    assert!(f.is_ok(), "{f}");
    assert_eq!(int(&w.cmd(&["WAIT", "4", "20000"])), 4);

    phase("ROLE and INFO replication describe the cluster");
    let role = w.cmd(&["ROLE"]);
    let a = role.as_array().unwrap();
    assert_eq!(a[0], Frame::bulk("master"));
    assert_eq!(a[2].as_array().unwrap().len(), 4, "{role}");
    let pinfo = info(&c.nodes[p].server, "replication");
    assert_eq!(pinfo["role"], "master");
    assert_eq!(pinfo["connected_slaves"], "4");
    assert!(pinfo.contains_key("slave3"), "{pinfo:?}");
    let rinfo = info(&c.node(4).server, "replication");
    assert_eq!(rinfo["role"], "slave");
    assert_eq!(rinfo["master_port"], primary_port.to_string());
    assert_eq!(rinfo["master_link_status"], "up");
    let rrole = c.node(4).server.conn().cmd(&["ROLE"]);
    assert_eq!(
        rrole.as_array().unwrap()[0],
        Frame::bulk("slave"),
        "{rrole}"
    );

    phase("a write sent to a replica is refused with Redis's READONLY error");
    for id in [4, 5] {
        let f = c.node(id).server.conn().cmd(&["SET", "x", "1"]);
        assert_eq!(
            f.error_text(),
            Some("READONLY You can't write against a read only replica."),
            "node {id}"
        );
    }
    let follower = c
        .nodes
        .iter()
        .find(|n| n.id <= 3 && n.id != c.nodes[p].id)
        .unwrap();
    assert!(follower
        .server
        .conn()
        .cmd(&["SET", "x", "1"])
        .error_text()
        .unwrap()
        .starts_with("READONLY"));

    phase("a transaction of reads runs on a replica; one with a write is refused");
    let mut r = c.node(4).server.conn();
    assert!(r.cmd(&["MULTI"]).is_ok());
    assert_eq!(r.cmd(&["GET", "k1"]), Frame::Simple("QUEUED".into()));
    assert_eq!(r.cmd(&["EXEC"]), Frame::Array(vec![Frame::bulk("v1")]));
    assert!(r.cmd(&["MULTI"]).is_ok());
    assert_eq!(r.cmd(&["SET", "k1", "x"]), Frame::Simple("QUEUED".into()));
    assert!(r
        .cmd(&["EXEC"])
        .error_text()
        .unwrap()
        .starts_with("READONLY"));

    phase("a lagging replica refuses reads, then serves again once caught up");
    let mut lagging = c.node(5).server.conn();
    assert!(lagging.cmd(&["DEBUG", "REPLICATION-PAUSE", "4000"]).is_ok());
    let f = w.cmd(&["SET", "during-pause", "1"]);
    assert!(f.is_ok(), "{f}");
    assert_eq!(
        int(&w.cmd(&["WAIT", "4", "500"])),
        3,
        "the paused replica does not count"
    );
    let started = Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(4) {
        let f = lagging.cmd(&["GET", "k1"]);
        if f.is_error() {
            refused = Some(f);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = refused.expect("the paused replica kept serving reads beyond replica-max-lag-ms");
    assert!(
        refused.error_text().unwrap().starts_with("MASTERDOWN"),
        "{refused}"
    );
    wait_for(
        SETTLE_TIMEOUT,
        "the replica to catch up and serve again",
        || lagging.cmd(&["GET", "during-pause"]) == Frame::bulk("1"),
    );

    phase("durability all: a write waits until every replica has it");
    let mut all = c.nodes[p].server.conn();
    assert!(all.cmd(&["CLIENT", "DURABILITY", "all"]).is_ok());
    assert_eq!(all.cmd(&["CLIENT", "DURABILITY"]), Frame::bulk("all"));
    assert!(lagging.cmd(&["DEBUG", "REPLICATION-PAUSE", "1500"]).is_ok());
    let started = Instant::now();
    assert!(all.cmd(&["SET", "durable-everywhere", "1"]).is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "durability all returned after {:?}, before the paused replica could have the write",
        started.elapsed()
    );
    assert_eq!(
        int(&all.cmd(&["WAIT", "4", "1"])),
        4,
        "every replica holds it when it is acknowledged"
    );
    // Held durably is not yet applied: WAITPOS makes the read see it.
    let pos = int(&all.cmd(&["POSITION"]));
    assert!(int(&lagging.cmd(&["WAITPOS", &pos.to_string(), "10000"])) >= pos);
    assert_eq!(
        lagging.cmd(&["GET", "durable-everywhere"]),
        Frame::bulk("1")
    );

    phase("read-your-writes across connections and nodes");
    let mut writer = c.nodes[p].server.conn();
    for i in 0..20 {
        let key = format!("ryw{i}");
        assert!(writer.cmd(&["SET", &key, "x"]).is_ok());
        let pos = int(&writer.cmd(&["POSITION"]));
        for id in [4, 5] {
            let mut reader = c.node(id).server.conn();
            assert!(int(&reader.cmd(&["WAITPOS", &pos.to_string(), "10000"])) >= pos);
            assert_eq!(
                reader.cmd(&["GET", &key]),
                Frame::bulk("x"),
                "node {id} after WAITPOS {pos}"
            );
        }
    }
    let mut r = c.node(4).server.conn();
    let err = r.cmd(&["WAITPOS", "999999999", "100"]);
    assert!(err.error_text().unwrap().starts_with("TIMEOUT"), "{err}");

    phase("every node ends with the same keyspace at the same index");
    c.assert_converged();

    phase("membership: promote a caught-up read replica, demote it again, remove another");
    let mut admin = c.node(4).server.conn();
    let f = admin.cmd(&["MEMBERSHIP", "PROMOTE", "4"]);
    assert!(
        !f.is_error(),
        "promote (sent to a replica, forwarded to the primary): {f}"
    );
    wait_for(SETTLE_TIMEOUT, "node 4 to be a voter", || {
        info(&c.node(4).server, "replication")["tandem_role"] == "voter"
    });
    assert!(!admin.cmd(&["MEMBERSHIP", "DEMOTE", "4"]).is_error());
    wait_for(SETTLE_TIMEOUT, "node 4 to be a read replica again", || {
        info(&c.node(4).server, "replication")["tandem_role"] == "read-replica"
    });
    let p = c.primary();
    assert!(!c.nodes[p]
        .server
        .conn()
        .cmd(&["MEMBERSHIP", "REMOVE", "5"])
        .is_error());
    let members = c.nodes[p].server.conn().cmd(&["MEMBERSHIP", "LIST"]);
    assert_eq!(members.as_array().unwrap().len(), 4, "{members}");
    let bad = c.nodes[p]
        .server
        .conn()
        .cmd(&["MEMBERSHIP", "PROMOTE", "99"]);
    assert!(bad.error_text().unwrap().contains("not a member"), "{bad}");
}

/// A replica killed and restarted catches up from the log: no snapshot is sent.
#[test]
fn a_restarted_replica_catches_up_from_the_log_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots are taken often, but the log is retained behind them.
    let mut c = Cluster::start(dir.path(), 3, 1, &["--snapshot-entries", "20"]);
    let p = c.write_ok(&["SET", "before", "1"]);
    let mut w = c.nodes[p].server.conn();
    c.wait_applied(digest(&c.nodes[p].server).0);

    phase("kill the read replica and write while it is down");
    c.node_mut(4).server.kill9();
    for i in 0..300 {
        let f = w.cmd(&["SET", &format!("k{i}"), "v"]);
        assert!(f.is_ok(), "{f}");
    }
    let pinfo = info(&c.nodes[p].server, "replication");
    assert!(
        pinfo["tandem_snapshot_index"].parse::<u64>().unwrap() > 20,
        "the primary took snapshots: {pinfo:?}"
    );

    phase("restart it: it catches up from the log");
    c.node_mut(4).server.restart();
    c.assert_converged();
    let rinfo = info(&c.node(4).server, "replication");
    assert_eq!(
        rinfo["tandem_sync_completed"], "0",
        "no snapshot was needed: {rinfo:?}"
    );
    assert!(!c.node(4).server.log_text().contains("receiving snapshot"));
}

/// A replica added after the log was compacted receives a snapshot: in chunks, throttled, some
/// corrupted in transit (detected by the frame CRC and sent again — so often that one transfer
/// attempt gives up and the next resumes where the replica stopped), and ends with exactly the
/// primary's data.
#[test]
fn a_replica_added_after_compaction_gets_a_verified_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--snapshot-entries",
        "20",
        "--log-retention-entries",
        "0",
        "--log-retention-bytes",
        "0",
        "--log-retention-ms",
        "0",
        "--snapshot-chunk-bytes",
        "4096",
        "--replica-sync-bytes-per-sec-max",
        "100000",
    ];
    let mut c = Cluster::start(dir.path(), 3, 0, &flags);
    let p = c.primary();
    let mut w = c.nodes[p].server.conn();
    let value = "x".repeat(200);
    for i in 0..500 {
        let f = w.cmd(&["SET", &format!("k{i}"), &value]);
        assert!(f.is_ok(), "{f}");
    }
    wait_for(SETTLE_TIMEOUT, "the primary to purge its log", || {
        info(&c.nodes[p].server, "replication")["tandem_purged_index"]
            .parse::<u64>()
            .is_ok_and(|i| i > 100)
    });

    phase("corrupt 2 snapshot chunks after 2 intact ones, break the transfer off after 5, add a replica");
    let f = w.cmd(&["DEBUG", "CORRUPT-SNAPSHOT-CHUNK", "2", "2"]);
    assert!(f.is_ok(), "{f}");
    // The next attempt resumes at byte 5 * 4096.
    let f = w.cmd(&["DEBUG", "SNAPSHOT-INTERRUPT", "5"]);
    assert!(f.is_ok(), "{f}");
    let started = Instant::now();
    let idx = c.add_replica(4, free_port());
    c.assert_converged();
    let took = started.elapsed();
    let rinfo = info(&c.nodes[idx].server, "replication");
    assert!(
        rinfo["tandem_sync_completed"].parse::<u64>().unwrap() >= 1,
        "{rinfo:?}"
    );
    assert!(
        rinfo["tandem_transport_crc_failures"]
            .parse::<u64>()
            .unwrap()
            >= 1,
        "the corrupted chunk was detected by its CRC: {rinfo:?}"
    );
    assert_eq!(
        c.nodes[idx].server.conn().cmd(&["GET", "k499"]),
        Frame::bulk(value.as_str())
    );
    let log = c.nodes[idx].server.log_text();
    assert!(
        log.contains("resuming at byte 20480"),
        "the second attempt resumed where the first stopped"
    );
    let size: f64 = rinfo["tandem_sync_total_bytes"].parse().unwrap();
    assert!(size > 100_000.0, "snapshot of {size} bytes");
    assert!(
        took.as_secs_f64() >= size / 100_000.0 * 0.8,
        "{size} bytes at 100000 bytes/s took only {took:?}: not throttled"
    );
}

/// A voter whose data dir was wiped comes back under its old id: the cluster refuses it.
#[test]
fn a_node_restarted_with_a_wiped_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 0, &[]);
    let p = c.write_ok(&["SET", "k", "v"]);
    let mut w = c.nodes[p].server.conn();
    c.wait_applied(digest(&c.nodes[p].server).0);
    let victim = c.nodes.iter().find(|n| n.id != c.nodes[p].id).unwrap().id;

    phase(format!("wipe node {victim}'s data dir and restart it"));
    let node = c.node_mut(victim);
    node.server.kill9();
    std::fs::remove_dir_all(&node.server.data_dir).unwrap();
    node.server.restart();
    wait_for(
        SETTLE_TIMEOUT,
        "the wiped node to refuse the primary",
        || {
            c.node(victim)
                .server
                .log_text()
                .contains("wiped or replaced")
        },
    );
    let (_, _, keys) = digest(&c.node(victim).server);
    assert_eq!(
        keys, 0,
        "the wiped node was not fed the cluster's data under its old id"
    );
    assert!(
        w.cmd(&["SET", "k2", "v"]).is_ok(),
        "the other two voters still form a majority"
    );
}

/// A node with the wrong cluster secret cannot join, and the refusal is logged.
#[test]
fn a_peer_with_the_wrong_cluster_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, 0, &[]);
    let p = c.primary();
    let mut stranger = Tandem::start(
        &dir.path().join("stranger"),
        &["--node-id", "9", "--cluster-secret", "not-the-secret"],
    );
    let f = stranger.conn().cmd(&[
        "REPLICAOF",
        "127.0.0.1",
        &c.nodes[p].server.port.to_string(),
    ]);
    assert!(f.is_error(), "{f}");
    wait_for(SETTLE_TIMEOUT, "the primary to log the refusal", || {
        c.nodes[p].server.log_text().contains("refused peer")
    });
    let members = c.nodes[p].server.conn().cmd(&["MEMBERSHIP", "LIST"]);
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    stranger.stop();
}

/// A primary that loses its quorum fails writes with an error within the write timeout.
#[test]
fn a_primary_without_quorum_fails_writes_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 0, &["--write-timeout-ms", "2000"]);
    let p = c.write_ok(&["SET", "k", "v"]);
    let primary_id = c.nodes[p].id;
    phase("kill both other voters");
    for n in c.nodes.iter_mut().filter(|n| n.id != primary_id) {
        n.server.kill9();
    }
    let started = Instant::now();
    let f = c.node(primary_id).server.conn().cmd(&["SET", "k", "v2"]);
    let took = started.elapsed();
    assert!(f.is_error(), "a write without quorum must fail, got {f}");
    assert!(
        took < Duration::from_secs(8),
        "failed after {took:?}, bound is the 2 s write timeout"
    );
}
