//! Failover across real `tandem server` processes (DESIGN.md §2, promises 1 and 2): `kill -9` of
//! the primary under write load, a primary frozen with SIGSTOP past the election timeout,
//! planned switchover (FAILOVER) under load, detach (REPLICAOF NO ONE), and a promoted replica
//! that the quorum needs. Every test checks that each acknowledged write is on every node.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{info, wait_for, Cluster, SETTLE_TIMEOUT};
use common::{phase, Conn, Frame};

/// Writers that keep writing unique keys to whichever node accepts writes, remembering every
/// write acknowledged with +OK (an error or a lost connection is not an acknowledgement).
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, (String, Instant)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(ports: Vec<u16>, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let threads = (0..writers)
            .map(|w| {
                let (stop, acked, ports) = (stop.clone(), acked.clone(), ports.clone());
                std::thread::spawn(move || {
                    let mut target = w % ports.len();
                    let mut conn: Option<Conn> = None;
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => {
                                match Conn::connect_timeout(
                                    ports[target],
                                    Duration::from_millis(300),
                                ) {
                                    Ok(c) => {
                                        c.set_timeout(Duration::from_secs(3));
                                        conn.insert(c)
                                    }
                                    Err(_) => {
                                        target = (target + 1) % ports.len();
                                        std::thread::sleep(Duration::from_millis(20));
                                        continue;
                                    }
                                }
                            }
                        };
                        seq += 1;
                        let key = format!("w{w}:{seq}");
                        let value = format!("{key}:value");
                        match c.try_cmd(&["SET", key.as_str(), value.as_str()]) {
                            Ok(f) if f.is_ok() => {
                                acked.lock().unwrap().insert(key, (value, Instant::now()));
                            }
                            Ok(_) | Err(_) => {
                                // READONLY, TRYAGAIN, a timeout, a dead node: try the next one.
                                conn = None;
                                target = (target + 1) % ports.len();
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            threads,
        }
    }

    fn acked_after(&self, t: Instant) -> usize {
        self.acked
            .lock()
            .unwrap()
            .values()
            .filter(|(_, at)| *at > t)
            .count()
    }

    /// Waits until `n` writes were acknowledged after `t`; returns when the first of them was.
    fn wait_acked_after(&self, t: Instant, n: usize, what: &str) -> Duration {
        wait_for(SETTLE_TIMEOUT, what, || self.acked_after(t) >= n);
        let first = self
            .acked
            .lock()
            .unwrap()
            .values()
            .map(|(_, at)| *at)
            .filter(|at| *at > t)
            .min()
            .unwrap();
        first - t
    }

    fn finish(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap();
        acked.into_iter().map(|(k, (v, _))| (k, v)).collect()
    }
}

/// Asserts every acknowledged write is on every live node, with its value.
fn assert_all_present(c: &Cluster, acked: &BTreeMap<String, String>) {
    c.assert_converged();
    let keys: Vec<&String> = acked.keys().collect();
    for n in c.nodes.iter().filter(|n| n.server.is_alive()) {
        let mut conn = n.server.conn();
        for chunk in keys.chunks(500) {
            let mut args = vec!["MGET".to_string()];
            args.extend(chunk.iter().map(|k| k.to_string()));
            let reply = conn.cmd(&args);
            let values = reply
                .as_array()
                .unwrap_or_else(|| panic!("MGET on node {}: {reply}", n.id));
            for (k, v) in chunk.iter().zip(values) {
                assert_eq!(
                    v.as_bulk(),
                    Some(acked[*k].as_bytes()),
                    "node {} lost acknowledged write {k}",
                    n.id
                );
            }
        }
    }
    phase(format!(
        "all {} acknowledged writes are on every node",
        acked.len()
    ));
}

fn ports(c: &Cluster) -> Vec<u16> {
    c.nodes.iter().map(|n| n.server.port).collect()
}

fn role(conn: &mut Conn) -> String {
    let r = conn.cmd(&["ROLE"]);
    String::from_utf8_lossy(r.as_array().unwrap()[0].as_bulk().unwrap()).into_owned()
}

/// `kill -9` of the primary five times under concurrent writes: each time a new primary takes
/// writes, the killed node comes back as a replica, and no acknowledged write is lost.
#[test]
fn kill9_of_the_primary_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 0, &[]);
    let load = Load::start(ports(&c), 4);
    for round in 1..=5 {
        load.wait_acked_after(Instant::now(), 20, "writes before the kill");
        let p = c.primary();
        let old = c.nodes[p].id;
        phase(format!("round {round}: kill -9 the primary, node {old}"));
        let killed_at = Instant::now();
        c.nodes[p].server.kill9();
        let took = load.wait_acked_after(killed_at, 20, "writes on a new primary");
        let new = c.nodes[c.primary()].id;
        assert_ne!(new, old, "a killed node cannot be the primary");
        phase(format!(
            "round {round}: node {new} took writes {} ms after the kill",
            took.as_millis()
        ));
        c.nodes[p].server.restart();
    }
    let acked = load.finish();
    assert_all_present(&c, &acked);
}

/// A primary frozen (SIGSTOP) for longer than the election timeout is replaced; when it resumes
/// it must not acknowledge a write, and it rejoins as a replica holding what the cluster holds.
#[test]
fn a_frozen_primary_never_acknowledges_after_it_was_replaced_and_rejoins_as_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 0, &["--write-timeout-ms", "3000"]);
    let p = c.write_ok(&["SET", "before", "1"]);
    let old_id = c.nodes[p].id;
    let pid = c.nodes[p].server.pid().unwrap() as libc::pid_t;
    // A connection opened before the freeze: its write is read by the old primary on resume.
    let mut stale = c.nodes[p].server.conn();
    stale.set_timeout(Duration::from_secs(20));

    phase(format!("SIGSTOP node {old_id}"));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let others: Vec<&common::cluster::Node> = c.nodes.iter().filter(|n| n.id != old_id).collect();
    let mut new_primary = None;
    wait_for(SETTLE_TIMEOUT, "a new primary among the others", || {
        new_primary = others.iter().find(|n| {
            info(&n.server, "replication")
                .get("tandem_role")
                .map(String::as_str)
                == Some("primary")
        });
        new_primary.is_some()
    });
    let new_primary = new_primary.unwrap();
    let mut w = new_primary.server.conn();
    // Just elected, it may still answer TRYAGAIN for a moment.
    wait_for(SETTLE_TIMEOUT, "a write on the new primary", || {
        w.cmd(&["SET", "after", "2"]).is_ok()
    });

    phase("send a write to the frozen primary, then SIGCONT it");
    stale.send_cmd(&["SET", "stale", "x"]).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    match stale.read_reply() {
        Ok((f, _)) => assert!(
            f.is_error(),
            "the deposed primary acknowledged a write after a new primary took over: {f}"
        ),
        Err(e) => phase(format!("the deposed primary closed the connection: {e}")),
    }

    phase("it rejoins as a replica and holds exactly what the cluster holds");
    let old = &c.node(old_id).server;
    wait_for(SETTLE_TIMEOUT, "the old primary to be a replica", || {
        role(&mut old.conn()) == "slave"
    });
    c.assert_converged();
    let mut r = old.conn();
    wait_for(SETTLE_TIMEOUT, "the replica to serve reads", || {
        r.cmd(&["GET", "after"]).as_bulk() == Some(b"2")
    });
    assert_eq!(
        r.cmd(&["GET", "stale"]),
        Frame::Null,
        "the unacknowledged write must not exist"
    );
    assert_eq!(
        w.cmd(&["GET", "stale"]),
        Frame::Null,
        "the unacknowledged write must not exist on the new primary"
    );
    assert_eq!(
        info(old, "replication")["tandem_sync_completed"],
        "0",
        "the old primary's log was reconciled: it needed no snapshot"
    );
}

