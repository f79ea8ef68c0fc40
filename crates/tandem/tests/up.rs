//! `tandem up`: a local cluster of child processes that forms, serves, and stops on SIGINT
//! (Ctrl-C) with every node.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::wait_for;
use common::{Conn, Frame, TANDEM_BIN};

/// A base port whose client (P..P+2), cluster (+10000) and HTTP (+1000) ports are all free.
fn free_base_port() -> u16 {
    for _ in 0..200 {
        let base = 16000 + rand::random::<u16>() % 3000;
        let free = (0..2u16).all(|i| {
            [base + i, base + i + 10000, base + i + 1000]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

#[test]
fn tandem_up_starts_a_cluster_that_serves_and_stops_it_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let out = dir.path().join("up.log");
    let child = Command::new(TANDEM_BIN)
        .args([
            "up",
            "--voters",
            "1",
            "--replicas",
            "1",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(dir.path().join("cluster"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("up.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    // If an assertion fails before the Ctrl-C below, `tandem up` must not outlive the test (its
    // nodes die with it).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut child = KillOnDrop(child);
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for(
        Duration::from_secs(90),
        "tandem up to report the cluster up",
        || text().contains("Tandem is up"),
    );
    assert!(
        text().contains(&format!("redis-cli -p {base}")),
        "{}",
        text()
    );

    let mut primary = Conn::connect(base).unwrap();
    assert!(primary.cmd(&["SET", "k", "v"]).is_ok());
    assert_eq!(primary.cmd(&["WAIT", "1", "10000"]), Frame::Integer(1));
    // WAIT says the replica holds the write durably; it applies it once it learns it is
    // committed: WAITPOS makes the read see it.
    let pos = primary.cmd(&["POSITION"]).as_int().unwrap();
    let mut replica = Conn::connect(base + 1).unwrap();
    assert!(
        replica
            .cmd(&["WAITPOS", &pos.to_string(), "10000"])
            .as_int()
            .unwrap()
            >= pos
    );
    assert_eq!(replica.cmd(&["GET", "k"]), Frame::bulk("v"));

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.0.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "tandem up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}: {}", text());
    assert!(Conn::connect(base).is_err(), "the nodes stopped with it");
}
