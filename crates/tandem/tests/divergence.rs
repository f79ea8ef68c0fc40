//! Divergence detection and repair from the primary (issue 5, part B).
//!
//! Every node keeps an incremental, order-independent digest of its keyspace. The primary
//! compares every member's at one log position (`VERIFY`, `tandem cluster verify`, and
//! periodically), narrows a difference to buckets and then keys, and repairs them from its own
//! copy through the log.
//!
//! The divergence is made with `DEBUG DIVERGE key value`, which changes a value AND its checksum
//! on one node only: reads there verify happily (the bytes match their checksum), so only the
//! comparison with the other nodes can find it. Convergence afterwards is checked with
//! `DEBUG KEYSPACE-DIGEST` (a SHA-256 over every snapshot record, independent of the digest
//! under test), and the incremental digest is checked against a from-scratch recomputation
//! (`DEBUG DIGEST-CHECK`) after restarts, snapshot loads, expiry, RENAME and FLUSHALL.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::{digest, info, wait_for, Cluster, SETTLE_TIMEOUT};
use common::{phase, run_tandem, Frame, Tandem};

/// A VERIFY report (`field:value` lines) as a map.
fn report(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn verify(server: &Tandem, args: &[&str]) -> (String, HashMap<String, String>) {
    let mut cmd = vec!["VERIFY"];
    cmd.extend_from_slice(args);
    let f = server.conn().cmd(&cmd);
    let text = String::from_utf8_lossy(
        f.as_bulk()
            .unwrap_or_else(|| panic!("VERIFY {args:?} replied {f}")),
    )
    .into_owned();
    let map = report(&text);
    (text, map)
}

/// DEBUG DIGEST-CHECK: (applied index, incremental digest, recomputed digest, buckets agree,
/// keys).
fn digest_check(server: &Tandem) -> (i64, String, String, bool, i64) {
    let f = server.conn().cmd(&["DEBUG", "DIGEST-CHECK"]);
    let a = f
        .as_array()
        .unwrap_or_else(|| panic!("DEBUG DIGEST-CHECK: {f}"));
    let text = |i: usize| String::from_utf8_lossy(a[i].as_bulk().unwrap()).into_owned();
    (
        a[0].as_int().unwrap(),
        text(1),
        text(2),
        a[3].as_int() == Some(1),
        a[4].as_int().unwrap(),
    )
}

/// The incremental digest of `server` equals its recomputation, every bucket included.
fn assert_digest_consistent(server: &Tandem, when: &str) -> String {
    let (index, incremental, recomputed, buckets, keys) = digest_check(server);
    assert_eq!(
        incremental, recomputed,
        "{when}: incremental digest differs from the recomputed one at index {index} ({keys} keys)"
    );
    assert!(
        buckets,
        "{when}: a bucket digest differs from its recomputation"
    );
    incremental
}

fn get(server: &Tandem, key: &str) -> Frame {
    server.conn().cmd(&["GET", key])
}

fn load(c: &Cluster, keys: usize) {
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let mut cmd = vec!["MSET".to_string()];
        for i in chunk {
            cmd.push(format!("key:{i}"));
            cmd.push(format!("value-{i}"));
        }
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        c.write_ok(&args);
    }
    c.write_ok(&["SET", "ttl:1", "x", "PX", "600000"]);
    c.write_ok(&["RENAME", "key:1", "renamed:1"]);
    let mut p = c.nodes[c.primary()].server.conn();
    assert_eq!(p.cmd(&["DEL", "key:2"]), Frame::Integer(1));
    assert_eq!(p.cmd(&["APPEND", "key:3", "-more"]), Frame::Integer(12));
    assert_eq!(p.cmd(&["INCR", "counter"]), Frame::Integer(1));
}