/// FAILOVER under concurrent writes, three times: leadership moves each time, nothing
/// acknowledged is lost.
#[test]
fn planned_failover_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 0, &[]);
    let load = Load::start(ports(&c), 4);
    for round in 1..=3 {
        load.wait_acked_after(Instant::now(), 20, "writes before the switchover");
        let p = c.primary();
        let old = c.nodes[p].id;
        let started = Instant::now();
        let reply = c.nodes[p]
            .server
            .conn()
            .cmd(&["FAILOVER", "TIMEOUT", "10000"]);
        assert!(reply.is_ok(), "FAILOVER: {reply}");
        assert_eq!(role(&mut c.nodes[p].server.conn()), "slave");
        let new = c.nodes[c.primary()].id;
        assert_ne!(new, old);
        let took = load.wait_acked_after(started, 20, "writes on the new primary");
        phase(format!(
            "round {round}: node {old} -> node {new}, writes again after {} ms",
            took.as_millis()
        ));
    }
    let acked = load.finish();
    assert_all_present(&c, &acked);
}

/// FAILOVER's replies for what cannot be done, and FAILOVER TO a chosen voter.
#[test]
fn failover_refuses_what_it_cannot_do_and_goes_where_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, &[]);
    let p = c.primary();
    let primary = &c.nodes[p];
    let replica = c.node(4);
    let voter = c
        .nodes
        .iter()
        .find(|n| n.id != primary.id && n.id != 4)
        .unwrap();
    let mut pc = primary.server.conn();

    let on_replica = voter.server.conn().cmd(&["FAILOVER"]);
    assert_eq!(
        on_replica,
        Frame::Error("ERR FAILOVER is not valid when server is a replica.".into())
    );
    assert_eq!(
        pc.cmd(&["FAILOVER", "ABORT"]),
        Frame::Error("ERR No failover in progress.".into())
    );
    assert_eq!(
        pc.cmd(&["FAILOVER", "TO", "127.0.0.1", "1", "TIMEOUT", "100"]),
        Frame::Error("ERR FAILOVER target HOST and PORT is not a replica.".into())
    );
    assert_eq!(
        pc.cmd(&["FAILOVER", "FORCE"]),
        Frame::Error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.".into()
        )
    );
    let to_read_replica = pc.cmd(&[
        "FAILOVER",
        "TO",
        "127.0.0.1",
        &replica.server.port.to_string(),
    ]);
    assert!(
        matches!(&to_read_replica, Frame::Error(e) if e.contains("read replica")),
        "{to_read_replica}"
    );
    assert_eq!(
        role(&mut pc),
        "master",
        "a refused FAILOVER changes nothing"
    );

    phase(format!("FAILOVER TO node {}", voter.id));
    let reply = pc.cmd(&[
        "FAILOVER",
        "TO",
        "127.0.0.1",
        &voter.server.port.to_string(),
    ]);
    assert!(reply.is_ok(), "{reply}");
    assert_eq!(role(&mut voter.server.conn()), "master");
    assert_eq!(
        info(&primary.server, "replication")
            .get("master_failover_state")
            .map(String::as_str),
        Some("no-failover")
    );
    assert!(voter.server.conn().cmd(&["SET", "k", "v"]).is_ok());
}

