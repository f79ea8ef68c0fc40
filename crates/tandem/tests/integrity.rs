//! Repair and containment of damaged copies across a cluster (DESIGN.md §2.5: no byte that fails
//! its checksum is ever returned to a client or copied to another node).
//!
//! - Repair on read: a value damaged on one member is read there with the right bytes and the
//!   copy is repaired from another member; damaged on every member but one, every copy is
//!   repaired; damaged everywhere, reads answer `-CORRUPT`, the key is quarantined (listed by
//!   DIGEST.QUARANTINE and INFO integrity) and no damaged byte reaches a client, until a write
//!   replaces it.
//! - Corruption never spreads: transport frames damaged after their CRC, and appends carrying a
//!   value damaged before framing, are refused and sent again, never applied.
//! - The scrubber finds and repairs a damaged value that no client reads.
//! - A value damaged in a stopped node's log (its record CRC rewritten to match) is caught when
//!   the entry is applied, and repaired from the other members; the node does not crash.
//! - A value damaged in a stopped node's only usable snapshot (block CRC and file digest
//!   rewritten) is loaded as damaged, never served, and repaired from the other members.
//!
//! Damage is injected with `DEBUG CORRUPT key` (a byte of a stored value), `DEBUG CORRUPT-FRAME n`
//! and `DEBUG CORRUPT-APPEND n` (outgoing replication), and the file helpers of
//! `common/damage.rs`.

mod common;

use std::collections::HashMap;

use common::cluster::{info, wait_for, Cluster, SETTLE_TIMEOUT};
use common::damage::{damage_value_in_log, damage_value_in_snapshot};
use common::{files_with_ext, phase, show_bytes, Frame, Tandem};

/// No background scrub pass: damage stays until something reads it (suspects are still
/// checked), so read repair is what a test sees.
const NO_SCRUB_PASS: &[&str] = &["--scrub-keys-per-sec", "0"];

fn integrity(server: &Tandem) -> HashMap<String, String> {
    info(server, "integrity")
}

/// A numeric INFO integrity field.
fn counter(server: &Tandem, field: &str) -> u64 {
    let fields = integrity(server);
    fields
        .get(field)
        .unwrap_or_else(|| panic!("INFO integrity has no {field}: {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO integrity {field} is not a number: {fields:?}"))
}

/// True when `reply` holds a near-copy of `original` (same length, 1 or 2 bytes different): the
/// damaged value leaking out.
fn holds_damaged_copy(reply: &[u8], original: &[u8]) -> bool {
    reply.windows(original.len()).any(|w| {
        let diff = w.iter().zip(original).filter(|(a, b)| a != b).count();
        (1..=2).contains(&diff)
    })
}

fn corrupt(server: &Tandem, key: &str) {
    let r = server.conn().cmd(&["DEBUG", "CORRUPT", key]);
    assert!(r.is_ok(), "DEBUG CORRUPT {key} replied {r}");
}

/// The value for key `i` of a test: long enough that a damaged copy is recognisable.
fn value(tag: &str, i: usize) -> String {
    format!("{tag}-value-{i:04}-{}", "abcdefghij".repeat(4))
}

/// Checks that every node holds `expected` for `key`, verified (DIGEST.GET checks the stored
/// digest; the test compares bytes).
fn assert_everywhere(cluster: &Cluster, key: &str, expected: &str) {
    for n in &cluster.nodes {
        let r = n.server.conn().cmd(&["GET", key]);
        assert_eq!(
            r,
            Frame::bulk(expected),
            "node {}: GET {key} after the repair",
            n.id
        );
    }
}

