//! What goes wrong between nodes: corrupted frames, servers that die and come back, addresses
//! where nobody listens, and strangers sending garbage.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tandem_transport::{encode_frame, CallError, CallOptions, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_corrupted_frame_is_dropped_unread_and_the_call_retried() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let (peer, stats) = peer(server.addr, config());

    let options = CallOptions {
        corrupt_first_send: true,
    };
    let reply = peer
        .call_with(Bytes::from_static(b"precious"), DEADLINE, options)
        .await
        .unwrap();
    assert_eq!(reply, "re:precious");

    // The server saw the CRC failure, closed that connection, and its handler was called once,
    // with the intact bytes of the second send.
    assert_eq!(server.stats.snapshot().crc_failures, 1);
    assert_eq!(
        *server.handler.bodies.lock(),
        vec![Bytes::from_static(b"precious")]
    );
    let client = stats.snapshot();
    assert_eq!((client.retries, client.connects), (1, 2));
    assert_eq!(server.stats.snapshot().connects, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_the_calls_again() {
    // Phase 1: a call reaches a server that will never answer it.
    let arrived = Arc::new(Notify::new());
    let stuck = {
        let arrived = arrived.clone();
        TestHandler::new(move |_| {
            arrived.notify_one();
            Box::pin(futures::future::pending())
        })
    };
    let first = Server::start(config(), stuck).await;
    let addr = first.addr;
    let (peer, stats) = peer(addr, config());
    let in_flight = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call(Bytes::from_static(b"in flight"), DEADLINE).await }
    });
    arrived.notified().await;

    // Phase 2: the server dies and a new one starts on the same port. The call in flight is
    // sent again on a new connection and answered by the new server.
    first.stop().await;
    let second = Server::start_on(addr, config(), Arc::new(TestHandler::echo())).await;
    assert_eq!(in_flight.await.unwrap().unwrap(), "re:in flight");

    // Phase 3: a call made after the restart simply works.
    assert_eq!(
        peer.call(Bytes::from_static(b"after"), DEADLINE)
            .await
            .unwrap(),
        "re:after"
    );
    assert_eq!(stats.snapshot().retries, 1);
    assert_eq!(second.handler.bodies.lock().len(), 2);
}

#[tokio::test]
async fn a_server_that_is_down_is_unreachable_within_the_deadline() {
    // A port nobody listens on: bind, note the address, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (peer, stats) = peer(addr, config());
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let err = peer.call(Bytes::new(), deadline).await.unwrap_err();
    let took = started.elapsed();
    let CallError::Unreachable(reason) = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert!(reason.contains(&addr.to_string()), "{reason}");
    assert!(
        took < deadline + Duration::from_millis(200),
        "took {took:?}"
    );
    // It kept trying, with growing pauses, while the deadline allowed.
    assert!(stats.snapshot().connect_failures >= 2);
}

#[tokio::test]
async fn calls_fail_fast_while_reconnection_backs_off() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let config = TransportConfig {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(5),
        ..config()
    };
    let (peer, stats) = peer(addr, config);
    // The first call tries once; the next attempt would be after its deadline, so it fails.
    let started = Instant::now();
    let err = peer
        .call(Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.snapshot().connect_failures, 1);

    // The next call does not even try: it cannot wait 5 s.
    let started = Instant::now();
    let err = peer
        .call(Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap_err();
    let CallError::Unreachable(reason) = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert!(reason.contains("next connection attempt"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.snapshot().connect_failures, 1);
}

/// Connects a raw TCP client, reads the server's challenge, sends `bytes`, and returns once the
/// server has closed the connection.
async fn send_raw_and_expect_close(server: &Server, bytes: &[u8]) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut challenge = vec![0; len];
    stream.read_exact(&mut challenge).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    match tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await {
        Ok(Ok(_)) => assert!(rest.is_empty(), "server answered garbage with {rest:?}"),
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Err(_) => panic!("the server did not close the connection"),
    }
}

#[tokio::test]
async fn garbage_from_a_stranger_closes_its_connection_and_nothing_else() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let (peer, _) = peer(server.addr, config());
    peer.call(Bytes::from_static(b"before"), DEADLINE)
        .await
        .unwrap();

    // A length far above any limit.
    send_raw_and_expect_close(&server, &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).await;
    // A length above the handshake's 64 KiB limit, though under frame_bytes_max.
    send_raw_and_expect_close(&server, &(1u32 << 20).to_le_bytes()).await;
    // A well-formed frame whose payload is not a message.
    send_raw_and_expect_close(&server, &encode_frame(&[99, 1, 2, 3], 1024).unwrap()).await;
    // A frame whose CRC does not match.
    let mut bad = encode_frame(b"\x01garbage", 1024).unwrap();
    bad[10] ^= 0x40;
    send_raw_and_expect_close(&server, &bad).await;
    // Text, as if someone pointed redis-cli at the cluster port.
    send_raw_and_expect_close(&server, b"*1\r\n$4\r\nPING\r\n").await;
    // Random bytes.
    let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    send_raw_and_expect_close(&server, &noise).await;

    let served = server.stats.snapshot();
    assert!(served.crc_failures >= 1);
    assert_eq!(served.connect_failures, 6);
    // The server and the existing connection are unharmed.
    assert!(peer.is_connected());
    peer.call(Bytes::from_static(b"after"), DEADLINE)
        .await
        .unwrap();
    assert_eq!(served.connects, 1);
}

#[tokio::test]
async fn a_frame_above_the_servers_limit_closes_the_connection_and_the_server_keeps_serving() {
    // The client allows bigger frames than the server: the server must close the connection
    // rather than read the frame, every time the call is sent.
    let server_config = TransportConfig {
        frame_bytes_max: 64 * 1024,
        ..config()
    };
    let server = Server::start(server_config, TestHandler::echo()).await;
    let (peer, stats) = peer(server.addr, config());

    let err = peer
        .call(Bytes::from(vec![1; 100 * 1024]), DEADLINE)
        .await
        .unwrap_err();
    let CallError::Unreachable(reason) = &err else {
        panic!("expected Unreachable, got {err:?}");
    };
    assert!(reason.contains("call_attempts_max"), "{reason}");
    assert_eq!(stats.snapshot().retries, 2, "sent 3 times in all");
    assert!(server.handler.bodies.lock().is_empty());

    assert_eq!(
        peer.call(Bytes::from_static(b"small"), DEADLINE)
            .await
            .unwrap(),
        "re:small"
    );
}