/// REPLICAOF NO ONE on a read replica: a standalone database at once, with everything it had,
/// taking writes; the cluster drops it; the two sides then go their own ways, also across a
/// restart of the detached node.
#[test]
fn a_detached_replica_keeps_its_data_and_both_sides_take_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 1, &[]);
    for i in 0..200 {
        c.write_ok(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    c.assert_converged();
    let cluster_id = info(&c.nodes[0].server, "replication")["master_replid"].clone();

    phase("REPLICAOF NO ONE on node 4");
    let reply = c.node(4).server.conn().cmd(&["REPLICAOF", "NO", "ONE"]);
    assert!(reply.is_ok(), "REPLICAOF NO ONE: {reply}");
    let mut d = c.node(4).server.conn();
    assert_eq!(role(&mut d), "master");
    let detached_id = info(&c.node(4).server, "replication")["master_replid"].clone();
    assert_ne!(
        detached_id, cluster_id,
        "a detached node has a new cluster identity"
    );
    assert_eq!(d.cmd(&["DBSIZE"]).as_int(), Some(201));
    assert_eq!(d.cmd(&["GET", "k199"]).as_bulk(), Some(&b"v199"[..]));
    assert!(d.cmd(&["SET", "only-detached", "1"]).is_ok());

    phase("the cluster no longer lists node 4 and goes on");
    let p = c.primary();
    let members = c.nodes[p].server.conn().cmd(&["MEMBERSHIP", "LIST"]);
    let ids: Vec<i64> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_array().unwrap()[0].as_int().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3], "{members}");
    c.write_ok(&["SET", "only-cluster", "1"]);
    assert_eq!(d.cmd(&["GET", "only-cluster"]), Frame::Null);
    assert_eq!(
        c.nodes[p].server.conn().cmd(&["GET", "only-detached"]),
        Frame::Null
    );

    phase("the detached node restarts as the same standalone database");
    c.node_mut(4).server.restart();
    let mut d = c.node(4).server.conn();
    assert_eq!(role(&mut d), "master");
    assert_eq!(d.cmd(&["DBSIZE"]).as_int(), Some(202));
    assert_eq!(d.cmd(&["GET", "only-detached"]).as_bulk(), Some(&b"1"[..]));
    assert!(d.cmd(&["SET", "after-restart", "1"]).is_ok());
    assert_eq!(
        info(&c.node(4).server, "replication")["master_replid"],
        detached_id
    );

    phase("REPLICAOF NO ONE on a voter is refused");
    let voter = c
        .nodes
        .iter()
        .find(|n| n.id != 4 && n.id != c.nodes[p].id)
        .unwrap();
    let refused = voter.server.conn().cmd(&["REPLICAOF", "NO", "ONE"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("demote")),
        "{refused}"
    );
}

