//! The Rust client library (`tandem-client`) against clusters of real `tandem server`
//! processes: discovery from any node, writes on the primary, reads routed by each policy,
//! verified reads that fall back from a corrupted replica and report it, and following a
//! failover after the primary is killed.
//!
//! The cluster harness is blocking, the client async: each test drives the harness from the
//! test thread and the client inside `block_on` on its own runtime.

mod common;

use std::time::Duration;

use common::cluster::{info, Cluster, SETTLE_TIMEOUT};
use common::phase;
use tandem_client::{Client, ClientOptions, CopyProblem, NodeRole, ReadPolicy};

/// Replicas serve reads while they heard from the primary within this bound. Generous, so a
/// busy debug build on shared cores never refuses a read and the per-node counts stay exact.
const REPLICA_MAX_LAG_MS: &str = "60000";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn options(policy: ReadPolicy) -> ClientOptions {
    ClientOptions {
        read_policy: policy,
        // No periodic refresh: every command a node counts is one this test sent.
        topology_refresh_interval: None,
        ..ClientOptions::default()
    }
}

fn addr(cluster: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", cluster.nodes[i].server.port)
}

/// INFO stats total_commands_processed of every node, in node order. The INFO that reads it
/// counts itself, so between two calls a node's count grows by the commands sent to it plus 1.
fn commands_processed(cluster: &Cluster) -> Vec<i64> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            info(&n.server, "stats")["total_commands_processed"]
                .parse()
                .unwrap()
        })
        .collect()
}

/// Commands each node served between two `commands_processed` calls.
fn served(before: &[i64], after: &[i64]) -> Vec<i64> {
    before.iter().zip(after).map(|(b, a)| a - b - 1).collect()
}

fn integrity(cluster: &Cluster, i: usize, field: &str) -> i64 {
    info(&cluster.nodes[i].server, "integrity")[field]
        .parse()
        .unwrap()
}

/// Index of the node serving the client on `addr`.
fn index_of(cluster: &Cluster, addr: &str) -> usize {
    (0..cluster.nodes.len())
        .find(|&i| self::addr(cluster, i) == addr)
        .unwrap_or_else(|| panic!("{addr} is no node of the cluster"))
}

