//! One authenticated client connection ([`ClientConn`]): the calls waiting on it, the queue of
//! frames to write, and the task that reads responses and writes requests until the connection
//! ends. It never reconnects: that is [`super::Peer`]'s work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use super::{ClientHello, Failure};
use crate::config::TransportConfig;
use crate::envelope::{self, Envelope};
use crate::handshake::{self, HandshakeError};
use crate::socket::{self, printable, FrameReader, ReadError};
use crate::stats::{add, TransportStats};

/// What a waiting call receives: the handler's reply or its error message.
pub(crate) type Reply = Result<Bytes, String>;

/// Why a connection ended, kept for the calls that were on it.
#[derive(Clone, Debug)]
pub(crate) struct End {
    pub(crate) reason: String,
    /// Whether the calls that were in flight should be sent again on a new connection: yes when
    /// the connection failed, no when this node closed it on purpose ([`super::Peer::close`]).
    pub(crate) retry: bool,
}

/// An open connection to a peer, shared by the calls using it and its IO task.
pub(crate) struct ClientConn {
    /// Calls sent and not yet answered, by id. `None` once the connection has ended: dropping
    /// the senders is what tells every waiting call that its connection is gone.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    /// Frames for the writer.
    outgoing: mpsc::UnboundedSender<Bytes>,
    /// One permit per call in flight (`in_flight_max`); closed when the connection ends.
    pub(crate) in_flight: Semaphore,
    /// Asks the IO task to stop.
    stop: Notify,
    end: Mutex<Option<End>>,
    /// Frames received so far; a call that times out compares it with the count when it was
    /// sent, to tell a slow peer from a dead connection.
    frames_received: AtomicU64,
}

impl ClientConn {
    pub(crate) fn is_open(&self) -> bool {
        self.pending.lock().is_some()
    }

    pub(crate) fn frames_received(&self) -> u64 {
        self.frames_received.load(Ordering::Relaxed)
    }

    /// Why the connection ended (a generic reason while it has not).
    pub(crate) fn end(&self) -> End {
        self.end.lock().clone().unwrap_or(End {
            reason: "connection closed".into(),
            retry: true,
        })
    }

    /// Ends the connection: the first reason given is kept, every waiting call is woken, and the
    /// IO task stops (which closes the socket). Idempotent.
    pub(crate) fn shut(&self, reason: String, retry: bool) {
        self.end.lock().get_or_insert(End { reason, retry });
        let waiting = self.pending.lock().take();
        drop(waiting);
        self.in_flight.close();
        self.stop.notify_one();
    }

    /// Registers call `id` and queues its frame. Returns the receiver of its reply, or `None` if
    /// the connection has ended (nothing was queued). The caller must [`ClientConn::forget`] the
    /// id if it stops waiting.
    pub(crate) fn send(&self, id: u64, frame: Bytes) -> Option<oneshot::Receiver<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().as_mut()?.insert(id, tx);
        if self.outgoing.send(frame).is_err() {
            // The IO task has stopped but not yet marked the connection ended.
            self.shut("connection writer stopped".into(), true);
            return None;
        }
        Some(rx)
    }

    /// Drops call `id`'s entry (the call gave up waiting).
    pub(crate) fn forget(&self, id: u64) {
        if let Some(pending) = self.pending.lock().as_mut() {
            pending.remove(&id);
        }
    }
}

/// Connects to `addr`, runs the client handshake and starts the connection's IO task. Each
/// stage has its own deadline from `config`; the caller's deadline does not interrupt a connect
/// (so that a call with a short deadline cannot keep a slow handshake from ever finishing).
pub(crate) async fn open(
    addr: &str,
    config: &TransportConfig,
    hello: &dyn ClientHello,
    stats: &Arc<TransportStats>,
) -> Result<Arc<ClientConn>, Failure> {
    let result = connect_and_handshake(addr, config, hello, stats).await;
    match &result {
        Ok(_) => add(&stats.connects, 1),
        Err(failure) => {
            add(&stats.connect_failures, 1);
            tracing::debug!(peer = %addr, %failure, "transport: connection attempt failed");
        }
    }
    let (reader, writer) = result?;
    let (outgoing, queue) = mpsc::unbounded_channel();
    let conn = Arc::new(ClientConn {
        pending: Mutex::new(Some(HashMap::new())),
        outgoing,
        in_flight: Semaphore::new(config.in_flight_max),
        stop: Notify::new(),
        end: Mutex::new(None),
        frames_received: AtomicU64::new(0),
    });
    tracing::debug!(peer = %addr, "transport: connected");
    tokio::spawn(run(
        conn.clone(),
        reader,
        writer,
        queue,
        addr.to_string(),
        config.frame_bytes_max,
        stats.clone(),
    ));
    Ok(conn)
}

