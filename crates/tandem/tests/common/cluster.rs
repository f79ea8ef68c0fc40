//! A cluster of real `tandem server` processes on loopback, for multi-process tests.
//!
//! Voters start with `--initial-cluster` (node 1 initializes once all have started); read
//! replicas start fresh with `--join` to node 1's client port. Every node has
//! `--enable-debug-commands` (fault injection, keyspace digests) and one cluster secret.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{free_port, phase, Frame, Tandem};

pub const SECRET: &str = "test-cluster-secret";

/// How long cluster-wide conditions may take (debug builds on 2 shared cores).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Node {
    pub id: u64,
    pub server: Tandem,
    pub cluster_port: u16,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub voters: usize,
    pub spec: String,
    pub extra: Vec<String>,
    pub root: std::path::PathBuf,
}

/// INFO replication (or any section) as a map.
pub fn info(server: &Tandem, section: &str) -> HashMap<String, String> {
    let mut c = server.conn();
    let reply = c.cmd(&["INFO", section]);
    let text = String::from_utf8_lossy(reply.as_bulk().unwrap_or_default()).into_owned();
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls `cond` until it holds, panicking with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [applied index, keyspace digest, keys] of one node (DEBUG KEYSPACE-DIGEST).
pub fn digest(server: &Tandem) -> (i64, String, i64) {
    let f = server.conn().cmd(&["DEBUG", "KEYSPACE-DIGEST"]);
    let a = f
        .as_array()
        .unwrap_or_else(|| panic!("DEBUG KEYSPACE-DIGEST: {f}"));
    (
        a[0].as_int().unwrap(),
        String::from_utf8_lossy(a[1].as_bulk().unwrap()).into_owned(),
        a[2].as_int().unwrap(),
    )
}

impl Cluster {
    /// Starts `voters` voters and `replicas` read replicas, each with `extra` flags, and waits
    /// until there is a primary and every replica is a member.
    pub fn start(root: &Path, voters: usize, replicas: usize, extra: &[&str]) -> Cluster {
        let mut ports = Vec::new();
        for _ in 0..voters + replicas {
            ports.push(free_port());
        }
        let spec = ports[..voters]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p + 10000))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            voters,
            spec,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root: root.to_path_buf(),
        };
        phase(format!("starting {voters} voters: {}", cluster.spec));
        for (i, port) in ports[..voters].iter().enumerate() {
            let id = i as u64 + 1;
            let args = cluster.voter_args(id);
            let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let server = Tandem::spawn(*port, &root.join(format!("node-{id}")), &args);
            cluster.nodes.push(Node {
                id,
                server,
                cluster_port: port + 10000,
            });
        }
        for n in &mut cluster.nodes {
            n.server.ensure_ready();
        }
        cluster.wait_primary();
        // A first write through whichever node leads: after it, the primary has committed in
        // its term and the cluster is settled.
        cluster.write_ok(&["SET", "cluster:ready", "1"]);
        for (j, port) in ports[voters..].iter().enumerate() {
            let id = (voters + j) as u64 + 1;
            cluster.add_replica(id, *port);
        }
        cluster
    }

    pub fn voter_args(&self, id: u64) -> Vec<String> {
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--initial-cluster".into(),
            self.spec.clone(),
            "--cluster-secret".into(),
            SECRET.into(),
            "--enable-debug-commands".into(),
            // Debug builds on two shared cores: keep elections from flapping.
            "--election-timeout-ms".into(),
            "1000".into(),
        ];
        args.extend(self.quiet_log_args());
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Periodic divergence verification appends marks to the log every minute; tests that
    /// compare nodes at one index expect an idle log, so it is off unless a test sets it.
    fn quiet_log_args(&self) -> Vec<String> {
        if self.extra.iter().any(|a| a == "--verify-interval-ms") {
            return Vec::new();
        }
        vec!["--verify-interval-ms".into(), "0".into()]
    }

    pub fn replica_args(&self, id: u64) -> Vec<String> {
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--join".into(),
            format!("127.0.0.1:{}", self.nodes[self.primary()].server.port),
            "--cluster-secret".into(),
            SECRET.into(),
            "--enable-debug-commands".into(),
        ];
        args.extend(self.quiet_log_args());
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts a fresh read replica with node id `id` on `port` and waits until it is a member
    /// the primary sees online.
    pub fn add_replica(&mut self, id: u64, port: u16) -> usize {
        phase(format!("adding read replica {id} on port {port}"));
        let args = self.replica_args(id);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let mut server = Tandem::spawn(port, &self.root.join(format!("node-{id}")), &args);
        server.ensure_ready();
        self.nodes.push(Node {
            id,
            server,
            cluster_port: port + 10000,
        });
        let idx = self.nodes.len() - 1;
        wait_for(
            SETTLE_TIMEOUT,
            &format!("node {id} to be a read replica"),
            || {
                info(&self.nodes[idx].server, "replication")
                    .get("tandem_role")
                    .map(String::as_str)
                    == Some("read-replica")
            },
        );
        idx
    }

    /// Index of the node that is primary now (waits for one).
    pub fn primary(&self) -> usize {
        let mut found = None;
        wait_for(SETTLE_TIMEOUT, "a primary", || {
            found = self.nodes.iter().position(|n| {
                n.server.is_alive()
                    && info(&n.server, "replication")
                        .get("tandem_role")
                        .map(String::as_str)
                        == Some("primary")
            });
            found.is_some()
        });
        found.unwrap()
    }

    pub fn wait_primary(&self) -> usize {
        let p = self.primary();
        phase(format!("primary is node {}", self.nodes[p].id));
        p
    }

    /// Sends a write to whichever node is primary, retrying (an election may be under way on a
    /// loaded machine) until it succeeds; returns the primary's index.
    pub fn write_ok(&self, args: &[&str]) -> usize {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let p = self.primary();
            let f = self.nodes[p].server.conn().cmd(args);
            if f.is_ok() {
                return p;
            }
            assert!(Instant::now() < deadline, "{args:?} kept failing: {f}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    /// Waits until every live node has applied at least `index`.
    pub fn wait_applied(&self, index: i64) {
        for n in &self.nodes {
            if !n.server.is_alive() {
                continue;
            }
            wait_for(
                SETTLE_TIMEOUT,
                &format!("node {} to apply index {index}", n.id),
                || digest(&n.server).0 >= index,
            );
        }
    }

    /// Checks every live node holds exactly the same keyspace at the same index.
    pub fn assert_converged(&self) {
        let p = self.primary();
        let (index, want, keys) = digest(&self.nodes[p].server);
        self.wait_applied(index);
        for n in &self.nodes {
            if !n.server.is_alive() {
                continue;
            }
            let (i, d, k) = digest(&n.server);
            assert_eq!(
                i, index,
                "node {} applied {i}, primary {index} (no writes were running)",
                n.id
            );
            assert_eq!(
                (d.as_str(), k),
                (want.as_str(), keys),
                "node {} diverges from the primary at index {index}",
                n.id
            );
        }
    }
}

impl Frame {
    pub fn is_ok(&self) -> bool {
        matches!(self, Frame::Simple(s) if s == "OK")
    }
}