/// A read replica promoted to voter counts for the quorum: with one of four voters dead, writes
/// need it, and stop when it is frozen too.
#[test]
fn a_promoted_replica_is_needed_for_the_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 1, &["--write-timeout-ms", "2000"]);
    let p = c.primary();
    let reply = c.nodes[p]
        .server
        .conn()
        .cmd(&["MEMBERSHIP", "PROMOTE", "4"]);
    assert!(
        matches!(&reply, Frame::Simple(s) if s.contains("now a voter")),
        "PROMOTE: {reply}"
    );
    let primary_id = c.nodes[p].id;
    let victim = c
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|id| *id != primary_id && *id != 4)
        .unwrap();
    phase(format!(
        "kill voter {victim}: 3 of 4 voters remain, node 4 among them"
    ));
    c.node_mut(victim).server.kill9();
    c.write_ok(&["SET", "needs-node-4", "1"]);

    phase("freeze node 4: 2 of 4 voters are not a quorum, writes fail");
    let pid = c.node(4).server.pid().unwrap() as libc::pid_t;
    // Found before the freeze: a frozen node does not answer INFO.
    let p = c.primary();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let f = c.nodes[p].server.conn().cmd(&["SET", "no-quorum", "1"]);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(f.is_error(), "a write without node 4 must fail: {f}");

    phase("node 4 back: writes succeed again, and node 4 holds them");
    c.write_ok(&["SET", "after", "1"]);
    c.assert_converged();
    let mut r = c.node(4).server.conn();
    wait_for(SETTLE_TIMEOUT, "node 4 to serve the write", || {
        r.cmd(&["GET", "needs-node-4"]).as_bulk() == Some(b"1")
    });
}

/// `tandem cluster failover --to ID` and `tandem cluster detach ID`, through any node.
#[test]
fn tandem_cluster_failover_and_detach() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, &[]);
    let p = c.primary();
    let target = c
        .nodes
        .iter()
        .find(|n| n.id != c.nodes[p].id && n.id != 4)
        .unwrap();
    let any = format!("127.0.0.1:{}", c.node(4).server.port);
    let (status, out) = common::run_tandem(
        &[
            "cluster",
            "--node",
            &any,
            "failover",
            "--to",
            &target.id.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "tandem cluster failover: {out}");
    assert_eq!(role(&mut target.server.conn()), "master");

    let (status, out) = common::run_tandem(
        &["cluster", "--node", &any, "failover", "--to", "4"],
        Duration::from_secs(60),
    );
    assert!(
        !status.success(),
        "failover to a read replica must fail: {out}"
    );
    assert!(out.contains("read replica"), "{out}");

    let (status, out) = common::run_tandem(
        &["cluster", "--node", &any, "detach", "4"],
        Duration::from_secs(60),
    );
    assert!(status.success(), "tandem cluster detach: {out}");
    assert_eq!(role(&mut c.node(4).server.conn()), "master");
    let members = target.server.conn().cmd(&["MEMBERSHIP", "LIST"]);
    assert_eq!(members.as_array().unwrap().len(), 3, "{members}");
}