#[test]
fn discovers_from_a_replica_writes_on_the_primary_and_reads_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        1,
        2,
        &["--replica-max-lag-ms", REPLICA_MAX_LAG_MS],
    );
    let rt = runtime();
    let p = cluster.primary();
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();

    phase("the client discovers the whole cluster from one replica's address");
    let seed = addr(&cluster, replicas[0]);
    let client = rt
        .block_on(Client::connect(&[&seed], options(ReadPolicy::Primary)))
        .unwrap();
    let topology = client.topology();
    assert_eq!(topology.nodes().len(), 3, "{topology:?}");
    assert_eq!(topology.primary().unwrap().addr, addr(&cluster, p));
    assert_eq!(topology.primary().unwrap().id, cluster.nodes[p].id);
    let mut replica_addrs: Vec<String> = topology.replicas().map(|n| n.addr.clone()).collect();
    replica_addrs.sort();
    let mut want: Vec<String> = replicas.iter().map(|&i| addr(&cluster, i)).collect();
    want.sort();
    assert_eq!(replica_addrs, want);
    assert!(topology.replicas().all(|n| n.role == NodeRole::ReadReplica));

    phase("writes land on the primary");
    let before = commands_processed(&cluster);
    rt.block_on(async {
        for i in 0..10 {
            client.set(format!("k{i}"), format!("v{i}")).await.unwrap();
        }
        assert!(client.del("k9").await.unwrap());
        assert!(!client.del("k9").await.unwrap());
    });
    let after = commands_processed(&cluster);
    let mut want = vec![0; 3];
    want[p] = 12;
    assert_eq!(served(&before, &after), want, "SETs and DELs by node");
    let mut direct = cluster.nodes[p].server.conn();
    assert_eq!(direct.cmd(&["GET", "k3"]).as_bulk(), Some(&b"v3"[..]));

    // Every replica has applied the writes before the reads below.
    let index = common::cluster::digest(&cluster.nodes[p].server).0;
    cluster.wait_applied(index);

    for (policy, reads) in [
        (ReadPolicy::Primary, 12),
        (ReadPolicy::RoundRobin, 12),
        (ReadPolicy::AnyReplica, 12),
    ] {
        phase(format!("{reads} reads under {policy:?}"));
        let client = rt
            .block_on(Client::connect(&[&seed], options(policy)))
            .unwrap();
        let before = commands_processed(&cluster);
        rt.block_on(async {
            for i in 0..reads {
                let key = format!("k{}", i % 9);
                let value = client.get(&key).await.unwrap();
                assert_eq!(value.as_deref(), Some(format!("v{}", i % 9).as_bytes()));
            }
        });
        let after = commands_processed(&cluster);
        let by_node = served(&before, &after);
        let on_replicas: Vec<i64> = replicas.iter().map(|&r| by_node[r]).collect();
        match policy {
            ReadPolicy::Primary => {
                assert_eq!(by_node[p], reads, "{by_node:?}");
                assert_eq!(on_replicas, [0, 0], "{by_node:?}");
            }
            ReadPolicy::RoundRobin => {
                assert_eq!(by_node[p], 0, "{by_node:?}");
                assert_eq!(on_replicas, [reads / 2, reads / 2], "{by_node:?}");
            }
            ReadPolicy::AnyReplica => {
                assert_eq!(by_node[p], 0, "{by_node:?}");
                let mut sorted = on_replicas.clone();
                sorted.sort();
                assert_eq!(
                    sorted,
                    [0, reads],
                    "one replica serves them all: {by_node:?}"
                );
            }
        }
    }
}