async fn connect_and_handshake(
    addr: &str,
    config: &TransportConfig,
    hello: &dyn ClientHello,
    stats: &TransportStats,
) -> Result<(FrameReader, tokio::net::tcp::OwnedWriteHalf), Failure> {
    let unreachable = |what: String| Failure::Unreachable(format!("{addr}: {what}"));
    config
        .validate()
        .map_err(|e| unreachable(format!("invalid transport configuration: {e}")))?;
    let stream = match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await
    {
        Err(_) => {
            return Err(unreachable(format!(
                "TCP connect timed out after {:?}",
                config.connect_timeout
            )))
        }
        Ok(Err(e)) => return Err(unreachable(format!("cannot connect: {e}"))),
        Ok(Ok(stream)) => stream,
    };
    stream
        .set_nodelay(true)
        .map_err(|e| unreachable(format!("cannot set TCP_NODELAY: {e}")))?;
    let (read, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let handshake = handshake::client(&mut reader, &mut writer, &config.secret, hello, stats, addr);
    match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Err(_) => Err(unreachable(format!(
            "handshake did not finish within {:?}",
            config.handshake_timeout
        ))),
        Ok(Err(HandshakeError::Refused(reason))) => Err(Failure::Refused(reason)),
        Ok(Err(HandshakeError::Protocol(e))) => {
            tracing::warn!(peer = %addr, error = %e, "transport: handshake with server failed");
            Err(unreachable(e))
        }
        Ok(Err(HandshakeError::Io(e))) => Err(unreachable(format!("handshake failed: {e}"))),
        Ok(Ok(())) => Ok((reader, writer)),
    }
}

/// The connection's IO task: reads responses and writes queued requests concurrently until one
/// side fails or [`ClientConn::shut`] asks it to stop; then ends the connection.
async fn run(
    conn: Arc<ClientConn>,
    reader: FrameReader,
    writer: tokio::net::tcp::OwnedWriteHalf,
    queue: mpsc::UnboundedReceiver<Bytes>,
    addr: String,
    frame_bytes_max: usize,
    stats: Arc<TransportStats>,
) {
    let reason = tokio::select! {
        reason = read_loop(&conn, reader, &addr, frame_bytes_max, &stats) => reason,
        written = socket::write_loop(writer, queue, &stats) => match written {
            Ok(()) => "connection writer stopped".to_string(),
            Err(e) => format!("write error: {e}"),
        },
        _ = conn.stop.notified() => "closed by this node".to_string(),
    };
    tracing::debug!(peer = %addr, %reason, "transport: connection ended");
    conn.shut(reason, true);
}

/// Reads responses and hands each to its waiting call, until the connection fails. Returns why.
async fn read_loop(
    conn: &ClientConn,
    mut reader: FrameReader,
    addr: &str,
    frame_bytes_max: usize,
    stats: &TransportStats,
) -> String {
    loop {
        let payload = match reader.next(frame_bytes_max, stats).await {
            Ok(payload) => payload,
            Err(e) => {
                if e.is_peer_fault() {
                    tracing::warn!(peer = %addr, error = %e, "transport: bad frame from server");
                }
                return match e {
                    ReadError::Closed => format!("{addr} closed the connection"),
                    e => format!("{addr}: {e}"),
                };
            }
        };
        conn.frames_received.fetch_add(1, Ordering::Relaxed);
        match envelope::decode(&payload) {
            Ok(Envelope::Response { id, result }) => {
                let reply = match result {
                    Ok(body) => Ok(payload.slice_ref(body.0)),
                    Err(message) => Err(message.to_string()),
                };
                let waiting = conn.pending.lock().as_mut().and_then(|p| p.remove(&id));
                match waiting {
                    // The call may have given up in the meantime: nothing to do then.
                    Some(tx) => drop(tx.send(reply)),
                    None => {
                        tracing::debug!(peer = %addr, id, "transport: reply to a call no longer waiting")
                    }
                }
            }
            Ok(Envelope::Refused { reason }) => {
                let reason = printable(reason);
                tracing::warn!(peer = %addr, %reason, "transport: server closed the connection");
                return format!("{addr} closed the connection: {reason}");
            }
            Ok(other) => {
                let e = format!("protocol error: unexpected {} message", other.kind());
                tracing::warn!(peer = %addr, error = %e, "transport: bad message from server");
                return format!("{addr}: {e}");
            }
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "transport: bad message from server");
                return format!("{addr}: protocol error: {e}");
            }
        }
    }
}
