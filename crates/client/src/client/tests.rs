//! The client's routing, retry and verification rules against scripted fake nodes: small TCP
//! servers in this process that answer each request with a closure, and record what they got.
//! No Tandem server is involved, so each story can stage replies a real server rarely gives
//! (a digest mismatch in transit, a `-TIMEOUT`, a connection dropped after a write).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::{encode, Frame, Protocol, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What a fake node does with one request.
enum Answer {
    Reply(Frame),
    /// Close the connection without replying.
    Hang,
}

type Handler = Arc<dyn Fn(&[Bytes]) -> Answer + Send + Sync>;

/// A fake node. Requests are recorded as upper-case-name strings ("SET k v").
struct FakeNode {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    handler: Arc<Mutex<Option<Handler>>>,
}

impl FakeNode {
    async fn start() -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = FakeNode {
            addr: listener.local_addr().unwrap().to_string(),
            log: Arc::default(),
            handler: Arc::default(),
        };
        let (log, handler) = (node.log.clone(), node.handler.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, log.clone(), handler.clone()));
            }
        });
        node
    }

    fn answer(&self, handler: impl Fn(&[Bytes]) -> Answer + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Some(Arc::new(handler));
    }

    /// How many requests named `name` (e.g. "GET", "DIGEST.REPORT") this node received.
    fn count(&self, name: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.split(' ').next() == Some(name))
            .count()
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<String>>>,
    handler: Arc<Mutex<Option<Handler>>>,
) {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(args)) = parser.parse(&mut buf) {
            let mut text = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            for a in &args[1..] {
                text.push(' ');
                text.push_str(&String::from_utf8_lossy(a));
            }
            log.lock().unwrap().push(text);
            let handler = handler.lock().unwrap().clone();
            let answer = match handler {
                Some(h) => h(&args),
                None => Answer::Reply(Frame::error("ERR no handler")),
            };
            match answer {
                Answer::Reply(frame) => {
                    let mut out = BytesMut::new();
                    encode(&frame, Protocol::Resp2, &mut out);
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Answer::Hang => return,
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn name(args: &[Bytes]) -> String {
    String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
}

fn member(id: i64, kind: &str, addr: &str) -> Frame {
    Frame::Array(vec![
        Frame::Integer(id),
        Frame::bulk(kind.to_string()),
        Frame::bulk(addr.to_string()),
        Frame::bulk("unused:1"),
    ])
}

/// `MEMBERSHIP LIST` of `nodes` with node `primary` (an index) as primary, the others voters.
fn membership(nodes: &[&str], primary: Option<usize>) -> Frame {
    Frame::Array(
        nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let kind = if Some(i) == primary {
                    "primary"
                } else {
                    "voter"
                };
                member(i as i64 + 1, kind, addr)
            })
            .collect(),
    )
}

fn digest_reply(value: &[u8], algorithm: &str, hex: &str) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::copy_from_slice(value)),
        Frame::bulk(algorithm.to_string()),
        Frame::bulk(hex.to_string()),
    ])
}

fn sha256_hex(value: &[u8]) -> String {
    Checksum::compute(Algorithm::Sha256, value).to_hex()
}

fn options(policy: ReadPolicy) -> ClientOptions {
    ClientOptions {
        read_policy: policy,
        request_timeout: Duration::from_secs(2),
        retry_deadline: Duration::from_secs(3),
        topology_refresh_interval: None,
        ..ClientOptions::default()
    }
}

/// Three fake nodes; node 0 is primary. Each answers MEMBERSHIP LIST with `view` (shared, so
/// a test can stage a failover) and everything else with `data`.
async fn cluster(
    data: impl Fn(usize, &[Bytes]) -> Answer + Send + Sync + Clone + 'static,
) -> (Vec<FakeNode>, Arc<Mutex<Frame>>) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(FakeNode::start().await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let view = Arc::new(Mutex::new(membership(&refs, Some(0))));
    for (i, node) in nodes.iter().enumerate() {
        let (view, data) = (view.clone(), data.clone());
        node.answer(move |args| match name(args).as_str() {
            "MEMBERSHIP" => Answer::Reply(view.lock().unwrap().clone()),
            _ => data(i, args),
        });
    }
    (nodes, view)
}