#[test]
fn a_verified_read_falls_back_from_corrupted_replicas_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        1,
        2,
        &["--replica-max-lag-ms", REPLICA_MAX_LAG_MS],
    );
    let rt = runtime();
    let p = cluster.primary();
    // Damaged copies stay damaged: this test is about what the client does with them (a node
    // otherwise repairs its copy from the other members when it is read).
    for n in &cluster.nodes {
        let f = n.server.conn().cmd(&["DEBUG", "REPAIR", "OFF"]);
        assert!(f.is_ok(), "DEBUG REPAIR OFF: {f}");
    }
    let client = rt
        .block_on(Client::connect(
            &[&addr(&cluster, p)],
            options(ReadPolicy::RoundRobin),
        ))
        .unwrap();
    let value = b"bytes that must arrive exactly as written".to_vec();
    rt.block_on(client.set("doc", &value)).unwrap();
    let index = common::cluster::digest(&cluster.nodes[p].server).0;
    cluster.wait_applied(index);

    // Round robin starts at the replica with the lowest id.
    let order: Vec<String> = client
        .topology()
        .replicas()
        .map(|n| n.addr.clone())
        .collect();
    let first = index_of(&cluster, &order[0]);
    let second = index_of(&cluster, &order[1]);

    phase(format!(
        "node {} (the first replica asked) holds a corrupted copy",
        cluster.nodes[first].id
    ));
    let f = cluster.nodes[first]
        .server
        .conn()
        .cmd(&["DEBUG", "CORRUPT", "doc"]);
    assert!(f.is_ok(), "DEBUG CORRUPT: {f}");
    assert_eq!(integrity(&cluster, first, "integrity_reports_received"), 0);

    let copy = rt.block_on(client.get_verified("doc")).unwrap().unwrap();
    assert_eq!(&copy.value[..], &value[..]);
    assert_eq!(copy.served_by.addr, order[1], "the next replica serves");
    assert_eq!(copy.bad_copies.len(), 1, "{:?}", copy.bad_copies);
    let bad = &copy.bad_copies[0];
    assert_eq!(bad.node.addr, order[0]);
    assert!(
        matches!(&bad.problem, CopyProblem::Corrupt(m) if m.starts_with("CORRUPT")),
        "{:?}",
        bad.problem
    );
    assert!(bad.reported);
    assert_eq!(integrity(&cluster, first, "integrity_reports_received"), 1);
    assert_eq!(
        integrity(&cluster, first, "integrity_reports_confirmed"),
        1,
        "the node re-verified its copy and found it bad"
    );
    for i in [second, p] {
        assert_eq!(integrity(&cluster, i, "integrity_reports_received"), 0);
    }

    phase("both replicas corrupted: the primary's copy is the verified one");
    let f = cluster.nodes[second]
        .server
        .conn()
        .cmd(&["DEBUG", "CORRUPT", "doc"]);
    assert!(f.is_ok(), "DEBUG CORRUPT: {f}");
    let copy = rt.block_on(client.get_verified("doc")).unwrap().unwrap();
    assert_eq!(&copy.value[..], &value[..]);
    assert_eq!(copy.served_by.addr, addr(&cluster, p));
    assert_eq!(copy.served_by.role, NodeRole::Primary);
    let mut reported: Vec<&str> = copy
        .bad_copies
        .iter()
        .filter(|b| b.reported)
        .map(|b| b.node.addr.as_str())
        .collect();
    reported.sort();
    let mut want = vec![order[0].as_str(), order[1].as_str()];
    want.sort();
    assert_eq!(reported, want);
    assert_eq!(integrity(&cluster, first, "integrity_reports_received"), 2);
    assert_eq!(integrity(&cluster, second, "integrity_reports_received"), 1);
    assert_eq!(
        integrity(&cluster, second, "integrity_reports_confirmed"),
        1
    );
    assert_eq!(integrity(&cluster, p, "integrity_reports_received"), 0);

    phase("a report about a copy that verifies is counted but not confirmed");
    let f = cluster.nodes[p]
        .server
        .conn()
        .cmd(&["DIGEST.REPORT", "doc"]);
    assert!(f.is_ok(), "DIGEST.REPORT: {f}");
    assert_eq!(integrity(&cluster, p, "integrity_reports_received"), 1);
    assert_eq!(integrity(&cluster, p, "integrity_reports_confirmed"), 0);
}

#[test]
fn writes_follow_a_failover_after_the_primary_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, 0, &[]);
    let rt = runtime();
    let old = cluster.primary();
    let old_id = cluster.nodes[old].id;
    let seeds: Vec<String> = (0..3).map(|i| addr(&cluster, i)).collect();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let client = rt
        .block_on(Client::connect(
            &seeds,
            ClientOptions {
                // Long enough for an election in a debug build on loaded shared cores.
                retry_deadline: SETTLE_TIMEOUT,
                ..options(ReadPolicy::Primary)
            },
        ))
        .unwrap();
    assert_eq!(client.topology().primary().unwrap().id, old_id);
    rt.block_on(client.set("before", "1")).unwrap();

    phase(format!("kill -9 the primary, node {old_id}"));
    cluster.nodes[old].server.kill9();

    phase("writes through the client reach the new primary");
    let started = std::time::Instant::now();
    rt.block_on(async {
        for i in 0..5 {
            client.set(format!("after{i}"), "2").await.unwrap();
        }
    });
    phase(format!(
        "5 writes done {:?} after the kill",
        started.elapsed()
    ));
    let new = cluster.primary();
    assert_ne!(new, old);
    let primary = client.topology().primary().unwrap().clone();
    assert_eq!(primary.id, cluster.nodes[new].id);
    assert_eq!(primary.addr, addr(&cluster, new));
    let mut direct = cluster.nodes[new].server.conn();
    for key in ["before", "after0", "after4"] {
        assert!(direct.cmd(&["GET", key]).as_bulk().is_some(), "{key}");
    }
    let value = rt.block_on(client.get("after4")).unwrap();
    assert_eq!(value.as_deref(), Some(&b"2"[..]));
    assert!(started.elapsed() < Duration::from_secs(60));
}
