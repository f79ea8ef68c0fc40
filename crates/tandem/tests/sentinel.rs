//! The Sentinel discovery subset: reply shapes checked directly, then redis-py's own Sentinel
//! support (the `redis` package from PyPI) finding the primary and a replica through Tandem
//! nodes and following a `kill -9` of the primary with no Tandem-specific code.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::cluster::{wait_for, Cluster, SETTLE_TIMEOUT};
use common::{phase, Frame};

/// The script next to this file.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/sentinel_failover.py"
);

/// True when python3 with the `redis` package can run. Otherwise prints a loud SKIPPED line and
/// returns false; under `CI=true` it panics (.ci/run installs the package).
fn require_redis_py() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("python3 with the `redis` package is missing, and CI=true: `pip install redis`");
    }
    eprintln!();
    eprintln!("*****************************************************************************");
    eprintln!("***  SKIPPED: python3 with the redis package not found (pip install redis) ***");
    eprintln!("*****************************************************************************");
    eprintln!();
    false
}

/// Field `name` of a Sentinel reply given as field/value pairs (RESP2 flat array).
fn field(reply: &Frame, name: &str) -> String {
    let items = reply
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {reply}"));
    let pos = items
        .iter()
        .step_by(2)
        .position(|f| f.as_bulk() == Some(name.as_bytes()))
        .unwrap_or_else(|| panic!("no field {name} in {reply}"));
    String::from_utf8_lossy(items[pos * 2 + 1].as_bulk().unwrap()).into_owned()
}

#[test]
fn every_node_answers_the_sentinel_discovery_subset() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 1, &[]);
    let p = c.primary();
    let primary_port = c.nodes[p].server.port.to_string();
    for n in &c.nodes {
        let mut conn = n.server.conn();
        let addr = conn.cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        assert_eq!(
            addr,
            Frame::Array(vec![
                Frame::Bulk(b"127.0.0.1".to_vec()),
                Frame::Bulk(primary_port.clone().into_bytes())
            ]),
            "node {}",
            n.id
        );
        assert_eq!(
            conn.cmd(&["SENTINEL", "get-master-addr-by-name", "other"]),
            Frame::NullArray
        );
        let master = conn.cmd(&["SENTINEL", "MASTER", "mymaster"]);
        assert_eq!(field(&master, "name"), "mymaster");
        assert_eq!(field(&master, "port"), primary_port);
        assert_eq!(field(&master, "flags"), "master");
        assert_eq!(field(&master, "num-slaves"), "3");
        assert_eq!(field(&master, "num-other-sentinels"), "3");
        assert_eq!(field(&master, "quorum"), "2");
        let masters = conn.cmd(&["SENTINEL", "MASTERS"]);
        assert_eq!(masters.as_array().unwrap().len(), 1);
        let replicas = conn.cmd(&["SENTINEL", "REPLICAS", "mymaster"]);
        let replicas = replicas.as_array().unwrap();
        assert_eq!(replicas.len(), 3);
        let mut ports: Vec<String> = replicas.iter().map(|r| field(r, "port")).collect();
        ports.sort();
        let mut want: Vec<String> = c
            .nodes
            .iter()
            .filter(|m| m.server.port.to_string() != primary_port)
            .map(|m| m.server.port.to_string())
            .collect();
        want.sort();
        assert_eq!(ports, want);
        for r in replicas {
            assert_eq!(field(r, "flags"), "slave");
            assert_eq!(field(r, "master-port"), primary_port);
        }
        assert_eq!(
            conn.cmd(&["SENTINEL", "SLAVES", "mymaster"])
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            conn.cmd(&["SENTINEL", "SENTINELS", "mymaster"])
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let myid = conn.cmd(&["SENTINEL", "MYID"]);
        assert_eq!(myid.as_bulk().unwrap().len(), 40);
        assert_eq!(
            conn.cmd(&["SENTINEL", "MASTER", "nope"]),
            Frame::Error("ERR No such master with that name".into())
        );
        assert!(conn.cmd(&["SENTINEL", "RESET", "*"]).is_error());
    }
}