#[test]
fn a_diverged_replica_and_voter_are_found_narrowed_to_the_keys_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    // Periodic verification off: this test asks.
    let c = Cluster::start(dir.path(), 3, 1, &["--verify-interval-ms", "0"]);
    load(&c, 1000);
    c.assert_converged();
    let p = c.primary();
    let primary = &c.nodes[p].server;
    let digests: Vec<String> = c
        .nodes
        .iter()
        .map(|n| assert_digest_consistent(&n.server, &format!("node {}", n.id)))
        .collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "every node has the same incremental digest: {digests:?}"
    );

    phase("a clean cluster verifies clean");
    let (text, r) = verify(primary, &[]);
    assert_eq!(r["result"], "clean", "{text}");
    assert_eq!(r["members_checked"], "3", "{text}");
    assert_eq!(r["keys_differing"], "0", "{text}");

    phase("read replica 4 diverges on key:77; its reads do not notice");
    let replica = &c.node(4).server;
    assert_eq!(
        replica
            .conn()
            .cmd(&["DEBUG", "DIVERGE", "key:77", "not-what-was-written"]),
        Frame::Integer(1)
    );
    assert_eq!(get(replica, "key:77"), Frame::bulk("not-what-was-written"));
    assert_ne!(digest(replica).1, digest(primary).1);
    assert_digest_consistent(replica, "after DEBUG DIVERGE");

    phase("tandem cluster verify, sent to a voter, finds node 4 and key:77 and repairs it");
    let any_voter = c.nodes.iter().find(|n| n.id != 4).unwrap();
    let (status, out) = run_tandem(
        &[
            "cluster",
            "verify",
            "--node",
            &format!("127.0.0.1:{}", any_voter.server.port),
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "tandem cluster verify failed:\n{out}");
    let r = report(&out);
    assert_eq!(r["result"], "repaired", "{out}");
    assert_eq!(r["members_diverging"], "4", "{out}");
    assert_eq!(r["keys_differing"], "1", "{out}");
    assert_eq!(r["keys_repaired"], "1", "{out}");
    assert!(r["member_4"].starts_with("diverges buckets="), "{out}");
    assert!(r["member_4"].ends_with("keys=1 converged=yes"), "{out}");
    assert_eq!(r["key_0"], "'key:77' members=4 action=repaired", "{out}");
    c.assert_converged();
    assert_eq!(get(replica, "key:77"), Frame::bulk("value-77"));
    let integrity = info(&c.nodes[p].server, "integrity");
    assert_eq!(integrity["divergence_found"], "1");
    assert_eq!(integrity["divergence_keys_repaired"], "1");
    assert_eq!(integrity["last_verify_result"], "repaired");
    assert_eq!(
        info(replica, "integrity")["divergence_keys_restored_here"],
        "1"
    );
    for n in &c.nodes {
        assert_digest_consistent(&n.server, &format!("node {} after the repair", n.id));
        assert_eq!(
            info(&n.server, "integrity")["keyspace_digest"],
            digests[0],
            "node {}: back to the digest before the divergence",
            n.id
        );
    }

    phase("a voter diverges on a changed key, an extra key and a missing key; VERIFY repairs all");
    let voter = c
        .nodes
        .iter()
        .find(|n| n.id != 4 && n.id != c.nodes[p].id)
        .unwrap();
    let mut v = voter.server.conn();
    assert_eq!(
        v.cmd(&["DEBUG", "DIVERGE", "key:5", "five?"]),
        Frame::Integer(1)
    );
    assert_eq!(
        v.cmd(&["DEBUG", "DIVERGE", "only-on-one-node", "x"]),
        Frame::Integer(0)
    );
    assert_eq!(
        v.cmd(&["DEBUG", "DIVERGE", "counter", "41"]),
        Frame::Integer(1)
    );
    let (text, r) = verify(primary, &[]);
    assert_eq!(r["result"], "repaired", "{text}");
    assert_eq!(r["members_diverging"], voter.id.to_string(), "{text}");
    assert_eq!(r["keys_differing"], "3", "{text}");
    assert_eq!(r["keys_repaired"], "3", "{text}");
    let keys: Vec<&str> = (0..3).map(|i| r[&format!("key_{i}")].as_str()).collect();
    for key in ["counter", "key:5", "only-on-one-node"] {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("'{key}'"))),
            "{key} not reported: {text}"
        );
    }
    c.assert_converged();
    assert_eq!(v.cmd(&["EXISTS", "only-on-one-node"]), Frame::Integer(0));

    phase("NOREPAIR reports without changing anything; a later VERIFY repairs");
    let mut rc = replica.conn();
    rc.cmd(&["DEBUG", "DIVERGE", "renamed:1", "elsewhere"]);
    let (text, r) = verify(primary, &["NOREPAIR", "TIMEOUT", "10000"]);
    assert_eq!(r["result"], "diverged", "{text}");
    assert_eq!(
        r["key_0"], "'renamed:1' members=4 action=reported",
        "{text}"
    );
    assert_eq!(get(replica, "renamed:1"), Frame::bulk("elsewhere"));
    let (text, r) = verify(primary, &[]);
    assert_eq!(r["result"], "repaired", "{text}");
    c.assert_converged();

    phase("VERIFY is refused on a replica, naming the primary; bad arguments are errors");
    let f = replica.conn().cmd(&["VERIFY"]);
    let e = f.error_text().unwrap_or_else(|| panic!("{f}"));
    assert!(
        e.contains("primary") && e.contains(&format!("{}", c.nodes[p].server.port)),
        "{e}"
    );
    for bad in [
        &["VERIFY", "NOPE"][..],
        &["VERIFY", "TIMEOUT", "0"],
        &["VERIFY", "TIMEOUT"],
    ] {
        assert!(primary.conn().cmd(bad).is_error(), "{bad:?}");
    }
    let f = Tandem::conn(primary).cmd(&["DEBUG", "DIVERGE", "k"]);
    assert!(f.is_error(), "DEBUG DIVERGE needs a key and a value: {f}");
}