#[test]
fn damaged_copies_are_repaired_on_read_and_quarantined_when_no_member_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 1, NO_SCRUB_PASS);
    let p = cluster.primary();
    let primary = &cluster.nodes[p].server;
    for i in 0..20 {
        cluster.write_ok(&["SET", &format!("k{i}"), &value("a", i)]);
    }
    cluster.assert_converged();
    let replica = cluster
        .nodes
        .iter()
        .position(|n| n.id == 4)
        .expect("node 4 is the read replica");

    phase("1. damaged on the read replica only: GET there answers the right bytes");
    corrupt(&cluster.nodes[replica].server, "k1");
    let before = integrity(&cluster.nodes[replica].server);
    let raw = cluster.nodes[replica].server.conn().cmd_raw(&["GET", "k1"]);
    assert_eq!(
        raw,
        common::encode_bulk(value("a", 1).as_bytes()),
        "GET k1 on the damaged replica: {}",
        show_bytes(&raw)
    );
    let after = integrity(&cluster.nodes[replica].server);
    eprintln!("INFO integrity before: {before:?}\nafter: {after:?}");
    assert!(counter(&cluster.nodes[replica].server, "corrupt_detected_read") >= 1);
    assert_eq!(
        counter(&cluster.nodes[replica].server, "corrupt_repaired_read"),
        1,
        "one read repair"
    );
    cluster.assert_converged();

    phase("2. damaged on every member but one (the primary among them): all are repaired");
    let keeper = cluster
        .nodes
        .iter()
        .position(|n| n.id != cluster.nodes[p].id && n.id != 4)
        .unwrap();
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i != keeper {
            corrupt(&n.server, "k2");
        }
    }
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i == keeper {
            continue;
        }
        let raw = n.server.conn().cmd_raw(&["GET", "k2"]);
        assert_eq!(
            raw,
            common::encode_bulk(value("a", 2).as_bytes()),
            "node {}: GET k2 with the copy damaged: {}",
            n.id,
            show_bytes(&raw)
        );
    }
    // A write that reads the stored value (APPEND) on the primary goes through too.
    corrupt(primary, "k3");
    let r = primary.conn().cmd(&["APPEND", "k3", "+tail"]);
    assert_eq!(
        r,
        Frame::Integer((value("a", 3).len() + 5) as i64),
        "APPEND over a damaged copy on the primary"
    );
    cluster.assert_converged();
    assert_everywhere(&cluster, "k2", &value("a", 2));
    assert_everywhere(&cluster, "k3", &format!("{}+tail", value("a", 3)));
    let repaired: u64 = cluster
        .nodes
        .iter()
        .map(|n| {
            counter(&n.server, "corrupt_repaired_read")
                + counter(&n.server, "corrupt_repaired_scrub")
        })
        .sum();
    assert!(
        repaired >= 5,
        "repairs counted over the cluster (1 + 3 of k2 + 1 of k3): {repaired}"
    );

    phase("3. damaged on every member: -CORRUPT, quarantined, never the damaged bytes");
    let original = value("a", 5);
    for n in &cluster.nodes {
        corrupt(&n.server, "k5");
    }
    for n in &cluster.nodes {
        for cmd in [
            &["GET", "k5"][..],
            &["MGET", "k4", "k5"],
            &["DIGEST.GET", "k5"],
            &["GETRANGE", "k5", "0", "-1"],
        ] {
            let raw = n.server.conn().cmd_raw(cmd);
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with("-CORRUPT") && text.contains("k5"),
                "node {}: {cmd:?} with every copy damaged answered {}",
                n.id,
                show_bytes(&raw)
            );
            assert!(
                !holds_damaged_copy(&raw, original.as_bytes()),
                "node {}: {cmd:?} leaked the damaged bytes: {}",
                n.id,
                show_bytes(&raw)
            );
        }
    }
    let r = cluster.nodes[replica]
        .server
        .conn()
        .cmd(&["DIGEST.QUARANTINE"]);
    let listed = r
        .as_array()
        .unwrap_or_else(|| panic!("DIGEST.QUARANTINE: {r}"));
    assert_eq!(listed.len(), 1, "DIGEST.QUARANTINE: {r}");
    let entry = listed[0].as_array().unwrap();
    assert_eq!(entry[0], Frame::bulk("k5"), "DIGEST.QUARANTINE: {r}");
    let fields = integrity(&cluster.nodes[replica].server);
    assert_eq!(fields["quarantined_keys"], "1", "{fields:?}");
    assert!(
        fields["quarantined_key0"].starts_with("key=k5,"),
        "{fields:?}"
    );
    // Found unrepairable by a read, or first by the scrubber (which may reach it before the
    // reads above): either way counted once as unrepairable.
    let replica_server = &cluster.nodes[replica].server;
    assert!(
        counter(replica_server, "corrupt_unrepairable_read")
            + counter(replica_server, "corrupt_unrepairable_scrub")
            >= 1,
        "{:?}",
        integrity(replica_server)
    );

    phase("4. a write replaces the key everywhere: out of quarantine");
    cluster.write_ok(&["SET", "k5", "fresh"]);
    cluster.assert_converged();
    assert_everywhere(&cluster, "k5", "fresh");
    let r = cluster.nodes[replica]
        .server
        .conn()
        .cmd(&["DIGEST.QUARANTINE"]);
    assert_eq!(r, Frame::Array(vec![]), "DIGEST.QUARANTINE after SET");

    phase("5. an MGET of 20 damaged keys: 16 repaired at once (the limit), the rest soon after");
    let server = &cluster.nodes[replica].server;
    let keys: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        cluster.write_ok(&["SET", k, &value("m", i)]);
    }
    cluster.assert_converged();
    for k in &keys {
        corrupt(server, k);
    }
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let raw = server.conn().cmd_raw(&mget);
    assert!(
        String::from_utf8_lossy(&raw).starts_with("-CORRUPT"),
        "MGET of 20 damaged keys (16 repaired per request): {}",
        show_bytes(&raw)
    );
    let want = Frame::Array((0..20).map(|i| Frame::bulk(value("m", i))).collect());
    wait_for(
        SETTLE_TIMEOUT,
        "the other 4 to be repaired in the background",
        || server.conn().cmd(&mget) == want,
    );
    cluster.assert_converged();
}