#[test]
fn redis_py_sentinel_client_follows_a_kill9_of_the_primary() {
    if !require_redis_py() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 0, &[]);
    let ports: Vec<String> = c.nodes.iter().map(|n| n.server.port.to_string()).collect();
    let mut py = Command::new("python3")
        .arg(SCRIPT)
        .arg(ports.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let Some(port) = line.trim().strip_prefix("PRIMARY ") else {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(py.stderr.as_mut().unwrap(), &mut err);
        panic!("redis-py phase 1 failed: {line}{err}");
    };
    let victim = c
        .nodes
        .iter()
        .position(|n| n.server.port.to_string() == port)
        .expect("redis-py found a node of the cluster");
    assert_eq!(victim, c.primary(), "redis-py found the primary");
    phase(format!("kill -9 the primary on port {port}"));
    c.nodes[victim].server.kill9();
    writeln!(py.stdin.as_mut().unwrap(), "KILLED").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(py.stderr.as_mut().unwrap(), &mut err);
    let status = py.wait().unwrap();
    assert!(status.success(), "redis-py phase 2 failed: {rest}{err}");
    phase(rest.trim());
    let p = c.primary();
    assert_ne!(p, victim);
    wait_for(
        SETTLE_TIMEOUT,
        "the write through redis-py on the new primary",
        || c.nodes[p].server.conn().cmd(&["GET", "py:after"]).as_bulk() == Some(b"2"),
    );
    c.nodes[victim].server.restart();
    c.assert_converged();
}

/// A subscriber of `+switch-master` on a replica hears the switch, with Sentinel's message.
#[test]
fn switch_master_is_published_when_the_primary_changes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3, 0, &[]);
    let p = c.primary();
    let old_port = c.nodes[p].server.port;
    let listener = c.nodes.iter().find(|n| n.id != c.nodes[p].id).unwrap();
    let mut sub = listener.server.conn();
    let confirm = sub.cmd(&["SUBSCRIBE", "+switch-master"]);
    assert_eq!(
        confirm,
        Frame::Array(vec![
            Frame::Bulk(b"subscribe".to_vec()),
            Frame::Bulk(b"+switch-master".to_vec()),
            Frame::Integer(1)
        ])
    );
    // A node announces a switch only from a primary it knew: wait until the listener knows the
    // current one, and give its announcer (it looks every 20 ms) time to see it too.
    let mut ask = listener.server.conn();
    wait_for(SETTLE_TIMEOUT, "the listener to know the primary", || {
        let addr = ask.cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        addr.as_array()
            .and_then(|a| a.get(1))
            .and_then(|p| p.as_bulk())
            == Some(old_port.to_string().as_bytes())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let reply = c.nodes[p].server.conn().cmd(&["FAILOVER"]);
    assert!(reply.is_ok(), "FAILOVER: {reply}");
    let new_port = c.nodes[c.primary()].server.port;
    let (msg, _) = sub.read_reply().unwrap();
    assert_eq!(
        msg,
        Frame::Array(vec![
            Frame::Bulk(b"message".to_vec()),
            Frame::Bulk(b"+switch-master".to_vec()),
            Frame::Bulk(format!("mymaster 127.0.0.1 {old_port} 127.0.0.1 {new_port}").into_bytes()),
        ])
    );
}

/// A primary cut off from its quorum reports itself down (`s_down`), so clients that check the
/// flags, like redis-py, ask another node instead of writing where nothing can commit.
#[test]
fn a_primary_without_its_quorum_is_reported_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3, 0, &["--replica-max-lag-ms", "1000"]);
    let p = c.primary();
    let mut conn = c.nodes[p].server.conn();
    let master = conn.cmd(&["SENTINEL", "MASTER", "mymaster"]);
    assert_eq!(field(&master, "flags"), "master");
    let primary_id = c.nodes[p].id;
    for n in c.nodes.iter_mut().filter(|n| n.id != primary_id) {
        n.server.kill9();
    }
    wait_for(SETTLE_TIMEOUT, "the primary to report itself down", || {
        let master = conn.cmd(&["SENTINEL", "MASTER", "mymaster"]);
        field(&master, "flags") == "master,s_down"
    });
}