#[tokio::test]
async fn discovery_from_a_replica_asks_the_primary_it_names() {
    let (nodes, _) = cluster(|_, _| Answer::Reply(Frame::ok())).await;
    // The seed is node 2, a voter: it names node 0 as primary, which is asked next and
    // confirms. Node 1 is never asked.
    let client = Client::connect(&[&nodes[2].addr], options(ReadPolicy::Primary))
        .await
        .unwrap();
    let topology = client.topology();
    assert_eq!(topology.primary().unwrap().addr, nodes[0].addr);
    assert_eq!(topology.nodes().len(), 3);
    assert_eq!(nodes[2].count("MEMBERSHIP"), 1);
    assert_eq!(nodes[0].count("MEMBERSHIP"), 1);
    assert_eq!(nodes[1].count("MEMBERSHIP"), 0);

    client.set("k", "v").await.unwrap();
    assert_eq!(nodes[0].requests().last().unwrap(), "SET k v");
    assert_eq!(nodes[1].count("SET") + nodes[2].count("SET"), 0);
}

#[tokio::test]
async fn discovery_fails_with_every_address_named() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let garbage = FakeNode::start().await;
    garbage.answer(|_| Answer::Reply(Frame::Integer(7)));
    let err = Client::connect(&[&dead, &garbage.addr], options(ReadPolicy::Primary))
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Discovery { .. }), "{err:?}");
    assert!(
        text.contains(&dead) && text.contains(&garbage.addr),
        "{text}"
    );
    assert!(
        text.contains("expected an array of members, got the integer 7"),
        "{text}"
    );
    assert!(matches!(
        Client::connect(&[], ClientOptions::default()).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn reads_follow_each_policy() {
    let (nodes, _) = cluster(|i, _| Answer::Reply(Frame::bulk(format!("from {i}")))).await;
    let seed = [nodes[0].addr.as_str()];

    let primary = Client::connect(&seed, options(ReadPolicy::Primary))
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(primary.get("k").await.unwrap().unwrap(), "from 0");
    }
    let counts: Vec<usize> = nodes.iter().map(|n| n.count("GET")).collect();
    assert_eq!(counts, [4, 0, 0]);

    let round_robin = Client::connect(&seed, options(ReadPolicy::RoundRobin))
        .await
        .unwrap();
    for _ in 0..6 {
        round_robin.get("k").await.unwrap();
    }
    let counts: Vec<usize> = nodes.iter().map(|n| n.count("GET")).collect();
    assert_eq!(
        counts,
        [4, 3, 3],
        "round robin spreads evenly over the replicas"
    );

    let any = Client::connect(&seed, options(ReadPolicy::AnyReplica))
        .await
        .unwrap();
    let first = any.get("k").await.unwrap().unwrap();
    assert_ne!(first, "from 0", "a replica serves");
    for _ in 0..5 {
        assert_eq!(
            any.get("k").await.unwrap().unwrap(),
            first,
            "the same replica every time"
        );
    }
}

#[tokio::test]
async fn a_replica_that_refuses_reads_is_skipped() {
    let (nodes, _) = cluster(|i, _| match i {
        1 => Answer::Reply(Frame::error("MASTERDOWN Link with MASTER is down")),
        _ => Answer::Reply(Frame::bulk(format!("from {i}"))),
    })
    .await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::RoundRobin))
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(client.get("k").await.unwrap().unwrap(), "from 2");
    }
    // Errors that are answers, not refusals, are returned as they are.
    let (nodes, _) =
        cluster(|_, _| Answer::Reply(Frame::error("WRONGTYPE Operation against a key"))).await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::RoundRobin))
        .await
        .unwrap();
    let err = client.get("k").await.unwrap_err();
    assert_eq!(
        err.server_message(),
        Some("WRONGTYPE Operation against a key")
    );
    assert_eq!(nodes.iter().map(|n| n.count("GET")).sum::<usize>(), 1);
}

#[tokio::test]
async fn a_write_refused_by_a_former_primary_follows_the_failover() {
    // Node 0 has lost the primary role: it answers -READONLY and its membership names node 1.
    let failed_over = Arc::new(AtomicBool::new(false));
    let flag = failed_over.clone();
    let (nodes, view) = cluster(move |i, args| match (i, name(args).as_str()) {
        (0, "SET") if flag.load(Ordering::SeqCst) => Answer::Reply(Frame::error(
            "READONLY You can't write against a read only replica.",
        )),
        (_, "SET") => Answer::Reply(Frame::ok()),
        _ => Answer::Reply(Frame::error("ERR unexpected")),
    })
    .await;
    let client = Client::connect(&[&nodes[2].addr], options(ReadPolicy::Primary))
        .await
        .unwrap();
    client.set("a", "1").await.unwrap();
    assert_eq!(nodes[0].count("SET"), 1);

    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    *view.lock().unwrap() = membership(&addrs, Some(1));
    failed_over.store(true, Ordering::SeqCst);
    client.set("b", "2").await.unwrap();
    assert_eq!(
        nodes[0].count("SET"),
        2,
        "one refused attempt on the former primary"
    );
    assert_eq!(nodes[1].requests().last().unwrap(), "SET b 2");
    assert_eq!(client.topology().primary().unwrap().addr, nodes[1].addr);
}