/// Every node holds one keyspace. Periodic verification keeps appending marks, so the nodes
/// are sampled until all are seen at one index (`Cluster::assert_converged` expects an idle log);
/// one keyspace digest at one index is required then.
fn converged_while_marking(c: &Cluster) {
    wait_for(
        SETTLE_TIMEOUT,
        "every node seen at one applied index",
        || {
            let d: Vec<(i64, String, i64)> = c
                .nodes
                .iter()
                .map(|n| common::cluster::digest(&n.server))
                .collect();
            if d.iter().any(|x| x.0 != d[0].0) {
                return false;
            }
            assert!(
                d.iter().all(|x| x == &d[0]),
                "the nodes hold different keyspaces at index {}: {d:?}",
                d[0].0
            );
            true
        },
    );
}

#[test]
fn periodic_verification_finds_and_repairs_a_divergence_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 0, &["--verify-interval-ms", "300"]);
    load(&c, 200);
    converged_while_marking(&c);
    let p = c.primary();
    let other = c.nodes.iter().find(|n| n.id != c.nodes[p].id).unwrap();
    phase(format!("node {} diverges; nobody asks", other.id));
    other
        .server
        .conn()
        .cmd(&["DEBUG", "DIVERGE", "key:150", "drifted"]);
    wait_for(
        SETTLE_TIMEOUT,
        "the periodic verification to find and repair the divergence",
        || {
            let i = info(&c.nodes[p].server, "integrity");
            i["divergence_found"] != "0" && i["divergence_keys_repaired"] == "1"
        },
    );
    converged_while_marking(&c);
    assert_eq!(get(&other.server, "key:150"), Frame::bulk("value-150"));
    let i = info(&c.nodes[p].server, "integrity");
    assert!(i["divergence_checks"].parse::<u64>().unwrap() >= 1);
    assert_eq!(i["last_verify_result"], "repaired");
    assert!(c.nodes[p]
        .server
        .log_text()
        .contains("diverges from the primary"));
}

#[test]
fn the_incremental_digest_matches_a_recomputation_through_restarts_snapshots_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tandem::start(
        &dir.path().join("node"),
        &[
            "--enable-debug-commands",
            "true",
            "--snapshot-entries",
            "50",
        ],
    );
    let mut conn = t.conn();
    phase("writes of every kind");
    for i in 0..300 {
        conn.ok(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    for i in 0..20 {
        conn.ok(&["SET", &format!("short{i}"), "x", "PX", "200"]);
    }
    conn.ok(&["RENAME", "k1", "k1-renamed"]);
    conn.cmd(&["RENAMENX", "k2", "k3"]);
    conn.cmd(&["DEL", "k4", "k5"]);
    conn.cmd(&["APPEND", "k6", "tail"]);
    conn.cmd(&["INCRBY", "n", "7"]);
    conn.cmd(&["EXPIRE", "k7", "1000"]);
    conn.cmd(&["PERSIST", "k7"]);
    conn.cmd(&["PEXPIRE", "k8", "100000"]);
    assert_digest_consistent(&t, "after the writes");

    phase("expiry deletes the short-lived keys through the log");
    wait_for(SETTLE_TIMEOUT, "the expiry cycle", || {
        conn.cmd(&["DBSIZE"]) == Frame::Integer(300 - 2 + 1)
    });
    let before = assert_digest_consistent(&t, "after expiry");

    phase("restart: a snapshot load and a log replay rebuild the same digest");
    conn.ok(&["SAVE"]);
    conn.ok(&["SET", "after-snapshot", "1"]);
    conn.cmd(&["DEL", "after-snapshot"]);
    drop(conn);
    t.restart();
    let after = assert_digest_consistent(&t, "after the restart");
    assert_eq!(after, before);
    assert_eq!(info(&t, "integrity")["keyspace_digest"], before);
    let (text, r) = verify(&t, &[]);
    assert_eq!(
        (
            r["result"].as_str(),
            r["members_checked"].as_str(),
            r["digest"].as_str()
        ),
        ("clean", "0", before.as_str()),
        "a node alone has nothing to compare with: {text}"
    );

    phase("FLUSHALL empties the digest");
    let mut conn = t.conn();
    conn.ok(&["FLUSHALL"]);
    let empty = assert_digest_consistent(&t, "after FLUSHALL");
    assert_eq!(empty, "0".repeat(32));
    conn.ok(&["SET", "k0", "v0"]);
    assert_ne!(assert_digest_consistent(&t, "after a write"), empty);
}
