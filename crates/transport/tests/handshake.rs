//! Who may connect: the cluster secret and the application hellos.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tandem_transport::{CallError, TransportConfig};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_client_with_the_wrong_secret_is_refused_and_told_why() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let wrong = TransportConfig::new("not the cluster secret");
    let (peer, stats) = peer(server.addr, wrong);

    let err = peer
        .call(Bytes::from_static(b"x"), DEADLINE)
        .await
        .unwrap_err();
    let CallError::Refused(reason) = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert!(reason.contains("cluster secret"), "{reason}");
    assert!(!peer.is_connected());

    // Refused is not retried by the call, and a later call is refused again.
    let again = peer
        .call(Bytes::from_static(b"x"), DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(again, CallError::Refused(_)), "{again:?}");

    let served = server.stats.snapshot();
    assert_eq!(served.refusals, 2);
    assert_eq!((served.connects, served.connect_failures), (0, 2));
    assert_eq!(stats.snapshot().connect_failures, 2);
    assert_eq!(
        stats.snapshot().refusals,
        0,
        "the server refused, not the client"
    );
    assert!(
        server.handler.hellos.lock().is_empty(),
        "hello comes after authentication"
    );
    assert!(server.handler.bodies.lock().is_empty());
}

#[tokio::test]
async fn the_server_handler_can_refuse_the_client_hello() {
    let handler = TestHandler {
        refuse_hello: Some("cluster id 7 is not this cluster (3)".into()),
        ..TestHandler::echo()
    };
    let server = Server::start(config(), handler).await;
    let (peer, _) = peer(server.addr, config());

    let err = peer
        .call(Bytes::from_static(b"x"), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused("cluster id 7 is not this cluster (3)".into())
    );
    assert_eq!(*server.handler.hellos.lock(), vec![b"hello-1".to_vec()]);
    assert_eq!(server.stats.snapshot().refusals, 1);
    assert!(server.handler.bodies.lock().is_empty());
}

#[tokio::test]
async fn the_client_can_refuse_the_server_hello() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let hello = Arc::new(TestHello {
        refuse_server: Some("server is node 2, expected node 5".into()),
        ..TestHello::default()
    });
    let (peer, stats) = peer_with_hello(server.addr, config(), hello.clone());

    let err = peer
        .call(Bytes::from_static(b"x"), DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused("server is node 2, expected node 5".into())
    );
    assert_eq!(*hello.server_hellos.lock(), vec![b"server".to_vec()]);
    assert_eq!(stats.snapshot().refusals, 1);
    assert_eq!(server.stats.snapshot().refusals, 0);
    assert!(server.handler.bodies.lock().is_empty());
}

#[tokio::test]
async fn hello_bytes_are_asked_for_again_on_each_connection() {
    let server = Server::start(config(), TestHandler::echo()).await;
    let (peer, _) = peer(server.addr, config());
    peer.call(Bytes::new(), DEADLINE).await.unwrap();
    // A new address (the same server, named differently) forces a new connection.
    peer.set_addr(format!("localhost:{}", server.addr.port()));
    peer.call(Bytes::new(), DEADLINE).await.unwrap();
    assert_eq!(
        *server.handler.hellos.lock(),
        vec![b"hello-1".to_vec(), b"hello-2".to_vec()]
    );
}