#[tokio::test]
async fn a_write_with_unknown_outcome_is_not_retried() {
    let sets = Arc::new(AtomicUsize::new(0));
    let seen = sets.clone();
    let (nodes, _) = cluster(move |_, args| match name(args).as_str() {
        "SET" => match seen.fetch_add(1, Ordering::SeqCst) {
            0 => Answer::Hang,
            _ => Answer::Reply(Frame::error(
                "TIMEOUT write not committed within 10000 ms; its outcome is unknown",
            )),
        },
        _ => Answer::Reply(Frame::ok()),
    })
    .await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::Primary))
        .await
        .unwrap();

    let lost = client.set("k", "v").await.unwrap_err();
    assert!(lost.is_outcome_unknown(), "{lost:?}");
    assert!(
        lost.to_string().contains("read the key before retrying"),
        "{lost}"
    );
    assert_eq!(
        nodes[0].count("SET"),
        1,
        "a connection lost after sending is not retried"
    );

    let timeout = client.command(&[b"SET", b"k", b"v"]).await.unwrap_err();
    assert!(timeout.is_outcome_unknown(), "{timeout:?}");
    assert_eq!(
        nodes[0].count("SET"),
        2,
        "the server's TIMEOUT is not retried"
    );
}

#[tokio::test]
async fn with_no_primary_writes_retry_until_the_deadline() {
    let (nodes, view) = cluster(|_, _| Answer::Reply(Frame::ok())).await;
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    *view.lock().unwrap() = membership(&addrs, None);
    let client = Client::connect(
        &[&nodes[0].addr],
        ClientOptions {
            retry_deadline: Duration::from_millis(300),
            ..options(ReadPolicy::Primary)
        },
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = client.set("k", "v").await.unwrap_err();
    let Error::Unavailable { last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**last, Error::NoPrimary { .. }), "{last:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(nodes.iter().all(|n| n.count("SET") == 0));
    // The topology was asked for again while waiting.
    assert!(nodes.iter().map(|n| n.count("MEMBERSHIP")).sum::<usize>() > 2);
}

#[tokio::test]
async fn a_verified_read_skips_bad_copies_and_reports_them() {
    let value = b"the right bytes".to_vec();
    let good = sha256_hex(&value);
    let (nodes, _) = cluster(move |i, args| match (i, name(args).as_str()) {
        // Node 1 sends bytes damaged in transit: they no longer match the digest.
        (1, "DIGEST.GET") => Answer::Reply(digest_reply(b"the wrong bytes", "sha256", &good)),
        // Node 2 finds its own copy corrupt.
        (2, "DIGEST.GET") => Answer::Reply(Frame::error(
            "CORRUPT value of key 'k' failed its sha256 checksum",
        )),
        (0, "DIGEST.GET") => Answer::Reply(digest_reply(&value, "sha256", &good)),
        (_, "DIGEST.REPORT") => Answer::Reply(Frame::ok()),
        _ => Answer::Reply(Frame::error("ERR unexpected")),
    })
    .await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::RoundRobin))
        .await
        .unwrap();
    let copy = client.get_verified("k").await.unwrap().unwrap();
    assert_eq!(&copy.value[..], b"the right bytes");
    assert_eq!(copy.algorithm, Algorithm::Sha256);
    assert_eq!(
        copy.served_by.addr, nodes[0].addr,
        "replicas first, then the primary"
    );
    let bad: Vec<(&str, bool)> = copy
        .bad_copies
        .iter()
        .map(|b| (b.node.addr.as_str(), b.reported))
        .collect();
    assert_eq!(
        bad,
        [
            (nodes[1].addr.as_str(), true),
            (nodes[2].addr.as_str(), true)
        ]
    );
    assert!(matches!(
        copy.bad_copies[0].problem,
        CopyProblem::Mismatch { .. }
    ));
    assert!(
        matches!(&copy.bad_copies[1].problem, CopyProblem::Corrupt(m) if m.starts_with("CORRUPT"))
    );
    assert_eq!(nodes[1].requests().last().unwrap(), "DIGEST.REPORT k");
    assert_eq!(nodes[2].requests().last().unwrap(), "DIGEST.REPORT k");
    assert_eq!(nodes[0].count("DIGEST.REPORT"), 0);
}