/// FAILOVER to a voter far behind waits for it: it ends with an error at its TIMEOUT (this node
/// still the primary), or when FAILOVER ABORT arrives from another connection.
#[test]
fn failover_waits_for_a_lagging_target_and_can_be_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 0, &[]);
    let p = c.primary();
    let target = c.nodes.iter().find(|n| n.id != c.nodes[p].id).unwrap();
    let port = target.server.port.to_string();
    let paused = target
        .server
        .conn()
        .cmd(&["DEBUG", "REPLICATION-PAUSE", "60000"]);
    assert!(paused.is_ok(), "{paused}");
    phase("put the target more than 1000 entries behind");
    let mut w = c.nodes[p].server.conn();
    for i in 0..1100 {
        assert!(w.cmd(&["SET", &format!("lag{i}"), "x"]).is_ok());
    }

    let not_caught_up = w.cmd(&["FAILOVER", "TO", "127.0.0.1", &port, "TIMEOUT", "300"]);
    assert!(
        matches!(&not_caught_up, Frame::Error(e) if e.contains("has not caught up")),
        "{not_caught_up}"
    );
    assert_eq!(role(&mut w), "master");

    phase("FAILOVER ABORT from another connection ends a waiting FAILOVER");
    let primary_port = c.nodes[p].server.port;
    let waiting = std::thread::spawn(move || {
        let mut conn = Conn::connect(primary_port).unwrap();
        conn.cmd(&["FAILOVER", "TO", "127.0.0.1", &port, "TIMEOUT", "20000"])
    });
    let mut admin = c.nodes[p].server.conn();
    wait_for(
        SETTLE_TIMEOUT,
        "the FAILOVER to wait for its target",
        || info(&c.nodes[p].server, "replication")["master_failover_state"] == "waiting-for-sync",
    );
    assert!(admin.cmd(&["FAILOVER", "ABORT"]).is_ok());
    assert_eq!(
        waiting.join().unwrap(),
        Frame::Error("ERR FAILOVER aborted".into())
    );
    assert_eq!(role(&mut admin), "master");
    assert_eq!(
        info(&c.nodes[p].server, "replication")["master_failover_state"],
        "no-failover"
    );
    let resumed = target
        .server
        .conn()
        .cmd(&["DEBUG", "REPLICATION-PAUSE", "0"]);
    assert!(resumed.is_ok(), "{resumed}");
    c.assert_converged();
}

/// Detach while writes are running: the detached node holds a prefix of the log — for every
/// writer, each acknowledged write up to the last one it holds — and none of the writes the
/// cluster took after it left.
#[test]
fn a_replica_detached_under_load_holds_a_prefix_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, &[]);
    let voters: Vec<u16> = c
        .nodes
        .iter()
        .filter(|n| n.id != 4)
        .map(|n| n.server.port)
        .collect();
    let load = Load::start(voters, 4);
    load.wait_acked_after(Instant::now(), 200, "writes before the detach");
    let reply = c.node(4).server.conn().cmd(&["REPLICAOF", "NO", "ONE"]);
    assert!(reply.is_ok(), "REPLICAOF NO ONE under load: {reply}");
    load.wait_acked_after(Instant::now(), 50, "writes after the detach");
    let acked = load.finish();

    let mut d = c.node(4).server.conn();
    assert_eq!(role(&mut d), "master");
    let mut held_total = 0;
    for w in 0..4 {
        let mine: Vec<(&String, u64)> = acked
            .keys()
            .filter_map(|k| {
                let (writer, seq) = k.strip_prefix('w')?.split_once(':')?;
                (writer.parse::<usize>().ok()? == w).then(|| (k, seq.parse().unwrap()))
            })
            .collect();
        let mut held = Vec::new();
        for chunk in mine.chunks(500) {
            let mut args = vec!["MGET".to_string()];
            args.extend(chunk.iter().map(|(k, _)| k.to_string()));
            let values = d.cmd(&args);
            for ((k, seq), v) in chunk.iter().zip(values.as_array().unwrap()) {
                if let Some(v) = v.as_bulk() {
                    assert_eq!(v, acked[*k].as_bytes(), "{k} holds other bytes");
                    held.push(*seq);
                }
            }
        }
        let last_held = held.iter().copied().max().unwrap_or(0);
        let missing: Vec<u64> = mine
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| *s <= last_held && !held.contains(s))
            .collect();
        assert!(
            missing.is_empty(),
            "writer {w}: the detached node holds its write {last_held} but not the earlier acknowledged {missing:?}"
        );
        held_total += held.len();
    }
    assert!(held_total > 0, "the detached node holds none of the writes");
    assert!(
        held_total < acked.len(),
        "the detached node holds every write, also those acknowledged after it left"
    );
    phase(format!(
        "the detached node holds {held_total} of {} acknowledged writes, a prefix for every writer",
        acked.len()
    ));
}
