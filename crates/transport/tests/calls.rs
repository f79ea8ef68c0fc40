//! Calls over a healthy connection: concurrency, matching by id, errors, deadlines, limits, and
//! what `set_addr` and `close` do.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tandem_transport::{CallError, TransportConfig};
use tokio::sync::{watch, Semaphore};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_connection() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let (peer, stats) = peer(server.addr, config());

    let calls = (0..500u32).map(|i| {
        let peer = peer.clone();
        async move {
            let body = Bytes::from(format!("call {i}"));
            (i, peer.call(body, DEADLINE).await)
        }
    });
    for (i, reply) in futures::future::join_all(calls).await {
        assert_eq!(reply.unwrap(), Bytes::from(format!("re:call {i}")));
    }

    assert!(peer.is_connected());
    let client = stats.snapshot();
    let served = server.stats.snapshot();
    assert_eq!((client.connects, served.connects), (1, 1));
    assert_eq!(server.handler.bodies.lock().len(), 500);
    // 500 requests plus Auth and Hello; 500 replies plus Challenge, AuthOk and HelloOk.
    assert_eq!((client.frames_sent, served.frames_received), (502, 502));
    assert_eq!((served.frames_sent, client.frames_received), (503, 503));
    assert_eq!(client.bytes_sent, served.bytes_received);
    assert_eq!(
        (client.retries, client.crc_failures, served.crc_failures),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_reverse_order_reach_their_own_calls() {
    // Call k may only finish after N-1-k others have: the server answers in exactly the reverse
    // of the order the calls were made, and each call must still get its own reply.
    const N: u32 = 32;
    let (finished_tx, finished_rx) = watch::channel(0u32);
    let finished_tx = Arc::new(finished_tx);
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let handler = {
        let order = order.clone();
        TestHandler::new(move |body| {
            let mut finished = finished_rx.clone();
            let finished_tx = finished_tx.clone();
            let order = order.clone();
            Box::pin(async move {
                let k: u32 = std::str::from_utf8(&body).unwrap().parse().unwrap();
                finished.wait_for(|&n| n >= N - 1 - k).await.unwrap();
                order.lock().push(k);
                finished_tx.send_modify(|n| *n += 1);
                Ok(Bytes::from(format!("reply to {k}")))
            })
        })
    };
    let server = Server::start(config(), handler).await;
    let (peer, _) = peer(server.addr, config());

    let calls = (0..N).map(|k| {
        let peer = peer.clone();
        async move { (k, peer.call(Bytes::from(k.to_string()), DEADLINE).await) }
    });
    for (k, reply) in futures::future::join_all(calls).await {
        assert_eq!(reply.unwrap(), Bytes::from(format!("reply to {k}")));
    }
    let expected: Vec<u32> = (0..N).rev().collect();
    assert_eq!(*order.lock(), expected);
}

#[tokio::test]
async fn handler_errors_come_back_as_remote_errors_and_are_not_retried() {
    let handler = TestHandler::new(|_| Box::pin(async { Err("no such key".to_string()) }));
    let server = Server::start(config(), handler).await;
    let (peer, stats) = peer(server.addr, config());
    let err = peer
        .call(Bytes::from_static(b"x"), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(err, CallError::Remote("no such key".into()));
    assert_eq!(server.handler.bodies.lock().len(), 1);
    assert_eq!(stats.snapshot().retries, 0);
}

#[tokio::test]
async fn empty_and_large_bodies_round_trip() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let (peer, _) = peer(server.addr, config());
    assert_eq!(
        peer.call(Bytes::new(), DEADLINE).await.unwrap(),
        Bytes::from_static(b"re:")
    );
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = peer.call(Bytes::from(big.clone()), DEADLINE).await.unwrap();
    assert_eq!(&reply[..3], b"re:");
    assert!(reply[3..] == big[..]);
}

#[tokio::test]
async fn a_handler_that_never_answers_times_out_at_the_deadline() {
    // Answers "ping", never anything else.
    let handler = TestHandler::new(|body| {
        Box::pin(async move {
            if body != "ping" {
                futures::future::pending::<()>().await;
            }
            Ok(body)
        })
    });
    let server = Server::start(config(), handler).await;
    let (peer, stats) = peer(
        server.addr,
        TransportConfig {
            presume_dead_after: Duration::from_millis(200),
            ..config()
        },
    );
    // Connect first, so that the deadline below only covers the call itself.
    peer.call(Bytes::from_static(b"ping"), DEADLINE)
        .await
        .unwrap();
    assert!(peer.is_connected());

    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let err = peer
        .call(Bytes::from_static(b"hang"), deadline)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, CallError::Timeout);
    assert!(took >= deadline, "returned early, after {took:?}");
    assert!(
        took < deadline + Duration::from_millis(250),
        "took {took:?}"
    );
    assert!(stats.snapshot().calls_timed_out >= 1);
    // Nothing at all came back during the deadline: the connection is presumed dead and
    // closed, so that the next call reconnects rather than waiting on it.
    assert!(!peer.is_connected());

    // A call whose deadline is shorter than `presume_dead_after` (a heartbeat to a busy peer)
    // times out without closing the connection the other calls share.
    let (patient, _) = self::peer(server.addr, config());
    patient
        .call(Bytes::from_static(b"ping"), DEADLINE)
        .await
        .unwrap();
    let err = patient
        .call(Bytes::from_static(b"hang"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err, CallError::Timeout);
    assert!(
        patient.is_connected(),
        "a short call's timeout closed the connection"
    );
}

#[tokio::test]
async fn requests_larger_than_a_frame_are_refused_before_sending() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let config = TransportConfig {
        frame_bytes_max: 4096,
        ..config()
    };
    let (peer, stats) = peer(server.addr, config);
    let err = peer
        .call(Bytes::from(vec![0; 5000]), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::TooLarge {
            body_bytes: 5000,
            frame_bytes_max: 4096
        }
    );
    assert_eq!(stats.snapshot().connects, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_at_most_in_flight_max_calls_of_a_connection_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let running_max = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = watch::channel(0usize);
    let started_tx = Arc::new(started_tx);
    let handler = {
        let (gate, running, running_max) = (gate.clone(), running.clone(), running_max.clone());
        TestHandler::new(move |_| {
            let (gate, running, running_max) = (gate.clone(), running.clone(), running_max.clone());
            let started_tx = started_tx.clone();
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                running_max.fetch_max(now, Ordering::SeqCst);
                started_tx.send_modify(|n| *n += 1);
                gate.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(Bytes::new())
            })
        })
    };
    let server_config = TransportConfig {
        in_flight_max: 2,
        ..config()
    };
    let server = Server::start(server_config, handler).await;
    let (peer, _) = peer(server.addr, config());

    let calls: Vec<_> = (0..5)
        .map(|_| {
            let peer = peer.clone();
            tokio::spawn(async move { peer.call(Bytes::new(), DEADLINE).await })
        })
        .collect();
    started.wait_for(|&n| n >= 2).await.unwrap();
    // Proving that a third handler does NOT start needs a little time to pass.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*started.borrow(), 2);
    gate.add_permits(5);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(running_max.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn set_addr_moves_the_peer_to_its_new_address() {
    let reply = |name: &'static str| {
        TestHandler::new(move |_| Box::pin(async move { Ok(Bytes::from_static(name.as_bytes())) }))
    };
    let a = Server::start(config(), reply("a")).await;
    let b = Server::start(config(), reply("b")).await;
    let (peer, stats) = peer(a.addr, config());
    assert_eq!(peer.call(Bytes::new(), DEADLINE).await.unwrap(), "a");
    peer.set_addr(b.addr.to_string());
    assert_eq!(peer.addr(), b.addr.to_string());
    assert!(!peer.is_connected(), "the old connection is closed");
    assert_eq!(peer.call(Bytes::new(), DEADLINE).await.unwrap(), "b");
    peer.set_addr(b.addr.to_string());
    assert!(peer.is_connected(), "the same address keeps the connection");
    assert_eq!(stats.snapshot().connects, 2);
}

#[tokio::test]
async fn close_fails_calls_in_flight_and_later_calls() {
    let handler = TestHandler::new(|_| Box::pin(futures::future::pending()));
    let server = Server::start(config(), handler).await;
    let (peer, _) = peer(server.addr, config());
    let in_flight = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call(Bytes::new(), DEADLINE).await }
    });
    // Wait until the server has the call.
    while server.handler.bodies.lock().is_empty() {
        tokio::task::yield_now().await;
    }
    peer.close();
    assert!(!peer.is_connected());
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, CallError::Unreachable(r) if r.contains("closed")),
        "{err:?}"
    );
    let err = peer.call(Bytes::new(), DEADLINE).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Unreachable(r) if r.contains("closed")),
        "{err:?}"
    );
    assert_eq!(server.handler.bodies.lock().len(), 1, "nothing was re-sent");
}