#[tokio::test]
async fn an_unknown_algorithm_is_skipped_but_not_reported() {
    let (nodes, _) = cluster(move |i, args| match (i, name(args).as_str()) {
        (0, "DIGEST.GET") => Answer::Reply(digest_reply(b"v", "sha256", &sha256_hex(b"v"))),
        (_, "DIGEST.GET") => Answer::Reply(digest_reply(b"v", "sha3-512", "00")),
        _ => Answer::Reply(Frame::ok()),
    })
    .await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::AnyReplica))
        .await
        .unwrap();
    let copy = client.get_verified("k").await.unwrap().unwrap();
    assert_eq!(copy.served_by.addr, nodes[0].addr);
    assert_eq!(copy.bad_copies.len(), 2);
    assert!(copy.bad_copies.iter().all(|b| !b.reported));
    assert!(nodes.iter().all(|n| n.count("DIGEST.REPORT") == 0));
}

#[tokio::test]
async fn a_verified_read_with_every_copy_bad_fails_and_absent_keys_are_none() {
    let (nodes, _) = cluster(|i, args| match name(args).as_str() {
        "DIGEST.GET" if i == 0 => Answer::Reply(Frame::NullArray),
        "DIGEST.GET" => Answer::Reply(digest_reply(b"x", "sha256", &sha256_hex(b"y"))),
        _ => Answer::Reply(Frame::ok()),
    })
    .await;
    // The primary holds no copy: a key absent on the primary is absent, even after bad copies.
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::RoundRobin))
        .await
        .unwrap();
    assert_eq!(client.get_verified("k").await.unwrap(), None);
    assert_eq!(
        nodes[1].count("DIGEST.REPORT") + nodes[2].count("DIGEST.REPORT"),
        2
    );

    let (nodes, _) = cluster(|_, args| match name(args).as_str() {
        "DIGEST.GET" => Answer::Reply(digest_reply(b"x", "sha256", &sha256_hex(b"y"))),
        _ => Answer::Reply(Frame::ok()),
    })
    .await;
    let client = Client::connect(&[&nodes[0].addr], options(ReadPolicy::Primary))
        .await
        .unwrap();
    let err = client.get_verified("k\n").await.unwrap_err();
    let Error::NoVerifiedCopy { key, bad_copies } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(key, "k\\n");
    assert_eq!(bad_copies.len(), 3);
    assert!(bad_copies.iter().all(|b| b.reported));
    assert_eq!(
        bad_copies[0].node.addr, nodes[0].addr,
        "the primary first under Primary"
    );
    assert!(
        nodes.iter().all(|n| n.count("DIGEST.GET") == 1),
        "each node asked once"
    );
}

#[tokio::test]
async fn malformed_replies_are_errors_not_panics() {
    let (nodes, _) = cluster(|_, args| match name(args).as_str() {
        "GET" => Answer::Reply(Frame::Array(vec![Frame::Integer(1)])),
        "SET" => Answer::Reply(Frame::Integer(1)),
        "DEL" => Answer::Reply(Frame::bulk("one")),
        "DIGEST.GET" => Answer::Reply(Frame::Integer(5)),
        _ => Answer::Reply(Frame::ok()),
    })
    .await;
    let client = Client::connect(
        &[&nodes[0].addr],
        ClientOptions {
            retry_deadline: Duration::from_millis(200),
            ..options(ReadPolicy::Primary)
        },
    )
    .await
    .unwrap();
    for err in [
        client.get("k").await.unwrap_err(),
        client.set("k", "v").await.unwrap_err(),
        client.del("k").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::UnexpectedReply { .. }), "{err:?}");
    }
    let err = client.get_verified("k").await.unwrap_err();
    let Error::Unavailable { last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(last.to_string().contains("got the integer 5"), "{last}");
    assert!(matches!(
        client.command(&[]).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn request_futures_can_be_spawned() {
    fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
    let client = || async {
        Client::connect(&["127.0.0.1:1"], ClientOptions::default())
            .await
            .unwrap()
    };
    spawnable(async move {
        let c = client().await;
        let _ = c.set("k", "v").await;
        let _ = c.get("k").await;
        let _ = c.get_verified("k").await;
        let _ = c.command(&[b"PING"]).await;
        let _ = c.refresh_topology().await;
    });
}
