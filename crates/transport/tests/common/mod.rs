//! Test servers, handlers and peers on loopback.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tandem_transport::{
    serve, BoxFuture, ClientHello, Handler, Peer, TransportConfig, TransportStats,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const SECRET: &[u8] = b"correct horse battery staple";

pub fn config() -> TransportConfig {
    TransportConfig::new(SECRET)
}

type Respond = dyn Fn(Bytes) -> BoxFuture<'static, Result<Bytes, String>> + Send + Sync;

/// A handler that records what it was given and answers with `respond`.
pub struct TestHandler {
    /// Every body the handler was called with, in arrival order.
    pub bodies: Mutex<Vec<Bytes>>,
    /// Every client hello seen.
    pub hellos: Mutex<Vec<Vec<u8>>>,
    /// Refuse every client hello with this reason.
    pub refuse_hello: Option<String>,
    /// The server's hello bytes.
    pub server_hello: Vec<u8>,
    pub respond: Box<Respond>,
}

impl TestHandler {
    pub fn new(
        respond: impl Fn(Bytes) -> BoxFuture<'static, Result<Bytes, String>> + Send + Sync + 'static,
    ) -> TestHandler {
        TestHandler {
            bodies: Mutex::new(Vec::new()),
            hellos: Mutex::new(Vec::new()),
            refuse_hello: None,
            server_hello: b"server".to_vec(),
            respond: Box::new(respond),
        }
    }

    /// Answers each body with "re:" followed by the body.
    pub fn echo() -> TestHandler {
        TestHandler::new(|body| {
            Box::pin(async move {
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&body);
                Ok(Bytes::from(reply))
            })
        })
    }
}

impl Handler for TestHandler {
    fn hello(&self, _peer: SocketAddr, hello: &[u8]) -> Result<Vec<u8>, String> {
        self.hellos.lock().push(hello.to_vec());
        match &self.refuse_hello {
            Some(reason) => Err(reason.clone()),
            None => Ok(self.server_hello.clone()),
        }
    }

    fn call(&self, _peer: SocketAddr, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        self.bodies.lock().push(body.clone());
        (self.respond)(body)
    }
}

/// A client hello that numbers its connections ("hello-1", "hello-2", ...) and can refuse the
/// server's hello.
#[derive(Default)]
pub struct TestHello {
    pub connections: AtomicU64,
    pub refuse_server: Option<String>,
    pub server_hellos: Mutex<Vec<Vec<u8>>>,
}

impl ClientHello for TestHello {
    fn hello(&self) -> Vec<u8> {
        let n = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        format!("hello-{n}").into_bytes()
    }

    fn check_server_hello(&self, hello: &[u8]) -> Result<(), String> {
        self.server_hellos.lock().push(hello.to_vec());
        match &self.refuse_server {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

/// A running `serve`.
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<TransportStats>,
    pub handler: Arc<TestHandler>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// Serves on a free loopback port.
    pub async fn start(config: TransportConfig, handler: TestHandler) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), config, Arc::new(handler)).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        config: TransportConfig,
        handler: Arc<TestHandler>,
    ) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(TransportStats::new());
        let task = tokio::spawn(serve(
            listener,
            Arc::new(config),
            handler.clone(),
            stats.clone(),
        ));
        Server {
            addr,
            stats,
            handler,
            task,
        }
    }

    /// Stops serving: the listener and every connection are closed once this returns.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A peer handle on `addr` with its own stats.
pub fn peer(addr: SocketAddr, config: TransportConfig) -> (Peer, Arc<TransportStats>) {
    peer_with_hello(addr, config, Arc::new(TestHello::default()))
}

pub fn peer_with_hello(
    addr: SocketAddr,
    config: TransportConfig,
    hello: Arc<TestHello>,
) -> (Peer, Arc<TransportStats>) {
    let stats = Arc::new(TransportStats::new());
    let peer = Peer::new(addr.to_string(), Arc::new(config), hello, stats.clone());
    (peer, stats)
}