#[test]
fn damaged_replication_is_refused_and_sent_again_and_the_scrubber_repairs_unread_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 0, &[]);
    let p = cluster.primary();
    let primary = &cluster.nodes[p].server;
    let crc_failures = |s: &Tandem| -> u64 {
        info(s, "replication")["tandem_transport_crc_failures"]
            .parse()
            .unwrap()
    };
    let crc_before: u64 = cluster.nodes.iter().map(|n| crc_failures(&n.server)).sum();

    phase("1. the primary damages 3 outgoing frames after their CRC: refused and re-sent");
    assert!(primary.conn().cmd(&["DEBUG", "CORRUPT-FRAME", "3"]).is_ok());
    for i in 0..10 {
        cluster.write_ok(&["SET", &format!("f{i}"), &value("f", i)]);
    }
    cluster.assert_converged();
    let crc_after: u64 = cluster.nodes.iter().map(|n| crc_failures(&n.server)).sum();
    assert!(
        crc_after > crc_before,
        "no frame CRC failure was counted ({crc_before} -> {crc_after})"
    );
    for i in 0..10 {
        assert_everywhere(&cluster, &format!("f{i}"), &value("f", i));
    }

    phase("2. the primary damages a value inside 3 appends (frame CRC intact): refused, re-sent");
    assert!(primary
        .conn()
        .cmd(&["DEBUG", "CORRUPT-APPEND", "3"])
        .is_ok());
    for i in 0..10 {
        cluster.write_ok(&["SET", &format!("t{i}"), &value("t", i)]);
    }
    cluster.assert_converged();
    for i in 0..10 {
        assert_everywhere(&cluster, &format!("t{i}"), &value("t", i));
    }
    let replicas: Vec<&Tandem> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != cluster.nodes[p].id)
        .map(|n| &n.server)
        .collect();
    let refused: u64 = replicas
        .iter()
        .map(|s| counter(s, "corrupt_detected_transport"))
        .sum();
    assert_eq!(refused, 3, "appends refused by the replicas");
    wait_for(
        SETTLE_TIMEOUT,
        "every refused append to be received again",
        || {
            replicas
                .iter()
                .map(|s| counter(s, "corrupt_repaired_transport"))
                .sum::<u64>()
                == 3
        },
    );
    for s in &replicas {
        assert_eq!(
            counter(s, "corrupt_detected_apply"),
            0,
            "nothing damaged was applied"
        );
    }

    phase("3. a value damaged on a voter that no client reads: the scrubber repairs it");
    let victim = &replicas[0];
    let passes = counter(victim, "scrub_passes_completed");
    corrupt(victim, "f7");
    wait_for(SETTLE_TIMEOUT, "the scrubber to repair f7", || {
        counter(victim, "corrupt_repaired_scrub") >= 1
    });
    let fields = integrity(victim);
    eprintln!("INFO integrity of the victim: {fields:?}");
    assert_eq!(
        counter(victim, "corrupt_detected_read"),
        0,
        "no client read it"
    );
    assert!(counter(victim, "scrub_faults_found") >= 1);
    assert!(counter(victim, "scrub_keys_checked") > 0);
    wait_for(SETTLE_TIMEOUT, "a full scrub pass", || {
        counter(victim, "scrub_passes_completed") > passes
    });
    assert!(counter(victim, "scrub_last_full_pass_unix_ms") > 0);
    cluster.assert_converged();
}

#[test]
fn a_value_damaged_in_a_stopped_nodes_log_is_caught_at_apply_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 0, &[]);
    for i in 0..10 {
        cluster.write_ok(&["SET", &format!("l{i}"), &value("l", i)]);
    }
    cluster.assert_converged();
    let victim_id = cluster
        .nodes
        .iter()
        .find(|n| n.id != cluster.nodes[cluster.primary()].id)
        .unwrap()
        .id;

    phase(format!(
        "stop node {victim_id}, damage l4's value in its log (CRC rewritten)"
    ));
    let node = cluster.node_mut(victim_id);
    node.server.stop();
    let damaged = damage_value_in_log(&node.server.data_dir, value("l", 4).as_bytes());
    phase(format!(
        "flipped {} at {}",
        damaged.file.display(),
        damaged.offset
    ));

    phase("restart: the entry is applied from the log, the damage found and repaired");
    node.server.restart();
    let server = &cluster.node(victim_id).server;
    wait_for(
        SETTLE_TIMEOUT,
        "the apply-time damage to be repaired",
        || counter(server, "corrupt_repaired_apply") >= 1,
    );
    assert!(counter(server, "corrupt_detected_apply") >= 1);
    assert_eq!(
        server.conn().cmd(&["GET", "l4"]),
        Frame::bulk(value("l", 4))
    );
    cluster.assert_converged();
}

