//! The RESP server: TCP listener, one task per connection, server-level commands, INFO, the
//! active expiry cycle.
//!
//! - [`connection`]: reads requests, pipelines them, routes data commands to reads (keyspace) or
//!   writes (consensus), keeps replies in order.
//! - [`admin`]: server-level commands (PING, HELLO, AUTH, CLIENT, COMMAND, CONFIG, INFO, ...).
//! - [`info`]: the INFO sections.
//! - [`expiry`]: the active expiry cycle (deletes expired keys through the log).
//! - [`clients`]: the registry of connected clients (CLIENT LIST, INFO clients, maxclients).
//! - [`replication`]: ROLE, WAIT, REPLICAOF, POSITION, WAITPOS, MEMBERSHIP and the rule for
//!   reads on a replica.
//! - [`failover`]: FAILOVER (planned switchover); [`sentinel`]: the Sentinel discovery subset and
//!   the `+switch-master` announcements; [`pubsub`]: node-local Pub/Sub.
//! - [`integrity`]: DIGEST.REPORT, clients reporting a copy that failed their digest check, and
//!   DIGEST.QUARANTINE; [`scrub`]: the background verification of every stored value.
//! - [`divergence`]: VERIFY and the periodic verification (every member's keyspace digest
//!   compared at one log position, differing keys repaired from the primary), DEBUG DIVERGE.

pub mod admin;
pub mod clients;
pub mod connection;
pub mod divergence;
pub mod expiry;
pub mod failover;
pub mod info;
pub mod integrity;
pub mod pubsub;
pub mod replication;
pub mod scrub;
pub mod sentinel;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use tandem_checksum::Algorithm;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::consensus::Node;

/// Settings that CONFIG SET may change at runtime.
pub struct Runtime {
    pub checksum_algorithm: Algorithm,
    pub requirepass: Option<String>,
}

/// Server-wide counters for INFO stats.
#[derive(Default)]
pub struct Stats {
    pub commands_processed: AtomicU64,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub expired_keys: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
}

/// What every connection shares.
pub struct Shared {
    pub config: ServerConfig,
    pub runtime: RwLock<Runtime>,
    pub node: Arc<Node>,
    pub clients: clients::Registry,
    pub stats: Stats,
    /// DIGEST.REPORT counters, for INFO integrity.
    pub integrity_reports: integrity::Reports,
    /// Pub/Sub channels and patterns and their subscribers.
    pub pubsub: pubsub::Hub,
    pub started: Instant,
    pub shutdown: watch::Sender<bool>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the server until SHUTDOWN or Ctrl-C.
pub async fn run(config: ServerConfig, node: Arc<Node>) -> std::io::Result<()> {
    let addr = std::net::SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr).await?;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        runtime: RwLock::new(Runtime {
            checksum_algorithm: config.checksum_algorithm,
            requirepass: config.requirepass.clone(),
        }),
        config,
        node: node.clone(),
        clients: clients::Registry::default(),
        stats: Stats::default(),
        integrity_reports: integrity::Reports::default(),
        pubsub: pubsub::Hub::default(),
        started: Instant::now(),
        shutdown: shutdown_tx,
    });
    if shared.config.http_port != 0 {
        let http_addr = std::net::SocketAddr::new(shared.config.bind, shared.config.http_port);
        let http = TcpListener::bind(http_addr).await.map_err(|e| {
            std::io::Error::other(format!("cannot listen on the HTTP port {http_addr}: {e}"))
        })?;
        info!("HTTP (/metrics, /health, /ready) on {http_addr}");
        tokio::spawn(crate::http::serve(
            http,
            node.clone(),
            shared.config.replica_max_lag,
        ));
    }
    info!("ready to accept connections on {addr}");
    tokio::spawn(expiry::run(shared.clone()));
    tokio::spawn(divergence::run_periodic(shared.clone()));
    if shared.config.bench_no_keyspace_digest {
        warn!("--bench-no-keyspace-digest: the keyspace digest is not kept (benchmarks only)");
        tandem_core::keyspace::set_digest_upkeep(false);
    }
    tokio::spawn(scrub::run(shared.clone()));
    if shared.config.bench_unverified_reads {
        warn!("--bench-unverified-reads: plain reads do not verify checksums (benchmarks only)");
        node.state().read().keyspace.set_reads_unverified(true);
    }
    tokio::spawn(sentinel::announce_switches(shared.clone()));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failure = None;
    let stopped = node.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                shared.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tokio::spawn(async move { connection::serve(shared, socket, peer).await });
            }
            _ = shutdown_rx.changed() => break,
            _ = tokio::signal::ctrl_c() => {
                info!("received Ctrl-C, shutting down");
                break;
            }
            _ = terminate.recv() => {
                info!("received SIGTERM, shutting down");
                break;
            }
            why = &mut stopped => {
                tracing::error!("consensus stopped: {why}; exiting so the node can be restarted");
                failure = Some(why);
                break;
            }
        }
    }
    drop(listener);
    let _ = shared.shutdown.send(true);
    node.shutdown().await;
    info!("shut down");
    match failure {
        None => Ok(()),
        Some(why) => Err(std::io::Error::other(format!("consensus stopped: {why}"))),
    }
}