#[test]
fn a_value_damaged_in_a_stopped_nodes_snapshot_is_loaded_refused_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    // The log is purged right behind each snapshot, so the snapshot is the only copy on disk.
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        0,
        &[
            "--log-retention-entries",
            "0",
            "--log-retention-bytes",
            "0",
            "--log-retention-ms",
            "0",
        ],
    );
    for i in 0..10 {
        cluster.write_ok(&["SET", &format!("s{i}"), &value("s", i)]);
    }
    let victim_id = cluster
        .nodes
        .iter()
        .find(|n| n.id != cluster.nodes[cluster.primary()].id)
        .unwrap()
        .id;
    let server = &cluster.node(victim_id).server;
    for _ in 0..2 {
        assert!(server.conn().cmd(&["SAVE"]).is_ok());
        cluster.write_ok(&["SET", "filler", "x"]);
    }
    cluster.assert_converged();
    let server = &cluster.node(victim_id).server;
    assert!(server.conn().cmd(&["SAVE"]).is_ok());
    wait_for(SETTLE_TIMEOUT, "the victim's log to be purged", || {
        !info(server, "replication")["tandem_purged_index"].is_empty()
    });

    phase(format!(
        "stop node {victim_id}, damage s3's value in every snapshot of it"
    ));
    let node = cluster.node_mut(victim_id);
    node.server.stop();
    let snaps = files_with_ext(&node.server.data_dir.join("snapshots"), "snap");
    assert!(!snaps.is_empty(), "no snapshot on node {victim_id}");
    for snap in &snaps {
        let d = damage_value_in_snapshot(snap, value("s", 3).as_bytes());
        phase(format!("flipped {} at {}", d.file.display(), d.offset));
    }

    phase("restart: loaded with the damaged value, which is never served and gets repaired");
    node.server.restart();
    let server = &cluster.node(victim_id).server;
    let raw = server.conn().cmd_raw(&["GET", "s3"]);
    assert!(
        !holds_damaged_copy(&raw, value("s", 3).as_bytes()),
        "GET s3 leaked the damaged bytes: {}",
        show_bytes(&raw)
    );
    wait_for(
        SETTLE_TIMEOUT,
        "the snapshot's damaged value to be repaired",
        || {
            counter(server, "corrupt_detected_snapshot") >= 1
                && counter(server, "corrupt_repaired_snapshot")
                    + counter(server, "corrupt_repaired_read")
                    >= 1
        },
    );
    assert_eq!(
        server.conn().cmd(&["GET", "s3"]),
        Frame::bulk(value("s", 3))
    );
    cluster.assert_converged();
}

/// A transaction's derived write (INCR) over a damaged copy on the primary is refused there and
/// never proposed — also when an earlier command of the transaction writes another key — so no
/// other node applies a write its client was told failed.
#[test]
fn a_transaction_never_proposes_a_derived_write_over_a_damaged_copy() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 0, &[]);
    let p = cluster.write_ok(&["SET", "k", "10"]);
    cluster.assert_converged();
    let primary = &cluster.nodes[p].server;
    let mut conn = primary.conn();
    assert!(conn.cmd(&["DEBUG", "REPAIR", "OFF"]).is_ok());
    corrupt(primary, "k");
    assert!(conn.cmd(&["MULTI"]).is_ok());
    conn.cmd(&["SET", "a", "1"]);
    conn.cmd(&["INCR", "k"]);
    conn.cmd(&["SET", "k2", "x"]);
    let reply = conn.cmd(&["EXEC"]);
    let replies = reply.as_array().unwrap_or_else(|| panic!("EXEC: {reply}"));
    assert!(replies[0].is_ok(), "EXEC: {reply}");
    assert!(
        matches!(&replies[1], Frame::Error(e) if e.starts_with("CORRUPT")),
        "INCR over a damaged copy: {reply}"
    );
    assert!(replies[2].is_ok(), "EXEC: {reply}");
    for n in cluster.nodes.iter().filter(|n| n.id != cluster.nodes[p].id) {
        let mut c = n.server.conn();
        wait_for(SETTLE_TIMEOUT, "the transaction on every node", || {
            c.cmd(&["GET", "k2"]).as_bulk() == Some(b"x")
        });
        assert_eq!(
            c.cmd(&["GET", "k"]).as_bulk(),
            Some(&b"10"[..]),
            "node {} applied an INCR its client was told failed",
            n.id
        );
    }
}
